"""The conversion table of leaf modules (torch module <-> gcref layer, one entry per type and
direction) and of the functional calls a traced ``forward`` makes (``F.relu(x)``,
``F.max_pool2d(x, 2)``, ...), each read as the module of the same arguments (``nn.ReLU()``,
``nn.MaxPool2d(2)``) so that one validation serves both."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...nn import layers as L
from ._common import UnsupportedModuleError

__all__ = ["FROM_TORCH", "LEAF_TO_TORCH", "SUPPORTED", "FUNCTIONS", "METHODS", "AfterHead", "SizeCheck",
           "FUNCTION_NAMES", "AffineModule", "affine_of", "global_mean_of",
           "unsupported", "single", "is_add"]


class AffineModule(nn.Module):
    """``x * scale + shift`` with fixed constants: the torch module of gcref's
    :class:`~gcref.nn.Affine` (input scaling such as ``x / 255 * 2 - 1``)."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.scale, self.shift = float(scale), float(shift)

    def forward(self, x):
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}, shift={self.shift!r}"


class AfterHead:
    """A softmax or log-softmax (over the classes) after the head: accepted there and left out
    of the gcref network, whose logits are its input (see :func:`from_torch`)."""

    def __init__(self, what: str, where: str):
        self.what, self.where = what, where

    def describe(self) -> str:
        return self.what


