"""Conformance suite: check *your* implementation of GC, CDNV, NC, NC1-NC4 or a GC estimator.

In the spirit of scikit-learn's ``check_estimator``: you pass your function; gcref runs it over a
battery of cases whose answers it knows (computed with gcref's own functions, several also in
closed form) and returns a :class:`ConformanceReport`, one row per case (case, value, reference,
error, passed), ``report.passed`` and ``report.table()``. Where your value disagrees, the report
names the known convention it matches (divisor ``n_c - 1``, GC/2, distance not squared, ...; the
list is :mod:`gcref.testing.conventions`).

=====================================  ===========================================================
check                                  your function
=====================================  ===========================================================
:func:`check_gc_implementation`        ``fn(f, X) -> float``: GC of the embedding ``f`` on ``X``
:func:`check_cdnv_implementation`      ``fn(Z, y) -> (k, k)`` CDNV matrix (classes sorted)
:func:`check_nc_implementation`        ``fn(Z, y) -> float``: NC, the mean pairwise CDNV
:func:`check_papyan_implementation`    ``fn(Z, y, W, b) -> dict`` with ``"NC1"``, ... ``"NC4"``
:func:`check_gc_estimator`             ``fn(f, X, seed) -> (value, stderr)`` (or ``.value``,
                                       ``.stderr``): unbiased? standard error calibrated?
=====================================  ===========================================================

``framework`` (``"numpy"``, ``"torch"``, ``"jax"``) says what your function receives: for GC, the
embedding as a NumPy callable, a float64 ``torch.nn.Module`` (``gcref.interop.torch.to_torch``) or
a JAX function, and ``X`` as that framework's float64 array; for the feature quantities, ``Z``,
``y``, ``W`` and ``b`` as that framework's arrays. Results may be Python floats, NumPy, torch or
JAX values.

Every function value is compared with the reference at relative tolerance ``rtol`` (default
``1e-9``: a float64 implementation agrees to about ``1e-14``; Papyan's measures, which can be 0,
are compared absolutely below 1). A case whose right answer is an error (coinciding class means)
passes when your function raises.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from .._validation import check_float, check_int
from ..metrics.collapse import cdnv, neural_collapse, papyan_nc
from ..metrics.complexity import geometric_complexity, per_example_gc
from .conventions import FeatureCase, GCIngredients, conventions_for
from .diagnosis import Diagnosis, matching_conventions, scalar_error
from .frameworks import as_framework_input, check_framework, embedding_function

__all__ = [
    "FeatureCase", "NetworkCase", "CaseResult", "ConformanceReport", "QUANTITIES", "PAPYAN_KEYS",
    "gc_cases", "feature_cases", "papyan_cases", "estimator_cases",
    "check_gc_implementation", "check_cdnv_implementation", "check_nc_implementation",
    "check_papyan_implementation", "check_gc_estimator", "check_implementation",
    "conformance_checks", "ConformanceCheck", "run_gc_case", "run_feature_case", "run_papyan_case",
    "run_estimator_case",
]

QUANTITIES = ("gc", "cdnv", "nc", "papyan", "estimator")
PAPYAN_KEYS = ("NC1", "NC2_equinorm", "NC2_equiangle", "NC2_maxangle", "NC3", "NC4")
DEFAULT_RTOL = 1e-9
_EXACT_RTOL = 1e-12      # estimator: a spread below this fraction of the value is rounding
OFFSET = 1e8


# ------------------------------------------------------------------------------------- cases

@dataclass(frozen=True, eq=False)
class NetworkCase:
    """The function ``x -> out_scale * f(x / in_scale)``, ``f`` the embedding of ``net``, on ``X``."""

    name: str
    net: object
    params: dict
    X: np.ndarray
    out_scale: float = 1.0
    in_scale: float = 1.0
    note: str = ""
    ill_conditioned: bool = False

    @cached_property
    def ingredients(self) -> GCIngredients:
        """Per-example ``||J(x)||_F^2`` of the scaled function (gcref's exact values)."""
        factor = (self.out_scale / self.in_scale) ** 2
        Xs = self.X / self.in_scale
        per = factor * per_example_gc(self.net, self.params, Xs)
        logits = None
        if self.out_scale == 1.0 and self.in_scale == 1.0:
            logits = geometric_complexity(self.net, self.params, Xs, output="logits")
        return GCIngredients(per, self.net.embedding_dim, self.net.input_dim, logits)

    @property
    def reference(self) -> float:
        return float(np.mean(self.ingredients.per_example))


def _quantized(rng, shape, step=2.0 ** -20):
    return np.round(rng.normal(size=shape) / step) * step


def _design(means, sigmas, counts, rng=None, quantize=False):
    """Class c: ``counts[c]`` points ``mu_c + d`` with deviations of zero mean, built as ``[A; -A]``
    (exact zero sum). Without ``rng``: ``d = ±sigma_c sqrt(p) e_l`` scaled so ``Var_c = sigma_c^2``
    exactly (counts = 2p); with ``rng``: Gaussian ``A`` (optionally quantized to 2^-20)."""
    Z, y = [], []
    p = means.shape[1]
    for c, (mu, s, m) in enumerate(zip(means, sigmas, counts)):
        if rng is None:
            A = s * np.eye(p)                            # ±s e_l: ||d||^2 = s^2, Var_c = s^2
        else:
            A = _quantized(rng, (m // 2, p)) if quantize else rng.normal(size=(m // 2, p))
            A = s * A
        Z.append(mu + np.concatenate([A, -A]))
        y.append(np.full(2 * A.shape[0], c))
    return np.concatenate(Z), np.concatenate(y)


def _etf(k, p, radius=1.0):
    """k vertices of a simplex ETF in R^p (p >= k - 1), norm ``radius``: rows of (k, p)."""
    M = np.eye(k) - np.ones((k, k)) / k                  # centred standard basis
    Q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(p, p)))
    U, _, _ = np.linalg.svd(M)                           # orthonormal basis of the centred span
    V = M @ U[:, :k - 1]                                 # (k, k-1) coordinates in that span
    V = V / np.linalg.norm(V, axis=1, keepdims=True) * radius
    return V @ Q[:k - 1]                                 # embed into R^p by an orthonormal map


def feature_cases() -> list[FeatureCase]:
    """Cases for CDNV and NC. Seeded; every case also has closed-form or exact-arithmetic answers
    where its note says so."""
    rng = np.random.default_rng(20240)
    cases = []
    # Gaussian classes of unequal sizes and anisotropic covariances
    sizes = [5, 9, 3, 7]
    means = 3.0 * rng.normal(size=(4, 5))
    scales = rng.uniform(0.3, 2.0, size=(4, 5))
    Z = np.concatenate([means[c] + scales[c] * rng.normal(size=(m, 5)) for c, m in enumerate(sizes)])
    y = np.repeat(np.arange(4), sizes)
    cases.append(FeatureCase("gaussian, unequal class sizes", Z, y,
                             note="4 anisotropic Gaussian classes, n_c = 5, 9, 3, 7, p = 5"))
    # closed form: Var_c = sigma_c^2 and integer means exactly
    mu = np.array([[0.0, 0, 0, 0], [3, 1, 0, 2], [-1, 4, 2, 0]])
    sig = np.array([1.0, 0.5, 2.0])
    Z, y = _design(mu, sig, [8, 8, 8])
    cases.append(FeatureCase("closed form (Var_c = sigma_c^2)", Z, y,
                             note="points mu_c ± sigma_c e_l: V_ij = (s_i^2 + s_j^2) / (2 ||mu_i - mu_j||^2)"))
    # simplex ETF means
    M = _etf(5, 6, radius=2.0)
    Z, y = _design(M, np.full(5, 0.25), [12] * 5)
    cases.append(FeatureCase("simplex ETF means", Z, y,
                             note="||mu_i - mu_j||^2 = 2 k r^2 / (k - 1), Var_c = 1/16"))
    # two classes, one feature
    Z = np.concatenate([rng.normal(0.0, 1.0, (6, 1)), rng.normal(2.5, 0.5, (4, 1))])
    cases.append(FeatureCase("two classes, p = 1", Z, np.repeat([0, 1], [6, 4])))
    # non-contiguous labels in shuffled order
    Z = np.concatenate([rng.normal(c, 0.7, (m, 3)) for c, m in zip((0.0, 2.0, -3.0), (4, 6, 5))])
    y = np.repeat([11, 3, 7], [4, 6, 5])
    perm = rng.permutation(len(y))
    cases.append(FeatureCase("labels 3, 7, 11, shuffled", Z[perm], y[perm],
                             note="the CDNV matrix is indexed by the sorted labels"))
    # tiny scale
    Zs, ys = cases[0].Z * 1e-6, cases[0].y
    cases.append(FeatureCase("scaled by 1e-6", Zs, ys, note="CDNV is scale invariant"))
    # large offset: exact arithmetic for any two-pass implementation
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2]])
    Z, y = _design(mu, np.array([1.0, 0.5, 1.5]), [4, 8, 16], rng=rng, quantize=True)
    cases.append(FeatureCase("offset 1e8", Z + OFFSET, y, ill_conditioned=True,
                             note="features + 1e8, exact in float64 for a two-pass variance; "
                                  "E||z||^2 - ||mu||^2 cancels"))
    # coinciding means: must raise
    Z, y = _design(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]), np.array([1.0, 0.5, 1.0]), [4, 4, 4])
    cases.append(FeatureCase("coinciding means (must raise)", Z, y, raises=True))
    return cases


