"""Pooling and reshaping layers: ``MaxPool2d``, ``AvgPool2d``, ``Flatten``."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validation import check_int
from .base import PiecewiseLinear, _prod

__all__ = ["MaxPool2d", "AvgPool2d", "Flatten"]


# --------------------------------------------------------------------------------------------
# Pooling and reshaping
# --------------------------------------------------------------------------------------------

class _Pool2d(PiecewiseLinear):
    # max and average pooling are piecewise linear (average: linear) without parameters
    def __init__(self, kernel_size: int, stride: int | None = None):
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else check_int(stride, "stride", minimum=1)

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (C, H, W), "
                             f"got {tuple(in_shape)}")
        c, h, w = in_shape
        k, s = self.kernel_size, self.stride
        if h < k or w < k:
            raise ValueError(f"{type(self).__name__}(kernel_size={k}) does not fit input "
                             f"{tuple(in_shape)}")
        return (c, (h - k) // s + 1, (w - k) // s + 1)

    def _windows(self, x):
        k, s = self.kernel_size, self.stride
        _, ho, wo = self.out_shape(x.shape[1:])
        win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return win[:, :, :ho, :wo]

    def _scatter(self, x_shape, per_offset):
        """Sum ``per_offset(a, e)`` (shape (n, C, Ho, Wo)) back onto the input grid."""
        k, s = self.kernel_size, self.stride
        gx = np.zeros(x_shape)
        for a in range(k):
            for e in range(k):
                contrib = per_offset(a, e)
                ho, wo = contrib.shape[2], contrib.shape[3]
                gx[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] += contrib
        return gx

    def describe(self):
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2d(_Pool2d):
    """Max over each ``k x k`` window; the derivative routes to the first maximal entry."""

    @classmethod
    def examples(cls):
        return [("MaxPool2d(2)", cls(2), (2, 4, 4)), ("MaxPool2d(3,s2)", cls(3, 2), (1, 7, 7))]

    def forward(self, p, x):
        win = self._windows(x)
        n, c, ho, wo = win.shape[:4]
        flat = win.reshape(n, c, ho, wo, -1)
        idx = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        return y, (x.shape, idx)

    def vjp(self, p, cache, gy, params=True):
        x_shape, idx = cache
        k = self.kernel_size
        return self._scatter(x_shape, lambda a, e: gy * (idx == a * k + e)), {}

    def jvp(self, p, cache, tx):
        _, idx = cache
        flat = self._windows(tx).reshape(*idx.shape, -1)
        return np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        _, (_, idx) = self.forward(p, x[None])
        _, ho, wo = idx.shape[1:]
        k, s = self.kernel_size, self.stride
        jac = np.zeros((c, ho, wo, c, h, w))
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    a, e = divmod(int(idx[0, ch, i, j]), k)
                    jac[ch, i, j, ch, i * s + a, j * s + e] = 1.0
        return jac.reshape(c * ho * wo, c * h * w)


class AvgPool2d(_Pool2d):
    """Mean over each ``k x k`` window (a linear map)."""

    @classmethod
    def examples(cls):
        return [("AvgPool2d(2)", cls(2), (2, 4, 6))]

    def forward(self, p, x):
        return self._windows(x).mean(axis=(-2, -1)), x.shape

    def vjp(self, p, cache, gy, params=True):
        scale = 1.0 / self.kernel_size ** 2
        return self._scatter(cache, lambda a, e: gy * scale), {}

    def jvp(self, p, cache, tx):
        return self._windows(tx).mean(axis=(-2, -1))

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        _, ho, wo = self.out_shape(x.shape)
        k, s = self.kernel_size, self.stride
        jac = np.zeros((c, ho, wo, c, h, w))
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    jac[ch, i, j, ch, i * s:i * s + k, j * s:j * s + k] = 1.0 / k ** 2
        return jac.reshape(c * ho * wo, c * h * w)


class Flatten(PiecewiseLinear):
    """Flatten everything but the batch axis, in C order (as ``torch.flatten(x, 1)``)."""

    @classmethod
    def examples(cls):
        return [("Flatten", cls(), (2, 3, 3))]

    def out_shape(self, in_shape):
        return (_prod(in_shape),)

    def forward(self, p, x):
        return x.reshape(x.shape[0], -1), x.shape

    def vjp(self, p, cache, gy, params=True):
        return gy.reshape(cache), {}

    def jvp(self, p, cache, tx):
        return tx.reshape(tx.shape[0], -1)

    def local_jacobian(self, p, x):
        return np.eye(x.size)
