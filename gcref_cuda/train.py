"""Training steps with L2 and explicit GC regularization, batched (``gcref.train``'s twins).

Same objective, same gradient, same optimizer and same return values as
``gcref.train.objective_and_grad`` / ``train_step`` / ``gc_penalty_and_grad``:

    J(theta) = L(theta) + (l2/2) ||theta||^2 + gc_reg * GC(f_theta, batch)

The GC term's gradient is the reference's double backprop by hand (DESIGN.md section 6), batched
over rows: every (example, output row ``k``) pair with ``J^T e_k != 0`` becomes one row of a
batch that runs the embedding forward, the VJP ``s_k = J^T e_k`` and then each layer's
``second_order`` with ``g = e_k`` and ``u = 2 s_k``; rows whose top ReLU is off contribute
nothing and are skipped (exactly). Parameters stay host dicts (so ``gcref.train.SGD`` and the
checkpoint files are shared); the compute runs on the backend.
"""

from __future__ import annotations

import numpy as np

from gcref._validation import as_generator, as_labels, check_int
from gcref.train.losses import softmax_cross_entropy
from gcref.train.optim import SGD

import contextlib
import threading

from .backend import cpu_compute, get_xp, to_device, to_host
from .engine import _Pool
from .nn import ChainOp, as_fast

__all__ = ["gc_penalty_and_grad", "objective_and_grad", "train_step", "evaluate", "fit", "SGD"]


def _host_grads(grads: dict) -> dict:
    return {k: np.asarray(to_host(v), dtype=np.float64) for k, v in grads.items()}


