"""Fast pooling and reshaping: max/average pooling (optionally fused with a preceding ReLU,
max-pooling optionally padded), adaptive average pooling, flatten and the identity (dropout in
evaluation mode)."""

from __future__ import annotations

import numpy as np

from gcref.nn.pooling import adaptive_windows

from ..backend import to_device
from ..workspace import prod, rowmul
from .base import Op, split_view

__all__ = ["PoolOp", "AdaptiveAvgPoolOp", "FlattenOp", "IdentityOp"]


class PoolOp(Op):
    """Max or average pooling; ``relu=True`` fuses a preceding ReLU into a max-pool.

    A padded max-pool (``layer.padding = q``) works on the input padded with ``-inf`` (padded
    cells never win, as in ``gcref.nn.MaxPool2d``); its tangents are padded with zeros (never
    chosen) and its cotangents are computed on the padded grid and cropped.
    """

    def __init__(self, layer, in_shape, kind: str, relu: bool = False):
        super().__init__(in_shape, layer.out_shape(in_shape))
        self.kind, self.relu = kind, relu
        self.k, self.s, self.q = layer.kernel_size, layer.stride, layer.padding
        self.C, self.H, self.W = in_shape
        _, self.Ho, self.Wo = self.out_shape
        # Non-overlapping windows tiling the input: reshape instead of strided slices.
        self.block = (self.q == 0 and self.k == self.s and self.H == self.k * self.Ho
                      and self.W == self.k * self.Wo)

    def _padded(self, x, ctx, fill, slot):
        """``x`` (C, N, H, W) on its ``q``-padded grid with ``fill`` in the border."""
        q = self.q
        if q == 0:
            return x
        grid = ctx.ws.get(self.slot(slot), x.shape[:2] + (self.H + 2 * q, self.W + 2 * q), ctx.dtype)
        grid.fill(fill)
        grid[:, :, q:q + self.H, q:q + self.W] = x
        return grid

    def forward(self, P, x, ctx):
        xp, k = ctx.xp, self.k
        x = self._padded(x, ctx, -np.inf, "xpad")
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
                out = ctx.ws.get(self.slot("gx"), (C, R, self.Ho, k, self.Wo, k), ctx.dtype)
            else:                                   # a (C, R, H, W) view: split H and W
                out = split_view(out, (C, R, self.Ho, k, self.Wo, k))
            for j in range(k * k):
                a, e = divmod(j, k)
                dst = out[:, :, :, a, :, e]
                if self.kind == "max":
                    rowmul(ctx, g, cache[j], rows, 1, out=dst)
                else:
                    ctx.xp.multiply(g, 1.0 / (k * k), out=dst)
            return out.reshape(C, R, self.H, self.W) if out.flags.c_contiguous else None
        q = self.q
        out = ctx.ws.get(self.slot("gx"), (C, R, self.H + 2 * q, self.W + 2 * q), ctx.dtype,
                         zero=True)
        tmp = ctx.ws.get(self.slot("tmp"), g.shape, ctx.dtype)
        for j in range(k * k):
            a, e = divmod(j, k)
            dst = out[:, :, a:a + s * (self.Ho - 1) + 1:s, e:e + s * (self.Wo - 1) + 1:s]
            if self.kind == "max":
                dst += rowmul(ctx, g, cache[j], rows, 1, out=tmp)
            else:
                dst += g * (1.0 / (k * k))
        if q == 0:
            return out
        crop = ctx.ws.get(self.slot("gx_crop"), (C, R, self.H, self.W), ctx.dtype)
        crop[...] = out[:, :, q:q + self.H, q:q + self.W]
        return crop

    def jvp(self, P, cache, t, rows, ctx):
        k, C, R = self.k, self.C, t.shape[1]
        t = self._padded(t, ctx, 0.0, "tpad")
        if self.kind == "avg":
            if self.block:
                return t.reshape(C, R, self.Ho, k, self.Wo, k).mean(axis=(3, 5))
            return sum(self._slice(t, a, e) for a in range(k) for e in range(k)) / (k * k)
        acc = ctx.ws.get(self.slot("ty"), (C, R, self.Ho, self.Wo), ctx.dtype, zero=True)
        tmp = ctx.ws.get(self.slot("tmp"), (C, R, self.Ho, self.Wo), ctx.dtype)
        for j in range(k * k):
            a, e = divmod(j, k)
            acc += rowmul(ctx, self._slice(t, a, e), cache[j], rows, 1, out=tmp)
        return acc

    def row_bytes(self, itemsize):
        return 3 * itemsize * (prod(self.in_shape) + prod(self.out_shape))

    def cache_bytes(self, itemsize):
        return itemsize * (3 * prod(self.in_shape) + 2 * prod(self.out_shape))


class FlattenOp(Op):
    """``(C, N, H, W)`` -> ``(N, C H W)`` (C order per example); vectors pass through."""

    reshape_only = True
    piecewise_linear = True

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
        out = ctx.ws.get(self.slot("gx"), (C, R, H, W), ctx.dtype)
        out[...] = g.reshape(R, C, H, W).transpose(1, 0, 2, 3)
        return out

    def jvp(self, P, cache, t, rows, ctx):
        return self.forward(P, t, ctx)[0]


class AdaptiveAvgPoolOp(Op):
    """Adaptive average pooling, separable: ``y = A_h x A_w^T`` per channel and example, where
    ``A_h[i, h] = 1 / (he_i - hs_i)`` on PyTorch's window ``hs_i <= h < he_i``
    (:func:`gcref.nn.pooling.adaptive_windows`), and ``A_w`` likewise: the mean over a rectangle
    is the product of the means along its two sides. Linear: ``J^T g = A_h^T g A_w``."""

    piecewise_linear = True

    def __init__(self, layer, in_shape):
        super().__init__(in_shape, layer.out_shape(in_shape))
        _, H, W = in_shape
        _, Ho, Wo = self.out_shape
        self.Ah, self.Aw = _averaging_matrix(H, Ho), _averaging_matrix(W, Wo)

    def prepare(self, params, xp, dtype):
        return {"Ah": to_device(self.Ah, dtype), "AwT": to_device(np.ascontiguousarray(self.Aw.T), dtype)}

    def forward(self, P, x, ctx):
        return ctx.xp.matmul(ctx.xp.matmul(P["Ah"], x), P["AwT"]), None

    def vjp(self, P, cache, g, rows, ctx):
        return ctx.xp.matmul(ctx.xp.matmul(P["Ah"].T, g), P["AwT"].T)

    def jvp(self, P, cache, t, rows, ctx):
        return self.forward(P, t, ctx)[0]

    def flops(self):
        C, H, W = self.in_shape
        _, Ho, Wo = self.out_shape
        return C * (Ho * H * W + Ho * W * Wo)


def _averaging_matrix(size: int, out: int) -> np.ndarray:
    A = np.zeros((out, size))
    for i, (start, end) in enumerate(adaptive_windows(size, out)):
        A[i, start:end] = 1.0 / (end - start)
    return A


class IdentityOp(Op):
    """The identity (dropout in evaluation mode): rows pass through unchanged."""

    reshape_only = True
    piecewise_linear = True

    def forward(self, P, x, ctx):
        return x, None

    def vjp(self, P, cache, g, rows, ctx):
        return g

    def jvp(self, P, cache, t, rows, ctx):
        return t