def papyan_cases() -> list[FeatureCase]:
    """Cases for NC1-NC4: features with a linear head ``(W, b)``."""
    rng = np.random.default_rng(20241)
    cases = []
    k, p = 4, 5
    M = _etf(k, p, radius=3.0)
    Z, y = _design(M, np.full(k, 0.1), [6] * k, rng=rng)
    cases.append(FeatureCase("simplex ETF, self-dual head", Z, y, W=M.copy(), b=np.zeros(k),
                             note="NC2 and NC3 are 0 up to rounding; NC4 = 0"))
    sizes = [6, 10, 4, 8]
    means = 2.0 * rng.normal(size=(4, 6))
    Z = np.concatenate([means[c] + rng.normal(size=(m, 6)) for c, m in enumerate(sizes)])
    y = np.repeat(np.arange(4), sizes)
    cases.append(FeatureCase("gaussian, head with bias", Z, y, W=rng.normal(size=(4, 6)),
                             b=4.0 * rng.normal(size=4), note="unequal classes; the bias moves argmax"))
    means = 2.0 * rng.normal(size=(5, 2))
    Z = np.concatenate([means[c] + 0.8 * rng.normal(size=(6, 2)) for c in range(5)])
    cases.append(FeatureCase("rank-deficient Sigma_B (p = 2 < k - 1)", Z, np.repeat(np.arange(5), 6),
                             W=rng.normal(size=(5, 2)), b=rng.normal(size=5)))
    Z = np.concatenate([rng.normal(c, 1.0, (5, 3)) for c in (0.0, 2.0, -2.0)])
    y = np.repeat([0, 2, 3], 5)
    cases.append(FeatureCase("labels 0, 2, 3 of a 5-row head", Z, y, W=rng.normal(size=(5, 3)),
                             b=rng.normal(size=5), note="rows 1 and 4 of W belong to absent classes"))
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2]])
    Z, y = _design(mu, np.array([1.0, 0.5, 1.5]), [4, 8, 16], rng=rng, quantize=True)
    cases.append(FeatureCase("offset 1e8", Z + OFFSET, y, W=rng.normal(size=(3, 3)), b=np.zeros(3),
                             ill_conditioned=True))
    Z, y = _design(np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]), np.ones(3), [4, 4, 4])
    cases.append(FeatureCase("all class means coincide (must raise)", Z, y, W=np.eye(3, 2),
                             b=np.zeros(3), raises=True))
    return cases


