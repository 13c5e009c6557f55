"""Geometric complexity (GC) of a network's embedding: exact values and unbiased estimators.

Definitions (``docs/theory.md`` §1; Dherin et al. 2022, Munn et al. 2024)
-------------------------------------------------------------------------
For an embedding ``f: R^d -> R^p`` with input Jacobian ``J_f(x) = df/dx`` (``p x d``, inputs
flattened) and data ``D``::

    GC(f, D) = (1/|D|) sum_{x in D} ||J_f(x)||_F^2           (discrete Dirichlet energy)
    GC_c     = GC(f, D_c)                                     (per class)

``output="logits"`` uses ``F = h o f`` instead (Dherin et al. 2022 measure the logits).

Exact values come from reverse mode, ``||J||_F^2 = sum_k ||J^T e_k||^2`` (one batched VJP per
output coordinate), or forward mode, ``sum_i ||J e_i||^2`` (one JVP per input coordinate), whichever
needs fewer passes, over chunks of examples so that memory stays bounded. Every function here is
written once against the primitives of :mod:`gcref.engine` (``engine=None``: the reference);
``gcref_cuda`` calls the same functions with its fast engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import as_generator, as_labels, check_float, check_int
from ..engine import as_engine

__all__ = ["Estimate", "per_example_gc", "geometric_complexity", "per_class_gc", "estimate_gc",
           "ESTIMATORS", "geometric_collapse", "gc_of_linear_map"]

ESTIMATORS = ("examples", "outputs", "mask", "projection")


@dataclass(frozen=True)
class Estimate:
    """A sampled estimate: ``value``, its standard error ``stderr`` and ``n``, the number of
    random draws it averages (examples, sampled output rows, kept Jacobian entries or probes).

    ``stderr`` is ``0.0`` only for an exact value (the whole budget) and ``inf`` when the draws
    cannot estimate their own spread (one draw per example); never ``nan``."""

    value: float
    stderr: float
    n: int
    method: str = ""

    def __float__(self) -> float:
        return self.value


def _prepare(net, params, X, output, chunk_size, engine):
    """The engine and the validated (host float64) parameters and inputs."""
    if output not in ("embedding", "logits"):
        raise ValueError(f"output must be 'embedding' or 'logits', got {output!r}")
    engine = as_engine(net, engine, chunk_size)
    return engine, engine.check_params(params), engine.check_input(X)


def per_example_gc(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                   engine=None) -> np.ndarray:
    """``||J(x)||_F^2`` for every example, shape ``(n,)``; exact.

    Parameters
    ----------
    engine : gcref.engine.Engine or callable, optional
        Who computes the passes (default: the reference, ``chunk_size`` examples at a time);
        see :func:`gcref.engine.as_engine`.

    Notes
    -----
    ``||J||_F^2 = sum_k ||J^T e_k||^2 = sum_i ||J e_i||^2``: reverse mode costs ``out_dim`` VJPs,
    forward mode ``d`` JVPs per chunk; the reference engine uses the cheaper.
    """
    engine, params, X = _prepare(net, params, X, output, chunk_size, engine)
    return engine.jacobian_sq_norms(params, X, output)


def geometric_complexity(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                         engine=None) -> float:
    """Geometric complexity ``GC(f, D) = (1/|D|) sum_x ||J_f(x)||_F^2`` (exact).

    Parameters
    ----------
    net : gcref.nn.Network
    params : dict[str, ndarray]
    X : ndarray, shape (n, *net.input_shape)
    output : {"embedding", "logits"}
        GC of the embedding ``f`` (default, Munn et al. 2024) or of the logits ``F``.
    engine : optional
        See :func:`per_example_gc`.
    """
    return float(np.mean(per_example_gc(net, params, X, output, chunk_size, engine=engine)))


def _class_means_of(values, y, classes):
    return np.array([values[y == c].mean() for c in classes])


def per_class_gc(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *, engine=None):
    """Per-class GC ``GC_c = GC(f, D_c)``: returns ``(classes, gc)``, both of shape ``(k,)``."""
    engine, params, X = _prepare(net, params, X, output, chunk_size, engine)
    y = as_labels(y, n=X.shape[0])
    values = engine.jacobian_sq_norms(params, X, output)
    classes = np.unique(y)
    return classes, _class_means_of(values, y, classes)


def gc_of_linear_map(A) -> float:
    """GC of ``f(x) = A x + b`` on any data: ``||A||_F^2`` (a closed form for tests)."""
    A = np.asarray(A, dtype=np.float64)
    return float(np.sum(A ** 2))


def geometric_collapse(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *,
                       engine=None) -> float:
    """Geometric collapse ``mean_{i != j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)`` (Munn et al. 2024).

    ``GC_c`` is the per-class GC of the embedding and ``mu_c`` the class mean of the embedding
    (of the logits with ``output="logits"``), taken on centred features
    (:func:`gcref.metrics.collapse.centred`). Coinciding class means raise a ``ValueError``.
    """
    from .collapse import centred, class_stats, geometric_collapse_from_stats
    engine, params, X = _prepare(net, params, X, output, chunk_size, engine)
    y = as_labels(y, n=X.shape[0])
    values = engine.jacobian_sq_norms(params, X, output)
    stats = class_stats(centred(engine.forward(params, X, output)), y)
    return geometric_collapse_from_stats(stats.means, _class_means_of(values, y, stats.classes))


# --------------------------------------------------------------------------------- estimators

def _summary(values_per_example, var_per_example, n_draws, method, estimable=True):
    """Mean over examples; ``stderr = sqrt(sum_x Var_x) / n`` (``inf`` when not estimable)."""
    n = values_per_example.shape[0]
    value = float(np.mean(values_per_example))
    stderr = float(math.sqrt(max(np.sum(var_per_example), 0.0)) / n) if estimable else math.inf
    return Estimate(value, stderr, int(n_draws), method)


def _probes(rng, n, R, p, probe):
    """Probes ``V`` of shape ``(n, R, p)`` with ``E[v v^T] = I``, drawn probe by probe: for
    ``r = 0..R-1`` one draw of shape ``(n, p)`` (an order that does not depend on how an engine
    chunks the examples)."""
    V = np.empty((n, R, p))
    for r in range(R):
        if probe == "rademacher":
            V[:, r] = rng.choice(np.array([-1.0, 1.0]), size=(n, p))
        else:
            g = rng.standard_normal((n, p))
            V[:, r] = g / np.linalg.norm(g, axis=1, keepdims=True) * math.sqrt(p)
    return V


def estimate_gc(net, params, X, method: str = "outputs", size=None, seed=0, output: str = "embedding",
                probe: str = "rademacher", chunk_size: int = 256, *, engine=None) -> Estimate:
    """Unbiased estimate of ``GC(f, D)`` with a standard error.

    Parameters
    ----------
    method : {"examples", "outputs", "mask", "projection"}
        ``"examples"``: the mean of ``||J(x)||_F^2`` over ``size`` examples drawn without
        replacement (default ``min(n, 32)``).
        ``"outputs"``: for each example, ``(p/s) sum_{j in S} ||grad_x f_j(x)||^2`` with ``S`` a
        uniformly random set of ``s = size`` output rows drawn without replacement (default
        ``ceil(p/4)``, at least 2).
        ``"mask"``: each entry of ``J(x)`` kept with probability ``q = size`` (default 0.25) and
        ``sum kept J_ab^2 / q``.
        ``"projection"``: ``(1/R) sum_r ||J(x)^T v_r||^2`` with ``R = size`` probes (default 4)
        drawn with ``E[v v^T] = I``: Rademacher (``probe="rademacher"``) or uniform on the sphere
        of radius ``sqrt(p)`` (``probe="sphere"``).
    size : int or float, optional
        The budget described above.
    seed : int or numpy.random.Generator
    engine : optional
        Who computes the passes (default: the reference); the draws are made here, on the host,
        so every engine returns the estimate of the same draws.

    Returns
    -------
    Estimate
        ``value``, ``stderr`` and ``n`` (random draws averaged). ``stderr`` is ``0.0`` when the
        estimate is exact (all examples, all output rows, ``q = 1``) and ``inf`` when one draw
        per example cannot estimate its own spread (``size=1`` for ``examples`` with ``n > 1``,
        ``outputs`` with ``p > 1`` and ``projection``): the value is still unbiased, but its
        standard error is unknown, not zero.

    Notes
    -----
    Unbiasedness (expectations over the estimator's randomness, data fixed):

    * examples: a simple random sample's mean is unbiased for the population mean; its
      variance is ``(1 - m/n) S^2 / m`` (finite-population correction), ``S^2`` the sample variance.
    * outputs: each row ``j`` is in ``S`` with probability ``s/p``, so
      ``E[(p/s) sum_{j in S} a_j] = sum_j a_j = ||J||_F^2`` with ``a_j = ||J^T e_j||^2``; its
      variance ``p^2 (1 - s/p) S_a^2 / s`` is estimated with the sample variance of the ``a_j``.
    * mask: ``E[m_ab / q] = 1`` for Bernoulli(q) masks, so ``E[sum m_ab J_ab^2 / q] = ||J||_F^2``;
      variance ``sum J_ab^4 (1 - q)/q``, estimated unbiasedly by ``sum m_ab J_ab^4 (1 - q)/q^2``.
    * projection: ``E||J^T v||^2 = tr(J J^T E[v v^T]) = ||J||_F^2`` when ``E[v v^T] = I``
      (Hutchinson); Rademacher entries and ``sqrt(p)``-scaled uniform sphere vectors both qualify.
      The variance is estimated from the spread of the ``R`` probes.

    Example draws and the per-example estimates are independent, so per-example variances add:
    ``stderr = sqrt(sum_x Var_x) / n``. A sample variance needs two draws: with one (``size=1``)
    the spread of the draws (13-45 % of GC on the zoo networks) is real but unseen, hence
    ``stderr = inf`` (the mask estimator's variance estimate needs one draw only).

    Random streams (``docs/theory.md`` section 6), independent of ``chunk_size`` and of the
    engine: ``examples`` one ``choice``; ``outputs`` one ``choice`` per example, in order;
    ``mask`` ``random`` of each Jacobian block's shape in example order (one stream whatever the
    blocks); ``projection`` one ``(n, p)`` draw per probe ``r = 0..R-1``, all ``n R p`` probe
    entries held in memory. (Until the engine seam, projection probes were drawn chunk by chunk:
    for ``n > chunk_size`` the values differ from those of earlier versions.)
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {ESTIMATORS}, got {method!r}")
    if probe not in ("rademacher", "sphere"):
        raise ValueError(f"probe must be 'rademacher' or 'sphere', got {probe!r}")
    engine, params, X = _prepare(net, params, X, output, chunk_size, engine)
    rng = as_generator(seed)
    n = X.shape[0]
    p = net.output_dim(output)

    if method == "examples":
        m = min(n, 32) if size is None else check_int(size, "size", minimum=1, maximum=n)
        idx = np.sort(rng.choice(n, size=m, replace=False))
        values = engine.jacobian_sq_norms(params, X[idx], output)
        value = float(values.mean())
        if m == n:                                   # the whole data: exact
            return Estimate(value, 0.0, m, method)
        if m < 2:
            return Estimate(value, math.inf, m, method)
        var = (1.0 - m / n) * float(np.var(values, ddof=1)) / m
        return Estimate(value, math.sqrt(var), m, method)

    if method == "outputs":
        s = max(2, math.ceil(p / 4)) if size is None else check_int(size, "size", minimum=1, maximum=p)
        s = min(s, p)
        rows = np.stack([np.sort(rng.choice(p, size=s, replace=False)) for _ in range(n)])
        a = engine.row_sq_norms(params, X, rows, output)
        est = (p / s) * a.sum(axis=1)
        var = (p ** 2) * (1.0 - s / p) * (a.var(axis=1, ddof=1) if s > 1 else np.zeros(n)) / s
        return _summary(est, var, n * s, method, estimable=s > 1 or s == p)

    if method == "mask":
        q = 0.25 if size is None else check_float(size, "size", minimum=0.0, maximum=1.0, strict_min=True)
        est = np.empty(n)
        var = np.empty(n)
        kept = 0
        for start, J in engine.jacobian_blocks(params, X, output):
            m = J.shape[0]
            mask = rng.random(J.shape) < q
            kept += int(mask.sum())
            J2 = J.reshape(m, -1) ** 2
            mk = mask.reshape(m, -1)
            est[start:start + m] = np.sum(J2 * mk, axis=1) / q
            var[start:start + m] = np.sum(J2 ** 2 * mk, axis=1) * (1.0 - q) / q ** 2
        return _summary(est, var, kept, method)

    # projection
    R = 4 if size is None else check_int(size, "size", minimum=1)
    vals = engine.probe_sq_norms(params, X, _probes(rng, n, R, p, probe), output)
    est = vals.mean(axis=1)
    var = vals.var(axis=1, ddof=1) / R if R > 1 else np.zeros(n)
    return _summary(est, var, n * R, method, estimable=R > 1)
