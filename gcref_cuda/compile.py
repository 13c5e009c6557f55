"""Compilation of a ``gcref.nn`` layer chain into fast ops, through a registry.

Each layer type maps to one op factory ``factory(prefix, layer, in_shape, compile_chain) -> Op``
(``compile_chain`` is passed so that composite layers compile their children without an import
cycle). A layer type without a registered factory raises a ``TypeError`` naming it; the test
suite checks that every concrete layer of ``gcref.nn`` has one.

Fusions are registered the same way, for a pair of consecutive layer types: ``fusion(first,
second, shape) -> Op | None`` (``None`` when the fusion does not apply to these layers).
"""

from __future__ import annotations

from collections.abc import Callable

from gcref.nn import layers as L

from .ops.activations import ReLUOp, TanhOp
from .ops.base import Op
from .ops.containers import BlockOp
from .ops.linear import Conv2dOp, LinearOp
from .ops.norm import BatchNormOp
from .ops.pooling import FlattenOp, PoolOp

__all__ = ["OP_FACTORIES", "FUSIONS", "register_op", "register_fusion", "compile_chain", "has_op"]

#: layer type -> ``factory(prefix, layer, in_shape, compile_chain) -> Op``
OP_FACTORIES: dict[type, Callable] = {}
#: (first layer type, second layer type) -> ``fusion(first, second, in_shape) -> Op | None``
FUSIONS: dict[tuple[type, type], Callable] = {}


def register_op(layer_type: type, factory: Callable) -> None:
    """Register the fast op of ``layer_type`` (exact type; subclasses register their own)."""
    if not (isinstance(layer_type, type) and issubclass(layer_type, L.Layer)):
        raise TypeError(f"layer_type must be a subclass of gcref.nn.Layer, got {layer_type!r}")
    OP_FACTORIES[layer_type] = factory


def register_fusion(first: type, second: type, fusion: Callable) -> None:
    """Register a fused op for ``first`` followed by ``second``."""
    FUSIONS[(first, second)] = fusion


def has_op(layer_type: type) -> bool:
    """Whether ``layer_type`` compiles to a fast op."""
    return layer_type in OP_FACTORIES or layer_type is L.Sequential


def compile_chain(children, in_shape, prefix: str = "") -> list[Op]:
    """Ops for a list of ``(name, layer)``: nested ``Sequential`` chains are flattened, registered
    fusions applied, every other layer compiled by its registered factory."""
    ops: list[Op] = []
    shape = tuple(in_shape)
    items = list(children)
    i = 0
    while i < len(items):
        name, layer = items[i]
        pre = f"{prefix}{name}."
        if type(layer) is L.Sequential:
            ops.extend(compile_chain(layer.children, shape, pre))
            shape = tuple(layer.out_shape(shape))
            i += 1
            continue
        if i + 1 < len(items):
            fusion = FUSIONS.get((type(layer), type(items[i + 1][1])))
            fused = fusion(layer, items[i + 1][1], shape) if fusion is not None else None
            if fused is not None:
                ops.append(fused)
                shape = fused.out_shape
                i += 2
                continue
        factory = OP_FACTORIES.get(type(layer))
        if factory is None:
            raise TypeError(f"gcref_cuda has no fast op for layer {type(layer).__name__} ('{prefix}{name}'); "
                            f"register one with gcref_cuda.compile.register_op")
        op = factory(pre, layer, shape, compile_chain)
        ops.append(op)
        shape = op.out_shape
        i += 1
    return ops


def _relu_maxpool(relu, pool, shape):
    # maxpool(relu(x)) = relu(maxpool(x)); only non-overlapping pooling of images is fused.
    if len(shape) != 3:
        return None
    op = PoolOp(pool, shape, "max", relu=True)
    return op if op.block else None


register_op(L.Linear, lambda pre, layer, shape, cc: LinearOp(pre, layer, shape))
register_op(L.Conv2d, lambda pre, layer, shape, cc: Conv2dOp(pre, layer, shape))
register_op(L.ReLU, lambda pre, layer, shape, cc: ReLUOp(shape, shape))
register_op(L.Tanh, lambda pre, layer, shape, cc: TanhOp(shape, shape))
register_op(L.MaxPool2d, lambda pre, layer, shape, cc: PoolOp(layer, shape, "max"))
register_op(L.AvgPool2d, lambda pre, layer, shape, cc: PoolOp(layer, shape, "avg"))
register_op(L.Flatten, lambda pre, layer, shape, cc: FlattenOp(shape, layer.out_shape(shape)))
register_op(L.BatchNorm2d, lambda pre, layer, shape, cc: BatchNormOp(pre, layer, shape))
register_op(L.BasicBlock, lambda pre, layer, shape, cc: BlockOp(pre, layer, shape, cc))
register_fusion(L.ReLU, L.MaxPool2d, _relu_maxpool)
