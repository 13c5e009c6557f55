"""Batched layers and :class:`FastNetwork`: the same networks as ``gcref.nn``, fast.

A :class:`FastNetwork` is compiled from a ``gcref.nn.Network``: the same layer specs, the same
parameter names and ``.npz`` files (PyTorch names and layouts), the same function. What differs is
how the arrays are laid out and how derivatives are batched:

* Images are held channel-first with the batch second, ``(C, N, H, W)``: a convolution is then
  one GEMM ``W (O, C k k) @ cols (C k k, N Ho Wo)`` on im2col patches, and its transpose one GEMM
  and ``k^2`` shifted adds (col2im). Stride-1 convolutions (where the padding adds at most 35 %:
  3x3 kernels on maps from 7x7 up) run on the zero-padded grid flattened to one axis, where
  every shift is a contiguous slice ("flat shifts"); the grid pads each image on the top and
  left only, since a window's bottom/right padding is the next row's (image's) top/left
  padding. Vectors are ``(N, F)``.
* Derivatives run on **rows**: a row is one (example, cotangent) or (example, tangent) pair, so a
  pass pushes a whole block of cotangents through the network at once (DESIGN.md section 6:
  "cotangent block of shape (n p, p)"). Per-example state (ReLU masks, max-pool choices) is
  broadcast to the rows of its example: by a loop over contiguous example segments on NumPy
  (no copies) or a gather on CuPy (one kernel). Rows are processed in chunks sized from a
  memory budget, with buffers reused across chunks.
* Exact GC uses three exact shortcuts (DESIGN.md section 6): rows ``e_k`` whose output ReLU is
  off have ``J^T e_k = 0`` and are skipped; the cotangent of a basis row through the top linear
  layer is a row of its weight (no GEMM); and a first dense layer ``x -> W x`` with more inputs
  than outputs is replaced by its Gram matrix: ``||W^T g||^2 = g^T (W W^T) g``.

``ReLU`` followed by a non-overlapping ``MaxPool2d`` is fused (``maxpool(relu(x)) =
relu(maxpool(x))``; the derivative routes to the first maximum when it is positive, exactly as the
reference's chain).
"""

from __future__ import annotations

import math

import numpy as np

from gcref.nn import layers as L
from gcref.nn.network import Network

from .backend import get_xp, resolve_dtype, to_device, to_host

__all__ = ["FastNetwork", "as_fast", "Workspace", "Rows", "DEFAULT_MEMORY_BUDGET"]

#: Default peak working memory of one call, in bytes.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: On the CPU, row chunks are kept near this many bytes of workspace so they stay in cache.
_CPU_ROW_CHUNK_BYTES = 24 << 20


# ============================================================================== plumbing

class Workspace:
    """Reusable scratch buffers keyed by (owner, slot): first-touch page faults cost as much as
    the arithmetic on the CPU, so a row chunk reuses the previous chunk's memory."""

    def __init__(self, xp):
        self.xp = xp
        self._bufs: dict = {}
        self.tags: dict = {}          # per-buffer facts that survive reuse (e.g. "border zeroed")

    def get(self, key, shape, dtype, zero: bool = False):
        n = int(np.prod(shape, dtype=np.int64))
        buf = self._bufs.get(key)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self.xp.empty(max(n, 1), dtype=dtype)
            self._bufs[key] = buf
            self.tags.pop(key, None)
        out = buf[:n].reshape(shape)
        if zero:
            out.fill(0)
        return out

    def nbytes(self) -> int:
        return sum(int(b.nbytes) for b in self._bufs.values())


class Rows:
    """Rows of a derivative pass: ``ex[r]`` is the example (index within the current example
    chunk) that row ``r`` belongs to. Rows are sorted by example, so the rows of one example form
    a contiguous segment ``(e, start, stop)``."""

    def __init__(self, ex_host: np.ndarray, xp):
        self.ex_host = np.asarray(ex_host, dtype=np.int64)
        self.n = int(self.ex_host.shape[0])
        if self.n and np.any(np.diff(self.ex_host) < 0):
            raise AssertionError("rows must be sorted by example")
        self._xp = xp
        self._ex_dev = None
        if self.n:
            change = np.flatnonzero(np.diff(self.ex_host)) + 1
            starts = np.concatenate([[0], change])
            stops = np.concatenate([change, [self.n]])
            self.segs = list(zip(self.ex_host[starts].tolist(), starts.tolist(), stops.tolist()))
        else:
            self.segs = []
        # Segments avoid a gather on NumPy when they hold several rows each.
        self.use_segments = xp is np and self.n >= 4 * max(1, len(self.segs))

    @property
    def ex(self):
        if self._ex_dev is None:
            self._ex_dev = self.ex_host if self._xp is np else self._xp.asarray(self.ex_host)
        return self._ex_dev


class Ctx:
    """What an op needs besides its parameters: the array module, dtype and scratch space."""

    def __init__(self, xp, dtype, ws: Workspace | None = None, keep_inputs: bool = True):
        self.xp = xp
        self.dtype = dtype
        self.ws = ws if ws is not None else Workspace(xp)
        self.keep_inputs = keep_inputs
        self._children: dict = {}

    def child(self, role: str) -> "Ctx":
        """A context with its own scratch space for one role (kept and reused across calls).

        The product rule of ``second_order`` holds three families of per-op results at once
        (forward tangents, backward cotangents, the primal-chain term); each lives in its own
        role's buffers, so no op's result overwrites another family's. Within a role every op
        writes only its own slots.
        """
        c = self._children.get(role)
        if c is None:
            c = self._children[role] = Ctx(self.xp, self.dtype, Workspace(self.xp), self.keep_inputs)
        return c


def rowmul(ctx: Ctx, g, m, rows: Rows | None, axis: int, out=None):
    """``out = g * m`` with ``m`` per example (axis ``axis``) broadcast to the rows of ``g``.

    ``g`` may itself broadcast into ``out`` (pooling upsamples this way); ``out`` defaults to a
    new array of the broadcast shape.
    """
    xp = ctx.xp
    if rows is None:
        return xp.multiply(g, m, out=out)
    if out is None:
        shape = list(np.broadcast_shapes(g.shape, m.shape[:axis] + (1,) + m.shape[axis + 1:]))
        shape[axis] = rows.n
        out = xp.empty(tuple(shape), dtype=ctx.dtype)
    if rows.use_segments:
        sl = (slice(None),) * axis
        for e, s, t in rows.segs:
            gi = g[sl + (slice(s, t),)] if g.shape[axis] != 1 else g
            np.multiply(gi, m[sl + (slice(e, e + 1),)], out=out[sl + (slice(s, t),)])
        return out
    return xp.multiply(g, xp.take(m, rows.ex, axis=axis), out=out)


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# ============================================================================== ops

