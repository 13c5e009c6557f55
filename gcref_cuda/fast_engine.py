"""The fast engine: :mod:`gcref.engine`'s primitives, batched on the backend (CuPy or NumPy).

``gcref`` writes every estimator, the per-class and collapse metrics, the training objective,
``evaluate`` and the ``fit`` loop once, against the primitives of :class:`gcref.engine.Engine`;
:class:`FastEngine` supplies them from :class:`gcref_cuda.FastNetwork` and the row passes of
:mod:`gcref_cuda.engine` (many Jacobian rows of one network per batched pass, exact shortcuts,
chunks sized to ``memory_budget``). It validates with the reference's validators on host copies
and returns host float64 arrays, so the formulas above it (and their random draws, made on the
host) are the reference's own: ``gcref_cuda.fit(net, ...)`` is
``gcref.train.fit(net, ..., engine=FastEngine(net))``.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gcref.engine import Engine

from .backend import blas_limit, cpu_compute, cpu_threads, get_xp, to_device, to_host
from .engine import RowPool, jacobian_blocks, pair_sq_norms, per_example_sq_norms, projection_sq_norms
from .network import as_fast
from .ops.containers import ChainOp

__all__ = ["FastEngine"]

_pool: dict = {}


def _shard_pool(n: int) -> ThreadPoolExecutor:
    """The process's worker threads for training shards (at least ``n``), made once."""
    ex = _pool.get("executor")
    if ex is None or _pool["n"] < n:
        if ex is not None:
            ex.shutdown(wait=False)
        ex = _pool["executor"] = ThreadPoolExecutor(n, thread_name_prefix="gcref-shard")
        _pool["n"] = n
    return ex


def _host64(a) -> np.ndarray:
    return np.asarray(to_host(a), dtype=np.float64)


