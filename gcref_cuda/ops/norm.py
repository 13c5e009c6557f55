"""Fast batch normalization (evaluation mode)."""

from __future__ import annotations


import numpy as np

from gcref.nn import layers as L

from ..backend import to_device
from .base import Op

__all__ = ["BatchNormOp"]


class BatchNormOp(Op):
    def __init__(self, prefix, layer: L.BatchNorm2d, in_shape):
        super().__init__(in_shape, in_shape)
        self.prefix, self.eps, self.C = prefix, layer.eps, layer.num_features

    def param_names(self):
        return [self.prefix + "weight", self.prefix + "bias"]

    def prepare(self, params, xp, dtype):
        # host or backend arrays (the trainer prepares from its backend parameters each step);
        # the derived factors in float64, then rounded once to the compute dtype
        var = to_device(params[self.prefix + "running_var"], np.float64)
        if bool(xp.any(var + self.eps <= 0)):
            raise ValueError("BatchNorm2d running_var + eps must be positive")
        inv = 1.0 / xp.sqrt(var + self.eps)
        gamma = to_device(params[self.prefix + "weight"], np.float64)
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
            out = ctx.ws.get(self.slot("gx"), g.shape, ctx.dtype)
        return ctx.xp.multiply(g, P["scale"], out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get(self.slot("ty"), t.shape, ctx.dtype)
        return ctx.xp.multiply(t, P["scale"], out=out)

    def vjp_params(self, P, cache, g, ctx):
        grads = {self.prefix + "weight": (g * cache).sum(axis=(1, 2, 3)),
                 self.prefix + "bias": g.sum(axis=(1, 2, 3))}
        return g * P["scale"], grads

    def second_order(self, P, cache, g, u, ctx):
        gw = (g * u).sum(axis=(1, 2, 3)) * P["inv"]
        return {self.prefix + "weight": gw,
                self.prefix + "bias": ctx.xp.zeros(self.C, dtype=ctx.dtype)}, None
