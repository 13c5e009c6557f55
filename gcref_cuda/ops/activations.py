"""The fast op of every elementwise activation: :class:`ElementwiseOp`.

One generic op serves every :class:`gcref.nn.Elementwise` layer (ReLU, Tanh, GELU, SiLU and any
user-defined one): it evaluates the layer's own ``s``, ``s'`` and ``s''`` on the device arrays
(NumPy functions dispatch to CuPy's), and broadcasts ``s'`` to the rows of a derivative pass
(``docs/theory.md``, "Elementwise activations" and "The fast backend's row passes").
:mod:`gcref_cuda.compile` picks it for any ``Elementwise`` subclass through the registry.
"""

from __future__ import annotations

from gcref.nn.activations import Elementwise

from ..workspace import prod, rowmul
from .base import Op

__all__ = ["ElementwiseOp"]


class ElementwiseOp(Op):
    """``y = s(x)``; rows: ``g * s'(x)``; second order ``g * u * s''(x)``.

    Attributes the row passes key on (``gcref_cuda.engine``): ``elementwise`` (the derivative is
    diagonal: :meth:`derivative` gives it per example), ``rectifier`` (``s(x) = x 1[x > 0]``:
    ``s'`` is 0/1, rows with ``s' = 0`` vanish and need no scaling, and ``s`` commutes with
    max-pooling) and ``piecewise_linear`` (no second-order term).
    """

    elementwise = True

    def __init__(self, layer: Elementwise, in_shape):
        super().__init__(in_shape, in_shape)
        self.layer = layer
        self.rectifier = bool(layer.rectifier)
        self.piecewise_linear = bool(layer.piecewise_linear)

    def forward(self, P, x, ctx):
        y, d = self.layer.value_and_derivative(x)
        if self.piecewise_linear or not ctx.keep_inputs:
            return y, d
        return y, (x, y, d)

    @staticmethod
    def derivative(cache):
        """``s'(x)`` of the cached examples (same layout as the input)."""
        return cache if not isinstance(cache, tuple) else cache[2]

    @property
    def accepts_out(self):
        return len(self.in_shape) == 3

    def vjp(self, P, cache, g, rows, ctx, out=None):
        if out is None:
            out = ctx.ws.get(self.slot("gx"), g.shape, ctx.dtype)
        return rowmul(ctx, g, self.derivative(cache), rows, self.row_axis_in, out=out)

    def jvp(self, P, cache, t, rows, ctx):
        out = ctx.ws.get(self.slot("ty"), t.shape, ctx.dtype)
        return rowmul(ctx, t, self.derivative(cache), rows, self.row_axis_in, out=out)

    def second_order(self, P, cache, g, u, ctx):
        if self.piecewise_linear:
            return {}, None
        if not isinstance(cache, tuple):
            raise ValueError("ElementwiseOp.second_order needs a forward pass with keep_inputs")
        x, y, _ = cache
        return {}, g * u * self.layer.d2s(x, y)

    def cache_bytes(self, itemsize):
        return (2 if self.piecewise_linear else 3) * itemsize * prod(self.in_shape)
