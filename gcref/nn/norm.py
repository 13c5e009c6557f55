"""Batch normalization in evaluation mode (an affine map per channel)."""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .base import Layer

__all__ = ["BatchNorm2d"]


# --------------------------------------------------------------------------------------------
# Batch norm (evaluation mode)
# --------------------------------------------------------------------------------------------

class BatchNorm2d(Layer):
    """Batch norm in evaluation mode: ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.

    ``weight`` (gamma) and ``bias`` (beta) are trainable; ``running_mean`` and ``running_var`` are
    buffers (saved, never trained), initialised to 0 and 1 as in PyTorch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        self.num_features = check_int(num_features, "num_features", minimum=1)
        self.eps = float(eps)

    def keys(self):
        return ("weight", "bias", "running_mean", "running_var")

    @classmethod
    def examples(cls):
        return [("BatchNorm2d", cls(3), (3, 3, 3))]

    def param_specs(self, in_shape):
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_specs(self, in_shape):
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}) expects inputs of shape "
                             f"({self.num_features}, H, W), got {tuple(in_shape)}")
        return tuple(in_shape)

    def init(self, rng, in_shape):
        c = self.num_features
        return {"weight": np.ones(c), "bias": np.zeros(c),
                "running_mean": np.zeros(c), "running_var": np.ones(c)}

    @staticmethod
    def _bc(v):
        return v[None, :, None, None]

    def _inv_std(self, p):
        var = p["running_var"]
        if np.any(var + self.eps <= 0):
            raise ValueError("BatchNorm2d running_var + eps must be positive")
        return 1.0 / np.sqrt(var + self.eps)

    def forward(self, p, x):
        inv = self._inv_std(p)
        xhat = (x - self._bc(p["running_mean"])) * self._bc(inv)
        return xhat * self._bc(p["weight"]) + self._bc(p["bias"]), xhat

    def vjp(self, p, cache, gy, params=True):
        gx = gy * self._bc(p["weight"] * self._inv_std(p))
        gp = {}
        if params:
            gp = {"weight": (gy * cache).sum(axis=(0, 2, 3)), "bias": gy.sum(axis=(0, 2, 3))}
        return gx, gp

    def jvp(self, p, cache, tx):
        return tx * self._bc(p["weight"] * self._inv_std(p))

    def second_order(self, p, cache, g, u):
        # <g, gamma/sigma * u>: linear in gamma, independent of x and beta.
        gw = (g * u).sum(axis=(0, 2, 3)) * self._inv_std(p)
        return {"weight": gw, "bias": np.zeros(self.num_features)}, None

    def local_jacobian(self, p, x):
        scale = p["weight"] * self._inv_std(p)
        return np.diag(np.repeat(scale, x[0].size))

    def describe(self):
        return f"BatchNorm2d({self.num_features}, eps={self.eps})"
