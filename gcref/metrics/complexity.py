"""Geometric complexity (GC) of a network's embedding: exact values and unbiased estimators.

Definitions (DESIGN.md §1; Dherin et al. 2022, Munn et al. 2024)
-----------------------------------------------------------------
For an embedding ``f: R^d -> R^p`` with input Jacobian ``J_f(x) = df/dx`` (``p x d``, inputs
flattened) and data ``D``::

    GC(f, D) = (1/|D|) sum_{x in D} ||J_f(x)||_F^2           (discrete Dirichlet energy)
    GC_c     = GC(f, D_c)                                     (per class)

``output="logits"`` uses ``F = h o f`` instead (Dherin et al. 2022 measure the logits).

Exact values come from reverse mode, ``||J||_F^2 = sum_k ||J^T e_k||^2`` (one batched VJP per
output coordinate), or forward mode, ``sum_i ||J e_i||^2`` (one JVP per input coordinate), whichever
needs fewer passes, over chunks of examples so that memory stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import as_generator, as_labels, check_float, check_int

__all__ = ["Estimate", "per_example_gc", "geometric_complexity", "per_class_gc", "estimate_gc",
           "ESTIMATORS", "geometric_collapse", "gc_of_linear_map"]

ESTIMATORS = ("examples", "outputs", "mask", "projection")


@dataclass(frozen=True)
class Estimate:
    """A sampled estimate: ``value``, its standard error ``stderr`` and ``n``, the number of
    random draws it averages (examples, sampled output rows, kept Jacobian entries or probes)."""

    value: float
    stderr: float
    n: int
    method: str = ""

    def __float__(self) -> float:
        return self.value


def _prepare(net, params, X, output, chunk_size):
    if output not in ("embedding", "logits"):
        raise ValueError(f"output must be 'embedding' or 'logits', got {output!r}")
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    return net.check_params(params), net.check_input(X), chunk_size


def _row_norms_sq(net, params, Xc, output, rows=None):
    """``||J(x)^T e_j||^2`` for each example of the chunk and each output row ``j`` in ``rows``.

    Returns ``(m, len(rows))``; ``rows`` may differ per example when given as an (m, s) array.
    """
    m = Xc.shape[0]
    out_dim = net.output_dim(output)
    _, _, cache = net.forward_cache(params, Xc)
    if rows is None:
        rows = np.broadcast_to(np.arange(out_dim), (m, out_dim))
    result = np.empty(rows.shape)
    for col in range(rows.shape[1]):
        v = np.zeros((m, out_dim))
        v[np.arange(m), rows[:, col]] = 1.0
        gx, _ = net.vjp_cached(params, cache, v, output, need_params=False)
        result[:, col] = np.sum(gx.reshape(m, -1) ** 2, axis=1)
    return result


def per_example_gc(net, params, X, output: str = "embedding", chunk_size: int = 256) -> np.ndarray:
    """``||J(x)||_F^2`` for every example, shape ``(n,)``; exact.

    Notes
    -----
    ``||J||_F^2 = sum_k ||J^T e_k||^2 = sum_i ||J e_i||^2``: reverse mode costs ``out_dim`` VJPs,
    forward mode ``d`` JVPs per chunk; the cheaper is used.
    """
    params, X, chunk_size = _prepare(net, params, X, output, chunk_size)
    out_dim, d = net.output_dim(output), net.input_dim
    n = X.shape[0]
    gc = np.empty(n)
    for start in range(0, n, chunk_size):
        Xc = X[start:start + chunk_size]
        m = Xc.shape[0]
        if out_dim <= d:
            gc[start:start + m] = _row_norms_sq(net, params, Xc, output).sum(axis=1)
        else:
            _, _, cache = net.forward_cache(params, Xc)
            acc = np.zeros(m)
            for i in range(d):
                t = np.zeros((m, d))
                t[:, i] = 1.0
                acc += np.sum(net.jvp_cached(params, cache, t.reshape(Xc.shape), output) ** 2, axis=1)
            gc[start:start + m] = acc
    return gc


def geometric_complexity(net, params, X, output: str = "embedding", chunk_size: int = 256) -> float:
    """Geometric complexity ``GC(f, D) = (1/|D|) sum_x ||J_f(x)||_F^2`` (exact).

    Parameters
    ----------
    net : gcref.nn.Network
    params : dict[str, ndarray]
    X : ndarray, shape (n, *net.input_shape)
    output : {"embedding", "logits"}
        GC of the embedding ``f`` (default, Munn et al. 2024) or of the logits ``F``.
    """
    return float(np.mean(per_example_gc(net, params, X, output, chunk_size)))


def per_class_gc(net, params, X, y, output: str = "embedding", chunk_size: int = 256):
    """Per-class GC ``GC_c = GC(f, D_c)``: returns ``(classes, gc)``, both of shape ``(k,)``."""
    X = net.check_input(X)
    y = as_labels(y, n=X.shape[0])
    values = per_example_gc(net, params, X, output, chunk_size)
    classes = np.unique(y)
    return classes, np.array([values[y == c].mean() for c in classes])


def gc_of_linear_map(A) -> float:
    """GC of ``f(x) = A x + b`` on any data: ``||A||_F^2`` (a closed form for tests)."""
    A = np.asarray(A, dtype=np.float64)
    return float(np.sum(A ** 2))


def geometric_collapse(net, params, X, y, output: str = "embedding", chunk_size: int = 256) -> float:
    """Geometric collapse ``mean_{i != j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)`` (Munn et al. 2024).

    ``GC_c`` is the per-class GC of the embedding and ``mu_c`` the class mean of the embedding.
    Coinciding class means raise a ``ValueError``.
    """
    from .collapse import class_stats, geometric_collapse_from_stats
    params = net.check_params(params)
    X = net.check_input(X)
    y = as_labels(y, n=X.shape[0])
    classes, gc = per_class_gc(net, params, X, y, output, chunk_size)
    Z = net.embed(params, X) if output == "embedding" else net.forward(params, X)
    stats = class_stats(Z, y)
    return geometric_collapse_from_stats(stats.means, gc)


# --------------------------------------------------------------------------------- estimators

def _summary(values_per_example, var_per_example, n_draws, method):
    n = values_per_example.shape[0]
    value = float(np.mean(values_per_example))
    stderr = float(math.sqrt(max(np.sum(var_per_example), 0.0)) / n)
    return Estimate(value, stderr, int(n_draws), method)


def estimate_gc(net, params, X, method: str = "outputs", size=None, seed=0, output: str = "embedding",
                probe: str = "rademacher", chunk_size: int = 256) -> Estimate:
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

    Returns
    -------
    Estimate
        ``value``, ``stderr`` and ``n`` (random draws averaged).

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
    ``stderr = sqrt(sum_x Var_x) / n``.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {ESTIMATORS}, got {method!r}")
    if probe not in ("rademacher", "sphere"):
        raise ValueError(f"probe must be 'rademacher' or 'sphere', got {probe!r}")
    params, X, chunk_size = _prepare(net, params, X, output, chunk_size)
    rng = as_generator(seed)
    n = X.shape[0]
    p = net.output_dim(output)

    if method == "examples":
        m = min(n, 32) if size is None else check_int(size, "size", minimum=1, maximum=n)
        idx = np.sort(rng.choice(n, size=m, replace=False))
        values = per_example_gc(net, params, X[idx], output, chunk_size)
        value = float(values.mean())
        var = 0.0 if m < 2 else (1.0 - m / n) * float(np.var(values, ddof=1)) / m
        return Estimate(value, math.sqrt(var), m, method)

    if method == "outputs":
        s = max(2, math.ceil(p / 4)) if size is None else check_int(size, "size", minimum=1, maximum=p)
        s = min(s, p)
        rows = np.stack([np.sort(rng.choice(p, size=s, replace=False)) for _ in range(n)])
        a = np.concatenate([_row_norms_sq(net, params, X[i:i + chunk_size], output, rows[i:i + chunk_size])
                            for i in range(0, n, chunk_size)])
        est = (p / s) * a.sum(axis=1)
        var = (p ** 2) * (1.0 - s / p) * (a.var(axis=1, ddof=1) if s > 1 else np.zeros(n)) / s
        return _summary(est, var, n * s, method)

    if method == "mask":
        q = 0.25 if size is None else check_float(size, "size", minimum=0.0, maximum=1.0, strict_min=True)
        est = np.empty(n)
        var = np.empty(n)
        kept = 0
        for start in range(0, n, chunk_size):
            J = net.jacobian(params, X[start:start + chunk_size], output=output, chunk_size=chunk_size)
            mask = rng.random(J.shape) < q
            kept += int(mask.sum())
            J2 = J.reshape(J.shape[0], -1) ** 2
            mk = mask.reshape(J.shape[0], -1)
            est[start:start + J.shape[0]] = np.sum(J2 * mk, axis=1) / q
            var[start:start + J.shape[0]] = np.sum(J2 ** 2 * mk, axis=1) * (1.0 - q) / q ** 2
        return _summary(est, var, kept, method)

    # projection
    R = 4 if size is None else check_int(size, "size", minimum=1)
    est = np.empty(n)
    var = np.empty(n)
    for start in range(0, n, chunk_size):
        Xc = X[start:start + chunk_size]
        m = Xc.shape[0]
        _, _, cache = net.forward_cache(params, Xc)
        vals = np.empty((m, R))
        for r in range(R):
            if probe == "rademacher":
                v = rng.choice(np.array([-1.0, 1.0]), size=(m, p))
            else:
                g = rng.standard_normal((m, p))
                v = g / np.linalg.norm(g, axis=1, keepdims=True) * math.sqrt(p)
            gx, _ = net.vjp_cached(params, cache, v, output, need_params=False)
            vals[:, r] = np.sum(gx.reshape(m, -1) ** 2, axis=1)
        est[start:start + m] = vals.mean(axis=1)
        var[start:start + m] = vals.var(axis=1, ddof=1) / R if R > 1 else 0.0
    return _summary(est, var, n * R, method)
