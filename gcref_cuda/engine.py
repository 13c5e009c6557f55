"""Row passes: many Jacobian-vector products of one network at once, chunked to a budget.

A *row* is a pair (example, direction). Reverse mode pushes cotangent rows from the output down
to the input (``J^T v``); forward mode pushes tangent rows up (``J t``). Rows are sorted by
example. Examples are processed in chunks that keep their forward caches within half the memory
budget; within an example chunk, rows are processed in chunks of ``FastNetwork.row_chunk`` rows,
each with scratch buffers reused from the previous chunk (:class:`gcref_cuda.nn.Workspace`).
On NumPy, row chunks are spread over ``backend.cpu_threads()`` worker threads.

Exact shortcuts used for basis rows ``e_k`` in reverse mode (``docs/theory.md`` §5.4, derived
there), keyed on op attributes (``Op.elementwise``,
``Op.rectifier``, ``Op.dense``, ``Op.reshape_only``, ``Op.grid_conv``), never on op types:

* top elementwise activation: ``J^T e_k = J_below^T (s'(z_k) e_k)``; rows with ``s'(z_k) = 0``
  (ReLU off) are identically zero and are not computed, the others start scaled by ``s'(z_k)``
  (no scaling for a rectifier, whose ``s'`` is 1 there);
* top linear layer: ``W^T e_k`` is row ``k`` of ``W`` (a gather, not a GEMM);
* bottom linear layer ``x -> W x`` (after any flatten) with more inputs than outputs, when only
  squared norms are wanted: ``||W^T g||^2 = g^T (W W^T) g`` with the Gram matrix computed once.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import cpu_compute, cpu_threads, to_device, to_host
from .workspace import Ctx, Rows, Workspace

#: Owner of the engine's own scratch buffers (op keys are strings: no clash).
_ENGINE = ("engine",)

# The functions below take a gcref_cuda.network.FastNetwork ``fnet``; this module does not import
# it (FastNetwork.jacobian calls into this module: importing back would make a cycle).

__all__ = ["ReversePlan", "RowPool", "per_example_sq_norms", "pair_sq_norms", "projection_sq_norms",
           "jacobian", "jacobian_blocks", "basis_rows", "cotangent_rows", "forward_basis_rows"]


class ReversePlan:
    """Which exact shortcuts apply to a chain (static; computed once per call).

    Ops ``chain[lo..hi]`` are walked generically; ``top_act``/``top_linear`` are folded into
    the seed rows; ``gram`` is the bottom dense layer replaced by its Gram matrix.
    """

    def __init__(self, chain, want_norms: bool, basis: bool = True):
        j = len(chain) - 1
        self.top_act = self.top_linear = None
        if basis:
            if j >= 0 and chain[j].elementwise and len(chain[j].in_shape) == 1:
                self.top_act = j
                j -= 1
            if j >= 0 and chain[j].dense:
                self.top_linear = j
                j -= 1
        self.hi = j
        b = 0
        while b <= j and chain[b].reshape_only:
            b += 1
        self.gram = None
        self.lo = 0
        if want_norms and b <= j and chain[b].dense \
                and chain[b].in_features > chain[b].out_features:
            self.gram, self.lo = b, b + 1


class RowPool:
    """Row-chunk runner: inline, or over worker threads each with its own scratch space."""

    def __init__(self, fnet, main_ctx: Ctx):
        self.xp = main_ctx.xp
        self.workers = max(1, cpu_threads()) if self.xp is np else 1
        self.ctxs = queue.SimpleQueue()
        self.n_ctx = 0
        self.main_ctx = main_ctx
        self.fnet = fnet
        self._executor = None

    def row_chunk(self, output):
        return self.fnet.row_chunk(output, workers=self.workers)

    def _ctx(self):
        try:
            return self.ctxs.get_nowait()
        except queue.Empty:
            self.n_ctx += 1
            return Ctx(self.xp, self.main_ctx.dtype, Workspace(self.xp), keep_inputs=False)

    def _run(self, body, sl):
        ctx = self._ctx()
        try:
            body(ctx, sl)
        finally:
            self.ctxs.put(ctx)

    def map(self, body, n_rows, step):
        chunks = [slice(r0, min(r0 + step, n_rows)) for r0 in range(0, n_rows, step)]
        if self.workers <= 1 or len(chunks) <= 1:
            for sl in chunks:
                self._run(body, sl)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers)
        for f in [self._executor.submit(self._run, body, sl) for sl in chunks]:
            f.result()

    def close(self):
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


#: The name callers used before (``gcref_cuda.train``).
_Pool = RowPool


def _sq_norms(g, xp):
    """Sum of squares of each row (rows on axis 1 for images, axis 0 for vectors)."""
    if g.ndim == 4:
        return xp.einsum("crhw,crhw->r", g, g)
    g2 = g.reshape(g.shape[0], -1)
    return xp.einsum("ij,ij->i", g2, g2)


def _run_reverse(chain, P, caches, g, rows, ctx, lo, hi, view_at_bottom=False):
    """Cotangent rows through ``chain[hi], ..., chain[lo]``. An op whose result feeds a
    convolution's transpose writes it straight onto that convolution's zero-bordered grid; the
    bottom convolution may return a view (enough for squared norms)."""
    on_grid = False
    for i in range(hi, lo - 1, -1):
        op = chain[i]
        below = chain[i - 1] if i > lo else None
        target = None
        if below is not None and below.grid_conv and op.accepts_out:
            target = below.grid_input(rows.n, ctx)
        kw = {}
        if op.grid_conv:
            kw["on_grid"] = on_grid
            kw["view"] = view_at_bottom and i == lo
        if target is not None:
            grid, interior = target
            op.vjp(P[op.key], caches[i], g, rows, ctx, out=interior, **kw)
            g, on_grid = grid, True
        else:
            g = op.vjp(P[op.key], caches[i], g, rows, ctx, **kw)
            on_grid = False
    return g


def _finish(fnet, P, chain, plan, g, R, ctx, want):
    """Rows at the input of ``chain[plan.lo]`` -> squared norms, or flattened input rows."""
    xp = ctx.xp
    if want == "norms":
        if plan.gram is not None:
            op = chain[plan.gram]
            G = op.gram(P[op.key])
            gG = ctx.ws.get(op.slot("gram_gG"), (R, G.shape[0]), ctx.dtype)
            xp.matmul(g, G, out=gG)
            return xp.einsum("ij,ij->i", g, gG)
        return _sq_norms(g, xp)
    return fnet.from_layout(g, R)


def _gram_once(P, chain, plan):
    # before the row chunks run in parallel: each reads the one Gram matrix kept in P
    if plan.gram is not None:
        op = chain[plan.gram]
        op.gram(P[op.key])


def _output_of(fnet, chain):
    return "logits" if chain and chain[-1] is fnet.head else "embedding"


def basis_rows(fnet, P, caches, chain, pool: RowPool, ex, k, want="norms",
               plan: ReversePlan | None = None):
    """``||J(x_ex)^T e_k||^2`` (``want="norms"``, device ``(R,)``) or ``J(x_ex)^T e_k``
    flattened (``want="vectors"``, ``(R, d)``) for host index arrays ``ex`` (sorted; examples of
    the current chunk, whose ``caches`` are given) and ``k`` (output coordinates)."""
    xp = pool.xp
    dtype = pool.main_ctx.dtype
    plan = plan or ReversePlan(chain, want == "norms")
    _gram_once(P, chain, plan)
    ex = np.asarray(ex, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    n_all = ex.shape[0]
    result = xp.zeros((n_all,) if want == "norms" else (n_all, fnet.input_dim), dtype=dtype)
    keep = np.arange(n_all)
    scale = None
    if plan.top_act is not None:
        op = chain[plan.top_act]
        c = caches[plan.top_act]
        deriv = op.derivative(c)                                 # (m, P): s'(z)
        s = to_host(deriv[to_device(ex), to_device(k)])
        keep = np.flatnonzero(s != 0)                            # J^T e_k = 0 where s' = 0
        scale = None if op.rectifier else s[keep]                # a rectifier's s' is 1 there
    if keep.shape[0] == 0:
        return result
    exk, kk = ex[keep], k[keep]
    width = fnet.output_dim(_output_of(fnet, chain))

    def body(ctx, sl):
        rows = Rows(exk[sl], xp)
        kd = to_device(kk[sl])
        if plan.top_linear is not None:
            W = P[chain[plan.top_linear].key]["W"]
            g = ctx.ws.get((_ENGINE, "seed"), (rows.n, W.shape[1]), dtype)
            xp.take(W, kd, axis=0, out=g)
        else:
            g = ctx.ws.get((_ENGINE, "seed"), (rows.n, width), dtype, zero=True)
            g[xp.arange(rows.n), kd] = 1.0
        if scale is not None:
            g *= to_device(scale[sl], dtype)[:, None]
        g = _run_reverse(chain, P, caches, g, rows, ctx, plan.lo, plan.hi,
                         view_at_bottom=want == "norms" and plan.gram is None)
        result[to_device(keep[sl])] = _finish(fnet, P, chain, plan, g, rows.n, ctx, want)

    pool.map(body, keep.shape[0], pool.row_chunk(_output_of(fnet, chain)))
    return result


def cotangent_rows(fnet, P, caches, chain, pool: RowPool, ex, V):
    """``||J(x_ex)^T v||^2`` for dense cotangent rows ``V`` (host ``(R, out_dim)``): device ``(R,)``."""
    xp = pool.xp
    dtype = pool.main_ctx.dtype
    plan = ReversePlan(chain, True, basis=False)
    _gram_once(P, chain, plan)
    ex = np.asarray(ex, dtype=np.int64)
    result = xp.empty((ex.shape[0],), dtype=dtype)

    def body(ctx, sl):
        rows = Rows(ex[sl], xp)
        g = _run_reverse(chain, P, caches, to_device(V[sl], dtype), rows, ctx, plan.lo, plan.hi,
                         view_at_bottom=plan.gram is None)
        result[sl] = _finish(fnet, P, chain, plan, g, rows.n, ctx, "norms")

    pool.map(body, ex.shape[0], pool.row_chunk(_output_of(fnet, chain)))
    return result


def forward_basis_rows(fnet, P, caches, chain, pool: RowPool, ex, i):
    """``||J(x_ex) e_i||^2`` by forward mode (used when ``d < out_dim``): device ``(R,)``."""
    xp = pool.xp
    dtype = pool.main_ctx.dtype
    ex = np.asarray(ex, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    result = xp.empty((ex.shape[0],), dtype=dtype)
    b = 0
    while b < len(chain) and chain[b].reshape_only:
        b += 1
    first_linear = b < len(chain) and chain[b].dense
    shape = fnet.input_shape

    def body(ctx, sl):
        rows = Rows(ex[sl], xp)
        idx = to_device(i[sl])
        if first_linear:                                   # J_1 e_i is column i of W
            t = xp.ascontiguousarray(xp.take(P[chain[b].key]["W"], idx, axis=1).T)
            start = b + 1
        elif len(shape) == 3:
            t = xp.zeros((shape[0], rows.n) + tuple(shape[1:]), dtype=dtype)
            c, h, w = np.unravel_index(i[sl], shape)
            t[to_device(c), xp.arange(rows.n), to_device(h), to_device(w)] = 1.0
            start = 0
        else:
            t = xp.zeros((rows.n, fnet.input_dim), dtype=dtype)
            t[xp.arange(rows.n), idx] = 1.0
            start = 0
        for j in range(start, len(chain)):
            t = chain[j].jvp(P[chain[j].key], caches[j], t, rows, ctx)
        result[sl] = _sq_norms(t, xp)

    pool.map(body, ex.shape[0], pool.row_chunk(_output_of(fnet, chain)))
    return result


# ------------------------------------------------------------------------------ drivers

def _example_chunks(fnet, params, X, output):
    """Yield ``(start, m, P, caches, chain, pool)`` per example chunk (forward pass done)."""
    P = fnet.prepare(params)
    X = fnet.check_input(X)
    chain = fnet.chain(output)
    ctx = fnet.ctx(keep_inputs=False)
    pool = RowPool(fnet, ctx)
    step = fnet.example_chunk(output)
    try:
        for s in range(0, X.shape[0], step):
            Xc = X[s:s + step]
            _, caches = fnet.forward_layout(P, fnet.to_layout(Xc, ctx), ctx, output)
            yield s, Xc.shape[0], P, caches, chain, pool
    finally:
        pool.close()


def per_example_sq_norms(fnet, params, X, output="embedding") -> np.ndarray:
    """Exact ``||J(x)||_F^2`` per example (host ``(n,)``): reverse mode over the ``out_dim``
    basis cotangents, or forward mode over the ``d`` basis tangents when ``d`` is smaller (the
    reference's rule)."""
    fnet.net._check_output(output)
    n = np.shape(X)[0]
    out_dim, d = fnet.output_dim(output), fnet.input_dim
    reverse = out_dim <= d
    width = out_dim if reverse else d
    gc = np.empty(n)
    with cpu_compute():
        for s, m, P, caches, chain, pool in _example_chunks(fnet, params, X, output):
            ex = np.repeat(np.arange(m), width)
            col = np.tile(np.arange(width), m)
            if reverse:
                norms = basis_rows(fnet, P, caches, chain, pool, ex, col, "norms")
            else:
                norms = forward_basis_rows(fnet, P, caches, chain, pool, ex, col)
            gc[s:s + m] = to_host(norms.reshape(m, width).sum(axis=1))
    return gc


def pair_sq_norms(fnet, params, X, rows_idx, output="embedding") -> np.ndarray:
    """``a[i, j] = ||J(x_i)^T e_{rows_idx[i, j]}||^2`` (host ``(n, s)``)."""
    fnet.net._check_output(output)
    n, s_ = rows_idx.shape
    out = np.empty((n, s_))
    with cpu_compute():
        for s, m, P, caches, chain, pool in _example_chunks(fnet, params, X, output):
            ex = np.repeat(np.arange(m), s_)
            norms = basis_rows(fnet, P, caches, chain, pool, ex, rows_idx[s:s + m].ravel(), "norms")
            out[s:s + m] = to_host(norms).reshape(m, s_)
    return out


def projection_sq_norms(fnet, params, X, V, output="embedding") -> np.ndarray:
    """``||J(x_i)^T V[i, r]||^2`` for host probes ``V`` of shape ``(n, R, out_dim)``: host ``(n, R)``."""
    fnet.net._check_output(output)
    n, R, _ = V.shape
    out = np.empty((n, R))
    with cpu_compute():
        for s, m, P, caches, chain, pool in _example_chunks(fnet, params, X, output):
            ex = np.repeat(np.arange(m), R)
            norms = cotangent_rows(fnet, P, caches, chain, pool, ex, V[s:s + m].reshape(m * R, -1))
            out[s:s + m] = to_host(norms).reshape(m, R)
    return out


def jacobian_blocks(fnet, params, X, output="embedding"):
    """Yield ``(start, J)``: exact Jacobians (device ``(m, out_dim, d)``) of consecutive
    example blocks, sized so a block takes at most a quarter of the memory budget."""
    fnet.net._check_output(output)
    X = fnet.check_input(X)
    out_dim, d = fnet.output_dim(output), fnet.input_dim
    per_example = out_dim * d * fnet.dtype.itemsize
    step = max(1, (fnet.memory_budget // 4) // max(1, per_example))
    xp = None
    for s0 in range(0, X.shape[0], step):
        parts = []
        with cpu_compute():
            for s, m, P, caches, chain, pool in _example_chunks(fnet, params, X[s0:s0 + step], output):
                ex = np.repeat(np.arange(m), out_dim)
                col = np.tile(np.arange(out_dim), m)
                J = basis_rows(fnet, P, caches, chain, pool, ex, col, "vectors")
                parts.append(J.reshape(m, out_dim, d))
                xp = pool.xp
        # yielded outside the thread limit: the consumer's BLAS calls are its own business
        yield s0, parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


def jacobian(fnet, params, X, output="embedding") -> np.ndarray:
    """Exact input Jacobians ``(n, out_dim, d)`` (host)."""
    fnet.net._check_output(output)
    X = fnet.check_input(X)
    J = np.empty((X.shape[0], fnet.output_dim(output), fnet.input_dim), dtype=fnet.dtype)
    for s, Jb in jacobian_blocks(fnet, params, X, output):
        J[s:s + Jb.shape[0]] = to_host(Jb)
    return J
