"""Elementwise activations, each one small definition: ``s``, ``s'`` and ``s''``.

:class:`Elementwise` derives everything else from the three functions (``docs/theory.md``,
"Elementwise activations"): for ``y = s(x)`` applied entrywise,

* VJP and JVP: ``gx = s'(x) * gy``, ``ty = s'(x) * tx``;
* second order: ``grad_x <g, s'(x) * u> = g * u * s''(x)`` (no parameters);
* local Jacobian: ``diag(s'(x))``.

The three functions are written with NumPy ufuncs and functions, which CuPy arrays dispatch to
their own (``__array_ufunc__``/``__array_function__``), so ``gcref_cuda`` evaluates the very same
definition on the device (its generic ``ElementwiseOp``). Constants are Python floats so that
float32 arrays stay float32.
"""

from __future__ import annotations

import abc
import math

import numpy as np
from scipy import special

from .._validation import check_float
from .base import Layer, PiecewiseLinear

__all__ = ["Elementwise", "ReLU", "Tanh", "GELU", "SiLU", "LeakyReLU", "Sigmoid", "ELU", "Softplus",
           "Affine"]


class Elementwise(Layer):
    """``y = s(x)`` entrywise, from ``s``, ``s'`` and ``s''`` (see the module docstring).

    A subclass defines ``s(x)``, ``ds(x, y)`` and ``d2s(x, y)`` (``y = s(x)`` is passed so a
    derivative may use whichever is cheaper). A piecewise-linear one inherits
    :class:`~gcref.nn.base.PiecewiseLinear` as well and leaves ``d2s`` out (``s'' = 0`` a.e.).

    ``rectifier = True`` declares ``s(x) = x 1[x > 0]`` exactly (derivative in {0, 1}, ``s``
    commutes with max): the fast backend's exact shortcuts key on it.
    """

    rectifier = False

    @abc.abstractmethod
    def s(self, x):
        """The activation ``s(x)``."""

    @abc.abstractmethod
    def ds(self, x, y):
        """``s'(x)`` (``y = s(x)``)."""

    @abc.abstractmethod
    def d2s(self, x, y):
        """``s''(x)`` (``y = s(x)``)."""

    @property
    def piecewise_linear(self) -> bool:
        return isinstance(self, PiecewiseLinear)

    def value_and_derivative(self, x):
        """``(s(x), s'(x))``."""
        y = self.s(x)
        return y, self.ds(x, y)

    def forward(self, p, x):
        y, d = self.value_and_derivative(x)
        return y, (x, y, d)

    def vjp(self, p, cache, gy, params=True):
        return gy * cache[2], {}

    def jvp(self, p, cache, tx):
        return tx * cache[2]

    def second_order(self, p, cache, g, u):
        # d/dx <g, s'(x) * u> = g * u * s''(x)
        x, y, _ = cache
        return {}, g * u * self.d2s(x, y)

    def local_jacobian(self, p, x):
        y, d = self.value_and_derivative(x)
        return np.diag(np.broadcast_to(d, x.shape).ravel())


class ReLU(PiecewiseLinear, Elementwise):
    """``s(x) = max(x, 0)`` written ``x 1[x > 0]``; ``s'(x) = 1[x > 0]`` (0 at the kink, as
    PyTorch); piecewise linear (``s'' = 0`` a.e.)."""

    rectifier = True

    def s(self, x):
        return x * (x > 0)

    def ds(self, x, y):
        return (x > 0).astype(x.dtype)

    def d2s(self, x, y):
        return np.zeros_like(x)

    @classmethod
    def examples(cls):
        return [("ReLU", cls(), (2, 4, 4))]


class Tanh(Elementwise):
    """``s = tanh``; ``s' = 1 - y^2``, ``s'' = -2 y (1 - y^2)`` with ``y = tanh(x)``."""

    def s(self, x):
        return np.tanh(x)

    def ds(self, x, y):
        return 1.0 - y * y

    def d2s(self, x, y):
        return -2.0 * y * (1.0 - y * y)

    @classmethod
    def examples(cls):
        return [("Tanh", cls(), (6,))]


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Elementwise):
    """Exact (erf) GELU, ``torch.nn.GELU()``: ``s(x) = x Phi(x)`` with the normal CDF
    ``Phi(x) = (1 + erf(x/sqrt 2))/2``, evaluated as ``erfc(-x/sqrt 2)/2`` (the same function
    without the cancellation of ``1 + erf`` for ``x < 0``); ``s'(x) = Phi(x) + x phi(x)``,
    ``s''(x) = phi(x) (2 - x^2)``, ``phi(x) = exp(-x^2/2)/sqrt(2 pi)``."""

    @staticmethod
    def _cdf(x):
        return 0.5 * special.erfc(x * -_INV_SQRT2)

    def s(self, x):
        return x * self._cdf(x)

    def ds(self, x, y):
        return self._cdf(x) + x * (_INV_SQRT2PI * np.exp(-0.5 * x * x))

    def d2s(self, x, y):
        return _INV_SQRT2PI * np.exp(-0.5 * x * x) * (2.0 - x * x)

    @classmethod
    def examples(cls):
        return [("GELU", cls(), (2, 3, 3))]


