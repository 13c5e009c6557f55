"""Fast pooling and reshaping: max/average pooling (optionally fused with a preceding ReLU)
and flatten."""

from __future__ import annotations




from ..workspace import prod, rowmul
from .base import Op, split_view

__all__ = ["PoolOp", "FlattenOp"]


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
                out = ctx.ws.get((self.key, "gx"), (C, R, self.Ho, k, self.Wo, k), ctx.dtype)
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
        out = ctx.ws.get((self.key, "gx"), (C, R, self.H, self.W), ctx.dtype, zero=True)
        tmp = ctx.ws.get((self.key, "tmp"), g.shape, ctx.dtype)
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
        acc = ctx.ws.get((self.key, "ty"), (C, R, self.Ho, self.Wo), ctx.dtype, zero=True)
        tmp = ctx.ws.get((self.key, "tmp"), (C, R, self.Ho, self.Wo), ctx.dtype)
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
        out = ctx.ws.get((self.key, "gx"), (C, R, H, W), ctx.dtype)
        out[...] = g.reshape(R, C, H, W).transpose(1, 0, 2, 3)
        return out

    def jvp(self, P, cache, t, rows, ctx):
        return self.forward(P, t, ctx)[0]
