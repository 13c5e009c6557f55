"""The layer base class and shared helpers (see :mod:`gcref.nn.layers` for the contract)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Layer"]


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _he_init(rng, shape, fan_in: int, bias: bool) -> dict[str, np.ndarray]:
    """He (Kaiming) normal weights, std sqrt(2 / fan_in), so ReLU chains keep their scale.

    PyTorch's default uniform init shrinks the signal by a constant factor per layer; deep VGGs
    then have Jacobians ~1e-5 of their outputs, which hides them under round-off. Biases follow
    PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    p = {"weight": rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)}
    if bias:
        bound = 1.0 / math.sqrt(fan_in)
        p["bias"] = rng.uniform(-bound, bound, (shape[0],))
    return p


class Layer:
    """Base class: a layer with no parameters and shape-preserving output."""

    def param_specs(self, in_shape: tuple) -> dict[str, tuple]:
        """Trainable parameters: local name -> shape."""
        return {}

    def buffer_specs(self, in_shape: tuple) -> dict[str, tuple]:
        """Non-trainable state saved with the parameters (batch-norm running statistics)."""
        return {}

    def out_shape(self, in_shape: tuple) -> tuple:
        return tuple(in_shape)

    def init(self, rng: np.random.Generator, in_shape: tuple) -> dict[str, np.ndarray]:
        return {}

    def second_order(self, p, cache, g, u):
        # Affine and piecewise-linear layers: J_x does not depend on x (a.e.) and the
        # parameter-free ones have no parameter gradient.
        return {}, None

    def describe(self) -> str:
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()