class SiLU(Elementwise):
    """SiLU (swish), ``torch.nn.SiLU()``: ``s(x) = x sigma(x)``, ``sigma = 1/(1 + e^-x)``;
    ``s'(x) = sigma (1 + x (1 - sigma))``, ``s''(x) = sigma (1 - sigma) (2 + x (1 - 2 sigma))``."""

    def s(self, x):
        return x * special.expit(x)

    def ds(self, x, y):
        sig = special.expit(x)
        return sig * (1.0 + x * (1.0 - sig))

    def d2s(self, x, y):
        sig = special.expit(x)
        return sig * (1.0 - sig) * (2.0 + x * (1.0 - 2.0 * sig))

    @classmethod
    def examples(cls):
        return [("SiLU", cls(), (7,))]


class LeakyReLU(PiecewiseLinear, Elementwise):
    """``torch.nn.LeakyReLU(negative_slope)``: ``s(x) = x`` for ``x > 0``, ``a x`` otherwise;
    ``s'(x) = 1`` for ``x > 0``, ``a`` otherwise (``a`` at the kink, as PyTorch); piecewise
    linear (``s'' = 0`` a.e.)."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = check_float(negative_slope, "negative_slope")

    def s(self, x):
        return np.where(x > 0, x, self.negative_slope * x)

    def ds(self, x, y):
        d = (x > 0).astype(x.dtype)
        return d + self.negative_slope * (1.0 - d)

    def d2s(self, x, y):
        return np.zeros_like(x)

    @classmethod
    def examples(cls):
        return [("LeakyReLU", cls(0.1), (2, 3, 3))]

    def describe(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class Sigmoid(Elementwise):
    """``torch.nn.Sigmoid()``: ``s = sigma = 1/(1 + e^-x)``; ``s' = y (1 - y)``,
    ``s'' = y (1 - y) (1 - 2 y)`` with ``y = sigma(x)``."""

    def s(self, x):
        return special.expit(x)

    def ds(self, x, y):
        return y * (1.0 - y)

    def d2s(self, x, y):
        return y * (1.0 - y) * (1.0 - 2.0 * y)

    @classmethod
    def examples(cls):
        return [("Sigmoid", cls(), (6,))]


class ELU(Elementwise):
    """``torch.nn.ELU(alpha)``: ``s(x) = x`` for ``x > 0``, ``alpha (e^x - 1)`` otherwise
    (``expm1``); ``s'(x) = 1`` resp. ``alpha e^x``, ``s''(x) = 0`` resp. ``alpha e^x``. At the
    kink, as PyTorch's autograd: ``s'(0) = alpha`` and ``s''(0) = 0``. ``e^x`` is evaluated at
    ``min(x, 0)`` so that the unused branch never overflows."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = check_float(alpha, "alpha")

    def _neg_exp(self, x):
        return self.alpha * np.exp(np.minimum(x, 0.0))

    def s(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0.0)))

    def ds(self, x, y):
        return np.where(x > 0, 1.0, self._neg_exp(x)).astype(x.dtype, copy=False)

    def d2s(self, x, y):
        return np.where(x < 0, self._neg_exp(x), 0.0).astype(x.dtype, copy=False)

    @classmethod
    def examples(cls):
        return [("ELU", cls(0.7), (2, 3, 3))]

    def describe(self):
        return f"ELU(alpha={self.alpha})"


class Softplus(Elementwise):
    """``torch.nn.Softplus(beta, threshold)``: ``s(x) = log(1 + e^(beta x)) / beta`` (``log1p``),
    and ``x`` itself where ``beta x > threshold`` (PyTorch's switch to the linear function for
    numerical stability); ``s'(x) = sigma(beta x)`` resp. 1, ``s''(x) = beta sigma (1 - sigma)``
    resp. 0. ``e^(beta x)`` is evaluated at ``min(beta x, threshold)`` (no overflow)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta = check_float(beta, "beta")
        if self.beta == 0:
            raise ValueError("beta must be nonzero, got 0")
        self.threshold = check_float(threshold, "threshold")

    def _linear(self, x):
        return self.beta * x > self.threshold

    def s(self, x):
        bx = np.minimum(self.beta * x, self.threshold)
        return np.where(self._linear(x), x, np.log1p(np.exp(bx)) / self.beta)

    def ds(self, x, y):
        return np.where(self._linear(x), 1.0, special.expit(self.beta * x)).astype(x.dtype, copy=False)

    def d2s(self, x, y):
        sig = special.expit(self.beta * x)
        return np.where(self._linear(x), 0.0, self.beta * sig * (1.0 - sig)).astype(x.dtype, copy=False)

    @classmethod
    def examples(cls):
        return [("Softplus", cls(1.5), (7,))]

    def describe(self):
        return f"Softplus(beta={self.beta}, threshold={self.threshold})"


class Affine(PiecewiseLinear, Elementwise):
    """``s(x) = scale * x + shift`` with fixed constants (no parameters): input scaling such as
    ``x / 255 * 2 - 1`` (``scale = 2/255``, ``shift = -1``, what ``from_torch`` reads from a traced
    ``forward``); ``s' = scale``; linear (``s'' = 0``)."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0):
        self.scale = check_float(scale, "scale")
        self.shift = check_float(shift, "shift")

    def s(self, x):
        return x * self.scale + self.shift

    def ds(self, x, y):
        return np.full_like(x, self.scale)

    def d2s(self, x, y):
        return np.zeros_like(x)

    @classmethod
    def examples(cls):
        return [("Affine(x / 255 * 2 - 1)", cls(2 / 255, -1.0), (2, 3, 3)),
                ("Affine(-x + 0.5)", cls(-1.0, 0.5), (5,))]

    def describe(self):
        return f"Affine(scale={self.scale!r}, shift={self.shift!r})"
