"""Hand-written layers with explicit parameters and exact derivatives (float64).

Every layer is an object without state of its own: parameters are a ``dict[str, ndarray]`` passed
to each call, with PyTorch's local names and layouts (``weight``, ``bias``; linear ``(out, in)``,
conv ``(out, in, kh, kw)``; batch-first, NCHW). Each layer writes its derivatives next to its
forward pass. The contract every layer follows (``forward``, ``vjp``, ``jvp``, ``second_order``,
``local_jacobian``, ``keys``, ``examples``) is written in :mod:`gcref.nn.base` and in
``docs/theory.md`` ("The layer contract"); ``second_order`` is the one primitive the exact
gradient of the geometric-complexity penalty needs (double backprop by hand, ``docs/theory.md``).
Elementwise activations are one definition each (``s``, ``s'``, ``s''``:
:class:`~gcref.nn.activations.Elementwise`).

Batch norm is in evaluation mode (an affine map per channel from its running statistics).
"""

from __future__ import annotations

from .activations import ELU, GELU, Affine, Elementwise, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh
from .base import Layer, PiecewiseLinear, check_keys
from .containers import BasicBlock, Residual, Sequential
from .linear import Conv2d, Linear
from .norm import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, Dropout, Flatten, MaxPool2d
from .residual import Bottleneck

__all__ = [
    "Layer", "PiecewiseLinear", "Elementwise", "check_keys", "Linear", "Conv2d", "ReLU", "Tanh",
    "GELU", "SiLU", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "Sequential", "BasicBlock",
    "AdaptiveAvgPool2d", "Dropout", "Bottleneck", "LeakyReLU", "Sigmoid", "ELU", "Softplus",
    "BatchNorm1d", "Residual", "Affine",
]
