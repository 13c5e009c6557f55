"""Affine layers: ``Linear`` and ``Conv2d`` (PyTorch layouts), with exact derivatives."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validation import check_int
from .base import Layer, he_init

__all__ = ["Linear", "Conv2d"]


# --------------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------------

class Linear(Layer):
    """Affine map ``y = x W^T + b`` with ``W`` of shape ``(out, in)`` (PyTorch layout)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        self.bias = bool(bias)

    def keys(self):
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def examples(cls):
        return [("Linear", cls(5, 4), (5,)), ("Linear(no bias)", cls(5, 3, bias=False), (5,))]

    def param_specs(self, in_shape):
        specs = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            specs["bias"] = (self.out_features,)
        return specs

    def out_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects inputs of "
                             f"shape ({self.in_features},), got {tuple(in_shape)}")
        return (self.out_features,)

    def init(self, rng, in_shape):
        return he_init(rng, (self.out_features, self.in_features), self.in_features, self.bias)

    def forward(self, p, x):
        y = x @ p["weight"].T
        if self.bias:
            y = y + p["bias"]
        return y, x

    def vjp(self, p, cache, gy, params=True):
        gx = gy @ p["weight"]
        gp = {}
        if params:
            gp = self._weight_grad(cache, gy)
            if self.bias:
                gp["bias"] = gy.sum(axis=0)
        return gx, gp

    def _weight_grad(self, x, gy):
        # dL/dW = sum_n gy_n x_n^T
        return {"weight": gy.T @ x}

    def jvp(self, p, cache, tx):
        return tx @ p["weight"].T

    def second_order(self, p, cache, g, u):
        # <g, W u> is linear in W: gradient g u^T; the bias does not enter J.
        gp = self._weight_grad(u, g)
        if self.bias:
            gp["bias"] = np.zeros(self.out_features)
        return gp, None

    def local_jacobian(self, p, x):
        return p["weight"].copy()

    def describe(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias})"


# --------------------------------------------------------------------------------------------
# Conv2d
# --------------------------------------------------------------------------------------------

class Conv2d(Layer):
    """2-D cross-correlation, NCHW, weight ``(out, in, kh, kw)`` as in PyTorch.

    ``y[n, o, i, j] = b[o] + sum_{c, a, e} W[o, c, a, e] * xpad[n, c, i*s + a, j*s + e]``
    with ``xpad`` the input zero-padded by ``padding`` on each side and ``s`` the stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.stride = check_int(stride, "stride", minimum=1)
        self.padding = check_int(padding, "padding", minimum=0)
        self.bias = bool(bias)

    def keys(self):
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def examples(cls):
        return [("Conv2d(s1,p1)", cls(2, 3, 3, stride=1, padding=1), (2, 5, 5)),
                ("Conv2d(s2,p0)", cls(2, 3, 3, stride=2, padding=0, bias=False), (2, 7, 7))]

    def param_specs(self, in_shape):
        k = self.kernel_size
        specs = {"weight": (self.out_channels, self.in_channels, k, k)}
        if self.bias:
            specs["bias"] = (self.out_channels,)
        return specs

    def out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, ...) expects inputs of shape "
                             f"({self.in_channels}, H, W), got {tuple(in_shape)}")
        _, h, w = in_shape
        ho = (h + 2 * self.padding - self.kernel_size) // self.stride + 1
        wo = (w + 2 * self.padding - self.kernel_size) // self.stride + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d kernel {self.kernel_size} does not fit input {tuple(in_shape)} "
                             f"with padding {self.padding}")
        return (self.out_channels, ho, wo)

    def init(self, rng, in_shape):
        k = self.kernel_size
        return he_init(rng, (self.out_channels, self.in_channels, k, k), self.in_channels * k * k,
                        self.bias)

    def _pad(self, x):
        q = self.padding
        if q == 0:
            return x
        return np.pad(x, ((0, 0), (0, 0), (q, q), (q, q)))

    def _windows(self, x):
        """Patches of the padded input: shape (n, C, Ho, Wo, k, k)."""
        k, s = self.kernel_size, self.stride
        win = sliding_window_view(self._pad(x), (k, k), axis=(2, 3))
        return win[:, :, ::s, ::s][:, :, : self._ho(x), : self._wo(x)]

    def _ho(self, x):
        return (x.shape[2] + 2 * self.padding - self.kernel_size) // self.stride + 1

    def _wo(self, x):
        return (x.shape[3] + 2 * self.padding - self.kernel_size) // self.stride + 1

    def _conv(self, x, weight):
        # (n, C, Ho, Wo, k, k) x (O, C, k, k) -> (n, Ho, Wo, O) -> (n, O, Ho, Wo)
        out = np.tensordot(self._windows(x), weight, axes=([1, 4, 5], [1, 2, 3]))
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def forward(self, p, x):
        y = self._conv(x, p["weight"])
        if self.bias:
            y += p["bias"][None, :, None, None]
        return y, x

    def _weight_grad(self, x, gy):
        # dL/dW[o, c, a, e] = sum_{n, i, j} gy[n, o, i, j] xpad[n, c, i*s + a, j*s + e]
        return {"weight": np.tensordot(gy, self._windows(x), axes=([0, 2, 3], [0, 2, 3]))}

    def _input_grad(self, x_shape, gy, weight):
        # Transposed convolution: scatter each output cotangent back onto its receptive field.
        n, c, h, w = x_shape
        k, s, q = self.kernel_size, self.stride, self.padding
        ho, wo = gy.shape[2], gy.shape[3]
        cols = np.tensordot(gy, weight, axes=([1], [0]))  # (n, Ho, Wo, C, k, k)
        gxp = np.zeros((n, c, h + 2 * q, w + 2 * q))
        for a in range(k):
            for e in range(k):
                gxp[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] += \
                    cols[:, :, :, :, a, e].transpose(0, 3, 1, 2)
        return gxp[:, :, q:q + h, q:q + w] if q else gxp

    def vjp(self, p, cache, gy, params=True):
        x = cache
        gx = self._input_grad(x.shape, gy, p["weight"])
        gp = {}
        if params:
            gp = self._weight_grad(x, gy)
            if self.bias:
                gp["bias"] = gy.sum(axis=(0, 2, 3))
        return gx, gp

    def jvp(self, p, cache, tx):
        return self._conv(tx, p["weight"])

    def second_order(self, p, cache, g, u):
        # <g, conv(u; W)> is linear in W: the weight gradient with input u and cotangent g.
        gp = self._weight_grad(u, g)
        if self.bias:
            gp["bias"] = np.zeros(self.out_channels)
        return gp, None

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        o, ho, wo = self.out_shape(x.shape)
        k, s, q = self.kernel_size, self.stride, self.padding
        jac = np.zeros((o, ho, wo, c, h, w))
        for i in range(ho):
            for j in range(wo):
                for a in range(k):
                    for e in range(k):
                        r, t = i * s + a - q, j * s + e - q
                        if 0 <= r < h and 0 <= t < w:
                            jac[:, i, j, :, r, t] = p["weight"][:, :, a, e]
        return jac.reshape(o * ho * wo, c * h * w)

    def describe(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias})")