def _net(layers, head, input_shape, name):
    from ..nn.network import Network
    return Network(layers, head, input_shape, name=name)


def gc_cases() -> list[NetworkCase]:
    """Cases for GC: every zoo family at small sizes (``small_zoo()``, ResNet-50 with the ImageNet
    stem, GELU and SiLU MLPs), then ties, tanh, batch norm, a linear map
    (``GC = ||A||_F^2``) and the scaling laws ``GC(c f) = c^2 GC(f)``,
    ``GC(f(./c), X) = GC(f, X/c) / c^2``."""
    from .cases import perturbed_params, small_zoo
    from ..nn import layers as L
    from ..nn import zoo
    cases = []
    for i, net in enumerate(small_zoo()):
        X = np.random.default_rng(100 + i).normal(size=(3,) + net.input_shape)
        cases.append(NetworkCase(net.name, net, perturbed_params(net, 100 + i), X))
    extra = [zoo.resnet50((3, 8, 8), num_classes=3, width=1 / 32, stem="imagenet"),
             zoo.mlp([5, 6, 4], num_classes=3, activation="gelu"),
             zoo.mlp([5, 6, 4], num_classes=3, activation="silu")]
    for i, net in enumerate(extra, start=len(cases)):
        X = np.random.default_rng(100 + i).normal(size=(3,) + net.input_shape)
        cases.append(NetworkCase(net.name, net, perturbed_params(net, 100 + i), X))
    rng = np.random.default_rng(20242)
    # ReLU ties: zero biases and zero inputs put every pre-activation exactly at the kink
    net = zoo.mlp([4, 6, 5], num_classes=3)
    params = net.init(1)
    params = {k: (np.zeros_like(v) if k.endswith("bias") and not k.startswith("classifier") else v)
              for k, v in params.items()}
    X = np.concatenate([np.zeros((2, 4)), rng.normal(size=(2, 4))])
    cases.append(NetworkCase("ReLU ties (pre-activations exactly 0)", net, params, X,
                             note="derivative of ReLU at 0 is 0 (gcref, PyTorch)"))
    # max-pool ties: equal values in each 2x2 window
    net = _net([("features.0", L.Conv2d(2, 3, 1)), ("features.1", L.MaxPool2d(2)),
                ("features.2", L.Flatten())], ("classifier", L.Linear(12, 3)), (2, 4, 4),
               "max-pool ties")
    X = np.kron(rng.normal(size=(3, 2, 2, 2)), np.ones((2, 2)))
    cases.append(NetworkCase("max-pool ties (equal window entries)", net, net.init(2), X,
                             note="one entry of a tied window gets the derivative (not a share each)"))
    # tanh, partly saturated
    net = zoo.mlp([5, 8, 6], num_classes=3, activation="tanh")
    cases.append(NetworkCase("tanh, partly saturated", net, net.init(3), 3.0 * rng.normal(size=(4, 5))))
    # batch norm (evaluation mode) with non-trivial statistics
    net = _net([("features.0", L.Conv2d(2, 3, 3, padding=1)), ("features.1", L.BatchNorm2d(3)),
                ("features.2", L.ReLU()), ("features.3", L.AvgPool2d(2)), ("features.4", L.Flatten())],
               ("classifier", L.Linear(12, 3)), (2, 4, 4), "batch norm")
    params = net.init(4)
    params["features.1.running_mean"] = rng.normal(0, 0.5, 3)
    params["features.1.running_var"] = rng.uniform(0.2, 3.0, 3)
    params["features.1.weight"] = rng.uniform(0.5, 2.0, 3)
    params["features.1.bias"] = rng.normal(0, 0.3, 3)
    cases.append(NetworkCase("batch norm (running statistics)", net, params, rng.normal(size=(3, 2, 4, 4))))
    # a linear map: GC = ||A||_F^2 on any data
    net = _net([("features.0", L.Linear(5, 3))], ("classifier", L.Linear(3, 4)), (5,), "linear map")
    cases.append(NetworkCase("linear map (GC = ||A||_F^2)", net, net.init(5), rng.normal(size=(3, 5))))
    # scaling laws on a ReLU MLP and a CNN
    net = zoo.mlp([6, 7, 5], num_classes=3)
    params, X = net.init(6), rng.normal(size=(3, 6))
    cases.append(NetworkCase("scaling: 3 f (GC x 9)", net, params, X, out_scale=3.0))
    cases.append(NetworkCase("scaling: 1e-3 f (GC x 1e-6)", net, params, X, out_scale=1e-3))
    net = zoo.cnn((1, 6, 6), num_classes=3, channels=(2,), hidden=4, activation="tanh")
    cases.append(NetworkCase("scaling: f(x / 2) (GC(f, X/2) / 4)", net, net.init(7),
                             rng.normal(size=(3, 1, 6, 6)), in_scale=2.0))
    return cases


