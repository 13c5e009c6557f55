"""``check_layer``: the layer battery of ``gcref check``, for any layer, in one call.

In the spirit of scikit-learn's ``check_estimator``: a user writes a layer following the layer
contract (:mod:`gcref.nn.base`, ``docs/theory.md`` "The layer contract") and checks every one of
its derivatives against central finite differences and against each other::

    from gcref.testing import check_layer
    report = check_layer(MyLayer(...), in_shape=(3, 8, 8))
    assert report.passed, report

Structural violations of the contract (not a ``Layer``, parameters missing from ``keys()``)
raise; numerical ones are rows of the report.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from ..nn.base import Layer, check_keys
from .numeric import (EXACT_RTOL, CheckResult, check_gradient, check_jacobian, check_jvp, check_vjp,
                      check_vjp_jvp, relative_error)

__all__ = ["check_layer", "LayerReport", "random_layer_params"]


class LayerReport(list):
    """The rows of :func:`check_layer` (a list of :class:`CheckResult`), with a verdict."""

    @property
    def passed(self) -> bool:
        """Whether every row passed."""
        return all(r.passed for r in self)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self if not r.passed]

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = [f"{'pass' if r.passed else 'FAIL'}  {r.error:9.2e} <= {r.tolerance:7.0e}  {r.name}"
                 for r in self]
        verdict = "all passed" if self.passed else f"{len(self.failures)} of {len(self)} failed"
        return "\n".join(lines + [verdict])


def random_layer_params(layer: Layer, in_shape, rng) -> dict[str, np.ndarray]:
    """``layer.init`` with batch-norm statistics and zero affine terms moved off their trivial
    initial values (so that every term of every derivative is exercised)."""
    p = layer.init(rng, in_shape)
    for k in list(p):
        if k.endswith("running_var"):
            p[k] = rng.uniform(0.5, 2.0, p[k].shape)
        elif k.endswith("running_mean") or (k.endswith("bias") and np.all(p[k] == 0)):
            p[k] = rng.normal(0, 0.3, p[k].shape)
        elif k.endswith("weight") and p[k].ndim == 1:
            p[k] = rng.uniform(0.5, 1.5, p[k].shape)
    return p


def _in_shape(in_shape) -> tuple:
    try:
        shape = tuple(int(s) for s in in_shape)
    except (TypeError, ValueError):
        raise TypeError(f"in_shape must be a tuple of positive ints, got {in_shape!r}") from None
    if any(s < 1 for s in shape) or any(s != t for s, t in zip(shape, in_shape)):
        raise ValueError(f"in_shape must be a tuple of positive ints, got {in_shape!r}")
    return shape


def check_layer(layer: Layer, in_shape, seed=0, *, label: str | None = None) -> LayerReport:
    """Every derivative of ``layer`` at a random point, against finite differences and each other.

    On a batch of 2 random inputs of shape ``in_shape`` and random parameters (seeded by
    ``seed``), the rows are:

    * ``VJP wrt input vs FD``, ``JVP vs FD`` and ``VJP vs JVP (transpose)``;
    * ``VJP wrt parameters vs FD`` (layers with trainable parameters);
    * ``second order wrt parameters vs FD`` (with parameters) and ``second order wrt input vs
      FD``: the gradient of ``s(p, x) = <g, J_x(x; p) u>`` returned by ``second_order``;
    * ``local Jacobian vs FD`` and ``local Jacobian vs JVP columns``.

    Tolerances are those of :mod:`gcref.testing.numeric`. Returns a :class:`LayerReport` (a list
    of :class:`CheckResult`, ``report.passed`` overall). Raises ``TypeError`` if ``layer`` is not a
    :class:`gcref.nn.Layer` and ``ValueError`` if its ``keys()`` miss a parameter.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer must be a gcref.nn.Layer, got {type(layer).__name__}")
    in_shape = _in_shape(in_shape)
    label = layer.describe() if label is None else str(label)
    layer.out_shape(in_shape)                        # raises a ValueError for a wrong in_shape
    check_keys(layer, in_shape)
    seed = check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    p = random_layer_params(layer, in_shape, rng)
    n = 2
    x = rng.normal(size=(n,) + in_shape)
    y, cache = layer.forward(p, x)
    out = LayerReport()

    def f(xx):
        return layer.forward(p, xx)[0]

    out.append(check_vjp(f, lambda v: layer.vjp(p, cache, v)[0], x, seed=seed,
                         name=f"{label}: VJP wrt input vs FD"))
    out.append(check_jvp(f, lambda t: layer.jvp(p, cache, t), x, seed=seed,
                         name=f"{label}: JVP vs FD"))
    out.append(check_vjp_jvp(lambda v: layer.vjp(p, cache, v)[0], lambda t: layer.jvp(p, cache, t),
                             x.shape, y.shape, seed=seed, name=f"{label}: VJP vs JVP (transpose)"))
    trainable = list(layer.param_specs(in_shape))
    if trainable:
        v = rng.normal(size=y.shape)

        def scalar(pp):
            return float(np.vdot(v, layer.forward({**p, **pp}, x)[0]))

        def scalar_grad(pp):
            q = {**p, **pp}
            gp = layer.vjp(q, layer.forward(q, x)[1], v)[1]
            return {k: gp[k] for k in trainable}

        out.append(check_gradient(scalar, scalar_grad, {k: p[k] for k in trainable},
                                  seed=seed, name=f"{label}: VJP wrt parameters vs FD"))
    # second order: gradient of s(p, x) = <g, J_x(x; p) u>
    g = rng.normal(size=y.shape)
    u = rng.normal(size=x.shape)
    def s(pp, xx):
        _, c = layer.forward(pp, xx)
        return float(np.vdot(g, layer.jvp(pp, c, u)))

    def s_grad(pp, xx):
        gp2, gx2 = layer.second_order(pp, layer.forward(pp, xx)[1], g, u)
        return gp2, np.zeros_like(xx) if gx2 is None else gx2

    if trainable:
        out.append(check_gradient(lambda pp: s({**p, **pp}, x),
                                  lambda pp: {k: s_grad({**p, **pp}, x)[0][k] for k in trainable},
                                  {k: p[k] for k in trainable}, seed=seed,
                                  name=f"{label}: second order wrt parameters vs FD"))
    out.append(check_gradient(lambda xx: s(p, xx), lambda xx: s_grad(p, xx)[1], x, seed=seed,
                              name=f"{label}: second order wrt input vs FD"))
    x1 = x[0]
    jac = layer.local_jacobian(p, x1)
    out.append(check_jacobian(lambda xx: layer.forward(p, xx[None])[0][0],
                              lambda xx: layer.local_jacobian(p, xx), x1,
                              name=f"{label}: local Jacobian vs FD"))
    jvp_cols = np.stack([layer.jvp(p, layer.forward(p, x1[None])[1], e.reshape((1,) + x1.shape))[0].ravel()
                         for e in np.eye(x1.size)], axis=1)
    err = relative_error(jac, jvp_cols)
    out.append(CheckResult(f"{label}: local Jacobian vs JVP columns", err, EXACT_RTOL, err <= EXACT_RTOL))
    return out
