"""The layer contract: :class:`Layer` (abstract), the :class:`PiecewiseLinear` opt-in and shared
helpers. The contract is written out in ``docs/theory.md``, section "The layer contract".

A layer is an object without state of its own: parameters are a ``dict[str, ndarray]`` passed to
each call, with PyTorch's local names and layouts. A concrete layer implements

``forward(p, x) -> (y, cache)``
    the output for a batch ``x`` of shape ``(n, *in_shape)``;
``vjp(p, cache, gy, params=True) -> (gx, gp)``
    ``gx = J_x^T gy`` and, when ``params``, ``gp[name] = J_p^T gy``;
``jvp(p, cache, tx) -> ty``
    ``ty = J_x tx`` (the layer linearized at the cached point);
``second_order(p, cache, g, u) -> (gp, gx)``
    the gradient of ``<g, J_x(x; p) u>`` in ``p`` and in ``x`` (``gx`` is ``None`` where it is
    identically zero). There is **no default**: a smooth layer writes it, an affine or
    piecewise-linear layer without parameters opts in to "zero" by inheriting
    :class:`PiecewiseLinear`. A layer that does neither cannot be instantiated;
``local_jacobian(p, x) -> (out_size, in_size)``
    the analytic Jacobian of one example (for checks);
``keys() -> tuple[str, ...]``
    every parameter and buffer name it reads (no input shape needed); it must list every name of
    ``param_specs`` and ``buffer_specs`` (checked by :func:`check_keys` wherever shapes are known);
``examples() -> [(label, layer, in_shape), ...]`` (classmethod)
    small instances that ``gcref check`` and :func:`gcref.testing.check_layer` run the layer
    battery on; every concrete layer exported by :mod:`gcref.nn` must provide at least one.
"""

from __future__ import annotations

import abc
import math

import numpy as np

__all__ = ["Layer", "PiecewiseLinear", "check_keys", "prod", "he_init"]


def prod(shape) -> int:
    """Number of entries of an array of ``shape``."""
    return int(np.prod(shape, dtype=np.int64))


_prod = prod        # the name gcref.nn.network imports


def he_init(rng, shape, fan_in: int, bias: bool) -> dict[str, np.ndarray]:
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


class Layer(abc.ABC):
    """Base class of every layer: the contract above (``docs/theory.md``, "The layer contract").

    Defaults: no parameters or buffers, shape-preserving output. ``forward``, ``vjp``, ``jvp``,
    ``second_order`` and ``local_jacobian`` are abstract.
    """

    def __new__(cls, *args, **kwargs):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            hint = ""
            if "second_order" in missing:
                hint = (" A smooth layer must write second_order (the gradient of <g, J_x u> in its "
                        "parameters and input); an affine or piecewise-linear layer without "
                        "parameters opts in to a zero second order by inheriting "
                        "gcref.nn.PiecewiseLinear (docs/theory.md, 'The layer contract').")
            raise TypeError(f"cannot instantiate layer {cls.__name__}: it does not implement "
                            f"{', '.join(missing)}.{hint}")
        return super().__new__(cls)

    # ------------------------------------------------------------------ structure
    def keys(self) -> tuple[str, ...]:
        """Every parameter and buffer name this layer reads (local names). Default: none."""
        return ()

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

    @classmethod
    def examples(cls) -> list[tuple[str, "Layer", tuple]]:
        """``(label, layer, in_shape)`` cases for the layer battery (none by default)."""
        return []

    # ------------------------------------------------------------------ derivatives
    @abc.abstractmethod
    def forward(self, p, x):
        """``(y, cache)`` for a batch ``x`` of shape ``(n, *in_shape)``."""

    @abc.abstractmethod
    def vjp(self, p, cache, gy, params=True):
        """``(J_x^T gy, {name: J_p^T gy})`` (the dict empty when not ``params``)."""

    @abc.abstractmethod
    def jvp(self, p, cache, tx):
        """``J_x tx``."""

    @abc.abstractmethod
    def second_order(self, p, cache, g, u):
        """``(grad_p <g, J_x u>, grad_x <g, J_x u>)``; ``grad_x`` is ``None`` when identically 0."""

    @abc.abstractmethod
    def local_jacobian(self, p, x):
        """Jacobian of one example ``x`` (shape ``in_shape``): ``(out_size, in_size)``."""

    def describe(self) -> str:
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()


class PiecewiseLinear(Layer):
    """Opt-in for layers whose input Jacobian is locally constant (a.e.) and that have no
    parameters: ReLU, pooling, reshaping. Their second order vanishes:
    ``<g, J_x u>`` depends neither on ``x`` (a.e.) nor on parameters, so ``(gp, gx) = ({}, None)``.
    A layer with parameters writes its own ``second_order`` (it is linear in them, not zero)."""

    def second_order(self, p, cache, g, u):
        return {}, None


def check_keys(layer: Layer, in_shape, where: str = "") -> None:
    """Raise a ``ValueError`` naming the layer when ``layer.keys()`` misses a name of its
    ``param_specs``/``buffer_specs`` at ``in_shape`` (a layer with parameters must list them)."""
    declared = set(layer.keys())
    needed = list(layer.param_specs(in_shape)) + list(layer.buffer_specs(in_shape))
    missing = [k for k in needed if k not in declared]
    if missing:
        at = f" ('{where}')" if where else ""
        raise ValueError(f"layer {type(layer).__name__}{at} has parameters/buffers {missing} that "
                         f"its keys() does not list (it lists {sorted(declared)}); a layer must "
                         f"return every name it reads from keys()")
