"""Derivative checks other projects can import (in the spirit of ``torch.autograd.gradcheck``
and HIPS/autograd's ``check_vjp``).

All checks work in float64 with central finite differences along random directions, and compare
*dot products* (``<v, J u>``), so they never need a whole Jacobian unless asked for one.

Error measure
-------------
A scalar identity ``a ≈ b`` with natural size ``s`` is scored ``|a − b| / s``, where ``s`` is the
Cauchy–Schwarz scale of the quantity (for ``<J^T v, u>``: ``||J^T v||·||u||``). This stays meaningful
when a random direction happens to be nearly orthogonal to the gradient, where ``|a − b|/|a|``
would blow up. Vectors are scored ``||a − b|| / max(||a||, ||b||)``.

Default tolerances (float64)
----------------------------
``FD_RTOL = 1e-6``: central differences with step ``FD_EPS = 1e-4`` along unit directions have
truncation error ``O(eps^2) = 1e-8`` for smooth functions and none for piecewise-linear ones
(ReLU, pooling), and round-off ``O(1e-16/eps)``; measured errors on gcref's zoo are below 1e-7, so
1e-6 leaves room without hiding a wrong derivative (a wrong term shows as O(1)). ``EXACT_RTOL = 1e-12``: identities that involve no finite difference (VJP against JVP,
reverse-mode against forward-mode Jacobians).

Piecewise-linear functions (ReLU, max-pool) are differentiable almost everywhere; a finite
difference that straddles a kink is wrong, not the derivative. Random inputs hit a kink within
``eps`` with probability about ``eps`` per unit. Each direction is therefore scored at two steps,
``eps`` and ``eps/10``, and the smaller error kept: a kink spoils one step size, a wrong
derivative spoils both.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .._validation import as_generator

__all__ = [
    "FD_EPS", "FD_RTOL", "EXACT_RTOL", "CheckResult", "relative_error", "check_vjp", "check_jvp",
    "check_vjp_jvp", "check_jacobian", "check_gradient", "assert_close", "assert_check",
]

FD_EPS = 1e-4
FD_RTOL = 1e-6
EXACT_RTOL = 1e-12
_TINY = 1e-300


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: its name, the worst error seen, the tolerance and the verdict.

    A check that could not run (e.g. no GPU) is ``skipped``: it is neither passed nor failed,
    and ``detail`` says why (see :meth:`skip`).
    """

    name: str
    error: float
    tolerance: float
    passed: bool
    detail: str = ""
    skipped: bool = False

    def __post_init__(self):
        if self.skipped and self.passed:
            raise ValueError(f"check {self.name!r}: a skipped check is not passed")

    @classmethod
    def skip(cls, name: str, reason: str) -> "CheckResult":
        """A check that did not run, with the reason (error and tolerance 0: nothing measured)."""
        return cls(name, 0.0, 0.0, False, reason, skipped=True)

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"skipped"``."""
        return "skipped" if self.skipped else "passed" if self.passed else "failed"

    @property
    def failed(self) -> bool:
        return not (self.passed or self.skipped)

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status}

    def __bool__(self) -> bool:
        return self.passed


def _result(name, error, tol, detail=""):
    error = float(error)
    return CheckResult(name, error, float(tol), bool(np.isfinite(error) and error <= tol), detail)


def relative_error(actual, desired) -> float:
    """``||actual − desired|| / max(||actual||, ||desired||)`` (0 when both are 0)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(desired, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def _unit(rng, shape):
    u = rng.standard_normal(shape)
    return u / np.linalg.norm(u)


def _central(fun, x, u, eps):
    return (np.asarray(fun(x + eps * u), dtype=np.float64)
            - np.asarray(fun(x - eps * u), dtype=np.float64)) / (2.0 * eps)


def _steps(eps):
    return (eps, eps / 10.0)


def check_vjp(fun, vjp, x, *, seed=0, eps: float = FD_EPS, rtol: float = FD_RTOL,
              directions: int = 3, name: str = "vjp") -> CheckResult:
    """Check ``vjp(v) = J(x)^T v`` against central differences of ``fun`` at ``x``.

    For random unit ``u`` and random ``v``: ``<vjp(v), u>`` against
    ``<v, (fun(x + eps u) − fun(x − eps u)) / (2 eps)>``, scored relative to ``||vjp(v)||·||u||``.
    """
    rng = as_generator(seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(fun(x), dtype=np.float64)
    worst = 0.0
    for _ in range(directions):
        u = _unit(rng, x.shape)
        v = rng.standard_normal(y.shape)
        g = np.asarray(vjp(v), dtype=np.float64)
        if g.shape != x.shape:
            return CheckResult(name, np.inf, rtol, False, f"vjp returned shape {g.shape}, expected {x.shape}")
        analytic = float(np.vdot(g, u))
        errs = []
        for h in _steps(eps):
            numeric = float(np.vdot(v, _central(fun, x, u, h)))
            errs.append(abs(analytic - numeric) / max(np.linalg.norm(g), abs(numeric), _TINY))
        worst = max(worst, min(errs))
    return _result(name, worst, rtol)


def check_jvp(fun, jvp, x, *, seed=0, eps: float = FD_EPS, rtol: float = FD_RTOL,
              directions: int = 3, name: str = "jvp") -> CheckResult:
    """Check ``jvp(u) = J(x) u`` against the central difference of ``fun`` along ``u``."""
    rng = as_generator(seed)
    x = np.asarray(x, dtype=np.float64)
    worst = 0.0
    for _ in range(directions):
        u = _unit(rng, x.shape)
        ju = jvp(u)
        worst = max(worst, min(relative_error(ju, _central(fun, x, u, h)) for h in _steps(eps)))
    return _result(name, worst, rtol)


def check_vjp_jvp(vjp, jvp, in_shape, out_shape, *, seed=0, rtol: float = EXACT_RTOL,
                  directions: int = 3, name: str = "vjp/jvp") -> CheckResult:
    """Check the transpose identity ``<v, jvp(u)> = <vjp(v), u>`` (no finite differences)."""
    rng = as_generator(seed)
    worst = 0.0
    for _ in range(directions):
        u = rng.standard_normal(in_shape)
        v = rng.standard_normal(out_shape)
        ju = np.asarray(jvp(u), dtype=np.float64)
        jtv = np.asarray(vjp(v), dtype=np.float64)
        a, b = float(np.vdot(v, ju)), float(np.vdot(jtv, u))
        scale = max(np.linalg.norm(v) * np.linalg.norm(ju), np.linalg.norm(jtv) * np.linalg.norm(u), _TINY)
        worst = max(worst, abs(a - b) / scale)
    return _result(name, worst, rtol)


def _evaluated(derivative, at, argname: str, fn_name: str, form: str):
    """``derivative(at)`` for a function; a value (the old form) with a ``DeprecationWarning``."""
    if callable(derivative):
        return derivative(at)
    warnings.warn(
        f"{fn_name}: passing the {argname} as a value is deprecated; pass a function "
        f"{form} (as check_vjp and check_jvp take functions)", DeprecationWarning, stacklevel=3)
    return derivative


def check_jacobian(fun, jacobian, x, *, eps: float = FD_EPS, rtol: float = FD_RTOL,
                   name: str = "jacobian") -> CheckResult:
    """Check a whole Jacobian against central differences of ``fun``, column by column.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> ndarray``.
    jacobian : callable
        ``jacobian(x) -> ndarray`` of shape ``(fun(x).size, x.size)`` (inputs and outputs
        flattened in C order). Passing the array itself is deprecated (``DeprecationWarning``).
    x : array_like
        The point.

    Costs ``2 · x.size`` evaluations of ``fun``: for small problems only.
    """
    x = np.asarray(x, dtype=np.float64)
    jac = np.asarray(_evaluated(jacobian, x.copy(), "jacobian", "check_jacobian", "jacobian(x)"),
                     dtype=np.float64)
    out_size = np.asarray(fun(x)).size
    if jac.shape != (out_size, x.size):
        return CheckResult(name, np.inf, rtol, False,
                           f"jacobian has shape {jac.shape}, expected {(out_size, x.size)}")
    numeric = np.empty_like(jac)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        numeric[:, i] = _central(fun, x, e.reshape(x.shape), eps).ravel()
    scale = max(np.abs(jac).max(initial=0.0), np.abs(numeric).max(initial=0.0), _TINY)
    return _result(name, np.abs(jac - numeric).max(initial=0.0) / scale, rtol)


def _flat_dict(d, keys):
    return np.concatenate([np.ravel(d[k]) for k in keys]) if keys else np.zeros(0)


def check_gradient(loss, gradient, params, *, seed=0, eps: float = FD_EPS, rtol: float = FD_RTOL,
                   directions: int = 3, name: str = "gradient") -> CheckResult:
    """Check the gradient of a scalar ``loss(params)`` along random directions.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> float``.
    gradient : callable
        ``gradient(params)`` returns the gradient at ``params``, with the same structure (an
        array, or a dict that may omit keys whose gradient is zero, e.g. buffers). Passing the
        gradient itself is deprecated (``DeprecationWarning``).
    params : array_like or dict[str, ndarray]
        The point.

    The directional derivative ``<grad, d>`` is compared with
    ``(loss(θ + eps d) − loss(θ − eps d)) / (2 eps)``, relative to ``||grad||·||d||``.
    """
    rng = as_generator(seed)
    at = ({k: np.array(v, dtype=np.float64) for k, v in params.items()} if isinstance(params, dict)
          else np.array(params, dtype=np.float64))
    gradient = _evaluated(gradient, at, "gradient", "check_gradient", "gradient(params)")
    if isinstance(params, dict):
        if not isinstance(gradient, dict):
            return CheckResult(name, np.inf, rtol, False,
                               f"gradient must be a dict like params, got {type(gradient).__name__}")
        keys = sorted(params)
        missing = [k for k in gradient if k not in params]
        if missing:
            return CheckResult(name, np.inf, rtol, False, f"gradient has unknown keys {missing}")
        g = np.concatenate([np.ravel(gradient[k]) if k in gradient else np.zeros(np.size(params[k]))
                            for k in keys])
        flat = _flat_dict(params, keys)
        sizes = [np.size(params[k]) for k in keys]
        shapes = [np.shape(params[k]) for k in keys]

        def unflatten(vec):
            out, pos = {}, 0
            for k, s, shp in zip(keys, sizes, shapes):
                out[k] = vec[pos:pos + s].reshape(shp)
                pos += s
            return out
    else:
        flat = np.asarray(params, dtype=np.float64).ravel()
        g = np.asarray(gradient, dtype=np.float64).ravel()
        shape = np.shape(params)

        def unflatten(vec):
            return vec.reshape(shape)
    if g.shape != flat.shape:
        return CheckResult(name, np.inf, rtol, False, f"gradient has {g.size} entries, expected {flat.size}")
    worst = 0.0
    for _ in range(directions):
        d = _unit(rng, flat.shape)
        analytic = float(g @ d)
        errs = []
        for h in _steps(eps):
            numeric = (float(loss(unflatten(flat + h * d))) - float(loss(unflatten(flat - h * d)))) / (2 * h)
            errs.append(abs(analytic - numeric) / max(np.linalg.norm(g), abs(numeric), _TINY))
        worst = max(worst, min(errs))
    return _result(name, worst, rtol)


def assert_close(actual, desired, *, rtol: float = 1e-10, atol: float = 0.0, name: str = "value") -> None:
    """Raise ``AssertionError`` unless ``|actual − desired| <= atol + rtol·|desired|`` everywhere."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(desired, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {b.shape}")
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise AssertionError(f"{name}: non-finite values")
    err = np.abs(a - b)
    bound = atol + rtol * np.abs(b)
    if np.any(err > bound):
        i = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
        raise AssertionError(f"{name}: max error {err.max():.3e} exceeds atol={atol:g} + rtol={rtol:g}·|desired| "
                             f"(at index {i}: {a[i]!r} vs {b[i]!r})")


def assert_check(result: CheckResult) -> None:
    """Raise ``AssertionError`` with the check's numbers if it failed."""
    if not result.passed:
        raise AssertionError(f"{result.name}: error {result.error:.3e} > tolerance {result.tolerance:.1e}"
                             + (f" ({result.detail})" if result.detail else ""))
