"""GC, neural collapse, geometric collapse, the NCC bound and few-shot accuracy, fast.

Every function has the name and signature of its ``gcref`` twin (plus keyword-only ``dtype`` and
``memory_budget``), computes the same quantity (``docs/theory.md`` section 1) and returns host
values of the same types (``float``, NumPy arrays, ``gcref``'s dataclasses). The GC functions
and estimators ARE the ``gcref`` functions, run with :class:`gcref_cuda.FastEngine`: the
formulas, validators, messages and random draws are the reference's, and only the passes are
fast. Class statistics (one GEMM with the one-hot labels) and few-shot episodes (all episodes
at once) are vectorized here; the pairwise ratios and the NCC bound (``O(k^2)`` on class
summaries) are the reference's, on host copies.

``net`` may be a ``gcref.nn.Network`` or a :class:`gcref_cuda.FastNetwork`.
"""

from __future__ import annotations

import numpy as np

from gcref._validation import as_float_array, as_labels, check_int
from gcref.metrics import collapse as _collapse
from gcref.metrics import complexity as _metrics
from gcref.metrics.bounds import TIGHT_CONSTANT, NCCErrorBound
from gcref.metrics.collapse import COINCIDING_MEANS_RTOL, ClassStats, check_class_counts
from gcref.metrics.complexity import ESTIMATORS, Estimate
from gcref.metrics.ncc import FewShotResult, few_shot_episodes, summarize_episodes

from .backend import get_xp, is_device_array, to_device, to_host
from .fast_engine import FastEngine
from .network import as_fast

__all__ = ["per_example_gc", "geometric_complexity", "per_class_gc", "estimate_gc",
           "geometric_collapse", "class_stats", "cdnv", "neural_collapse", "pairwise_ratio",
           "ncc_error_bound", "few_shot_accuracy", "few_shot_accuracy_features", "Estimate",
           "ESTIMATORS"]

# ============================================================================== GC

def per_example_gc(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                   dtype=None, memory_budget=None) -> np.ndarray:
    """``||J(x)||_F^2`` for every example, shape ``(n,)``; exact: ``gcref.per_example_gc`` with
    the fast engine (reverse mode over the basis cotangents, all of a chunk's rows batched, or
    forward mode when ``d < out_dim``; see :mod:`gcref_cuda.engine`). ``chunk_size`` is
    validated and otherwise unused: chunks follow ``memory_budget`` (bytes, default 1 GiB)."""
    engine = FastEngine(net, dtype, memory_budget)
    return _metrics.per_example_gc(engine.net, params, X, output, chunk_size, engine=engine)


def geometric_complexity(net, params, X, output: str = "embedding", chunk_size: int = 256, *,
                         dtype=None, memory_budget=None) -> float:
    """``GC(f, D) = (1/|D|) sum_x ||J_f(x)||_F^2`` (exact): ``gcref.geometric_complexity`` with
    the fast engine."""
    engine = FastEngine(net, dtype, memory_budget)
    return _metrics.geometric_complexity(engine.net, params, X, output, chunk_size, engine=engine)


def per_class_gc(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *,
                 dtype=None, memory_budget=None):
    """Per-class GC ``(classes, gc)``, both ``(k,)``: ``gcref.per_class_gc`` with the fast engine."""
    engine = FastEngine(net, dtype, memory_budget)
    return _metrics.per_class_gc(engine.net, params, X, to_host(y), output, chunk_size, engine=engine)


def estimate_gc(net, params, X, method: str = "outputs", size=None, seed=0,
                output: str = "embedding", probe: str = "rademacher", chunk_size: int = 256, *,
                dtype=None, memory_budget=None) -> Estimate:
    """Unbiased estimate of ``GC(f, D)`` with a standard error: ``gcref.estimate_gc`` with the
    fast engine, hence the same methods, budgets, defaults and random draws (made on the host,
    in an order that does not depend on ``chunk_size`` or the memory budget)."""
    engine = FastEngine(net, dtype, memory_budget)
    return _metrics.estimate_gc(engine.net, params, X, method, size, seed, output, probe, chunk_size,
                                engine=engine)


def geometric_collapse(net, params, X, y, output: str = "embedding", chunk_size: int = 256, *,
                       dtype=None, memory_budget=None) -> float:
    """Geometric collapse ``mean_{i != j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)``:
    ``gcref.geometric_collapse`` with the fast engine."""
    engine = FastEngine(net, dtype, memory_budget)
    return _metrics.geometric_collapse(engine.net, params, X, to_host(y), output, chunk_size,
                                       engine=engine)


# ============================================================================== class statistics

def _freeze(a) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _features(Z, name="Z"):
    """Validate features (host or device) -> device float64 ``(n, p)``.

    Host arrays go through the reference's validator. A device array is checked on the device
    (shape, dtype, finiteness: no transfer); if anything is off, the reference's validator runs
    on a host copy and raises its own message.
    """
    xp = get_xp()
    if is_device_array(Z):
        ok = Z.ndim == 2 and Z.size > 0 and Z.dtype.kind in "iuf"     # as the reference accepts
        if ok:
            Zd = Z.astype(xp.float64, copy=False)
            if bool(xp.all(xp.isfinite(Zd))):
                return Zd
        as_float_array(to_host(Z), name, ndim=2)     # raises the reference's message
        raise AssertionError("unreachable: the reference accepted what the device check refused")
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
    check_class_counts(classes, counts)
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


def pairwise_ratio(means, values, *, rtol: float = COINCIDING_MEANS_RTOL,
                   values_name: str = "values") -> np.ndarray:
    """``(values_i + values_j) / (2 ||mu_i - mu_j||^2)``, zero diagonal, ``(k, k)`` host:
    ``gcref.metrics.collapse.pairwise_ratio`` on host copies (``O(k^2 p)`` work on ``k`` means:
    one definition, with its checks and messages, serves both backends)."""
    return _collapse.pairwise_ratio(to_host(means), to_host(values), rtol=rtol, values_name=values_name)


def _centred_stats(Z, y) -> ClassStats:
    """Class statistics of the centred features (``gcref.metrics.collapse.centred``), on the device."""
    Zd = _features(Z)
    return class_stats(Zd - Zd.mean(axis=0), y)


def cdnv(Z, y) -> np.ndarray:
    """CDNV matrix ``V_ij = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` (``gcref.cdnv``), ``(k, k)``:
    class statistics of the centred features on the device, the ratio by the reference."""
    stats = _centred_stats(Z, y)
    if stats.num_classes < 2:
        raise ValueError(f"y: CDNV needs at least 2 classes, got {stats.num_classes}")
    return _collapse.cdnv_from_stats(stats.means, stats.variances)


def neural_collapse(Z, y) -> float:
    """NC = mean over pairs ``i != j`` of the CDNV (``gcref.neural_collapse``)."""
    return _collapse.off_diagonal_mean(cdnv(Z, y))


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


def few_shot_accuracy_features(Z, y, ways: int = 5, shots: int = 5, queries: int = 15,
                               episodes: int = 100, seed=0) -> FewShotResult:
    """Few-shot NCC accuracy on features (``gcref.few_shot_accuracy_features``): the same
    episodes, all episodes classified at once."""
    Zd = _features(Z)
    y = as_labels(to_host(y), "y", n=Zd.shape[0])
    episodes = check_int(episodes, "episodes", minimum=2)
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    return summarize_episodes(_episode_accuracies(Zd, eps), ways, shots, queries, episodes)


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
    return summarize_episodes(_episode_accuracies(Zd, eps, pos), ways, shots, queries, episodes)
