"""Pooling, reshaping and evaluation-mode identity layers: ``MaxPool2d`` (optionally padded),
``AvgPool2d``, ``Flatten``, ``AdaptiveAvgPool2d`` and ``Dropout``."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validation import check_float, check_int
from .base import PiecewiseLinear, prod

__all__ = ["MaxPool2d", "AvgPool2d", "Flatten", "AdaptiveAvgPool2d", "Dropout", "adaptive_windows"]


# --------------------------------------------------------------------------------------------
# Pooling and reshaping
# --------------------------------------------------------------------------------------------

class _Pool2d(PiecewiseLinear):
    # max and average pooling are piecewise linear (average: linear) without parameters.
    # Window (i, j) covers rows i*s + a - padding, columns j*s + e - padding (0 <= a, e < k) of
    # the input; ``fill`` is the value of the padded cells.
    padding = 0
    fill = 0.0

    def __init__(self, kernel_size: int, stride: int | None = None):
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else check_int(stride, "stride", minimum=1)

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (C, H, W), "
                             f"got {tuple(in_shape)}")
        c, h, w = in_shape
        k, s, q = self.kernel_size, self.stride, self.padding
        if h + 2 * q < k or w + 2 * q < k:
            raise ValueError(f"{type(self).__name__}(kernel_size={k}"
                             f"{f', padding={q}' if q else ''}) does not fit input "
                             f"{tuple(in_shape)}")
        return (c, (h + 2 * q - k) // s + 1, (w + 2 * q - k) // s + 1)

    def _pad(self, x, fill):
        q = self.padding
        if q == 0:
            return x
        return np.pad(x, ((0, 0), (0, 0), (q, q), (q, q)), constant_values=fill)

    def _windows(self, x, fill=None):
        k, s = self.kernel_size, self.stride
        _, ho, wo = self.out_shape(x.shape[1:])
        xp = self._pad(x, self.fill if fill is None else fill)
        win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return win[:, :, :ho, :wo]

    def _scatter(self, x_shape, per_offset):
        """Sum ``per_offset(a, e)`` (shape (n, C, Ho, Wo)) back onto the input grid (what lands
        on padded cells is dropped)."""
        k, s, q = self.kernel_size, self.stride, self.padding
        n, c, h, w = x_shape
        gx = np.zeros((n, c, h + 2 * q, w + 2 * q))
        for a in range(k):
            for e in range(k):
                contrib = per_offset(a, e)
                ho, wo = contrib.shape[2], contrib.shape[3]
                gx[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] += contrib
        return gx[:, :, q:q + h, q:q + w] if q else gx

    def describe(self):
        pad = f", padding={self.padding}" if self.padding else ""
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}{pad})"


class MaxPool2d(_Pool2d):
    """Max over each ``k x k`` window; the derivative routes to the first maximal entry (in
    row-major order within the window, as PyTorch).

    ``padding=q`` pads each side with ``-inf`` (PyTorch's rule: padded cells never win), so
    ``y[i, j] = max_{0 <= a, e < k, cell real} x[i*s + a - q, j*s + e - q]`` and the output has
    ``floor((H + 2q - k) / s) + 1`` rows. As in PyTorch, ``q <= k // 2`` (every window then
    holds a real cell).
    """

    fill = -np.inf

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__(kernel_size, stride)
        self.padding = check_int(padding, "padding", minimum=0, maximum=self.kernel_size // 2)

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
        flat = self._windows(tx, fill=0.0).reshape(*idx.shape, -1)
        return np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        _, (_, idx) = self.forward(p, x[None])
        _, ho, wo = idx.shape[1:]
        k, s, q = self.kernel_size, self.stride, self.padding
        jac = np.zeros((c, ho, wo, c, h, w))
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    a, e = divmod(int(idx[0, ch, i, j]), k)
                    jac[ch, i, j, ch, i * s + a - q, j * s + e - q] = 1.0
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
        return (prod(in_shape),)

    def forward(self, p, x):
        return x.reshape(x.shape[0], -1), x.shape

    def vjp(self, p, cache, gy, params=True):
        return gy.reshape(cache), {}

    def jvp(self, p, cache, tx):
        return tx.reshape(tx.shape[0], -1)

    def local_jacobian(self, p, x):
        return np.eye(x.size)


# --------------------------------------------------------------------------------------------
# Adaptive average pooling and dropout (evaluation mode)
# --------------------------------------------------------------------------------------------

def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling windows along one axis of ``size`` cells, ``out`` outputs.

    Output ``i`` covers input cells ``start_i <= h < end_i`` with
    ``start_i = floor(i * size / out)`` and ``end_i = ceil((i + 1) * size / out)``: windows
    tile the axis when ``out`` divides ``size``, overlap by a cell where it does not, and are
    single cells repeated when ``out > size``.
    """
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


