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

import numpy as np

from gcref.engine import Engine

from .backend import blas_limit, cpu_compute, get_xp, to_device, to_host
from .engine import RowPool, jacobian_blocks, pair_sq_norms, per_example_sq_norms, projection_sq_norms
from .network import as_fast
from .ops.containers import ChainOp

__all__ = ["FastEngine"]


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
        ctx = self._train_ctx()
        # one batch of large GEMMs: BLAS keeps its own threads here (no row chunks to spread)
        logits, caches = fnet.forward_layout(P, fnet.to_layout(X, ctx), ctx, "logits")

        chain = fnet.chain("logits")
        bottom = next(i for i, op in enumerate(chain) if not op.reshape_only)

        def pullback(v):
            g = to_device(v, ctx.dtype)
            grads = {}
            for i in range(len(chain) - 1, bottom - 1, -1):
                op = chain[i]
                if i == bottom and op.skips_input_grad:     # nothing needs d/dx at the input
                    g, gp = op.vjp_params(P[op.key], caches[i], g, ctx, need_input=False)
                else:
                    g, gp = op.vjp_params(P[op.key], caches[i], g, ctx)
                grads.update(gp)
            return grads

        return logits, pullback

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

    def _train_ctx(self):
        """One context (scratch space) reused by every step of a run: im2col grids and the
        other workspace buffers are allocated once."""
        ctx = getattr(self, "_ctx", None)
        if ctx is None or ctx.dtype != self.dtype or ctx.xp is not get_xp():
            ctx = self._ctx = self.fnet.ctx(keep_inputs="cols")
        return ctx

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
