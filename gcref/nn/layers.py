"""Hand-written layers with explicit parameters and exact derivatives (float64).

Every layer is an object without state of its own: parameters are a ``dict[str, ndarray]`` passed
to each call, with PyTorch's local names and layouts (``weight``, ``bias``; linear ``(out, in)``,
conv ``(out, in, kh, kw)``; batch-first, NCHW). Each layer writes its derivatives next to its
forward pass:

``forward(p, x) -> (y, cache)``
    the layer's output for a batch ``x`` of shape ``(n, *in_shape)``.
``vjp(p, cache, gy, params=True) -> (gx, gp)``
    reverse mode: ``gx = J_x^T gy`` and the parameter gradient ``gp[name] = J_p^T gy``.
``jvp(p, cache, tx) -> ty``
    forward mode with respect to the input: ``ty = J_x tx`` (the layer linearized at the cached
    point: ReLU masks and max-pool choices held fixed).
``second_order(p, cache, g, u) -> (gp, gx)``
    the gradient of the scalar ``<g, J_x(x; p) u>`` with respect to the parameters ``p`` and the
    input ``x``, with ``g`` and ``u`` held fixed. This is the one new primitive that the exact
    gradient of the geometric-complexity penalty needs (double backprop by hand, DESIGN.md §6).
    ``gx`` is ``None`` where it is identically zero (affine and piecewise-linear layers).
``local_jacobian(p, x) -> (out_size, in_size)``
    the analytic Jacobian of one example, written out entry by entry (for checks on small nets).

Batch norm is in evaluation mode (an affine map per channel from its running statistics).
"""

from __future__ import annotations

from .activations import ReLU, Tanh
from .base import Layer
from .containers import BasicBlock, Sequential
from .linear import Conv2d, Linear
from .norm import BatchNorm2d
from .pooling import AvgPool2d, Flatten, MaxPool2d

__all__ = [
    "Layer", "Linear", "Conv2d", "ReLU", "Tanh", "MaxPool2d", "AvgPool2d", "Flatten",
    "BatchNorm2d", "Sequential", "BasicBlock",
]
