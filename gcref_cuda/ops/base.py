"""The compiled-op base class: what every fast layer implements."""

from __future__ import annotations

import numpy as np

from ..backend import get_xp
from ..workspace import prod

__all__ = ["Op", "split_view"]


def split_view(a, shape):
    """``a`` (C, R, H, W), possibly strided, viewed as ``shape`` = (C, R, Ho, k, Wo, k)."""
    C, R, Ho, k, Wo, k2 = shape
    s0, s1, s2, s3 = a.strides
    xp = get_xp()
    if xp is np:
        return np.lib.stride_tricks.as_strided(a, shape, (s0, s1, s2 * k, s2, s3 * k2, s3))
    return xp.lib.stride_tricks.as_strided(a, shape, (s0, s1, s2 * k, s2, s3 * k2, s3))


class Op:
    """A compiled layer. ``in_shape``/``out_shape`` are per-example shapes as in ``gcref``.

    ``forward(P, x, ctx) -> (y, cache)``, ``vjp(P, cache, g, rows, ctx) -> gx``,
    ``jvp(P, cache, t, rows, ctx) -> ty`` (``rows=None``: one row per example),
    ``vjp_params(P, cache, g, ctx) -> (gx, {full_name: grad})`` and
    ``second_order(P, cache, g, u, ctx) -> ({full_name: grad}, gx_or_None)`` as in ``gcref``.
    Layouts: ``(N, F)`` for vectors, ``(C, N, H, W)`` for images (rows on the N axis).
    """

    prefix = ""
    #: The op's name in a compiled network, assigned by :func:`gcref_cuda.compile.compile_chain`
    #: (the layer's full name, e.g. ``"layer1.0.conv1"``): prepared parameters are ``P[op.key]``
    #: and scratch buffers ``ctx.ws.get((op.key, slot), ...)``.
    key: str | None = None
    accepts_out = False            # vjp(..., out=view) writes its result into a given view
    # What the row passes of gcref_cuda.engine key on (docs/theory.md, "exact shortcuts"):
    elementwise = False            # diagonal derivative, ``derivative(cache)`` per example
    rectifier = False              # elementwise with s(x) = x 1[x > 0]
    piecewise_linear = False
    dense = False                  # x -> W x + b with ``P[key]["W"]`` (row gather, Gram matrix)
    reshape_only = False           # a reshape (flatten): rows pass through unchanged
    grid_conv = False              # a convolution whose transpose takes rows on its padded grid

    def __init__(self, in_shape, out_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    @property
    def row_axis_in(self):
        return 1 if len(self.in_shape) == 3 else 0

    @property
    def row_axis_out(self):
        return 1 if len(self.out_shape) == 3 else 0

    def slot(self, name: str) -> tuple:
        """The workspace key of this op's scratch buffer ``name``: ``(self.key, name)``."""
        if self.key is None:
            raise ValueError(f"{type(self).__name__} has no key: ops get theirs from "
                             f"gcref_cuda.compile.compile_chain (or set op.key to a unique name)")
        return (self.key, name)

    def sub_ops(self) -> list:
        """Ops inside this one (composites), whose keys share this op's namespace."""
        return []

    def prepare(self, params, xp, dtype) -> dict:
        return {}

    def param_names(self) -> list[str]:
        return []

    def vjp_params(self, P, cache, g, ctx):
        return self.vjp(P, cache, g, None, ctx), {}

    #: ``vjp_params(..., need_input=False)`` skips the input cotangent (the bottom layer of a
    #: training step, where nothing needs it); ops without it always compute it.
    skips_input_grad = False

    def second_order(self, P, cache, g, u, ctx):
        return {}, None

    def row_bytes(self, itemsize: int) -> int:
        """Scratch bytes one row needs in this op's derivative passes (estimate)."""
        return 2 * itemsize * (prod(self.in_shape) + prod(self.out_shape))

    def cache_bytes(self, itemsize: int) -> int:
        return 2 * itemsize * (prod(self.in_shape) + prod(self.out_shape))

    def flops(self) -> int:
        """Multiply-adds of one example's forward pass (for FLOP floors)."""
        return 0
