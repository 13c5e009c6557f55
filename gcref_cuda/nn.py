"""Compatibility module: the fast networks' pieces, re-exported from where they live.

* :mod:`gcref_cuda.workspace`: scratch space and derivative rows;
* :mod:`gcref_cuda.ops`: one module per layer family (linear, activations, pooling, norm,
  containers);
* :mod:`gcref_cuda.compile`: the registry from ``gcref.nn`` layer types to ops;
* :mod:`gcref_cuda.network`: :class:`FastNetwork` and :func:`as_fast`.
"""

from __future__ import annotations

from .compile import compile_chain
from .network import DEFAULT_MEMORY_BUDGET, FastNetwork, as_fast
from .ops.activations import ElementwiseOp
from .ops.base import Op
from .ops.containers import BlockOp, ChainOp
from .ops.linear import Conv2dOp, LinearOp
from .ops.norm import BatchNormOp
from .ops.pooling import FlattenOp, PoolOp
from .workspace import Ctx, Rows, Workspace, rowmul

__all__ = ["FastNetwork", "as_fast", "Workspace", "Rows", "Ctx", "rowmul", "DEFAULT_MEMORY_BUDGET",
           "compile_chain", "Op", "LinearOp", "Conv2dOp", "ElementwiseOp", "PoolOp", "FlattenOp",
           "BatchNormOp", "ChainOp", "BlockOp"]