def _split_view(a, shape):
    """``a`` (C, R, H, W), possibly strided, viewed as ``shape`` = (C, R, Ho, k, Wo, k)."""
    C, R, Ho, k, Wo, k2 = shape
    s0, s1, s2, s3 = a.strides
    xp = get_xp()
    if xp is np:
        return np.lib.stride_tricks.as_strided(a, shape, (s0, s1, s2 * k, s2, s3 * k2, s3))
    return xp.lib.stride_tricks.as_strided(a, shape, (s0, s1, s2 * k, s2, s3 * k2, s3))


class Op:
    """A compiled layer. ``in_shape``/``out_shape`` are per-example shapes as in ``gcref``.

    ``forward(P, x, ctx) -> (y, cache)``, ``vjp(P, cache, g, rows, ctx) -> gx``,
    ``jvp(P, cache, t, rows, ctx) -> ty`` (``rows=None``: one row per example),
    ``vjp_params(P, cache, g, ctx) -> (gx, {full_name: grad})`` and
    ``second_order(P, cache, g, u, ctx) -> ({full_name: grad}, gx_or_None)`` as in ``gcref``.
    Layouts: ``(N, F)`` for vectors, ``(C, N, H, W)`` for images (rows on the N axis).
    """

    prefix = ""
    keys: tuple = ()
    accepts_out = False            # vjp(..., out=view) writes its result into a given view

    def __init__(self, in_shape, out_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    @property
    def row_axis_in(self):
        return 1 if len(self.in_shape) == 3 else 0

    @property
    def row_axis_out(self):
        return 1 if len(self.out_shape) == 3 else 0

    def prepare(self, params, xp, dtype) -> dict:
        return {}

    def param_names(self) -> list[str]:
        return []

    def vjp_params(self, P, cache, g, ctx):
        return self.vjp(P, cache, g, None, ctx), {}

    def second_order(self, P, cache, g, u, ctx):
        return {}, None

    def row_bytes(self, itemsize: int) -> int:
        """Scratch bytes one row needs in this op's derivative passes (estimate)."""
        return 2 * itemsize * (_prod(self.in_shape) + _prod(self.out_shape))

    def cache_bytes(self, itemsize: int) -> int:
        return 2 * itemsize * (_prod(self.in_shape) + _prod(self.out_shape))

    def flops(self) -> int:
        """Multiply-adds of one example's forward pass (for FLOP floors)."""
        return 0


class LinearOp(Op):
    def __init__(self, prefix, layer: L.Linear, in_shape):
        super().__init__(in_shape, (layer.out_features,))
        self.prefix, self.bias = prefix, layer.bias
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def param_names(self):
        return [self.prefix + "weight"] + ([self.prefix + "bias"] if self.bias else [])

    def prepare(self, params, xp, dtype):
        P = {"W": to_device(params[self.prefix + "weight"], dtype)}
        if self.bias:
            P["b"] = to_device(params[self.prefix + "bias"], dtype)
        return P

    def forward(self, P, x, ctx):
        y = x @ P["W"].T
        if self.bias:
            y += P["b"]
        return y, (x if ctx.keep_inputs else None)

    def vjp(self, P, cache, g, rows, ctx):
        out = ctx.ws.get((id(self), "gx"), (g.shape[0], self.in_features), ctx.dtype)
        return ctx.xp.matmul(g, P["W"], out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get((id(self), "ty"), (t.shape[0], self.out_features), ctx.dtype)
        return ctx.xp.matmul(t, P["W"].T, out=out)

    def vjp_params(self, P, cache, g, ctx):
        grads = {self.prefix + "weight": g.T @ cache}
        if self.bias:
            grads[self.prefix + "bias"] = g.sum(axis=0)
        return g @ P["W"], grads

    def second_order(self, P, cache, g, u, ctx):
        grads = {self.prefix + "weight": g.T @ u}
        if self.bias:
            grads[self.prefix + "bias"] = ctx.xp.zeros(self.out_features, dtype=ctx.dtype)
        return grads, None

    def row_bytes(self, itemsize):
        return 2 * itemsize * (self.in_features + self.out_features)

    def flops(self):
        return self.in_features * self.out_features


class Conv2dOp(Op):
    """Convolution on ``(C, N, H, W)``: im2col + GEMM; stride 1 on flat shifts of the padded grid."""

    def __init__(self, prefix, layer: L.Conv2d, in_shape):
        super().__init__(in_shape, layer.out_shape(in_shape))
        self.prefix, self.bias = prefix, layer.bias
        self.C, self.O = layer.in_channels, layer.out_channels
        self.k, self.s, self.q = layer.kernel_size, layer.stride, layer.padding
        _, self.H, self.W = in_shape
        _, self.Ho, self.Wo = self.out_shape
        self.Hp, self.Wp = self.H + 2 * self.q, self.W + 2 * self.q
        # The flat grid stores each image padded on the top and left only, (H + q) x (W + q):
        # the bottom/right padding a window reaches is the next row's (or image's) left/top
        # padding, zero as well, and what the transpose adds there is cropped away. Flat shifts
        # compute on the whole grid: worth it while the padding is a small part of it (a 4x4
        # map on a 5x5 grid would cost 1.56x the GEMM).
        self.Hg, self.Wg = self.H + self.q, self.W + self.q
        self.flat = (self.s == 1 and self.Ho <= self.Hg and self.Wo <= self.Wg
                     and self.Hg * self.Wg <= 1.35 * self.Ho * self.Wo)

    def param_names(self):
        return [self.prefix + "weight"] + ([self.prefix + "bias"] if self.bias else [])

    def prepare(self, params, xp, dtype):
        w = np.asarray(params[self.prefix + "weight"], dtype=np.float64)
        Wm = w.reshape(self.O, -1)                               # (O, C k k), (c, a, e) order
        P = {"Wm": to_device(Wm, dtype), "WmT": to_device(np.ascontiguousarray(Wm.T), dtype)}
        if self.bias:
            P["b"] = to_device(params[self.prefix + "bias"], dtype)
        return P

    # -------------------------------------------------------------- im2col
    def _cols_flat(self, x, ctx, slot):
        """Patches on the flat grid: (C k k, N Hg Wg); junk where i >= Ho or j >= Wo."""
        xp, k, q = ctx.xp, self.k, self.q
        C, N = x.shape[0], x.shape[1]
        Hp, Wp = self.Hg, self.Wg
        Lg = N * Hp * Wp
        if k == 1 and q == 0:
            return x.reshape(C, Lg)
        margin = (k - 1) * Wp + (k - 1)
        key = (id(self), slot + "xb")
        xb = ctx.ws.get(key, (C, Lg + margin), ctx.dtype)
        if ctx.ws.tags.get(key) != N:          # only the interior is written: zero the rest once
            xb.fill(0)
            ctx.ws.tags[key] = N
        xb[:, :Lg].reshape(C, N, Hp, Wp)[:, :, q:q + self.H, q:q + self.W] = x
        if slot == "keep_":                     # kept in a cache: its own memory
            cols = ctx.xp.empty((C, k, k, Lg), dtype=ctx.dtype)
        else:
            cols = ctx.ws.get((id(self), slot + "cols"), (C, k, k, Lg), ctx.dtype)
        for a in range(k):
            for e in range(k):
                off = a * Wp + e
                cols[:, a, e] = xb[:, off:off + Lg]
        return cols.reshape(C * k * k, Lg)

    def _cols_strided(self, x, ctx, slot):
        """Patches at the valid output positions: (C k k, N Ho Wo)."""
        k, s, q = self.k, self.s, self.q
        C, N = x.shape[0], x.shape[1]
        Ho, Wo = self.Ho, self.Wo
        if q:
            xpd = ctx.ws.get((id(self), slot + "xpad"), (C, N, self.Hp, self.Wp), ctx.dtype,
                             zero=True)
            xpd[:, :, q:q + self.H, q:q + self.W] = x
        else:
            xpd = x
        if slot == "keep_":
            cols = ctx.xp.empty((C, k, k, N, Ho, Wo), dtype=ctx.dtype)
        else:
            cols = ctx.ws.get((id(self), slot + "scols"), (C, k, k, N, Ho, Wo), ctx.dtype)
        for a in range(k):
            for e in range(k):
                cols[:, a, e] = xpd[:, :, a:a + s * (Ho - 1) + 1:s, e:e + s * (Wo - 1) + 1:s]
        return cols.reshape(C * k * k, N * Ho * Wo)

    def _conv(self, x, Wm, ctx, slot, out=None, return_cols=False):
        xp = ctx.xp
        N = x.shape[1]
        if out is None:
            out = xp.empty((self.O, N, self.Ho, self.Wo), dtype=ctx.dtype)
        if self.flat:
            cols = self._cols_flat(x, ctx, slot)
            if self.Hg == self.Ho and self.Wg == self.Wo:
                xp.matmul(Wm, cols, out=out.reshape(self.O, -1))
            else:
                yg = ctx.ws.get((id(self), slot + "yg"), (self.O, cols.shape[1]), ctx.dtype)
                xp.matmul(Wm, cols, out=yg)
                out[...] = yg.reshape(self.O, N, self.Hg, self.Wg)[:, :, :self.Ho, :self.Wo]
        else:
            cols = self._cols_strided(x, ctx, slot)
            xp.matmul(Wm, cols, out=out.reshape(self.O, -1))
        return (out, cols) if return_cols else out

    def grid_input(self, R: int, ctx):
        """``(grid, interior)`` for the flat transpose of ``R`` rows: the zero-bordered grid the
        output cotangent must sit on, and its ``(O, R, Ho, Wo)`` interior, which the op above
        can write straight into (saving a copy); ``None`` where there is no such grid."""
        if not self.flat or (self.Ho == self.Hg and self.Wo == self.Wg):
            return None
        Hp, Wp, Ho, Wo = self.Hg, self.Wg, self.Ho, self.Wo
        key = (id(self), "T_gg")
        gg = ctx.ws.get(key, (self.O, R * Hp * Wp), ctx.dtype)
        g4 = gg.reshape(self.O, R, Hp, Wp)
        if ctx.ws.tags.get(key) != R:
            # Only interiors are ever written, so the border stays zero while R stays the same.
            gg.fill(0)
            ctx.ws.tags[key] = R
        return gg, g4[:, :, :Ho, :Wo]

    def _conv_transpose(self, g, WmT, ctx, out, on_grid=False, view=False):
        """``out = J_x^T g`` (col2im): one GEMM, then ``k^2`` shifted adds. ``on_grid``: ``g``
        is already the grid of :meth:`grid_input`; ``view``: return a view of the result in
        the accumulator instead of copying it into ``out``."""
        xp, k, s, q = ctx.xp, self.k, self.s, self.q
        C = self.C
        Ho, Wo = self.Ho, self.Wo
        if self.flat:
            Hp, Wp = self.Hg, self.Wg
            if on_grid:
                gg = g
                R = g.shape[1] // (Hp * Wp)
            else:
                R = g.shape[1]
                if Ho == Hp and Wo == Wp:
                    gg = g.reshape(self.O, R * Hp * Wp)
                else:
                    gg, interior = self.grid_input(R, ctx)
                    interior[...] = g
            Lg = R * Hp * Wp
            if k == 1 and q == 0:
                if out is None:
                    out = ctx.ws.get((id(self), "gx"), (C, R, self.H, self.W), ctx.dtype)
                xp.matmul(WmT, gg, out=out.reshape(C, Lg))
                return out
            cols = ctx.ws.get((id(self), "T_cols"), (C, k, k, Lg), ctx.dtype)
            xp.matmul(WmT, gg, out=cols.reshape(C * k * k, Lg))
            margin = (k - 1) * Wp + (k - 1)
            acc = ctx.ws.get((id(self), "T_acc"), (C, Lg + margin), ctx.dtype)
            acc[:, :Lg] = cols[:, 0, 0]
            acc[:, Lg:] = 0
            for a in range(k):
                for e in range(k):
                    if a or e:
                        off = a * Wp + e
                        acc[:, off:off + Lg] += cols[:, a, e]
            inner = acc[:, :Lg].reshape(C, R, Hp, Wp)[:, :, q:q + self.H, q:q + self.W]
            if view:
                return inner
            out[...] = inner
            return out
        R = g.shape[1]
        Hp, Wp = self.Hp, self.Wp
        cols = ctx.ws.get((id(self), "T_scols"), (C, k, k, R, Ho, Wo), ctx.dtype)
        xp.matmul(WmT, g.reshape(self.O, -1), out=cols.reshape(C * k * k, -1))
        gxp = ctx.ws.get((id(self), "T_gxp"), (C, R, Hp, Wp), ctx.dtype, zero=True)
        for a in range(k):
            for e in range(k):
                gxp[:, :, a:a + s * (Ho - 1) + 1:s, e:e + s * (Wo - 1) + 1:s] += cols[:, a, e]
        if view:
            return gxp[:, :, q:q + self.H, q:q + self.W]
        out[...] = gxp[:, :, q:q + self.H, q:q + self.W]
        return out

    # -------------------------------------------------------------- interface
    def forward(self, P, x, ctx):
        # Cache for the weight gradient: the input, or (ctx.keep_inputs == "cols", one batch of
        # training) its im2col patches, so the backward pass does not build them again.
        if ctx.keep_inputs == "cols":
            y, cols = self._conv(x, P["Wm"], ctx, "keep_", return_cols=True)
            cache = ("cols", cols)
        else:
            y = self._conv(x, P["Wm"], ctx, "F_")
            cache = x if ctx.keep_inputs else None
        if self.bias:
            y += P["b"][:, None, None, None]
        return y, cache

    def vjp(self, P, cache, g, rows, ctx, on_grid=False, view=False):
        R = g.shape[1] // (self.Hg * self.Wg) if on_grid else g.shape[1]
        out = None if view else ctx.ws.get((id(self), "gx"), (self.C, R, self.H, self.W), ctx.dtype)
        return self._conv_transpose(g, P["WmT"], ctx, out, on_grid=on_grid, view=view)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get((id(self), "ty"), (self.O, t.shape[1], self.Ho, self.Wo), ctx.dtype)
        return self._conv(t, P["Wm"], ctx, "J_", out=out)

    def _weight_grad(self, x, g, ctx, gg=None):
        """``dL/dW`` for input ``x`` (or a ``("cols", patches)`` cache) and output cotangent
        ``g``; on the flat path ``gg`` is ``g`` already on the zero-bordered grid."""
        if isinstance(x, tuple):
            cols = x[1]
        else:
            cols = (self._cols_flat if self.flat else self._cols_strided)(x, ctx, "G_")
        if self.flat and not (self.Hg == self.Ho and self.Wg == self.Wo):
            if gg is None:
                gg, interior = self.grid_input(g.shape[1], ctx)
                interior[...] = g
            gmat = gg
        else:
            gmat = g.reshape(self.O, -1)
        gw = gmat @ cols.reshape(self.C * self.k * self.k, -1).T
        return gw.reshape(self.O, self.C, self.k, self.k)

    def vjp_params(self, P, cache, g, ctx):
        gx = ctx.xp.empty((self.C, g.shape[1], self.H, self.W), dtype=ctx.dtype)
        self._conv_transpose(g, P["WmT"], ctx, gx)
        gg = None
        if self.flat and not (self.Hg == self.Ho and self.Wg == self.Wo):
            gg = ctx.ws.get((id(self), "T_gg"), (self.O, g.shape[1] * self.Hg * self.Wg), ctx.dtype)
        grads = {self.prefix + "weight": self._weight_grad(cache, g, ctx, gg)}
        if self.bias:
            grads[self.prefix + "bias"] = g.sum(axis=(1, 2, 3))
        return gx, grads

    def second_order(self, P, cache, g, u, ctx):
        grads = {self.prefix + "weight": self._weight_grad(u, g, ctx)}
        if self.bias:
            grads[self.prefix + "bias"] = ctx.xp.zeros(self.O, dtype=ctx.dtype)
        return grads, None

    def row_bytes(self, itemsize):
        # reverse: output cotangent on the grid, cols, accumulator, input cotangent;
        # forward mode: padded input, cols, output on the grid, output
        k2 = self.k * self.k
        grid = self.Hg * self.Wg if self.flat else self.Hp * self.Wp
        rev = (self.O + k2 * self.C + self.C) * grid + self.C * self.H * self.W
        fwd = (self.C + k2 * self.C + self.O) * grid + self.O * self.Ho * self.Wo
        return itemsize * max(rev, fwd)

    def cache_bytes(self, itemsize):
        return itemsize * (2 * self.C * self.H * self.W + self.O * self.Ho * self.Wo)

    def flops(self):
        return self.O * self.C * self.k * self.k * self.Ho * self.Wo


class ReLUOp(Op):
    def forward(self, P, x, ctx):
        mask = (x > 0).astype(ctx.dtype)
        return x * mask, mask

    def vjp(self, P, cache, g, rows, ctx, out=None):
        if out is None:
            out = ctx.ws.get((id(self), "gx"), g.shape, ctx.dtype)
        return rowmul(ctx, g, cache, rows, self.row_axis_in, out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get((id(self), "ty"), t.shape, ctx.dtype)
        return rowmul(ctx, t, cache, rows, self.row_axis_in, out=out)

    @property
    def accepts_out(self):
        return len(self.in_shape) == 3

    def cache_bytes(self, itemsize):
        return 2 * itemsize * _prod(self.in_shape)


class TanhOp(Op):
    def forward(self, P, x, ctx):
        y = ctx.xp.tanh(x)
        return y, (y, 1.0 - y * y)

    def vjp(self, P, cache, g, rows, ctx):
        out = ctx.ws.get((id(self), "gx"), g.shape, ctx.dtype)
        return rowmul(ctx, g, cache[1], rows, self.row_axis_in, out=out)

    jvp = vjp

    def second_order(self, P, cache, g, u, ctx):
        y, d = cache
        return {}, g * u * (-2.0 * y * d)

    def cache_bytes(self, itemsize):
        return 3 * itemsize * _prod(self.in_shape)


class PoolOp(Op):
    """Max or average pooling; ``relu=True`` fuses a preceding ReLU into a max-pool."""

    def __init__(self, layer, in_shape, kind: str, relu: bool = False):
        super().__init__(in_shape, layer.out_shape(in_shape))
        self.kind, self.relu = kind, relu
        self.k, self.s = layer.kernel_size, layer.stride
        self.C, self.H, self.W = in_shape
        _, self.Ho, self.Wo = self.out_shape
        # Non-overlapping windows tiling the input: reshape instead of strided slices.
        self.block = self.k == self.s and self.H == self.k * self.Ho and self.W == self.k * self.Wo

    def forward(self, P, x, ctx):
        xp, k = ctx.xp, self.k
        if self.kind == "avg":
            if self.block:
                C, N = x.shape[0], x.shape[1]
                y = x.reshape(C, N, self.Ho, k, self.Wo, k).mean(axis=(3, 5))
            else:
                y = sum(self._slice(x, a, e) for a in range(k) for e in range(k)) / (k * k)
            return y, None
        # Max over the window entries in the reference's (a, e) order; the derivative routes to
        # the FIRST maximal entry (argmax's rule): entry j is chosen when it equals the maximum
        # and no earlier entry does.
        entries = [self._slice(x, a, e) for a in range(k) for e in range(k)]
        y = entries[0].copy()
        for w in entries[1:]:
            xp.maximum(y, w, out=y)
        route = xp.empty((k * k,) + y.shape, dtype=ctx.dtype)
        taken = xp.zeros(y.shape, dtype=bool)
        pos = y > 0 if self.relu else None
        for j, w in enumerate(entries):
            hit = (w == y) & ~taken
            taken |= hit
            if pos is not None:
                hit &= pos
            route[j] = hit
        if pos is not None:
            y *= pos                                   # maxpool(relu(x)) = relu(maxpool(x))
        return y, route

    def _slice(self, x, a, e):
        s = self.s
        return x[:, :, a:a + s * (self.Ho - 1) + 1:s, e:e + s * (self.Wo - 1) + 1:s]

    @property
    def accepts_out(self):
        return self.block

    def vjp(self, P, cache, g, rows, ctx, out=None):
        # Max: each window offset j = (a, e) gets g times its one-hot choice mask; written with
        # one call per offset so every loop runs over a contiguous mask (6-d broadcasting with
        # an inner axis of length k is several times slower in NumPy).
        k, C, R, s = self.k, self.C, g.shape[1], self.s
        if self.block:
            if out is None:
                out = ctx.ws.get((id(self), "gx"), (C, R, self.Ho, k, self.Wo, k), ctx.dtype)
            else:                                   # a (C, R, H, W) view: split H and W
                out = _split_view(out, (C, R, self.Ho, k, self.Wo, k))
            for j in range(k * k):
                a, e = divmod(j, k)
                dst = out[:, :, :, a, :, e]
                if self.kind == "max":
                    rowmul(ctx, g, cache[j], rows, 1, out=dst)
                else:
                    ctx.xp.multiply(g, 1.0 / (k * k), out=dst)
            return out.reshape(C, R, self.H, self.W) if out.flags.c_contiguous else None
        out = ctx.ws.get((id(self), "gx"), (C, R, self.H, self.W), ctx.dtype, zero=True)
        tmp = ctx.ws.get((id(self), "tmp"), g.shape, ctx.dtype)
        for j in range(k * k):
            a, e = divmod(j, k)
            dst = out[:, :, a:a + s * (self.Ho - 1) + 1:s, e:e + s * (self.Wo - 1) + 1:s]
            if self.kind == "max":
                dst += rowmul(ctx, g, cache[j], rows, 1, out=tmp)
            else:
                dst += g * (1.0 / (k * k))
        return out

    def jvp(self, P, cache, t, rows, ctx):
        k, C, R = self.k, self.C, t.shape[1]
        if self.kind == "avg":
            if self.block:
                return t.reshape(C, R, self.Ho, k, self.Wo, k).mean(axis=(3, 5))
            return sum(self._slice(t, a, e) for a in range(k) for e in range(k)) / (k * k)
        acc = ctx.ws.get((id(self), "ty"), (C, R, self.Ho, self.Wo), ctx.dtype, zero=True)
        tmp = ctx.ws.get((id(self), "tmp"), (C, R, self.Ho, self.Wo), ctx.dtype)
        for j in range(k * k):
            a, e = divmod(j, k)
            acc += rowmul(ctx, self._slice(t, a, e), cache[j], rows, 1, out=tmp)
        return acc

    def row_bytes(self, itemsize):
        return 3 * itemsize * (_prod(self.in_shape) + _prod(self.out_shape))

    def cache_bytes(self, itemsize):
        return itemsize * (3 * _prod(self.in_shape) + 2 * _prod(self.out_shape))


class FlattenOp(Op):
    def forward(self, P, x, ctx):
        if x.ndim == 2:
            return x, None
        C, N, H, W = x.shape
        return ctx.xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(N, C * H * W), None

    def vjp(self, P, cache, g, rows, ctx):
        if len(self.in_shape) != 3:
            return g
        C, H, W = self.in_shape
        R = g.shape[0]
        out = ctx.ws.get((id(self), "gx"), (C, R, H, W), ctx.dtype)
        out[...] = g.reshape(R, C, H, W).transpose(1, 0, 2, 3)
        return out

    def jvp(self, P, cache, t, rows, ctx):
        return self.forward(P, t, ctx)[0]


class BatchNormOp(Op):
    def __init__(self, prefix, layer: L.BatchNorm2d, in_shape):
        super().__init__(in_shape, in_shape)
        self.prefix, self.eps, self.C = prefix, layer.eps, layer.num_features

    def param_names(self):
        return [self.prefix + "weight", self.prefix + "bias"]

    def prepare(self, params, xp, dtype):
        var = np.asarray(params[self.prefix + "running_var"], dtype=np.float64)
        if np.any(var + self.eps <= 0):
            raise ValueError("BatchNorm2d running_var + eps must be positive")
        inv = 1.0 / np.sqrt(var + self.eps)
        gamma = np.asarray(params[self.prefix + "weight"], dtype=np.float64)
        return {"mean": to_device(params[self.prefix + "running_mean"], dtype),
                "inv": to_device(inv, dtype), "gamma": to_device(gamma, dtype),
                "beta": to_device(params[self.prefix + "bias"], dtype),
                "scale": to_device(gamma * inv, dtype).reshape(-1, 1, 1, 1)}

    def forward(self, P, x, ctx):
        xhat = (x - P["mean"][:, None, None, None]) * P["inv"][:, None, None, None]
        y = xhat * P["gamma"][:, None, None, None] + P["beta"][:, None, None, None]
        return y, (xhat if ctx.keep_inputs else None)

    accepts_out = True

    def vjp(self, P, cache, g, rows, ctx, out=None):
        if out is None:
            out = ctx.ws.get((id(self), "gx"), g.shape, ctx.dtype)
        return ctx.xp.multiply(g, P["scale"], out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get((id(self), "ty"), t.shape, ctx.dtype)
        return ctx.xp.multiply(t, P["scale"], out=out)

    def vjp_params(self, P, cache, g, ctx):
        grads = {self.prefix + "weight": (g * cache).sum(axis=(1, 2, 3)),
                 self.prefix + "bias": g.sum(axis=(1, 2, 3))}
        return g * P["scale"], grads

    def second_order(self, P, cache, g, u, ctx):
        gw = (g * u).sum(axis=(1, 2, 3)) * P["inv"]
        return {self.prefix + "weight": gw,
                self.prefix + "bias": ctx.xp.zeros(self.C, dtype=ctx.dtype)}, None


class ChainOp(Op):
    """A sequence of ops (a Sequential); used inside residual blocks."""

    def __init__(self, ops, in_shape):
        super().__init__(in_shape, ops[-1].out_shape if ops else in_shape)
        self.ops = ops

    def param_names(self):
        return [n for op in self.ops for n in op.param_names()]

    def prepare(self, params, xp, dtype):
        return {id(op): op.prepare(params, xp, dtype) for op in self.ops}

    def forward(self, P, x, ctx):
        caches = []
        for op in self.ops:
            x, c = op.forward(P[id(op)], x, ctx)
            caches.append(c)
        return x, caches

    def vjp(self, P, cache, g, rows, ctx):
        for op, c in zip(reversed(self.ops), reversed(cache)):
            g = op.vjp(P[id(op)], c, g, rows, ctx)
        return g

    def jvp(self, P, cache, t, rows, ctx):
        for op, c in zip(self.ops, cache):
            t = op.jvp(P[id(op)], c, t, rows, ctx)
        return t

    def vjp_params(self, P, cache, g, ctx):
        grads = {}
        for op, c in zip(reversed(self.ops), reversed(cache)):
            g, gp = op.vjp_params(P[id(op)], c, g, ctx)
            grads.update(gp)
        return g, grads

    def second_order(self, P, cache, g, u, ctx):
        # Product rule over the chain, as gcref.nn.layers.Sequential.second_order.
        ops = self.ops
        tangents = [u]
        for op, c in zip(ops[:-1], cache[:-1]):
            tangents.append(op.jvp(P[id(op)], c, tangents[-1], None, ctx.child("tangent")))
        grads: dict = {}
        carried = None
        g_l = g
        for i in range(len(ops) - 1, -1, -1):
            op, c = ops[i], cache[i]
            gp, gx = op.second_order(P[id(op)], c, g_l, tangents[i], ctx)
            _accumulate(grads, gp)
            if carried is not None:
                carried, gpc = op.vjp_params(P[id(op)], c, carried, ctx)
                _accumulate(grads, gpc)
            if gx is not None:
                carried = gx if carried is None else carried + gx
            if i > 0:
                g_l = op.vjp(P[id(op)], c, g_l, None, ctx.child("cotangent"))
        return grads, carried

    def row_bytes(self, itemsize):
        return sum(op.row_bytes(itemsize) for op in self.ops)

    def cache_bytes(self, itemsize):
        return sum(op.cache_bytes(itemsize) for op in self.ops)

    def flops(self):
        return sum(op.flops() for op in self.ops)


def _accumulate(grads: dict, new: dict):
    for k, v in new.items():
        grads[k] = grads[k] + v if k in grads else v


class BlockOp(Op):
    """ResNet basic block: ``relu(main(x) + shortcut(x))``."""

    def __init__(self, prefix, layer: L.BasicBlock, in_shape):
        super().__init__(in_shape, layer.out_shape(in_shape))
        self.prefix = prefix
        self.main = ChainOp(_compile_chain(layer.main.children, in_shape, prefix), in_shape)
        self.down = None
        if layer.downsample is not None:
            self.down = ChainOp(_compile_chain(layer.downsample.children, in_shape,
                                               prefix + "downsample."), in_shape)

    def param_names(self):
        return self.main.param_names() + (self.down.param_names() if self.down else [])

    def prepare(self, params, xp, dtype):
        P = {"main": self.main.prepare(params, xp, dtype)}
        if self.down is not None:
            P["down"] = self.down.prepare(params, xp, dtype)
        return P

    def forward(self, P, x, ctx):
        ym, cm = self.main.forward(P["main"], x, ctx)
        if self.down is not None:
            ys, cd = self.down.forward(P["down"], x, ctx)
        else:
            ys, cd = x, None
        z = ym + ys
        mask = (z > 0).astype(ctx.dtype)
        return z * mask, (cm, cd, mask)

    def vjp(self, P, cache, g, rows, ctx):
        cm, cd, mask = cache
        gs = rowmul(ctx, g, mask, rows, 1, out=ctx.ws.get((id(self), "gs"), g.shape, ctx.dtype))
        gx = self.main.vjp(P["main"], cm, gs, rows, ctx)
        out = ctx.ws.get((id(self), "gx"), gx.shape, ctx.dtype)
        if self.down is not None:
            ctx.xp.add(gx, self.down.vjp(P["down"], cd, gs, rows, ctx), out=out)
        else:
            ctx.xp.add(gx, gs, out=out)
        return out

    def jvp(self, P, cache, t, rows, ctx):
        cm, cd, mask = cache
        tm = self.main.jvp(P["main"], cm, t, rows, ctx)
        out = ctx.ws.get((id(self), "ty"), tm.shape, ctx.dtype)
        if self.down is not None:
            ctx.xp.add(tm, self.down.jvp(P["down"], cd, t, rows, ctx), out=out)
        else:
            ctx.xp.add(tm, t, out=out)
        return rowmul(ctx, out, mask, rows, 1, out=out)

    def vjp_params(self, P, cache, g, ctx):
        cm, cd, mask = cache
        gs = g * mask
        gx, grads = self.main.vjp_params(P["main"], cm, gs, ctx)
        if self.down is not None:
            gxd, gpd = self.down.vjp_params(P["down"], cd, gs, ctx)
            gx = gx + gxd
            grads.update(gpd)
        else:
            gx = gx + gs
        return gx, grads

    def second_order(self, P, cache, g, u, ctx):
        cm, cd, mask = cache
        gs = g * mask
        grads, gx = self.main.second_order(P["main"], cm, gs, u, ctx)
        if self.down is not None:
            gpd, gxd = self.down.second_order(P["down"], cd, gs, u, ctx)
            grads.update(gpd)
            if gxd is not None:
                gx = gxd if gx is None else gx + gxd
        return grads, gx

    def row_bytes(self, itemsize):
        extra = 3 * itemsize * _prod(self.out_shape)
        return self.main.row_bytes(itemsize) + (self.down.row_bytes(itemsize) if self.down else 0) + extra

    def cache_bytes(self, itemsize):
        return (self.main.cache_bytes(itemsize) + (self.down.cache_bytes(itemsize) if self.down else 0)
                + 2 * itemsize * _prod(self.out_shape))

    def flops(self):
        return self.main.flops() + (self.down.flops() if self.down else 0)


# ============================================================================== compile

def _compile_chain(children, in_shape, prefix=""):
    """Ops for a list of (name, layer), fusing ReLU + non-overlapping MaxPool2d."""
    ops = []
    shape = tuple(in_shape)
    items = list(children)
    i = 0
    while i < len(items):
        name, layer = items[i]
        pre = f"{prefix}{name}."
        if isinstance(layer, L.Sequential):
            sub = _compile_chain(layer.children, shape, pre)
            ops.extend(sub)
            shape = layer.out_shape(shape)
            i += 1
            continue
        if isinstance(layer, L.Linear):
            op = LinearOp(pre, layer, shape)
        elif isinstance(layer, L.Conv2d):
            op = Conv2dOp(pre, layer, shape)
        elif isinstance(layer, L.ReLU):
            nxt = items[i + 1][1] if i + 1 < len(items) else None
            if isinstance(nxt, L.MaxPool2d) and len(shape) == 3:
                pool = PoolOp(nxt, shape, "max", relu=True)
                if pool.block:
                    ops.append(pool)
                    shape = pool.out_shape
                    i += 2
                    continue
            op = ReLUOp(shape, shape)
        elif isinstance(layer, L.Tanh):
            op = TanhOp(shape, shape)
        elif isinstance(layer, L.MaxPool2d):
            op = PoolOp(layer, shape, "max")
        elif isinstance(layer, L.AvgPool2d):
            op = PoolOp(layer, shape, "avg")
        elif isinstance(layer, L.Flatten):
            op = FlattenOp(shape, layer.out_shape(shape))
        elif isinstance(layer, L.BatchNorm2d):
            op = BatchNormOp(pre, layer, shape)
        elif isinstance(layer, L.BasicBlock):
            op = BlockOp(pre, layer, shape)
        else:
            raise TypeError(f"gcref_cuda has no fast version of layer {type(layer).__name__} "
                            f"('{name}')")
        ops.append(op)
        shape = op.out_shape
        i += 1
    return ops


# ============================================================================== network

class FastNetwork:
    """The fast twin of a ``gcref.nn.Network``: same parameters, same function, batched.

    Parameters
    ----------
    net : gcref.nn.Network
        The network spec (``gcref.zoo.mlp/cnn/vgg/resnet18`` or hand-built).
    dtype : float32 or float64, optional
        Compute precision; default float64 on NumPy and float32 on CuPy.
    memory_budget : int, optional
        Peak working memory per call in bytes (default 1 GiB); examples and derivative rows are
        processed in chunks that fit.

    Every public method takes host arrays (or device arrays) in gcref's layouts (``X`` of shape
    ``(n, *input_shape)``, NCHW) and returns host NumPy arrays, like ``gcref``.
    """

    def __init__(self, net: Network, dtype=None, memory_budget: int | None = None):
        if isinstance(net, FastNetwork):
            net = net.net
        if not isinstance(net, Network):
            raise TypeError(f"net must be a gcref.nn.Network, got {type(net).__name__}")
        self.net = net
        self._dtype_arg = dtype
        if dtype is not None:
            resolve_dtype(dtype)
        self.memory_budget = _check_budget(memory_budget)
        self.input_shape = net.input_shape
        self.ops = _compile_chain(net.embedding.children, net.input_shape)
        self.head = LinearOp(net.head_name + ".", net.head, (net.embedding_dim,))
        self.embedding_dim = net.embedding_dim
        self.num_classes = net.num_classes
        self.input_dim = net.input_dim
        self.param_names = net.param_names
        self.name = net.name

    # ---------------------------------------------------------------- basics
    @property
    def dtype(self):
        return resolve_dtype(self._dtype_arg)

    def output_dim(self, output="embedding") -> int:
        return self.net.output_dim(output)

    def chain(self, output="embedding") -> list:
        self.net._check_output(output)
        return self.ops + ([self.head] if output == "logits" else [])

    def init(self, seed=0):
        return self.net.init(seed)

    def check_params(self, params, name="params"):
        return self.net.check_params(params, name)

    def prepare(self, params) -> dict:
        """Validated parameters moved to the device in the compute dtype, per op."""
        xp, dtype = get_xp(), self.dtype
        host = self.net.check_params({k: to_host(v) for k, v in params.items()}
                                     if isinstance(params, dict) else params)
        P = {id(op): op.prepare(host, xp, dtype) for op in self.ops}
        P[id(self.head)] = self.head.prepare(host, xp, dtype)
        return P

    def check_input(self, X, name="X") -> np.ndarray:
        return self.net.check_input(to_host(X), name)

    def to_layout(self, X, ctx: Ctx):
        """Host/device ``(n, *input_shape)`` -> the internal layout on the device."""
        Xd = to_device(X, ctx.dtype)
        if len(self.input_shape) == 3:
            return ctx.xp.ascontiguousarray(Xd.transpose(1, 0, 2, 3))
        return Xd.reshape(Xd.shape[0], -1)

    def from_layout(self, G, n_rows: int):
        """Internal input-layout rows -> ``(n_rows, d)`` flattened in C order (device)."""
        if len(self.input_shape) == 3:
            return G.transpose(1, 0, 2, 3).reshape(n_rows, -1)
        return G.reshape(n_rows, -1)

    def ctx(self, keep_inputs=True) -> Ctx:
        return Ctx(get_xp(), self.dtype, Workspace(get_xp()), keep_inputs)

    # ---------------------------------------------------------------- budgets
    def example_bytes(self, output="embedding") -> int:
        item = self.dtype.itemsize
        return sum(op.cache_bytes(item) for op in self.chain(output)) + 4 * item * self.input_dim

    def row_bytes(self, output="embedding") -> int:
        item = self.dtype.itemsize
        return sum(op.row_bytes(item) for op in self.chain(output)) + 2 * item * self.input_dim

    def example_chunk(self, output="embedding", budget=None) -> int:
        budget = self.memory_budget if budget is None else budget
        return max(1, int((budget // 2) // max(1, self.example_bytes(output))))

    def row_chunk(self, output="embedding", budget=None, workers: int = 1) -> int:
        """Rows per chunk: each of ``workers`` chunks in flight gets ``budget / (2 workers)``;
        on the CPU also about ``_CPU_ROW_CHUNK_BYTES`` of scratch, to stay in cache."""
        budget = self.memory_budget if budget is None else budget
        per_row = max(1, self.row_bytes(output))
        rows = max(1, int((budget // (2 * max(1, workers))) // per_row))
        if get_xp() is np:
            rows = min(rows, max(16, _CPU_ROW_CHUNK_BYTES // per_row))
        return rows

    # ---------------------------------------------------------------- forward
    def forward_layout(self, P, Xl, ctx, output="embedding"):
        """Run the chain on a batch in internal layout: ``(out, caches)`` (device)."""
        caches = []
        x = Xl
        for op in self.chain(output):
            x, c = op.forward(P[id(op)], x, ctx)
            caches.append(c)
        return x, caches

    def _apply(self, params, X, output):
        P = self.prepare(params)
        X = self.check_input(X)
        ctx = self.ctx(keep_inputs=False)
        n = X.shape[0]
        step = self.example_chunk(output)
        out = np.empty((n, self.output_dim(output)), dtype=self.dtype)
        for s in range(0, n, step):
            y, _ = self.forward_layout(P, self.to_layout(X[s:s + step], ctx), ctx, output)
            out[s:s + step] = to_host(y)
        return out

    def forward(self, params, X) -> np.ndarray:
        """Logits ``F(x)``, shape ``(n, k)`` (host)."""
        return self._apply(params, X, "logits")

    def embed(self, params, X) -> np.ndarray:
        """Embedding ``f(x)``, shape ``(n, p)`` (host)."""
        return self._apply(params, X, "embedding")

    def embed_device(self, params, X):
        """Embedding on the device (no host copy), shape ``(n, p)``."""
        P = self.prepare(params)
        X = self.check_input(X)
        ctx = self.ctx(keep_inputs=False)
        step = self.example_chunk("embedding")
        parts = [self.forward_layout(P, self.to_layout(X[s:s + step], ctx), ctx)[0]
                 for s in range(0, X.shape[0], step)]
        return parts[0] if len(parts) == 1 else ctx.xp.concatenate(parts, axis=0)

    # ---------------------------------------------------------------- derivatives
    def vjp(self, params, X, cotangent, output: str = "logits"):
        """``(v^T dF/dx, v^T dF/dtheta)``: ``gX`` of shape ``(n, *input_shape)`` and the
        parameter gradients of ``sum_n <v_n, F(x_n)>``, as ``gcref.nn.Network.vjp`` (host)."""
        self.net._check_output(output)
        P = self.prepare(params)
        X = self.check_input(X)
        from gcref._validation import as_float_array
        v = as_float_array(to_host(cotangent), "cotangent", shape=(X.shape[0], self.output_dim(output)))
        ctx = self.ctx(keep_inputs=True)
        _, caches = self.forward_layout(P, self.to_layout(X, ctx), ctx, output)
        g = to_device(v, ctx.dtype)
        grads = {}
        for op, c in zip(reversed(self.chain(output)), reversed(caches)):
            g, gp = op.vjp_params(P[id(op)], c, g, ctx)
            grads.update(gp)
        gX = to_host(self.from_layout(g, X.shape[0])).reshape(X.shape)
        return gX, {k: to_host(v) for k, v in grads.items()}

    def jvp(self, params, X, tangent, output: str = "embedding") -> np.ndarray:
        """``J(x_n) t_n``, shape ``(n, out_dim)`` (host)."""
        self.net._check_output(output)
        P = self.prepare(params)
        X = self.check_input(X)
        from gcref._validation import as_float_array
        t = as_float_array(to_host(tangent), "tangent", shape=X.shape)
        ctx = self.ctx(keep_inputs=False)
        _, caches = self.forward_layout(P, self.to_layout(X, ctx), ctx, output)
        tl = self.to_layout(t, ctx)
        for op, c in zip(self.chain(output), caches):
            tl = op.jvp(P[id(op)], c, tl, None, ctx)
        return to_host(tl).copy()

    def jacobian(self, params, X, output: str = "embedding") -> np.ndarray:
        """Exact input Jacobians, shape ``(n, out_dim, d)`` (host)."""
        from . import engine
        return engine.jacobian(self, params, X, output)

    def flops_forward(self, output="embedding") -> int:
        """Multiply-adds of one example's forward pass."""
        return sum(op.flops() for op in self.chain(output))

    def __repr__(self):
        return f"FastNetwork({self.name!r}, dtype={self._dtype_arg or 'auto'})"


def _check_budget(memory_budget):
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, np.integer, float)):
        raise TypeError(f"memory_budget must be a number of bytes, got {memory_budget!r}")
    if not math.isfinite(memory_budget) or memory_budget < (1 << 20):
        raise ValueError(f"memory_budget must be at least 1 MiB, got {memory_budget!r}")
    return int(memory_budget)


def as_fast(net, dtype=None, memory_budget=None) -> FastNetwork:
    """A :class:`FastNetwork` for ``net`` (a gcref ``Network`` or a ``FastNetwork``).

    A ``FastNetwork`` passed with ``dtype``/``memory_budget`` of ``None`` is returned as is.
    """
    if isinstance(net, FastNetwork):
        if dtype is None and memory_budget is None:
            return net
        return FastNetwork(net.net, dtype if dtype is not None else net._dtype_arg,
                           memory_budget if memory_budget is not None else net.memory_budget)
    return FastNetwork(net, dtype, memory_budget)