def gc_penalty_and_grad(net, params, X, rows=None, seed=0, *, dtype=None, memory_budget=None):
    """``GC(f, X)`` and its exact gradient for every trainable parameter (host), as
    ``gcref.train.gc_penalty_and_grad`` (same ``rows`` sampling from the same ``seed``)."""
    fnet = as_fast(net, dtype, memory_budget)
    P = fnet.prepare(params)
    X = fnet.check_input(X)
    n, p = X.shape[0], fnet.embedding_dim
    if rows is None:
        chosen, scale = np.arange(p), 1.0
    else:
        s = check_int(rows, "rows", minimum=1, maximum=p)
        chosen, scale = np.sort(as_generator(seed).choice(p, size=s, replace=False)), p / s
    xp = get_xp()
    ctx = fnet.ctx(keep_inputs=True)
    chain = ChainOp(fnet.ops, fnet.input_shape)
    with cpu_compute():
        # Which (example, row) pairs can be non-zero: the embedding's top ReLU mask.
        ex = np.repeat(np.arange(n), chosen.shape[0])
        kk = np.tile(chosen, n)
        if fnet.ops[-1].rectifier:
            Z = fnet.embed_device(params, X)
            keep = to_host(Z[to_device(ex), to_device(kk)] > 0)
            ex, kk = ex[keep], kk[keep]
        pool = _Pool(fnet, ctx)
        step = max(1, (fnet.memory_budget // (4 * pool.workers)) // max(1, 3 * fnet.example_bytes()))
        parts: dict = {}

        def body(wctx, sl):
            # rows as a batch: the forward of each row's example, then s_k = J^T e_k, then the
            # second-order pass with g = e_k and u = 2 s_k
            wctx.keep_inputs = True
            e, k = ex[sl], kk[sl]
            R = e.shape[0]
            _, caches = chain.forward(P, fnet.to_layout(X[e], wctx), wctx)
            g = xp.zeros((R, p), dtype=wctx.dtype)
            g[xp.arange(R), to_device(k)] = 1.0
            s_rows = chain.vjp(P, caches, g, None, wctx).copy()
            value = float(to_host(xp.sum(s_rows * s_rows)))
            gp, _ = chain.second_order(P, caches, g, 2.0 * s_rows, wctx)
            parts[sl.start] = (value, _host_grads(gp))

        try:
            pool.map(body, ex.shape[0], step)
        finally:
            pool.close()
    grads: dict = {}
    value = 0.0
    for start in sorted(parts):                       # fixed order: bitwise reproducible sums
        v, gp = parts[start]
        value += v
        for name, arr in gp.items():
            grads[name] = grads[name] + arr if name in grads else arr
    factor = scale / n
    out = {}
    host = grads
    for name in fnet.param_names:
        shape = fnet.net.param_specs()[name]
        out[name] = host[name] * factor if name in host else np.zeros(shape)
    return value * factor, out


def objective_and_grad(net, params, X, y, l2: float = 0.0, gc_reg: float = 0.0, gc_rows=None,
                       seed=0, *, dtype=None, memory_budget=None):
    """``(objective, parts, grads)`` of ``L + (l2/2)||theta||^2 + gc_reg GC`` on a batch, as
    ``gcref.train.objective_and_grad`` (host values; ``parts`` has ``loss``, ``accuracy``,
    ``grad_norm_sq``, ``gc`` and, with ``l2``, ``l2_term``)."""
    fnet = as_fast(net, dtype, memory_budget)
    params = fnet.check_params({k: to_host(v) for k, v in params.items()})
    X = fnet.check_input(X)
    y = as_labels(to_host(y), "y", n=X.shape[0])
    P = fnet.prepare(params)
    ctx = fnet.ctx(keep_inputs="cols")
    # one batch of large GEMMs: BLAS keeps its own threads here (no row chunks to spread)
    logits, caches = fnet.forward_layout(P, fnet.to_layout(X, ctx), ctx, "logits")
    logits_h = np.asarray(to_host(logits), dtype=np.float64)
    loss, dlogits = softmax_cross_entropy(logits_h, y)
    g = to_device(dlogits, ctx.dtype)
    grads = {}
    for op, c in zip(reversed(fnet.chain("logits")), reversed(caches)):
        g, gp = op.vjp_params(P[op.key], c, g, ctx)
        grads.update(gp)
    grads = _host_grads(grads)
    parts = {"loss": loss, "accuracy": float(np.mean(logits_h.argmax(axis=1) == y)),
             "grad_norm_sq": float(sum(np.sum(v ** 2) for v in grads.values())), "gc": None}
    objective = loss
    if l2:
        sq = sum(float(np.sum(params[k] ** 2)) for k in fnet.param_names)
        parts["l2_term"] = 0.5 * l2 * sq
        objective += parts["l2_term"]
        grads = {k: v + l2 * params[k] for k, v in grads.items()}
    if gc_reg:
        value, ggc = gc_penalty_and_grad(fnet, params, X, rows=gc_rows, seed=seed)
        parts["gc"] = value
        objective += gc_reg * value
        grads = {k: v + gc_reg * ggc[k] for k, v in grads.items()}
    return objective, parts, grads


def train_step(net, params, state, X, y, optimizer: SGD, l2=0.0, gc_reg=0.0, gc_rows=None, seed=0,
               *, dtype=None, memory_budget=None):
    """One optimizer step on a batch: ``(params, state, objective, parts)``, as
    ``gcref.train.train_step``."""
    objective, parts, grads = objective_and_grad(net, params, X, y, l2, gc_reg, gc_rows, seed,
                                                 dtype=dtype, memory_budget=memory_budget)
    params = {k: np.asarray(to_host(v), dtype=np.float64) for k, v in params.items()}
    new_params, new_state = optimizer.step(params, grads, state)
    return new_params, new_state, objective, parts


def evaluate(net, params, X, y, gc_method="exact", gc_size=None, seed=0, *, dtype=None,
             memory_budget=None) -> dict:
    """Embedding metrics on ``(X, y)`` as ``gcref.train.evaluate``: accuracy, GC (exact or
    estimated), NC and geometric collapse; undefined metrics are ``None`` with the reason."""
    from . import metrics as M
    fnet = as_fast(net, dtype, memory_budget)
    y = as_labels(to_host(y), "y", n=np.shape(X)[0])
    logits = fnet.forward(params, X)
    Z = fnet.embed(params, X)
    out = {"accuracy": float(np.mean(logits.argmax(axis=1) == y))}
    pe = M.per_example_gc(fnet, params, X) if gc_method == "exact" else None
    if gc_method == "exact":
        out["gc"] = float(pe.mean())
    else:
        est = M.estimate_gc(fnet, params, X, method=gc_method, size=gc_size, seed=seed)
        out["gc"], out["gc_stderr"] = est.value, est.stderr
    try:
        stats = M.class_stats(Z, y)
        out["nc"] = M._off_diagonal_mean(M.pairwise_ratio(stats.means, stats.variances,
                                                          values_name="variances"))
        if pe is not None:
            gc_c = np.array([pe[y == c].mean() for c in stats.classes])
            out["geometric_collapse"] = M._off_diagonal_mean(
                M.pairwise_ratio(stats.means, gc_c, values_name="gc_per_class"))
    except ValueError as err:
        out["nc"] = None
        out["nc_error"] = str(err)
    return out


_FIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _fast_fit_module(dtype, memory_budget):
    """``gcref.train.fit``'s module with its step, evaluation and GC functions swapped for the
    fast ones while the block runs (same signatures, same values)."""
    import importlib
    # the module, not the function gcref.train re-exports under the same name
    ref_fit = importlib.import_module("gcref.train.fit")
    from . import metrics as M

    def _train_step(*a, **k):
        return train_step(*a, dtype=dtype, memory_budget=memory_budget, **k)

    def _evaluate(*a, **k):
        return evaluate(*a, dtype=dtype, memory_budget=memory_budget, **k)

    def _per_example_gc(*a, **k):
        return M.per_example_gc(*a, dtype=dtype, memory_budget=memory_budget, **k)

    def _estimate_gc(*a, **k):
        return M.estimate_gc(*a, dtype=dtype, memory_budget=memory_budget, **k)

    swaps = {"train_step": _train_step, "evaluate": _evaluate, "per_example_gc": _per_example_gc,
             "estimate_gc": _estimate_gc}
    with _FIT_LOCK:
        saved = {name: getattr(ref_fit, name) for name in swaps if hasattr(ref_fit, name)}
        if "train_step" not in saved:
            raise RuntimeError("gcref.train.fit has no train_step to replace; update gcref_cuda.fit")
        try:
            for name in saved:
                setattr(ref_fit, name, swaps[name])
            yield ref_fit
        finally:
            for name, fn in saved.items():
                setattr(ref_fit, name, fn)


def fit(net, params, data, *, dtype=None, memory_budget=None, **kwargs):
    """``gcref.train.fit`` with the training steps and the GC/NC evaluations on this backend.

    Same arguments (see ``gcref.train.fit``), same reproducible batches, same checkpoint and
    ``history.jsonl`` files (so ``gcref plot`` reads the run), same :class:`FitResult`. The loop
    itself is the reference's: its step, evaluation and GC functions are swapped for the fast
    twins while it runs (one fit at a time per process).
    """
    with _fast_fit_module(dtype, memory_budget) as ref_fit:
        return ref_fit.fit(net, params, data, **kwargs)