def estimator_cases() -> list[NetworkCase]:
    """Two small networks with 16 and 20 examples for the estimator's Monte Carlo check."""
    from ..nn import zoo
    rng = np.random.default_rng(20243)
    a = zoo.cnn((1, 6, 6), num_classes=3, channels=(3,), hidden=8)
    b = zoo.mlp([6, 12, 10, 7], num_classes=3, activation="tanh")
    return [NetworkCase("cnn, 20 examples", a, a.init(11), rng.normal(size=(20, 1, 6, 6))),
            NetworkCase("tanh mlp, 16 examples", b, b.init(12), rng.normal(size=(16, 6)))]


# ------------------------------------------------------------------------------------ results

@dataclass(frozen=True)
class CaseResult:
    """One row of a report.

    ``value`` and ``reference`` are floats for display (for a CDNV matrix, the ``(0, 1)`` entry);
    ``error`` is the relative error of the whole value (a number of standard errors, or a ratio,
    for the estimator rows, as ``detail`` says). ``matches``: conventions the value agrees with;
    ``applicable``: conventions that differ from gcref on this case (``None`` when the row failed
    for another reason, e.g. an exception).
    """

    case: str
    value: float | None
    reference: float | None
    error: float
    tolerance: float
    passed: bool
    detail: str = ""
    matches: tuple = ()
    applicable: tuple | None = ()
    ill_conditioned: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["matches"], d["applicable"] = list(self.matches), (None if self.applicable is None
                                                              else list(self.applicable))
        return d


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.6g}"


