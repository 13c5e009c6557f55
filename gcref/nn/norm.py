"""Batch normalization in evaluation mode (an affine map per channel), of images
(:class:`BatchNorm2d`) and of feature vectors (:class:`BatchNorm1d`): one definition,
:class:`_BatchNorm`, for both."""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .base import Layer

__all__ = ["BatchNorm2d", "BatchNorm1d"]


# --------------------------------------------------------------------------------------------
# Batch norm (evaluation mode)
# --------------------------------------------------------------------------------------------

class _BatchNorm(Layer):
    """Batch norm in evaluation mode: ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``
    per channel (axis 1 of the batch), for inputs with ``spatial`` axes after the channel.

    ``weight`` (gamma) and ``bias`` (beta) are trainable; ``running_mean`` and ``running_var`` are
    buffers (saved, never trained), initialised to 0 and 1 as in PyTorch.
    """

    spatial = 0                 # number of axes after the channel axis (set by the subclass)
    expected = "(C,)"           # the input shape, for messages

    def __init__(self, num_features: int, eps: float = 1e-5):
        self.num_features = check_int(num_features, "num_features", minimum=1)
        self.eps = float(eps)

    def keys(self):
        return ("weight", "bias", "running_mean", "running_var")

    def param_specs(self, in_shape):
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_specs(self, in_shape):
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def out_shape(self, in_shape):
        if len(in_shape) != 1 + self.spatial or in_shape[0] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects inputs of shape "
                             f"{self.expected.replace('C', str(self.num_features))}, got "
                             f"{tuple(in_shape)}")
        return tuple(in_shape)

    def init(self, rng, in_shape):
        c = self.num_features
        return {"weight": np.ones(c), "bias": np.zeros(c),
                "running_mean": np.zeros(c), "running_var": np.ones(c)}

    def _bc(self, v):
        return v.reshape((1, -1) + (1,) * self.spatial)

    @property
    def _axes(self):
        """The batch and spatial axes (summed over for the parameter gradients)."""
        return (0,) + tuple(range(2, 2 + self.spatial))

    def inv_std(self, running_var):
        """``1 / sqrt(running_var + eps)``; raises unless ``running_var + eps > 0``."""
        if np.any(running_var + self.eps <= 0):
            raise ValueError(f"{type(self).__name__} running_var + eps must be positive")
        return 1.0 / np.sqrt(running_var + self.eps)

    def _inv_std(self, p):
        return self.inv_std(p["running_var"])

    def forward(self, p, x):
        inv = self._inv_std(p)
        xhat = (x - self._bc(p["running_mean"])) * self._bc(inv)
        return xhat * self._bc(p["weight"]) + self._bc(p["bias"]), xhat

    def vjp(self, p, cache, gy, params=True):
        gx = gy * self._bc(p["weight"] * self._inv_std(p))
        gp = {}
        if params:
            gp = {"weight": (gy * cache).sum(axis=self._axes), "bias": gy.sum(axis=self._axes)}
        return gx, gp

    def jvp(self, p, cache, tx):
        return tx * self._bc(p["weight"] * self._inv_std(p))

    def second_order(self, p, cache, g, u):
        # <g, gamma/sigma * u>: linear in gamma, independent of x and beta.
        gw = (g * u).sum(axis=self._axes) * self._inv_std(p)
        return {"weight": gw, "bias": np.zeros(self.num_features)}, None

    def local_jacobian(self, p, x):
        scale = p["weight"] * self._inv_std(p)
        return np.diag(np.repeat(scale, x[0].size))

    def describe(self):
        return f"{type(self).__name__}({self.num_features}, eps={self.eps})"


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d`` in evaluation mode, on images ``(C, H, W)`` (see
    :class:`_BatchNorm`)."""

    spatial = 2
    expected = "(C, H, W)"

    @classmethod
    def examples(cls):
        return [("BatchNorm2d", cls(3), (3, 3, 3))]


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d`` in evaluation mode, on feature vectors ``(C,)`` (see
    :class:`_BatchNorm`; PyTorch's ``(C, L)`` inputs are not supported)."""

    spatial = 0
    expected = "(C,)"

    @classmethod
    def examples(cls):
        return [("BatchNorm1d", cls(5), (5,))]
