"""Elementwise activations."""

from __future__ import annotations

import numpy as np

from .base import Layer

__all__ = ["ReLU", "Tanh"]


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

class ReLU(Layer):
    """``y = max(x, 0)``; derivative ``1[x > 0]`` (0 at the kink, as PyTorch)."""

    def forward(self, p, x):
        mask = x > 0
        return x * mask, mask

    def vjp(self, p, cache, gy, params=True):
        return gy * cache, {}

    def jvp(self, p, cache, tx):
        return tx * cache

    def local_jacobian(self, p, x):
        return np.diag((x > 0).astype(np.float64).ravel())


class Tanh(Layer):
    """``y = tanh(x)``; ``y' = 1 - y^2``, ``y'' = -2 y (1 - y^2)``."""

    def forward(self, p, x):
        y = np.tanh(x)
        return y, y

    def vjp(self, p, cache, gy, params=True):
        return gy * (1.0 - cache ** 2), {}

    def jvp(self, p, cache, tx):
        return tx * (1.0 - cache ** 2)

    def second_order(self, p, cache, g, u):
        # d/dx <g, sigma'(x) * u> = g * u * sigma''(x)
        y = cache
        return {}, g * u * (-2.0 * y * (1.0 - y ** 2))

    def local_jacobian(self, p, x):
        return np.diag((1.0 - np.tanh(x) ** 2).ravel())
