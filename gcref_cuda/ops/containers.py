"""Fast composite ops: chains (``Sequential``) and residual connections (``Residual``, the ResNet
blocks)."""

from __future__ import annotations



from gcref.nn import layers as L
from gcref.nn.containers import chain_second_order

from ..workspace import prod, rowmul
from .base import Op

__all__ = ["ChainOp", "BlockOp"]


class ChainOp(Op):
    """A sequence of ops (a Sequential); used inside residual blocks."""

    def __init__(self, ops, in_shape):
        super().__init__(in_shape, ops[-1].out_shape if ops else in_shape)
        self.ops = ops

    def sub_ops(self):
        return list(self.ops)

    def param_names(self):
        return [n for op in self.ops for n in op.param_names()]

    def prepare(self, params, xp, dtype):
        return {op.key: op.prepare(params, xp, dtype) for op in self.ops}

    def forward(self, P, x, ctx):
        caches = []
        for op in self.ops:
            x, c = op.forward(P[op.key], x, ctx)
            caches.append(c)
        return x, caches

    def vjp(self, P, cache, g, rows, ctx):
        for op, c in zip(reversed(self.ops), reversed(cache)):
            g = op.vjp(P[op.key], c, g, rows, ctx)
        return g

    def jvp(self, P, cache, t, rows, ctx):
        for op, c in zip(self.ops, cache):
            t = op.jvp(P[op.key], c, t, rows, ctx)
        return t

    def vjp_params(self, P, cache, g, ctx):
        grads = {}
        for op, c in zip(reversed(self.ops), reversed(cache)):
            g, gp = op.vjp_params(P[op.key], c, g, ctx)
            grads.update(gp)
        return g, grads

    def second_order(self, P, cache, g, u, ctx):
        # The reference's product rule (gcref.nn.containers.chain_second_order); forward
        # tangents and backward cotangents live in their own scratch roles (Ctx.child).
        ops = self.ops
        return chain_second_order(
            len(ops),
            lambda i, t: ops[i].jvp(P[ops[i].key], cache[i], t, None, ctx.child("tangent")),
            lambda i, gy: ops[i].vjp(P[ops[i].key], cache[i], gy, None, ctx.child("cotangent")),
            lambda i, gy: ops[i].vjp_params(P[ops[i].key], cache[i], gy, ctx),
            lambda i, gi, ui: ops[i].second_order(P[ops[i].key], cache[i], gi, ui, ctx),
            g, u)

    def row_bytes(self, itemsize):
        return sum(op.row_bytes(itemsize) for op in self.ops)

    def cache_bytes(self, itemsize):
        return sum(op.cache_bytes(itemsize) for op in self.ops)

    def flops(self):
        return sum(op.flops() for op in self.ops)


class BlockOp(Op):
    """A residual connection (``gcref.nn.Residual``: ``BasicBlock``, ``Bottleneck`` and traced
    ``f(x) + g(x)``): ``final(main(x) + shortcut(x))`` for whatever chains ``layer.main`` and
    ``layer.shortcut`` are, ``final`` a piecewise-linear activation (ReLU: a 0/1 mask; its
    derivative is applied like a mask) or none."""

    def __init__(self, prefix, layer: L.Residual, in_shape, compile_chain):
        super().__init__(in_shape, layer.out_shape(in_shape))
        self.prefix = prefix
        self.final = layer.final          # piecewise linear: its derivative is a fixed mask
        self.main = ChainOp(compile_chain(layer.main.children, in_shape, prefix), in_shape)
        self.down = None
        if layer.shortcut is not None:
            self.down = ChainOp(compile_chain(layer.shortcut.children, in_shape,
                                               prefix + layer.shortcut_prefix), in_shape)

    def sub_ops(self):
        return self.main.sub_ops() + (self.down.sub_ops() if self.down else [])

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
        if self.final is None:
            return z, (cm, cd, None)
        y, mask = self.final.value_and_derivative(z)      # the layer's own s and s'
        return y, (cm, cd, mask)

    def vjp(self, P, cache, g, rows, ctx):
        cm, cd, mask = cache
        gs = g if mask is None else rowmul(ctx, g, mask, rows, self.row_axis_out,
                                           out=ctx.ws.get(self.slot("gs"), g.shape, ctx.dtype))
        gx = self.main.vjp(P["main"], cm, gs, rows, ctx)
        out = ctx.ws.get(self.slot("gx"), gx.shape, ctx.dtype)
        if self.down is not None:
            ctx.xp.add(gx, self.down.vjp(P["down"], cd, gs, rows, ctx), out=out)
        else:
            ctx.xp.add(gx, gs, out=out)
        return out

    def jvp(self, P, cache, t, rows, ctx):
        cm, cd, mask = cache
        tm = self.main.jvp(P["main"], cm, t, rows, ctx)
        out = ctx.ws.get(self.slot("ty"), tm.shape, ctx.dtype)
        if self.down is not None:
            ctx.xp.add(tm, self.down.jvp(P["down"], cd, t, rows, ctx), out=out)
        else:
            ctx.xp.add(tm, t, out=out)
        return out if mask is None else rowmul(ctx, out, mask, rows, self.row_axis_out, out=out)

    def vjp_params(self, P, cache, g, ctx):
        cm, cd, mask = cache
        gs = g if mask is None else g * mask
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
        gs = g if mask is None else g * mask
        grads, gx = self.main.second_order(P["main"], cm, gs, u, ctx)
        if self.down is not None:
            gpd, gxd = self.down.second_order(P["down"], cd, gs, u, ctx)
            grads.update(gpd)
            if gxd is not None:
                gx = gxd if gx is None else gx + gxd
        return grads, gx

    def row_bytes(self, itemsize):
        extra = 3 * itemsize * prod(self.out_shape)
        return self.main.row_bytes(itemsize) + (self.down.row_bytes(itemsize) if self.down else 0) + extra

    def cache_bytes(self, itemsize):
        return (self.main.cache_bytes(itemsize) + (self.down.cache_bytes(itemsize) if self.down else 0)
                + 2 * itemsize * prod(self.out_shape))

    def flops(self):
        return self.main.flops() + (self.down.flops() if self.down else 0)
