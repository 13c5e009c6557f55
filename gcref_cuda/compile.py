"""Compilation of a ``gcref.nn`` layer chain into fast ops, through a registry.

Each layer type maps to one op factory ``factory(prefix, layer, in_shape, compile_chain) -> Op``
(``compile_chain`` is passed so that composite layers compile their children without an import
cycle). A factory registered with ``subclasses=True`` serves every subclass of its type that has
no factory of its own: that is how every :class:`gcref.nn.Elementwise` activation (ReLU, Tanh,
GELU, SiLU, a user's own) gets the generic :class:`~gcref_cuda.ops.activations.ElementwiseOp`.
A layer type without a factory raises a ``TypeError`` naming it; the test suite checks that every
concrete layer of ``gcref.nn`` has one.

Fusions are registered for a pair of consecutive layer types: ``fusion(first, second, in_shape)
-> Op | None`` (``None`` when the fusion does not apply to these layers). Every op gets a stable
``key`` here, the full name of the layer it was compiled from (``docs/theory.md``, "The fast
backend's row passes").
"""

from __future__ import annotations

from collections.abc import Callable

from gcref.nn import layers as L

from .ops.activations import ElementwiseOp
from .ops.base import Op
from .ops.containers import BlockOp
from .ops.linear import Conv2dOp, LinearOp
from .ops.norm import BatchNormOp
from .ops.pooling import AdaptiveAvgPoolOp, FlattenOp, IdentityOp, PoolOp

__all__ = ["OP_FACTORIES", "FUSIONS", "register_op", "register_fusion", "compile_chain", "has_op",
           "op_factory", "unique_keys"]

#: layer type -> ``factory(prefix, layer, in_shape, compile_chain) -> Op``
OP_FACTORIES: dict[type, Callable] = {}
#: layer types whose factory also serves their subclasses
_FOR_SUBCLASSES: set[type] = set()
#: (first layer type, second layer type) -> ``fusion(first, second, in_shape) -> Op | None``
FUSIONS: dict[tuple[type, type], Callable] = {}


