"""Fast batch normalization (evaluation mode), of images and of feature vectors."""

from __future__ import annotations


import numpy as np

from gcref.nn.norm import _BatchNorm

from ..backend import to_device
from .base import Op

__all__ = ["BatchNormOp"]


class BatchNormOp(Op):
    """``gcref.nn.BatchNorm2d`` on ``(C, N, H, W)`` and ``gcref.nn.BatchNorm1d`` on ``(N, C)``
    (this backend's layouts): the per-channel affine map, its statistics validated by the layer
    (``_BatchNorm.inv_std``)."""

    def __init__(self, prefix, layer: _BatchNorm, in_shape):
        super().__init__(in_shape, in_shape)
        self.prefix, self.eps, self.C = prefix, layer.eps, layer.num_features
        self.layer = layer
        image = len(in_shape) == 3
        self._shape = (-1, 1, 1, 1) if image else (1, -1)     # a channel vector, broadcast
        self._axes = (1, 2, 3) if image else (0,)             # batch (and spatial) axes

    def param_names(self):
        return [self.prefix + "weight", self.prefix + "bias"]

    def prepare(self, params, xp, dtype):
        # host or backend arrays (the trainer prepares from its backend parameters each step);
        # the derived factors in float64, then rounded once to the compute dtype
        inv = self.layer.inv_std(to_device(params[self.prefix + "running_var"], np.float64))
        gamma = to_device(params[self.prefix + "weight"], np.float64)
        bc = self._shape
        return {"mean": to_device(params[self.prefix + "running_mean"], dtype).reshape(bc),
                "inv": to_device(inv, dtype), "gamma": to_device(gamma, dtype).reshape(bc),
                "beta": to_device(params[self.prefix + "bias"], dtype).reshape(bc),
                "scale": to_device(gamma * inv, dtype).reshape(bc)}

    def forward(self, P, x, ctx):
        xhat = (x - P["mean"]) * P["inv"].reshape(self._shape)
        y = xhat * P["gamma"] + P["beta"]
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
        grads = {self.prefix + "weight": (g * cache).sum(axis=self._axes),
                 self.prefix + "bias": g.sum(axis=self._axes)}
        return g * P["scale"], grads

    def second_order(self, P, cache, g, u, ctx):
        gw = (g * u).sum(axis=self._axes) * P["inv"]
        return {self.prefix + "weight": gw,
                self.prefix + "bias": ctx.xp.zeros(self.C, dtype=ctx.dtype)}, None