@dataclass(frozen=True)
class ConformanceReport:
    """The outcome of a conformance check: ``rows``, ``passed`` and a ``diagnosis``."""

    quantity: str
    implementation: str
    framework: str
    rows: tuple
    diagnosis: Diagnosis = field(repr=False, compare=False, default=None)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.rows if not r.passed]

    def summary(self) -> str:
        n_fail = len(self.failures)
        head = (f"{self.implementation} ({self.quantity}, {self.framework}): "
                f"{len(self.rows) - n_fail} passed, {n_fail} failed")
        lines = [head] + (self.diagnosis.lines() if self.diagnosis and n_fail else [])
        return "\n".join(lines)

    def table(self, failures_only: bool = False) -> str:
        """Plain-text table: case, value, reference, error, tolerance, result (and matches)."""
        rows = [r for r in self.rows if not failures_only or not r.passed]
        header = ("case", "value", "reference", "error", "tol", "result")
        body = [(r.case, _fmt(r.value), _fmt(r.reference), f"{r.error:.2e}", f"{r.tolerance:.0e}",
                 "pass" if r.passed else "FAIL" + (f" ~ {', '.join(r.matches)}" if r.matches else "")
                 + (f" ({r.detail})" if r.detail and not r.passed else "")) for r in rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)   # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
        return "\n".join(lines + ["", self.summary()])

    def __str__(self) -> str:
        return self.table()

    def as_dict(self) -> dict:
        return {"quantity": self.quantity, "implementation": self.implementation,
                "framework": self.framework, "passed": self.passed,
                "diagnosis": [c.key for c in self.diagnosis.conventions] if self.diagnosis else [],
                "diagnosis_text": self.diagnosis.lines() if self.diagnosis and not self.passed else [],
                "rows": [r.as_dict() for r in self.rows]}

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the failing rows and the diagnosis unless all passed."""
        if not self.passed:
            raise AssertionError(self.table(failures_only=True))


# ------------------------------------------------------------------------------- running cases

def _to_numpy(value):
    if hasattr(value, "detach"):                          # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _raised(err) -> str:
    return f"raised {type(err).__name__}: {err}"[:200]


def _check_fn(fn):
    if not callable(fn):
        raise TypeError(f"fn must be a callable (your implementation), got {type(fn).__name__}")
    return fn


def _check_rtol(rtol):
    return check_float(rtol, "rtol", minimum=0.0)


def _exception_row(case, err, rtol, reference=None):
    return CaseResult(case, None, reference, float("inf"), rtol, False, _raised(err), (), None)


def _must_raise_row(name, fn_call, rtol):
    try:
        out = fn_call()
    except Exception as err:  # noqa: BLE001 - any exception is the expected outcome
        return CaseResult(name, None, None, 0.0, rtol, True, f"raised {type(err).__name__}")
    try:
        shown = float(np.ravel(_to_numpy(out))[0]) if np.size(_to_numpy(out)) else None
    except (TypeError, ValueError):
        shown = None
    return CaseResult(name, shown, None, float("inf"), rtol, False,
                      "returned a value; coinciding class means must raise (e.g. ValueError)", (), None)


def run_gc_case(case: NetworkCase, fn, framework: str, rtol: float) -> CaseResult:
    """Run ``fn`` on one GC case; compare with gcref; classify against the conventions."""
    ref = case.reference
    f = embedding_function(framework, case.net, case.params, case.out_scale, case.in_scale)
    X = as_framework_input(framework, case.X)
    try:
        value = _to_numpy(fn(f, X))
    except Exception as err:  # noqa: BLE001 - a crashing implementation fails the case
        return _exception_row(case.name, err, rtol, ref)
    if value.size != 1:
        return CaseResult(case.name, None, ref, float("inf"), rtol, False,
                          f"returned shape {value.shape}, expected a scalar", (), None)
    value = float(value.reshape(()))
    err = scalar_error(value, ref)
    applicable, matches = matching_conventions("gc", case.ingredients, value, ref, rtol)
    return CaseResult(case.name, value, ref, err, rtol, err <= rtol, "", matches, applicable)


def _feature_inputs(framework, case: FeatureCase, with_head: bool):
    Z = as_framework_input(framework, case.Z)
    y = np.asarray(case.y, dtype=np.int64)
    if framework == "torch":
        import torch
        y = torch.tensor(y)
    elif framework == "jax":
        import jax.numpy as jnp
        y = jnp.asarray(y)
    args = [Z, y]
    if with_head:
        args += [as_framework_input(framework, case.W), as_framework_input(framework, case.b)]
    return args


def run_feature_case(quantity: str, case: FeatureCase, fn, framework: str, rtol: float) -> CaseResult:
    """Run ``fn(Z, y)`` on one CDNV or NC case."""
    args = _feature_inputs(framework, case, False)
    if case.raises:
        return _must_raise_row(case.name, lambda: fn(*args), rtol)
    ref = cdnv(case.Z, case.y) if quantity == "cdnv" else neural_collapse(case.Z, case.y)
    ref_shown = float(ref[0, 1]) if quantity == "cdnv" else float(ref)
    try:
        value = _to_numpy(fn(*args))
    except Exception as err:  # noqa: BLE001
        return _exception_row(case.name, err, rtol, ref_shown)
    if value.shape != np.shape(ref) and not (quantity == "nc" and value.size == 1):
        return CaseResult(case.name, None, ref_shown, float("inf"), rtol, False,
                          f"returned shape {value.shape}, expected {np.shape(ref)}", (), None)
    value = value.reshape(np.shape(ref))
    # CDNV: the pairs i != j are compared (the diagonal, 0 in gcref, is often left nan or inf)
    pick = (lambda V: np.asarray(V)[~np.eye(len(V), dtype=bool)]) if quantity == "cdnv" else None
    err = scalar_error(pick(value), pick(ref)) if pick else scalar_error(value, ref)
    applicable, matches = matching_conventions(quantity, case, value if pick is None else pick(value),
                                               ref if pick is None else pick(ref), rtol,
                                               ill_conditioned=case.ill_conditioned, project=pick)
    shown = float(value[0, 1]) if quantity == "cdnv" else float(value)
    return CaseResult(case.name, shown, ref_shown, err, rtol, err <= rtol, "", matches, applicable,
                      case.ill_conditioned)


def run_papyan_case(case: FeatureCase, fn, framework: str, rtol: float, keys) -> list[CaseResult]:
    """Run ``fn(Z, y, W, b)`` on one Papyan case: one row per key."""
    args = _feature_inputs(framework, case, True)
    if case.raises:
        return [_must_raise_row(case.name, lambda: fn(*args), rtol)]
    ref = papyan_nc(case.Z, case.y, case.W, case.b)
    try:
        out = fn(*args)
        if not hasattr(out, "keys"):
            raise TypeError(f"returned {type(out).__name__}, expected a dict with keys {list(keys)}")
    except Exception as err:  # noqa: BLE001
        return [_exception_row(f"{case.name}: {k}", err, rtol, ref[k]) for k in keys]
    rows = []
    for k in keys:
        name = f"{case.name}: {k}"
        if k not in out:
            rows.append(CaseResult(name, None, ref[k], float("inf"), rtol, False, "key missing", (), None))
            continue
        try:
            value = float(_to_numpy(out[k]).reshape(()))
        except (TypeError, ValueError) as err:
            rows.append(_exception_row(name, err, rtol, ref[k]))
            continue
        err = scalar_error(value, ref[k], floor=1.0)
        applicable, matches = matching_conventions("papyan", case, value, ref[k], rtol, key=k,
                                                   floor=1.0, ill_conditioned=case.ill_conditioned)
        rows.append(CaseResult(name, value, ref[k], err, rtol, err <= rtol, "", matches, applicable,
                               case.ill_conditioned))
    return rows


def _report(quantity, fn, framework, rows):
    diag_q = "gc" if quantity == "estimator" else quantity
    return ConformanceReport(quantity, _name(fn), framework, tuple(rows), Diagnosis(diag_q, rows))


# ------------------------------------------------------------------------------- public checks

def check_gc_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(f, X) -> float``, your GC of the embedding ``f`` on inputs ``X``.

    Parameters
    ----------
    fn : callable
        ``fn(f, X)`` returns ``(1/n) sum_x ||J_f(x)||_F^2`` (a Python float or a 0-d array/tensor).
    framework : {"numpy", "torch", "jax"}
        What ``f`` and ``X`` are: a NumPy callable (:class:`~gcref.testing.frameworks.NumpyEmbedding`)
        and ndarray; a float64 ``torch.nn.Module`` in evaluation mode and tensor; a JAX function and
        array (float64; this turns on ``jax_enable_x64``).
    rtol : float
        Relative tolerance per case.

    Returns
    -------
    ConformanceReport
        One row per case of :func:`gc_cases`.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    return _report("gc", fn, framework, [run_gc_case(c, fn, framework, rtol) for c in gc_cases()])


def check_cdnv_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y) -> (k, k)``, your CDNV matrix ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``
    with rows and columns in sorted-label order (the entries ``i != j`` are compared; the diagonal,
    0 in gcref, may be anything).

    Cases: Gaussian classes of unequal sizes, a closed-form design, a simplex ETF, two classes in
    one dimension, non-contiguous shuffled labels, a tiny scale, a ``1e8`` offset, and coinciding
    means (your function must raise).
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    return _report("cdnv", fn, framework,
                   [run_feature_case("cdnv", c, fn, framework, rtol) for c in feature_cases()])


def check_nc_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y) -> float``, your NC: the mean CDNV over pairs of classes ``i != j``.

    Same cases as :func:`check_cdnv_implementation`.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    return _report("nc", fn, framework,
                   [run_feature_case("nc", c, fn, framework, rtol) for c in feature_cases()])


def check_papyan_implementation(fn, framework: str = "numpy", *, keys=PAPYAN_KEYS,
                                rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y, W, b) -> dict``, your Papyan NC1-NC4 (gcref's conventions: see
    :func:`gcref.metrics.papyan_nc`; ``W`` is ``(K, p)``, row ``c`` scores label ``c``).

    ``keys`` selects which entries are compared (default ``PAPYAN_KEYS``; add ``"NC2_W_equinorm"``
    etc. to check those too). Measures below 1 are compared absolutely, larger ones relatively.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    keys = tuple(keys)
    if not keys or any(not isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a non-empty sequence of papyan_nc key names, got {keys!r}")
    rows = []
    for c in papyan_cases():
        rows.extend(run_papyan_case(c, fn, framework, rtol, keys))
    return _report("papyan", fn, framework, rows)


def _estimate(out):
    if hasattr(out, "value") and hasattr(out, "stderr"):
        return float(_to_numpy(out.value)), float(_to_numpy(out.stderr))
    value, stderr = out
    return float(_to_numpy(value)), float(_to_numpy(stderr))


def run_estimator_case(case: NetworkCase, fn, framework: str, *, method=None, draws: int = 100,
                       z: float = 4.0, se_rtol: float = 0.35, seed: int = 0) -> list[CaseResult]:
    """The two Monte Carlo rows (unbiased, calibrated) of one estimator case."""
    kwargs = {} if method is None else {"method": method}
    exact = case.reference
    f = embedding_function(framework, case.net, case.params)
    X = as_framework_input(framework, case.X)
    try:
        est = [_estimate(fn(f, X, seed=seed * draws + r, **kwargs)) for r in range(draws)]
    except Exception as err:  # noqa: BLE001
        return [_exception_row(f"{case.name}: unbiased", err, z, exact)]
    values = np.array([e[0] for e in est])
    ses = np.array([e[1] for e in est])
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    # spread below 1e-12 of the value is rounding: such an estimator is exact (or wrong), not random
    floor = _EXACT_RTOL * abs(exact)
    mc_se = max(sd / math.sqrt(draws), floor)
    bias_z = abs(mean - exact) / mc_se if mc_se > 0 else (0.0 if mean == exact else float("inf"))
    applicable, matches = (), ()
    if bias_z > z:   # whose expectation does the Monte Carlo mean sit at?
        app, hit = [], []
        for conv in conventions_for("gc"):
            cv = conv.transform(case.ingredients)
            if cv is None or scalar_error(cv, exact) <= 1e-12:
                continue
            app.append(conv.key)
            if abs(mean - cv) <= z * max(mc_se, _EXACT_RTOL * abs(cv)):
                hit.append(conv.key)
        applicable, matches = tuple(app), tuple(hit)
    rows = [CaseResult(f"{case.name}: unbiased", mean, exact, bias_z, z, bias_z <= z,
                       f"|MC mean - exact| in standard errors ({draws} draws)", matches, applicable)]
    rms_se = float(np.sqrt(np.mean(ses ** 2)))
    if not np.all(np.isfinite(ses)) or np.any(ses < 0):
        ratio_err = float("inf")
    elif sd <= floor and rms_se <= floor:
        ratio_err = 0.0
    elif sd <= floor or rms_se <= floor:
        ratio_err = float("inf")
    else:
        r = rms_se / sd
        ratio_err = max(r, 1.0 / r) - 1.0
    rows.append(CaseResult(f"{case.name}: stderr calibrated", rms_se, sd, ratio_err, se_rtol,
                           ratio_err <= se_rtol, "RMS reported stderr vs SD of the values", (), None))
    return rows


def _estimator_options(method, draws, z, se_rtol, seed):
    return dict(method=method, draws=check_int(draws, "draws", minimum=3),
                z=check_float(z, "z", minimum=0.0, strict_min=True),
                se_rtol=check_float(se_rtol, "se_rtol", minimum=0.0),
                seed=check_int(seed, "seed", minimum=0))


def check_gc_estimator(fn, method: str | None = None, framework: str = "numpy", *, draws: int = 100,
                       z: float = 4.0, se_rtol: float = 0.35, seed: int = 0) -> ConformanceReport:
    """Monte Carlo check of a GC estimator ``fn(f, X, seed) -> (value, stderr)``.

    ``fn`` is called ``draws`` times per case (:func:`estimator_cases`) with
    ``seed = seed * draws + r``, and with ``method=method`` as a keyword when ``method`` is given
    (one function, several estimators). It may return a pair or an object with ``.value`` and
    ``.stderr`` (like gcref's ``Estimate``). ``f`` and ``X`` are as in
    :func:`check_gc_implementation`.

    Two rows per case:

    * unbiased: ``|mean of the values - exact GC| / (SD / sqrt(draws))`` must be ``<= z``
      (value: the Monte Carlo mean; reference: gcref's exact GC). When it is not, the report
      names a GC convention whose value the mean sits at (GC/2, a sum over examples, ...).
    * calibrated: the root mean square of the reported standard errors (value) against the
      standard deviation of the values (reference); their ratio ``r`` must have
      ``max(r, 1/r) - 1 <= se_rtol``.

    A deterministic, exact estimator (``stderr = 0``, no spread beyond ``1e-12`` of the value,
    i.e. rounding) passes both.
    """
    fn, framework = _check_fn(fn), check_framework(framework)
    opts = _estimator_options(method, draws, z, se_rtol, seed)
    rows = []
    for case in estimator_cases():
        rows.extend(run_estimator_case(case, fn, framework, **opts))
    label = _name(fn) + (f"(method={method!r})" if method is not None else "")
    return ConformanceReport("estimator", label, framework, tuple(rows), Diagnosis("gc", rows))


_CHECKS = {
    "gc": check_gc_implementation, "cdnv": check_cdnv_implementation,
    "nc": check_nc_implementation, "papyan": check_papyan_implementation,
    "estimator": check_gc_estimator,
}


def check_implementation(quantity: str, fn, framework: str = "numpy", **kwargs) -> ConformanceReport:
    """Dispatch to the check for ``quantity`` (one of ``QUANTITIES``)."""
    if quantity not in _CHECKS:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    return _CHECKS[quantity](fn, framework=framework, **kwargs)


# ------------------------------------------------------------------------- one check per case

@dataclass(frozen=True)
class ConformanceCheck:
    """One case of a battery, runnable alone (for :func:`gcref.testing.parametrize_conformance`).

    Calling it runs the case and raises ``AssertionError`` (with the diagnosis) if it fails.
    """

    quantity: str
    case: str
    run: object = field(repr=False)

    def __call__(self) -> list[CaseResult]:
        rows = self.run()
        if not all(r.passed for r in rows):
            report = ConformanceReport(self.quantity, self.case, "", tuple(rows),
                                       Diagnosis("gc" if self.quantity == "estimator" else self.quantity, rows))
            raise AssertionError(report.table(failures_only=True))
        return rows

    def __str__(self) -> str:
        return self.case


def conformance_checks(quantity: str, fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                       **kwargs) -> list[ConformanceCheck]:
    """The battery for ``quantity`` as a list of :class:`ConformanceCheck`, one per case.

    Nothing runs (and no reference is computed) until a check is called. For the estimator the
    whole Monte Carlo check is one entry per case as well.
    """
    if quantity not in _CHECKS:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    allowed = {"papyan": {"keys"}, "estimator": {"method", "draws", "z", "se_rtol", "seed"}}.get(quantity, set())
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"options {unknown} do not apply to quantity {quantity!r}"
                        + (f"; it takes {sorted(allowed)}" if allowed else ""))
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    if quantity == "gc":
        return [ConformanceCheck("gc", c.name, lambda c=c: [run_gc_case(c, fn, framework, rtol)])
                for c in gc_cases()]
    if quantity in ("cdnv", "nc"):
        return [ConformanceCheck(quantity, c.name,
                                 lambda c=c: [run_feature_case(quantity, c, fn, framework, rtol)])
                for c in feature_cases()]
    if quantity == "papyan":
        keys = tuple(kwargs.get("keys", PAPYAN_KEYS))
        return [ConformanceCheck("papyan", c.name,
                                 lambda c=c: run_papyan_case(c, fn, framework, rtol, keys))
                for c in papyan_cases()]
    # estimator: the Monte Carlo rows per case
    opts = _estimator_options(kwargs.get("method"), kwargs.get("draws", 100), kwargs.get("z", 4.0),
                              kwargs.get("se_rtol", 0.35), kwargs.get("seed", 0))
    return [ConformanceCheck("estimator", c.name,
                             lambda c=c: run_estimator_case(c, fn, framework, **opts))
            for c in estimator_cases()]