def register_op(layer_type: type, factory: Callable, subclasses: bool = False) -> None:
    """Register the fast op of ``layer_type``: for that exact type, or with ``subclasses=True``
    for every subclass without a factory of its own (the nearest registered base wins)."""
    if not (isinstance(layer_type, type) and issubclass(layer_type, L.Layer)):
        raise TypeError(f"layer_type must be a subclass of gcref.nn.Layer, got {layer_type!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    OP_FACTORIES[layer_type] = factory
    if subclasses:
        _FOR_SUBCLASSES.add(layer_type)
    else:
        _FOR_SUBCLASSES.discard(layer_type)


def register_fusion(first: type, second: type, fusion: Callable) -> None:
    """Register a fused op for ``first`` followed by ``second`` (exact types, or with the same
    subclass rule as :func:`register_op` when ``first``/``second`` serve subclasses)."""
    FUSIONS[(first, second)] = fusion


def op_factory(layer_type: type) -> Callable | None:
    """The factory that compiles ``layer_type``, or ``None``."""
    if layer_type in OP_FACTORIES:
        return OP_FACTORIES[layer_type]
    for base in layer_type.__mro__[1:]:
        if base in _FOR_SUBCLASSES:
            return OP_FACTORIES[base]
    return None


def _fusion(first: type, second: type) -> Callable | None:
    for a in first.__mro__:
        for b in second.__mro__:
            fusion = FUSIONS.get((a, b))
            if fusion is not None and (a is first or a in _FOR_SUBCLASSES) \
                    and (b is second or b in _FOR_SUBCLASSES):
                return fusion
    return None


def has_op(layer_type: type) -> bool:
    """Whether ``layer_type`` compiles to a fast op."""
    return layer_type is L.Sequential or op_factory(layer_type) is not None


def compile_chain(children, in_shape, prefix: str = "") -> list[Op]:
    """Ops for a list of ``(name, layer)``: nested ``Sequential`` chains are flattened, registered
    fusions applied, every other layer compiled by its registered factory. Each op's ``key`` is
    its layer's full name (``prefix + name``; a fused op takes its first layer's)."""
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
            fusion = _fusion(type(layer), type(items[i + 1][1]))
            fused = fusion(layer, items[i + 1][1], shape) if fusion is not None else None
            if fused is not None:
                fused.key = pre[:-1]
                ops.append(fused)
                shape = fused.out_shape
                i += 2
                continue
        factory = op_factory(type(layer))
        if factory is None:
            raise TypeError(f"gcref_cuda has no fast op for layer {type(layer).__name__} ('{prefix}{name}'); "
                            f"register one with gcref_cuda.compile.register_op")
        op = factory(pre, layer, shape, compile_chain)
        op.key = pre[:-1]
        ops.append(op)
        shape = op.out_shape
        i += 1
    return ops


def unique_keys(ops: list[Op]) -> list[Op]:
    """Make the keys of ``ops`` and of every op inside them (``Op.sub_ops``) unique, in place:
    a repeated key gets ``#2``, ``#3``, ... (a head named like an embedding layer, dotted names).
    Every op of one network shares a workspace and a parameter dict, keyed by ``op.key``."""
    seen: set = set()

    def visit(op):
        if op.key is None:
            raise ValueError(f"{type(op).__name__} has no key (compile it with compile_chain)")
        base, i = op.key, 2
        while op.key in seen:
            op.key, i = f"{base}#{i}", i + 1
        seen.add(op.key)
        for sub in op.sub_ops():
            visit(sub)

    for op in ops:
        visit(op)
    return ops


def _rectifier_maxpool(act, pool, shape):
    # maxpool(relu(x)) = relu(maxpool(x)), with the derivative routed to the first maximum when
    # it is positive, exactly as the chain; only a rectifier (s(x) = x 1[x > 0]) and
    # non-overlapping pooling of images are fused.
    if not act.rectifier or len(shape) != 3:
        return None
    op = PoolOp(pool, shape, "max", relu=True)
    return op if op.block else None


register_op(L.Linear, lambda pre, layer, shape, cc: LinearOp(pre, layer, shape))
register_op(L.Conv2d, lambda pre, layer, shape, cc: Conv2dOp(pre, layer, shape))
register_op(L.Elementwise, lambda pre, layer, shape, cc: ElementwiseOp(layer, shape), subclasses=True)
register_op(L.MaxPool2d, lambda pre, layer, shape, cc: PoolOp(layer, shape, "max"))
register_op(L.AvgPool2d, lambda pre, layer, shape, cc: PoolOp(layer, shape, "avg"))
register_op(L.Flatten, lambda pre, layer, shape, cc: FlattenOp(shape, layer.out_shape(shape)))
register_op(L.BatchNorm2d, lambda pre, layer, shape, cc: BatchNormOp(pre, layer, shape))
register_op(L.BatchNorm1d, lambda pre, layer, shape, cc: BatchNormOp(pre, layer, shape))
register_op(L.Residual, lambda pre, layer, shape, cc: BlockOp(pre, layer, shape, cc))
register_op(L.BasicBlock, lambda pre, layer, shape, cc: BlockOp(pre, layer, shape, cc))
register_fusion(L.Elementwise, L.MaxPool2d, _rectifier_maxpool)
register_op(L.AdaptiveAvgPool2d, lambda pre, layer, shape, cc: AdaptiveAvgPoolOp(layer, shape))
register_op(L.Dropout, lambda pre, layer, shape, cc: IdentityOp(shape, shape))
# A Bottleneck is a residual block with a longer main path: the same op as BasicBlock.
register_op(L.Bottleneck, lambda pre, layer, shape, cc: BlockOp(pre, layer, shape, cc))