def single(v, what, path, module):
    """An int, or a pair of equal ints (gcref's layers are square); else unsupported."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise unsupported(path, module, f"{what}={tuple(v)} (gcref needs equal sizes along "
                                            f"height and width)")
        v = v[0]
    return int(v)


def unsupported(path, module, detail):
    return UnsupportedModuleError(
        f"{path}: {type(module).__name__} with {detail} is not supported. gcref supports "
        f"{', '.join(SUPPORTED)}; the containers nn.Sequential and torchvision-structured VGG "
        f"and ResNet (BasicBlock, Bottleneck); other modules through their traced forward")


def _require(cond, path, module, detail):
    if not cond:
        raise unsupported(path, module, detail)


def _linear_from(path, m):
    return L.Linear(m.in_features, m.out_features, bias=m.bias is not None)


def _linear_to(layer):
    return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)


def _conv_from(path, m):
    _require(m.groups == 1, path, m, f"groups={m.groups}")
    _require(tuple(m.dilation) == (1, 1), path, m, f"dilation={tuple(m.dilation)}")
    _require(m.padding_mode == "zeros", path, m, f"padding_mode={m.padding_mode!r}")
    k = single(m.kernel_size, "kernel_size", path, m)
    stride = single(m.stride, "stride", path, m)
    padding = m.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        _require(stride == 1 and k % 2 == 1, path, m, "padding='same' and an even kernel")
        padding = (k - 1) // 2
    padding = single(padding, "padding", path, m)
    return L.Conv2d(m.in_channels, m.out_channels, k, stride, padding, bias=m.bias is not None)


def _conv_to(layer):
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                     layer.padding, bias=layer.bias)


def _pool_common(path, m):
    _require(not m.ceil_mode, path, m, "ceil_mode=True")
    k = single(m.kernel_size, "kernel_size", path, m)
    stride = m.stride if m.stride not in (None, (), []) else k
    return k, single(stride, "stride", path, m), single(m.padding, "padding", path, m)


def _maxpool_from(path, m):
    _require(single(m.dilation, "dilation", path, m) == 1, path, m, f"dilation={m.dilation}")
    _require(not m.return_indices, path, m, "return_indices=True")
    k, s, q = _pool_common(path, m)
    return L.MaxPool2d(k, s, padding=q)


def _maxpool_to(layer):
    return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)


def _avgpool_from(path, m):
    k, s, q = _pool_common(path, m)
    _require(q == 0, path, m, f"padding={q}")
    _require(m.divisor_override is None, path, m, f"divisor_override={m.divisor_override}")
    return L.AvgPool2d(k, s)


def _avgpool_to(layer):
    return nn.AvgPool2d(layer.kernel_size, layer.stride)


def _adaptive_from(path, m):
    size = m.output_size
    return L.AdaptiveAvgPool2d(tuple(size) if isinstance(size, (tuple, list)) else size)


def _adaptive_to(layer):
    oh, ow = layer.output_size
    return nn.AdaptiveAvgPool2d((oh, ow))


def _gelu_from(path, m):
    _require(m.approximate == "none", path, m, f"approximate={m.approximate!r} (gcref's GELU is "
                                               f"the exact erf form)")
    return L.GELU()


def _flatten_from(path, m):
    _require(m.start_dim == 1 and m.end_dim == -1, path, m,
             f"start_dim={m.start_dim}, end_dim={m.end_dim} (only the batch axis may be kept)")
    return L.Flatten()


def _batchnorm_from(kind):
    def convert(path, m):
        _require(m.affine, path, m, "affine=False")
        _require(m.track_running_stats and m.running_mean is not None, path, m,
                 "track_running_stats=False (evaluation would use batch statistics)")
        return kind(m.num_features, eps=m.eps)
    return convert


def _softmax_from(path, m):
    _require(m.dim in (None, 1, -1), path, m, f"dim={m.dim} (a softmax over the classes, dim=1)")
    return AfterHead(type(m).__name__, path)


#: torch module type -> ``(path, module) -> gcref layer`` (or :class:`AfterHead`)
FROM_TORCH: dict[type, object] = {
    nn.Linear: _linear_from,
    nn.Conv2d: _conv_from,
    nn.ReLU: lambda path, m: L.ReLU(),
    nn.Tanh: lambda path, m: L.Tanh(),
    nn.GELU: _gelu_from,
    nn.SiLU: lambda path, m: L.SiLU(),
    nn.MaxPool2d: _maxpool_from,
    nn.AvgPool2d: _avgpool_from,
    nn.AdaptiveAvgPool2d: _adaptive_from,
    nn.Flatten: _flatten_from,
    nn.BatchNorm2d: _batchnorm_from(L.BatchNorm2d),
    nn.Dropout: lambda path, m: L.Dropout(m.p),
    nn.LeakyReLU: lambda path, m: L.LeakyReLU(m.negative_slope),
    nn.Sigmoid: lambda path, m: L.Sigmoid(),
    nn.ELU: lambda path, m: L.ELU(m.alpha),
    nn.Softplus: lambda path, m: L.Softplus(m.beta, m.threshold),
    nn.BatchNorm1d: _batchnorm_from(L.BatchNorm1d),
    AffineModule: lambda path, m: L.Affine(m.scale, m.shift),
    nn.LogSoftmax: _softmax_from,
    nn.Softmax: _softmax_from,
}

#: gcref leaf layer type -> ``layer -> torch module``
LEAF_TO_TORCH: dict[type, object] = {
    L.Linear: _linear_to,
    L.Conv2d: _conv_to,
    L.ReLU: lambda layer: nn.ReLU(),
    L.Tanh: lambda layer: nn.Tanh(),
    L.GELU: lambda layer: nn.GELU(),
    L.SiLU: lambda layer: nn.SiLU(),
    L.MaxPool2d: _maxpool_to,
    L.AvgPool2d: _avgpool_to,
    L.AdaptiveAvgPool2d: _adaptive_to,
    L.Flatten: lambda layer: nn.Flatten(),
    L.BatchNorm2d: lambda layer: nn.BatchNorm2d(layer.num_features, eps=layer.eps),
    L.Dropout: lambda layer: nn.Dropout(layer.p),
    L.LeakyReLU: lambda layer: nn.LeakyReLU(layer.negative_slope),
    L.Sigmoid: lambda layer: nn.Sigmoid(),
    L.ELU: lambda layer: nn.ELU(layer.alpha),
    L.Softplus: lambda layer: nn.Softplus(layer.beta, layer.threshold),
    L.BatchNorm1d: lambda layer: nn.BatchNorm1d(layer.num_features, eps=layer.eps),
    L.Affine: lambda layer: AffineModule(layer.scale, layer.shift),
}

#: the torch modules ``from_torch`` converts (besides the containers)
SUPPORTED = tuple(t.__name__ for t in FROM_TORCH if t not in (nn.LogSoftmax, nn.Softmax)) \
    + ("Identity (skipped)", "LogSoftmax and Softmax (after the head only)")


# ---------------------------------------------------------------------------------------------
# Functional calls of a traced forward: each is the module of the same arguments
# ---------------------------------------------------------------------------------------------

def _dropout(p=0.5, training=True, inplace=False):
    if training:
        raise ValueError("training=True (F.dropout then drops in evaluation mode too; gcref "
                         "converts the evaluation function: pass training=self.training)")
    return nn.Dropout(p)


def _softmax(name):
    def make(dim=None, _stacklevel=3, dtype=None):
        if dtype is not None:
            raise ValueError(f"dtype={dtype}")
        return (nn.LogSoftmax if name == "log_softmax" else nn.Softmax)(dim)
    return make


def _unary(module_type):
    """For ``f(x, inplace=...)``: the module, the in-place flag dropped (evaluation only)."""
    return lambda *args, inplace=False, **kwargs: module_type(*args, **kwargs)


#: ``torch`` / ``torch.nn.functional`` function -> ``(*args after the input, **kwargs) -> module``
FUNCTIONS: dict = {
    F.relu: _unary(nn.ReLU), torch.relu: _unary(nn.ReLU), F.relu_: _unary(nn.ReLU),
    torch.relu_: _unary(nn.ReLU),
    F.gelu: lambda approximate="none": nn.GELU(approximate),
    F.silu: _unary(nn.SiLU),
    torch.tanh: nn.Tanh, F.tanh: nn.Tanh,
    torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid,
    F.leaky_relu: _unary(nn.LeakyReLU),
    F.elu: _unary(nn.ELU),
    F.softplus: nn.Softplus,
    F.max_pool2d: nn.MaxPool2d,
    F.avg_pool2d: nn.AvgPool2d,
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
    torch.flatten: lambda start_dim=0, end_dim=-1: nn.Flatten(start_dim, end_dim),
    F.dropout: _dropout,
    F.log_softmax: _softmax("log_softmax"), torch.log_softmax: _softmax("log_softmax"),
    F.softmax: _softmax("softmax"), torch.softmax: _softmax("softmax"),
}

#: ``Tensor`` method name -> ``(*args after the tensor, **kwargs) -> module``
METHODS: dict = {
    "relu": nn.ReLU, "relu_": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "flatten": lambda start_dim=0, end_dim=-1: nn.Flatten(start_dim, end_dim),
    "log_softmax": _softmax("log_softmax"), "softmax": _softmax("softmax"),
}

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)


def is_add(node) -> bool:
    """Whether ``node`` adds two tensors: ``a + b``, ``a += b``, ``torch.add(a, b)``,
    ``a.add(b)`` (no ``alpha``)."""
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        pass
    elif node.op == "call_method" and node.target in ("add", "add_"):
        pass
    else:
        return False
    return len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args)


# ---------------------------------------------------------------------------------------------
# Arithmetic with a number (input scaling: x / 255 * 2 - 1) and global mean pooling
# ---------------------------------------------------------------------------------------------

def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: ``(scale, shift)`` of ``x op c`` and of ``c op x`` for a number ``c`` (``None``: not affine)
_AFFINE_OPS = {
    "add": (lambda c: (1.0, c), lambda c: (1.0, c)),
    "sub": (lambda c: (1.0, -c), lambda c: (-1.0, c)),
    "mul": (lambda c: (c, 0.0), lambda c: (c, 0.0)),
    "div": (lambda c: (1.0 / c, 0.0), None),
}
_AFFINE_FUNCTIONS = {operator.add: "add", operator.iadd: "add", torch.add: "add",
                     operator.sub: "sub", operator.isub: "sub", torch.sub: "sub",
                     operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
                     operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
                     torch.true_divide: "div"}
_AFFINE_METHODS = {"add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul",
                   "mul_": "mul", "div": "div", "div_": "div", "true_divide": "div"}


def affine_of(node, cur):
    """``(scale, shift)`` when ``node`` is ``cur`` combined with a number by ``+ - * /`` (either
    side, except ``c / x``) or negated; ``None`` when it is not such a node; ``ValueError`` (the
    reason) when it is arithmetic on ``cur`` that is not affine in it."""
    if node.op == "call_function" and node.target in (operator.neg, torch.neg):
        return (-1.0, 0.0) if node.args == (cur,) and not node.kwargs else None
    if node.op == "call_method" and node.target in ("neg", "neg_"):
        return (-1.0, 0.0) if node.args == (cur,) and not node.kwargs else None
    if node.op == "call_function":
        kind = _AFFINE_FUNCTIONS.get(node.target)
    elif node.op == "call_method":
        kind = _AFFINE_METHODS.get(node.target)
    else:
        kind = None
    if kind is None or len(node.args) != 2:
        return None
    a, b = node.args
    if a is cur and _number(b):
        make, c = _AFFINE_OPS[kind][0], b
    elif b is cur and _number(a):
        make, c = _AFFINE_OPS[kind][1], a
    else:
        return None
    if node.kwargs:
        raise ValueError(f"the arguments {sorted(node.kwargs)}")
    if make is None:
        raise ValueError("a number divided by the tensor (not affine in it)")
    if kind == "div" and c == 0:
        raise ValueError("a division by 0")
    return make(float(c))


def global_mean_of(node, cur):
    """``keepdim`` when ``node`` is ``cur.mean((2, 3))`` / ``torch.mean(cur, (-2, -1))`` (any
    spelling of the two spatial axes of an ``(N, C, H, W)`` batch); ``None`` when it is not a
    mean; ``ValueError`` (the reason) for a mean over other axes."""
    if not ((node.op == "call_method" and node.target == "mean")
            or (node.op == "call_function" and node.target is torch.mean)):
        return None
    if not node.args or node.args[0] is not cur:
        return None
    kwargs = dict(node.kwargs)
    dims = node.args[1] if len(node.args) > 1 else kwargs.pop("dim", None)
    keepdim = node.args[2] if len(node.args) > 2 else kwargs.pop("keepdim", False)
    if kwargs or len(node.args) > 3:
        raise ValueError(f"the arguments {sorted(kwargs) or node.args[3:]}")
    axes = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if not all(isinstance(d, int) for d in axes) or sorted(d % 4 for d in axes) != [2, 3] \
            or not isinstance(keepdim, bool):
        raise ValueError(f"dim={dims!r} (only the mean over the spatial axes (2, 3) of an "
                         f"(N, C, H, W) batch, global average pooling, is supported)")
    return keepdim


class SizeCheck:
    """A ``view``/``reshape`` to ``(batch, size)``: the flattened size there must be ``size``
    (checked by ``from_torch``, where the shapes are known, then dropped)."""

    def __init__(self, size: int, where: str):
        self.size, self.where = size, where

    def describe(self) -> str:
        return f"view(batch, {self.size})"


#: how refusals list what a traced forward may call
FUNCTION_NAMES = ("F.relu, F.gelu, F.silu, F.leaky_relu, F.elu, F.softplus, torch.tanh, "
                  "torch.sigmoid (and the Tensor methods relu, tanh, sigmoid), F.max_pool2d, "
                  "F.avg_pool2d, F.adaptive_avg_pool2d, x.mean((2, 3)) (global average "
                  "pooling), torch.flatten(x, 1), x.view/reshape to (batch, -1), + - * / with a "
                  "number (input scaling: x / 255 * 2 - 1), F.dropout(training=False), "
                  "F.log_softmax/F.softmax after the head, and + between two branches from one "
                  "tensor (a residual connection)")