class FastEngine(Engine):
    """The primitives of :class:`gcref.engine.Engine` for one network on this backend.

    Parameters
    ----------
    net : gcref.nn.Network or gcref_cuda.FastNetwork
    dtype : float32 or float64, optional
        Compute precision (default float64 on NumPy, float32 on CuPy); results are float64.
    memory_budget : int, optional
        Bytes of working memory per call (default 1 GiB).
    """

    def __init__(self, net, dtype=None, memory_budget=None):
        self.fnet = as_fast(net, dtype, memory_budget)
        self.net = self.fnet.net

    def __repr__(self):
        return f"FastEngine({self.fnet!r})"

    # ---------------------------------------------------------------- validation (host copies)
    def check_params(self, params, name="params"):
        if isinstance(params, dict):
            params = {k: to_host(v) for k, v in params.items()}
        return self.net.check_params(params, name)

    def check_input(self, X, name="X"):
        return self.net.check_input(to_host(X), name)

    # ---------------------------------------------------------------- forward
    def forward(self, params, X, output="logits"):
        self.net._check_output(output)
        f = self.fnet.forward if output == "logits" else self.fnet.embed
        return _host64(f(params, X))

    def embed_and_logits(self, params, X):
        Z, logits = self.fnet.embed_and_forward(params, X)
        return _host64(Z), _host64(logits)

    def logits_and_pullback(self, params, X):
        logits, pullback = self.step_passes(params, X)      # params validated (engine contract)
        return _host64(logits), lambda v: {k: _host64(a) for k, a in pullback(v).items()}

    # ---------------------------------------------------------------- training state (backend)
    @property
    def xp(self):
        return get_xp()

    @property
    def dtype(self):
        return self.fnet.dtype

    @property
    def memory_budget(self) -> int:
        return self.fnet.memory_budget

    def to_backend(self, a, dtype=None):
        a = to_device(a, self.dtype if dtype is None else dtype)
        return a.copy()

    def to_host(self, a):
        return to_host(a)

    def step_passes(self, bparams, X):
        fnet = self.fnet
        P = fnet.prepare_params(bparams, validate=False)
        shards = self._shards(X.shape[0])
        ctxs = self._train_ctxs(len(shards))
        chain = fnet.chain("logits")
        bottom = next(i for i, op in enumerate(chain) if not op.reshape_only)

        def forward(j):
            ctx = ctxs[j]
            return fnet.forward_layout(P, fnet.to_layout(X[shards[j]], ctx), ctx, "logits")

        outs = self._on_shards(forward, len(shards))
        caches = [c for _, c in outs]
        xp = get_xp()
        logits = outs[0][0] if len(outs) == 1 else xp.concatenate([y for y, _ in outs], axis=0)

        def pullback(v):
            v = to_device(v, ctxs[0].dtype)

            def backward(j):
                ctx, g, grads = ctxs[j], v[shards[j]], {}
                for i in range(len(chain) - 1, bottom - 1, -1):
                    op = chain[i]
                    if i == bottom and op.skips_input_grad:     # nothing needs d/dx at the input
                        g, gp = op.vjp_params(P[op.key], caches[j][i], g, ctx, need_input=False)
                    else:
                        g, gp = op.vjp_params(P[op.key], caches[j][i], g, ctx)
                    grads.update(gp)
                return grads

            parts = self._on_shards(backward, len(shards))
            grads = parts[0]
            for part in parts[1:]:                 # fixed order: reproducible sums
                for k, gk in part.items():
                    grads[k] += gk
            return grads

        return logits, pullback

    #: On NumPy a training batch is split into contiguous shards, one per CPU worker (at most),
    #: each with at least this many multiply-adds of forward pass; each shard runs the whole
    #: chain forward and backward on its own thread with BLAS at one thread (no barrier per
    #: GEMM; the im2col copies, col2im adds and pooling passes run on both cores too), and the
    #: gradients are summed in shard order. Measured on the 2-core machine, batch 64, sharded /
    #: whole (2-thread BLAS), best of 3 interleaved, float32 and float64: VGG-11/8 22.1 / 29.7
    #: and 33.2 / 45.0 ms, small CNN (17M per shard) 7.9 / 8.4 and 11.2 / 12.7 ms, MLP (8M per
    #: shard) 1.77 / 1.28 and 2.61 / 2.27 ms: hence the MLP stays whole. Under load (load
    #: average 4-9) 2-thread BLAS collapses: small CNN 27-37 ms sharded against 132-338 ms.
    SHARD_MACS = 12 * 10 ** 6

    def _shards(self, n: int) -> list:
        """Contiguous example slices of a training batch, one per worker thread (NumPy)."""
        workers = cpu_threads() if get_xp() is np else 1
        per = max(1, self.fnet.flops_forward("logits"))
        k = max(1, min(workers, n, (n * per) // self.SHARD_MACS))
        bounds = [n * j // k for j in range(k + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _on_shards(self, fn, k: int) -> list:
        """``[fn(0), ..., fn(k - 1)]``, shards 1.. on worker threads while this thread runs 0,
        BLAS at one thread each (NumPy releases the GIL in BLAS, copies and ufunc loops)."""
        if k == 1:
            return [fn(0)]
        with blas_limit(1):
            futures = [_shard_pool(k - 1).submit(fn, j) for j in range(1, k)]
            first = fn(0)
            return [first] + [f.result() for f in futures]

    #: A training step whose forward pass has fewer multiply-adds than this runs its GEMMs on
    #: one BLAS thread: splitting such small GEMMs costs more in hand-offs than it gains.
    #: Measured on an idle 2-core machine: the MLP step of bench/bench_train.py (16M
    #: multiply-adds) 1.5 / 2.8 ms (float32 / float64) on two threads against 1.7 / 3.2 ms on
    #: one, the small CNN (34M) 8.5 / 15.5 against 9.4 / 19.6 ms; so only tiny steps stay on one
    #: thread. (Under heavy load one thread was the faster for both: the lab's parallel runs
    #: limit threads themselves, and this never raises their limit.)
    SMALL_STEP_MACS = 4 * 10 ** 6

    def training_scope(self, batch_size: int):
        """BLAS on one thread for the steps of a run whose batch forward pass is small (never
        more threads than the process already allows: a lab run's limit stands)."""
        if get_xp() is not np:
            return contextlib.nullcontext()
        small = batch_size * self.fnet.flops_forward("logits") < self.SMALL_STEP_MACS
        # large steps: the counts are read once here, so the steps' row passes need not query them
        return blas_limit(1 if small else 1 << 20)

    def _train_ctxs(self, k: int) -> list:
        """One context (scratch space) per shard, reused by every step of a run: im2col grids
        and the other workspace buffers are allocated once."""
        ctxs = getattr(self, "_ctxs", None)
        if ctxs is None or len(ctxs) != k or ctxs[0].dtype != self.dtype or ctxs[0].xp is not get_xp():
            ctxs = self._ctxs = [self.fnet.ctx(keep_inputs="cols") for _ in range(k)]
        return ctxs

    # ---------------------------------------------------------------- Jacobian norms
    def jacobian_sq_norms(self, params, X, output="embedding"):
        return per_example_sq_norms(self.fnet, params, X, output)

    def row_sq_norms(self, params, X, rows, output="embedding"):
        return pair_sq_norms(self.fnet, params, X, np.asarray(rows), output)

    def probe_sq_norms(self, params, X, V, output="embedding"):
        return projection_sq_norms(self.fnet, params, X, V, output)

    def jacobian_blocks(self, params, X, output="embedding"):
        for start, J in jacobian_blocks(self.fnet, params, X, output):
            yield start, _host64(J)

    # ---------------------------------------------------------------- GC penalty
    def gc_rows_value_and_grad(self, params, X, rows):
        value, grads = self.step_gc_rows(params, X, rows)  # params validated (engine contract)
        return float(value), {k: _host64(g) for k, g in grads.items()}

    def step_gc_rows(self, bparams, X, rows):
        """Batched over rows: every (example, row ``k``) pair with ``J^T e_k != 0`` is one row of
        a batch that runs the embedding forward, the VJP ``s_k = J^T e_k`` and each layer's
        ``second_order`` with ``g = e_k``, ``u = 2 s_k``; pairs whose top ReLU is off contribute
        nothing and are skipped (exactly). Row chunks run on worker threads and are summed in
        a fixed order (bitwise reproducible)."""
        fnet = self.fnet
        P = fnet.prepare_params(bparams, validate=False)
        n, p = X.shape[0], fnet.embedding_dim
        chosen = np.asarray(rows, dtype=np.int64)
        xp = get_xp()
        ctx = fnet.ctx(keep_inputs=True)
        chain = ChainOp(fnet.ops, fnet.input_shape)
        with cpu_compute():
            # Which (example, row) pairs can be non-zero: the embedding's top rectifier mask.
            ex = np.repeat(np.arange(n), chosen.shape[0])
            kk = np.broadcast_to(chosen, (n, chosen.shape[0])).reshape(-1)   # np.tile keeps 48 B a call (numpy 2.4)
            if fnet.ops[-1].rectifier:
                Z = fnet.embed_prepared(P, X)
                keep = to_host(Z[to_device(ex), to_device(kk)] > 0)
                ex, kk = ex[keep], kk[keep]
            pool = RowPool(fnet, ctx)
            step = max(1, (fnet.memory_budget // (4 * pool.workers)) // max(1, 3 * fnet.example_bytes()))
            parts: dict = {}

            def body(wctx, sl):
                wctx.keep_inputs = True
                e, k = ex[sl], kk[sl]
                R = e.shape[0]
                Xe = X[e] if isinstance(X, np.ndarray) else X[to_device(e)]
                _, caches = chain.forward(P, fnet.to_layout(Xe, wctx), wctx)
                g = xp.zeros((R, p), dtype=wctx.dtype)
                g[xp.arange(R), to_device(k)] = 1.0
                s_rows = chain.vjp(P, caches, g, None, wctx).copy()
                value = float(to_host(xp.sum(s_rows * s_rows)))
                gp, _ = chain.second_order(P, caches, g, 2.0 * s_rows, wctx)
                parts[sl.start] = (value, gp)

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
        specs = self.net.param_specs()
        return value, {name: grads[name] if name in grads else xp.zeros(specs[name], dtype=fnet.dtype)
                       for name in fnet.param_names}