class AdaptiveAvgPool2d(PiecewiseLinear):
    """Average over PyTorch's adaptive windows (:func:`adaptive_windows`), a linear map:
    ``y[c, i, j] = mean_{hs_i <= h < he_i, ws_j <= w < we_j} x[c, h, w]``.

    ``output_size`` is an int ``o`` (an ``o x o`` output) or a pair ``(oh, ow)``; a ``None``
    entry keeps that input size, as in ``torch.nn.AdaptiveAvgPool2d``.
    """

    def __init__(self, output_size):
        pair = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if len(pair) != 2:
            raise ValueError(f"output_size must be an int or a pair (height, width), got {output_size!r}")
        self.output_size = tuple(None if o is None else check_int(o, "output_size entry", minimum=1)
                                 for o in pair)

    @classmethod
    def examples(cls):
        return [("AdaptiveAvgPool2d(1)", cls(1), (2, 3, 3)),
                ("AdaptiveAvgPool2d(3,2) uneven", cls((3, 2)), (2, 5, 7)),
                ("AdaptiveAvgPool2d(4,None) upsampling", cls((4, None)), (1, 3, 2))]

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"AdaptiveAvgPool2d expects inputs of shape (C, H, W), got {tuple(in_shape)}")
        c, h, w = in_shape
        oh, ow = self.output_size
        return (c, h if oh is None else oh, w if ow is None else ow)

    def _grid(self, in_shape):
        """The windows along height and along width for one example of shape ``in_shape``."""
        _, oh, ow = self.out_shape(in_shape)
        return adaptive_windows(in_shape[1], oh), adaptive_windows(in_shape[2], ow)

    def forward(self, p, x):
        rows, cols = self._grid(x.shape[1:])
        y = np.empty(x.shape[:2] + (len(rows), len(cols)))
        for i, (hs, he) in enumerate(rows):
            for j, (ws, we) in enumerate(cols):
                y[:, :, i, j] = x[:, :, hs:he, ws:we].mean(axis=(2, 3))
        return y, x.shape

    def vjp(self, p, cache, gy, params=True):
        rows, cols = self._grid(cache[1:])
        gx = np.zeros(cache)
        for i, (hs, he) in enumerate(rows):
            for j, (ws, we) in enumerate(cols):
                gx[:, :, hs:he, ws:we] += gy[:, :, i, j, None, None] / ((he - hs) * (we - ws))
        return gx, {}

    def jvp(self, p, cache, tx):
        return self.forward(p, tx)[0]

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        rows, cols = self._grid(x.shape)
        jac = np.zeros((c, len(rows), len(cols), c, h, w))
        for ch in range(c):
            for i, (hs, he) in enumerate(rows):
                for j, (ws, we) in enumerate(cols):
                    jac[ch, i, j, ch, hs:he, ws:we] = 1.0 / ((he - hs) * (we - ws))
        return jac.reshape(c * len(rows) * len(cols), c * h * w)

    def describe(self):
        oh, ow = self.output_size
        return f"AdaptiveAvgPool2d(output_size={oh if oh == ow else (oh, ow)})"


class Dropout(PiecewiseLinear):
    """Dropout in evaluation mode: the identity (``p`` is kept only to describe the layer and to
    convert it back to ``torch.nn.Dropout(p)``)."""

    def __init__(self, p: float = 0.5):
        self.p = check_float(p, "p", minimum=0.0, maximum=1.0)

    @classmethod
    def examples(cls):
        return [("Dropout(eval)", cls(0.5), (2, 3, 2))]

    def forward(self, p, x):
        return x, None

    def vjp(self, p, cache, gy, params=True):
        return gy, {}

    def jvp(self, p, cache, tx):
        return tx

    def local_jacobian(self, p, x):
        return np.eye(x.size)

    def describe(self):
        return f"Dropout(p={self.p:g})"
