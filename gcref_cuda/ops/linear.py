"""Fast affine ops: ``Linear`` (one GEMM) and ``Conv2d`` (im2col GEMMs, flat shifts)."""

from __future__ import annotations


import numpy as np

from gcref.nn import layers as L

from ..backend import to_device
from .base import Op

__all__ = ["LinearOp", "Conv2dOp"]


class LinearOp(Op):
    """``y = x W^T + b`` on ``(N, F)`` rows: one GEMM."""

    dense = True
    skips_input_grad = True

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
        out = ctx.ws.get(self.slot("gx"), (g.shape[0], self.in_features), ctx.dtype)
        return ctx.xp.matmul(g, P["W"], out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get(self.slot("ty"), (t.shape[0], self.out_features), ctx.dtype)
        return ctx.xp.matmul(t, P["W"].T, out=out)

    def vjp_params(self, P, cache, g, ctx, need_input=True):
        grads = {self.prefix + "weight": g.T @ cache}
        if self.bias:
            grads[self.prefix + "bias"] = g.sum(axis=0)
        return (g @ P["W"] if need_input else None), grads

    def second_order(self, P, cache, g, u, ctx):
        grads = {self.prefix + "weight": g.T @ u}
        if self.bias:
            grads[self.prefix + "bias"] = ctx.xp.zeros(self.out_features, dtype=ctx.dtype)
        return grads, None

    def gram(self, Pop):
        """``W W^T`` (``(out, out)``), computed once per prepared parameters and kept in them.

        In float64 whatever the compute dtype: rounding G once in float32 would bias every row
        the same way (measured 5e-5 relative on case 1); rounded from float64 it stays ~1e-7.
        """
        G = Pop.get("gram")
        if G is None:
            W = Pop["W"]
            W64 = W.astype(np.float64) if W.dtype != np.float64 else W
            G = Pop["gram"] = (W64 @ W64.T).astype(W.dtype)
        return G

    def row_bytes(self, itemsize):
        return 2 * itemsize * (self.in_features + self.out_features)

    def flops(self):
        return self.in_features * self.out_features


class Conv2dOp(Op):
    """Convolution on ``(C, N, H, W)``: im2col + GEMM; stride 1 on flat shifts of the padded grid."""

    grid_conv = True
    skips_input_grad = True

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
        # host or backend arrays (the trainer prepares from its backend parameters each step)
        Wm = to_device(params[self.prefix + "weight"], dtype).reshape(self.O, -1)  # (O, C k k)
        P = {"Wm": Wm, "WmT": xp.ascontiguousarray(Wm.T)}
        if self.bias:
            P["b"] = to_device(params[self.prefix + "bias"], dtype)
        return P

    # -------------------------------------------------------------- im2col
    def _cols_flat(self, x, ctx, slot):
        """Patches on the flat grid: (C k k, N Hg Wg); junk where i >= Ho or j >= Wo."""
        k, q = self.k, self.q
        C, N = x.shape[0], x.shape[1]
        Hp, Wp = self.Hg, self.Wg
        Lg = N * Hp * Wp
        if k == 1 and q == 0:
            return x.reshape(C, Lg)
        margin = (k - 1) * Wp + (k - 1)
        key = self.slot(slot + "xb")
        xb = ctx.ws.get(key, (C, Lg + margin), ctx.dtype)
        if ctx.ws.tags.get(key) != N:          # only the interior is written: zero the rest once
            xb.fill(0)
            ctx.ws.tags[key] = N
        xb[:, :Lg].reshape(C, N, Hp, Wp)[:, :, q:q + self.H, q:q + self.W] = x
        if slot == "keep_":                     # kept in a cache: its own memory
            cols = ctx.xp.empty((C, k, k, Lg), dtype=ctx.dtype)
        else:
            cols = ctx.ws.get(self.slot(slot + "cols"), (C, k, k, Lg), ctx.dtype)
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
            xpd = ctx.ws.get(self.slot(slot + "xpad"), (C, N, self.Hp, self.Wp), ctx.dtype,
                             zero=True)
            xpd[:, :, q:q + self.H, q:q + self.W] = x
        else:
            xpd = x
        if slot == "keep_":
            cols = ctx.xp.empty((C, k, k, N, Ho, Wo), dtype=ctx.dtype)
        else:
            cols = ctx.ws.get(self.slot(slot + "scols"), (C, k, k, N, Ho, Wo), ctx.dtype)
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
                yg = ctx.ws.get(self.slot(slot + "yg"), (self.O, cols.shape[1]), ctx.dtype)
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
        key = self.slot("T_gg")
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
                    out = ctx.ws.get(self.slot("gx"), (C, R, self.H, self.W), ctx.dtype)
                xp.matmul(WmT, gg, out=out.reshape(C, Lg))
                return out
            cols = ctx.ws.get(self.slot("T_cols"), (C, k, k, Lg), ctx.dtype)
            xp.matmul(WmT, gg, out=cols.reshape(C * k * k, Lg))
            margin = (k - 1) * Wp + (k - 1)
            acc = ctx.ws.get(self.slot("T_acc"), (C, Lg + margin), ctx.dtype)
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
        cols = ctx.ws.get(self.slot("T_scols"), (C, k, k, R, Ho, Wo), ctx.dtype)
        xp.matmul(WmT, g.reshape(self.O, -1), out=cols.reshape(C * k * k, -1))
        gxp = ctx.ws.get(self.slot("T_gxp"), (C, R, Hp, Wp), ctx.dtype, zero=True)
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
        out = None if view else ctx.ws.get(self.slot("gx"), (self.C, R, self.H, self.W), ctx.dtype)
        return self._conv_transpose(g, P["WmT"], ctx, out, on_grid=on_grid, view=view)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get(self.slot("ty"), (self.O, t.shape[1], self.Ho, self.Wo), ctx.dtype)
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

    def vjp_params(self, P, cache, g, ctx, need_input=True):
        gx = None
        if need_input:
            gx = ctx.xp.empty((self.C, g.shape[1], self.H, self.W), dtype=ctx.dtype)
            self._conv_transpose(g, P["WmT"], ctx, gx)
        elif self.flat and not (self.Hg == self.Ho and self.Wg == self.Wo):
            gx_grid, interior = self.grid_input(g.shape[1], ctx)   # the weight gradient's grid
            interior[...] = g
        gg = None
        if self.flat and not (self.Hg == self.Ho and self.Wg == self.Wo):
            gg = ctx.ws.get(self.slot("T_gg"), (self.O, g.shape[1] * self.Hg * self.Wg), ctx.dtype)
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
