"""GC, neural collapse, geometric collapse, the NCC bound and few-shot accuracy, fast.

Every function has the name and signature of its ``gcref`` twin (plus keyword-only ``dtype`` and
``memory_budget``), computes the same quantity (DESIGN.md section 1) and returns host values of
the same types (``float``, NumPy arrays, ``gcref``'s dataclasses). The estimators draw the same
random numbers from the same ``numpy.random.Generator`` in the same order as ``gcref``, so with
the same ``seed`` they return the same value.

``net`` may be a ``gcref.nn.Network`` or a :class:`gcref_cuda.FastNetwork`.
"""

from __future__ import annotations

import math

import numpy as np

from gcref._validation import (as_float_array, as_generator, as_labels, check_float, check_int)
from gcref.metrics.bounds import TIGHT_CONSTANT, NCCErrorBound
from gcref.metrics.collapse import COINCIDING_MEANS_RTOL, ClassStats
from gcref.metrics.complexity import ESTIMATORS, Estimate
from gcref.metrics.ncc import FewShotResult, few_shot_episodes

from . import engine
from .backend import get_xp, is_device_array, to_device, to_host
from .nn import as_fast

__all__ = ["per_example_gc", "geometric_complexity", "per_class_gc", "estimate_gc",
           "geometric_collapse", "class_stats", "cdnv", "neural_collapse", "pairwise_ratio",
           "ncc_error_bound", "few_shot_accuracy", "few_shot_accuracy_features", "Estimate",
           "ESTIMATORS"]

_OUTPUTS = ("embedding", "logits")
#: Pairs whose Gram-matrix distance is below this fraction of ``|mu_i|^2 + |mu_j|^2`` (after
#: centring) are recomputed from their difference vector: the Gram expansion's rounding error
#: is about ``1e-16 (|mu_i|^2 + |mu_j|^2)``, so elsewhere its relative error stays below 1e-13.
_GRAM_GUARD = 1e-2


# ============================================================================== GC

def _prepare(net, params, X, output, chunk_size, dtype, memory_budget):
    if output not in _OUTPUTS:
        raise ValueError(f"output must be 'embedding' or 'logits', got {output!r}")
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    fnet = as_fast(net, dtype, memory_budget)
    params = fnet.check_params({k: to_host(v) for k, v in params.items()}
                               if isinstance(params, dict) else params)
    X = fnet.check_input(X)
    return fnet, params, X, chunk_size


def per_example_gc(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                   dtype=None, memory_budget=None) -> np.ndarray:
    """``||J(x)||_F^2`` for every example, shape ``(n,)``; exact (``gcref.per_example_gc``).

    Notes
    -----
    Reverse mode over the ``out_dim`` basis cotangents, all examples' rows in one batch per
    chunk (forward mode over the ``d`` basis tangents when ``d < out_dim``); see
    :mod:`gcref_cuda.engine` for the exact shortcuts. ``chunk_size`` is accepted for
    compatibility; chunking follows ``memory_budget`` (bytes, default 1 GiB).
    """
    fnet, params, X, _ = _prepare(net, params, X, output, chunk_size, dtype, memory_budget)
    return engine.per_example_sq_norms(fnet, params, X, output)


def geometric_complexity(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                         dtype=None, memory_budget=None) -> float:
    """``GC(f, D) = (1/|D|) sum_x ||J_f(x)||_F^2`` (exact), as ``gcref.geometric_complexity``."""
    return float(np.mean(per_example_gc(net, params, X, output, chunk_size, dtype=dtype,
                                        memory_budget=memory_budget)))


def per_class_gc(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *,
                 dtype=None, memory_budget=None):
    """Per-class GC: ``(classes, gc)``, both ``(k,)``, as ``gcref.per_class_gc``."""
    fnet = as_fast(net, dtype, memory_budget)
    X = fnet.check_input(X)
    y = as_labels(to_host(y), n=X.shape[0])
    values = per_example_gc(fnet, params, X, output, chunk_size)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.ravel(), weights=values, minlength=classes.shape[0])
    return classes, sums / counts


def _summary(values_per_example, var_per_example, n_draws, method):
    n = values_per_example.shape[0]
    value = float(np.mean(values_per_example))
    stderr = float(math.sqrt(max(np.sum(var_per_example), 0.0)) / n)
    return Estimate(value, stderr, int(n_draws), method)


def estimate_gc(net, params, X, method: str = "outputs", size=None, seed=0,
                output: str = "embedding", probe: str = "rademacher", chunk_size: int = 256, *,
                dtype=None, memory_budget=None) -> Estimate:
    """Unbiased estimate of ``GC(f, D)`` with a standard error, as ``gcref.estimate_gc``.

    Same methods, budgets, defaults and random draws (in the same order) as the reference:
    ``"examples"``, ``"outputs"``, ``"mask"``, ``"projection"``. ``chunk_size`` fixes the order
    of the projection draws exactly as in ``gcref`` (it must match to reproduce its value).
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {ESTIMATORS}, got {method!r}")
    if probe not in ("rademacher", "sphere"):
        raise ValueError(f"probe must be 'rademacher' or 'sphere', got {probe!r}")
    fnet, params, X, chunk_size = _prepare(net, params, X, output, chunk_size, dtype, memory_budget)
    rng = as_generator(seed)
    n = X.shape[0]
    p = fnet.output_dim(output)

    if method == "examples":
        m = min(n, 32) if size is None else check_int(size, "size", minimum=1, maximum=n)
        idx = np.sort(rng.choice(n, size=m, replace=False))
        values = engine.per_example_sq_norms(fnet, params, X[idx], output)
        value = float(values.mean())
        var = 0.0 if m < 2 else (1.0 - m / n) * float(np.var(values, ddof=1)) / m
        return Estimate(value, math.sqrt(var), m, method)

    if method == "outputs":
        s = max(2, math.ceil(p / 4)) if size is None else check_int(size, "size", minimum=1, maximum=p)
        s = min(s, p)
        rows = np.stack([np.sort(rng.choice(p, size=s, replace=False)) for _ in range(n)])
        a = engine.pair_sq_norms(fnet, params, X, rows, output)
        est = (p / s) * a.sum(axis=1)
        var = (p ** 2) * (1.0 - s / p) * (a.var(axis=1, ddof=1) if s > 1 else np.zeros(n)) / s
        return _summary(est, var, n * s, method)

    if method == "mask":
        q = 0.25 if size is None else check_float(size, "size", minimum=0.0, maximum=1.0, strict_min=True)
        est = np.empty(n)
        var = np.empty(n)
        kept = 0
        xp = get_xp()
        # rng.random streams: drawing block by block in example order gives the reference's
        # numbers whatever its chunk boundaries.
        for start, J in engine.jacobian_blocks(fnet, params, X, output):
            m = J.shape[0]
            mask_host = rng.random(J.shape) < q
            kept += int(mask_host.sum())
            mk = to_device(mask_host.reshape(m, -1))
            J2 = (J.reshape(m, -1).astype(np.float64)) ** 2
            e = xp.sum(J2 * mk, axis=1) / q
            v = xp.sum(J2 ** 2 * mk, axis=1) * (1.0 - q) / q ** 2
            est[start:start + m] = to_host(e)
            var[start:start + m] = to_host(v)
        return _summary(est, var, kept, method)

    R = 4 if size is None else check_int(size, "size", minimum=1)
    V = np.empty((n, R, p))
    for start in range(0, n, chunk_size):
        m = min(chunk_size, n - start)
        for r in range(R):
            if probe == "rademacher":
                v = rng.choice(np.array([-1.0, 1.0]), size=(m, p))
            else:
                g = rng.standard_normal((m, p))
                v = g / np.linalg.norm(g, axis=1, keepdims=True) * math.sqrt(p)
            V[start:start + m, r] = v
    vals = engine.projection_sq_norms(fnet, params, X, V, output)
    est = vals.mean(axis=1)
    var = vals.var(axis=1, ddof=1) / R if R > 1 else np.zeros(n)
    return _summary(est, var, n * R, method)


def geometric_collapse(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *,
                       dtype=None, memory_budget=None) -> float:
    """Geometric collapse ``mean_{i != j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)``, as
    ``gcref.geometric_collapse`` (class means of the embedding, or of the logits)."""
    fnet, params, X, chunk_size = _prepare(net, params, X, output, chunk_size, dtype, memory_budget)
    y = as_labels(to_host(y), n=X.shape[0])
    classes, gc = per_class_gc(fnet, params, X, y, output, chunk_size)
    Z = fnet.embed(params, X) if output == "embedding" else fnet.forward(params, X)
    stats = class_stats(Z, y)
    R = pairwise_ratio(stats.means, gc, values_name="gc_per_class")
    return _off_diagonal_mean(R)


# ============================================================================== class statistics

def _freeze(a) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _features(Z, name="Z"):
    """Validate features (host or device) -> device float64 ``(n, p)``."""
    xp = get_xp()
    if is_device_array(Z):
        if Z.ndim != 2:
            raise ValueError(f"{name} must have 2 dimension(s), got shape {Z.shape}")
        if Z.size == 0:
            raise ValueError(f"{name} must not be empty, got shape {Z.shape}")
        Zd = Z.astype(xp.float64, copy=False)
        bad = int(Zd.size - int(xp.count_nonzero(xp.isfinite(Zd))))
        if bad:
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
        return Zd
    return to_device(as_float_array(Z, name, ndim=2))


def _group(y, n):
    y = as_labels(to_host(y), "y", n=n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return y, classes, inverse.ravel(), counts


def class_stats(Z, y) -> ClassStats:
    """Class means, total variances and counts (``gcref.class_stats``), vectorized.

    Notes
    -----
    Class sums are one matrix product with the one-hot label matrix (deterministic on the GPU,
    unlike atomics); variances are two-pass (``mean ||f - mu_c||^2`` after the means), never
    ``E||f||^2 - ||mu||^2``.
    """
    xp = get_xp()
    Zd = _features(Z)
    _, classes, inverse, counts = _group(y, Zd.shape[0])
    small = classes[counts < 2]
    if small.size:
        raise ValueError(
            f"y: class {int(small[0])} has {int(counts[counts < 2][0])} example(s); a class "
            "variance needs at least 2 examples per class")
    k = classes.shape[0]
    inv_d = to_device(inverse)
    onehot = (xp.arange(k)[:, None] == inv_d[None, :]).astype(xp.float64)   # (k, n)
    cnt = to_device(counts.astype(np.float64))
    means = (onehot @ Zd) / cnt[:, None]                                    # pass 1
    dev = Zd - means[inv_d]                                                 # pass 2
    variances = (onehot @ xp.einsum("ij,ij->i", dev, dev)) / cnt
    return ClassStats(classes=_freeze(classes), means=_freeze(to_host(means)),
                      variances=_freeze(to_host(variances)),
                      counts=_freeze(counts.astype(np.int64)))


def _check_means_values(means, values, values_name):
    means = as_float_array(to_host(means), "means", ndim=2)
    k = means.shape[0]
    if k < 2:
        raise ValueError(f"means: need at least 2 classes for a pairwise ratio, got {k}")
    values = as_float_array(to_host(values), values_name, shape=(k,))
    if np.any(values < 0):
        raise ValueError(f"{values_name} must be non-negative, got min {values.min()!r}")
    return means, values


def _pair_distances(means_host, rtol, ncc_message=False):
    """Squared distances ``||mu_i - mu_j||^2`` (device ``(k, k)``) from the Gram matrix of the
    centred means, with cancellation-prone pairs recomputed from their differences; raises when
    two means coincide (same rule and message as ``gcref``)."""
    xp = get_xp()
    M = to_device(means_host)
    k = M.shape[0]
    norms = xp.sqrt(xp.einsum("ij,ij->i", M, M))
    Mc = M - M.mean(axis=0)
    n2 = xp.einsum("ij,ij->i", Mc, Mc)
    d2 = n2[:, None] + n2[None, :] - 2.0 * (Mc @ Mc.T)
    scale2 = n2[:, None] + n2[None, :]
    suspicious = to_host(d2 <= _GRAM_GUARD * scale2)
    np.fill_diagonal(suspicious, False)
    I, J = np.nonzero(np.triu(suspicious))
    step = max(1, (1 << 22) // max(1, means_host.shape[1]))
    for s in range(0, I.shape[0], step):
        i, j = to_device(I[s:s + step]), to_device(J[s:s + step])
        diff = M[i] - M[j]
        v = xp.einsum("ij,ij->i", diff, diff)
        d2[i, j] = v
        d2[j, i] = v
    d2[xp.arange(k), xp.arange(k)] = 0.0
    d2 = xp.maximum(d2, 0.0)
    scale = xp.maximum(norms[:, None], norms[None, :])
    bad = (d2 == 0.0) | (xp.sqrt(d2) <= rtol * scale)
    bad[xp.arange(k), xp.arange(k)] = False
    bad_h = to_host(bad)
    if bad_h.any():
        i, j = (int(v) for v in np.argwhere(bad_h)[0])
        dist = float(np.sqrt(to_host(d2[i, j])))
        sc = float(to_host(scale[i, j]))
        if ncc_message:
            raise ValueError(f"means: class means {i} and {j} coincide; the NCC bound is undefined")
        raise ValueError(f"means: class means {i} and {j} coincide (||mu_i - mu_j|| = "
                         f"{dist:.3g}, mean norm {sc:.3g}); the pairwise ratio is undefined")
    return d2


def pairwise_ratio(means, values, *, rtol: float = COINCIDING_MEANS_RTOL,
                   values_name: str = "values") -> np.ndarray:
    """``(values_i + values_j) / (2 ||mu_i - mu_j||^2)``, zero diagonal, ``(k, k)`` host; as
    ``gcref.metrics.collapse.pairwise_ratio`` (same checks), vectorized."""
    xp = get_xp()
    means, values = _check_means_values(means, values, values_name)
    rtol = check_float(rtol, "rtol", minimum=0.0)
    k = means.shape[0]
    d2 = _pair_distances(means, rtol)
    v = to_device(values)
    eye = xp.eye(k, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = (v[:, None] + v[None, :]) / (2.0 * xp.where(eye, 1.0, d2))
    ratio = xp.where(eye, 0.0, ratio)
    ratio = to_host(ratio)
    if not np.all(np.isfinite(ratio)):
        raise ValueError(f"the pairwise ratio of {values_name} overflowed; rescale the features")
    return ratio


def _off_diagonal_mean(R) -> float:
    k = R.shape[0]
    return float((R.sum() - np.trace(R)) / (k * (k - 1)))


def cdnv(Z, y) -> np.ndarray:
    """CDNV matrix ``V_ij = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` (``gcref.cdnv``), ``(k, k)``."""
    stats = class_stats(Z, y)
    if stats.num_classes < 2:
        raise ValueError(f"y: CDNV needs at least 2 classes, got {stats.num_classes}")
    return pairwise_ratio(stats.means, stats.variances, values_name="variances")


def neural_collapse(Z, y) -> float:
    """NC = mean over pairs ``i != j`` of the CDNV (``gcref.neural_collapse``)."""
    return _off_diagonal_mean(cdnv(Z, y))


# ============================================================================== NCC bound

def ncc_error_bound(means, variances, shots: int, *, form: str = "variance",
                    constant: float = TIGHT_CONSTANT, gc_per_class=None, rho=None,
                    ways: int | None = None) -> NCCErrorBound:
    """Upper bound on the expected few-shot NCC error: ``gcref.ncc_error_bound`` on host copies.

    The bound needs only the ``k`` class means and ``k`` spreads (``O(k^2)`` work), so the
    reference's definition serves both backends; device arrays are moved to the host first.
    """
    from gcref.metrics.bounds import ncc_error_bound as reference_bound

    def host(a):
        return None if a is None else to_host(a)

    return reference_bound(host(means), host(variances), shots, form=form, constant=constant,
                           gc_per_class=host(gc_per_class), rho=host(rho), ways=ways)


# ============================================================================== few-shot

def _episode_accuracies(Zd, episodes, pos=None) -> np.ndarray:
    """NCC accuracy of each episode, vectorized over episodes (device features ``Zd``)."""
    xp = get_xp()
    E = len(episodes)
    support = np.stack([e.support_idx for e in episodes])         # (E, w, m)
    query = np.stack([e.query_idx for e in episodes])             # (E, w, q)
    if pos is not None:
        support, query = pos[support], pos[query]
    _, w, _ = support.shape
    q = query.shape[2]
    p = Zd.shape[1]
    acc = np.empty(E)
    step = max(1, (1 << 24) // max(1, w * q * w * p))
    truth = xp.repeat(xp.arange(w), q)                             # class row of each query
    for s in range(0, E, step):
        sup = to_device(support[s:s + step])
        qry = to_device(query[s:s + step].reshape(-1, w * q))
        centres = Zd[sup].mean(axis=2)                             # (e, w, p)
        Zq = Zd[qry]                                               # (e, w q, p)
        diff = Zq[:, :, None, :] - centres[:, None, :, :]          # (e, w q, w, p)
        dist2 = xp.sum(diff * diff, axis=3)
        pred = xp.argmin(dist2, axis=2)                            # first minimum: lowest index
        acc[s:s + step] = to_host(xp.mean((pred == truth[None, :]).astype(xp.float64), axis=1))
    return acc


def _few_shot_result(acc, ways, shots, queries, episodes) -> FewShotResult:
    ci95 = float(1.96 * np.std(acc, ddof=1) / np.sqrt(episodes))
    return FewShotResult(mean=float(np.mean(acc)), ci95=ci95, accuracies=acc, ways=ways,
                         shots=shots, queries=queries, episodes=episodes)


def few_shot_accuracy_features(Z, y, ways: int = 5, shots: int = 5, queries: int = 15,
                               episodes: int = 100, seed=0) -> FewShotResult:
    """Few-shot NCC accuracy on features (``gcref.few_shot_accuracy_features``): the same
    episodes, all episodes classified at once."""
    Zd = _features(Z)
    y = as_labels(to_host(y), "y", n=Zd.shape[0])
    episodes = check_int(episodes, "episodes", minimum=2)
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    return _few_shot_result(_episode_accuracies(Zd, eps), ways, shots, queries, episodes)


def few_shot_accuracy(net, params, X, y, ways: int = 5, shots: int = 5, queries: int = 15,
                      episodes: int = 100, seed=0, *, batch_size: int = 1024, dtype=None,
                      memory_budget=None) -> FewShotResult:
    """Few-shot NCC accuracy of the embedding (``gcref.few_shot_accuracy``): the same episodes
    (drawn on the host from ``seed``), only the examples they use embedded, every episode
    classified in one batched pass."""
    X = to_host(X)
    X = np.asarray(X)
    if X.ndim < 1:
        raise ValueError("X must have a leading example axis")
    y = as_labels(to_host(y), "y", n=X.shape[0])
    episodes = check_int(episodes, "episodes", minimum=2)
    check_int(batch_size, "batch_size", minimum=1)
    fnet = as_fast(net, dtype, memory_budget)
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    used = np.unique(np.concatenate([np.concatenate([e.support_idx.ravel(), e.query_idx.ravel()])
                                     for e in eps]))
    Zd = fnet.embed_device(params, X[used]).astype(get_xp().float64)
    pos = np.full(X.shape[0], -1, dtype=np.int64)
    pos[used] = np.arange(used.shape[0])
    return _few_shot_result(_episode_accuracies(Zd, eps, pos), ways, shots, queries, episodes)
