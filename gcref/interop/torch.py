"""PyTorch interop: ``from_torch`` (a ``torch.nn.Module`` -> gcref ``Network`` + float64 params)
and its inverse ``to_torch``.

A gcref network is an embedding ``f`` (a chain of layers) followed by a linear head ``h``; its
parameters are a ``dict[str, ndarray]`` with PyTorch's names and layouts (:mod:`gcref.nn.network`).
Converting is therefore a matter of reading the module tree as a chain
and copying ``state_dict()`` in float64:

- **Chains** are ``nn.Sequential`` (nested at any depth) and two families recognised by their
  torchvision structure and names, whose ``forward`` is not a plain chain:

  * VGG: children ``features``, ``avgpool``, ``classifier``; computed as
    ``features -> avgpool -> flatten -> classifier``.
  * ResNet: children ``conv1``, ``bn1``, ``relu``, ``maxpool`` (optional: the CIFAR stem has
    none, or an ``nn.Identity``), ``layer1`` ... ``layerK``, ``avgpool``, ``fc``; computed as
    ``conv1 -> bn1 -> relu -> maxpool -> layer1 ... layerK -> avgpool -> flatten -> fc``.
    Its blocks are recognised by their children: ``conv1, bn1, relu, conv2, bn2[, downsample]``
    is a ``BasicBlock``, ``conv1, bn1, conv2, bn2, conv3, bn3, relu[, downsample]`` a
    ``Bottleneck`` (torchvision v1.5: the stride on ``conv2``).

  torchvision itself is not needed: any module with that structure and those names converts.
- **Leaves** (:data:`SUPPORTED`): ``Linear``; ``Conv2d`` (square kernel, stride, zero padding,
  bias; ``groups=1``, ``dilation=1``); ``ReLU``, ``Tanh``, ``GELU`` (exact erf form), ``SiLU``;
  ``MaxPool2d`` (kernel, stride, padding); ``AvgPool2d`` (no padding); ``AdaptiveAvgPool2d``;
  ``Flatten`` (from axis 1); ``BatchNorm2d`` (affine, running statistics); ``Dropout``.
  ``nn.Identity`` is skipped. Any other module, or a supported one with an unsupported setting,
  raises :class:`UnsupportedModuleError` naming its path (``layer3.1.conv2: Conv2d with
  groups=2 is not supported ...``).
- **Names**: each gcref layer is named by its module path (``features.0``, ``layer1.0``,
  ``classifier.6``), so the parameter keys are the module's ``state_dict`` keys. The two chains'
  implicit flattens are named ``flatten`` (they have no parameters).

Choices, documented once here:

- **Evaluation mode.** gcref computes a module's evaluation-mode function (batch norm with its
  running statistics, dropout as the identity). A module whose batch norm or dropout is in
  training mode is converted all the same, with a ``UserWarning`` saying so; the module itself
  is not changed.
- **float64.** Parameters and buffers of any real floating dtype are converted to float64
  (float16/bfloat16/float32 values are float64 values: the conversion is exact). The gcref
  network then computes in float64, i.e. it matches ``module.double()``. Complex or integer
  parameters raise a ``TypeError``.
- **The embedding** is the input of the last ``Linear`` (the head); modules after the head must
  be identities in evaluation mode (``Dropout``, ``Identity``). ``embedding="path"`` instead
  names the module whose *output* is the embedding: the head is then the first ``Linear`` after
  it (``Dropout`` and ``Flatten`` in between are kept in the embedding: they do not change its
  values), and any modules after that head are not part of the gcref network.
"""

from __future__ import annotations

import warnings

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - exercised only without torch
    raise ImportError("gcref.interop.torch needs PyTorch, an optional dependency of gcref "
                      "(pip install torch); the rest of gcref works without it") from err

from .._validation import check_int
from ..nn import layers as L
from ..nn.containers import Sequential
from ..nn.network import Network

__all__ = ["from_torch", "to_torch", "TorchNetwork", "BasicBlock", "Bottleneck",
           "UnsupportedModuleError", "SUPPORTED"]


class UnsupportedModuleError(ValueError):
    """A module (named by its path in the model) that gcref cannot represent."""


# ---------------------------------------------------------------------------------------------
# Torch-side modules with torchvision's structure, names and forward
# ---------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (same children, names and forward), built from gcref's:
    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, ``shortcut = downsample or identity``."""

    def __init__(self, block: L.BasicBlock):
        super().__init__()
        for name, layer in block.main.children:
            self.add_module(name, _module(layer))
        self.downsample = None if block.downsample is None else _chain_module(block.downsample)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (v1.5; same children, names and forward), built from gcref's:
    ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``."""

    def __init__(self, block: L.Bottleneck):
        super().__init__()
        for name, layer in block.main.children:
            if not name.startswith("relu"):
                self.add_module(name, _module(layer))
        self.relu = nn.ReLU()
        self.downsample = None if block.downsample is None else _chain_module(block.downsample)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def _chain_module(seq: Sequential) -> nn.Sequential:
    out = nn.Sequential()
    for name, layer in seq.children:
        out.add_module(name, _module(layer))
    return out


class TorchNetwork(nn.Module):
    """A gcref network as a torch module (what :func:`to_torch` returns).

    Its submodules sit at the gcref names (``features.0`` is ``self.features[0]``), so
    ``state_dict()`` has the gcref parameter keys. ``forward(x)`` runs the layers in gcref's
    order and returns the logits (or the embedding, for ``to_torch(..., output="embedding")``);
    ``embed(x)`` returns the embedding.
    """

    def __init__(self, named_modules: list[tuple[str, nn.Module]], has_head: bool, name: str):
        super().__init__()
        for dotted, module in named_modules:
            _attach(self, dotted, module)
        self._names = [n for n, _ in named_modules]      # plain lists: not registered twice
        self._order = [m for _, m in named_modules]
        self._has_head = has_head
        self.gcref_name = name

    def embed(self, x):
        """The embedding ``f(x)``."""
        for m in (self._order[:-1] if self._has_head else self._order):
            x = m(x)
        return x

    def forward(self, x):
        x = self.embed(x)
        return self._order[-1](x) if self._has_head else x


def _attach(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Register ``module`` at the dotted path, creating ``nn.Sequential`` parents as needed."""
    *parents, leaf = dotted.split(".")
    parent = root
    for part in parents:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Sequential()
            parent.add_module(part, child)
        elif type(child) is not nn.Sequential:
            raise ValueError(f"net: layer name '{dotted}' nests under the layer '{part}'")
        parent = child
    if leaf in parent._modules:
        raise ValueError(f"net: layer name '{dotted}' is used twice")
    parent.add_module(leaf, module)


# ---------------------------------------------------------------------------------------------
# The conversion table: one entry per leaf type, both directions
# ---------------------------------------------------------------------------------------------

def _single(v, what, path, module):
    """An int, or a pair of equal ints (gcref's layers are square); else unsupported."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise _unsupported(path, module, f"{what}={tuple(v)} (gcref needs equal sizes along "
                                             f"height and width)")
        v = v[0]
    return int(v)


def _unsupported(path, module, detail):
    return UnsupportedModuleError(
        f"{path}: {type(module).__name__} with {detail} is not supported. gcref supports "
        f"{', '.join(SUPPORTED)}; the containers nn.Sequential and torchvision-structured VGG "
        f"and ResNet (BasicBlock, Bottleneck)")


def _require(cond, path, module, detail):
    if not cond:
        raise _unsupported(path, module, detail)


def _linear_from(path, m):
    return L.Linear(m.in_features, m.out_features, bias=m.bias is not None)


def _linear_to(layer):
    return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)


def _conv_from(path, m):
    _require(m.groups == 1, path, m, f"groups={m.groups}")
    _require(tuple(m.dilation) == (1, 1), path, m, f"dilation={tuple(m.dilation)}")
    _require(m.padding_mode == "zeros", path, m, f"padding_mode={m.padding_mode!r}")
    k = _single(m.kernel_size, "kernel_size", path, m)
    stride = _single(m.stride, "stride", path, m)
    padding = m.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        _require(stride == 1 and k % 2 == 1, path, m, "padding='same' and an even kernel")
        padding = (k - 1) // 2
    padding = _single(padding, "padding", path, m)
    return L.Conv2d(m.in_channels, m.out_channels, k, stride, padding, bias=m.bias is not None)


def _conv_to(layer):
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                     layer.padding, bias=layer.bias)


def _pool_common(path, m):
    _require(not m.ceil_mode, path, m, "ceil_mode=True")
    k = _single(m.kernel_size, "kernel_size", path, m)
    stride = m.stride if m.stride not in (None, (), []) else k
    return k, _single(stride, "stride", path, m), _single(m.padding, "padding", path, m)


def _maxpool_from(path, m):
    _require(_single(m.dilation, "dilation", path, m) == 1, path, m, f"dilation={m.dilation}")
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


def _batchnorm_from(path, m):
    _require(m.affine, path, m, "affine=False")
    _require(m.track_running_stats and m.running_mean is not None, path, m,
             "track_running_stats=False (evaluation would use batch statistics)")
    return L.BatchNorm2d(m.num_features, eps=m.eps)


def _batchnorm_to(layer):
    return nn.BatchNorm2d(layer.num_features, eps=layer.eps)


#: torch module type -> ``(path, module) -> gcref layer``
_FROM_TORCH: dict[type, object] = {
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
    nn.BatchNorm2d: _batchnorm_from,
    nn.Dropout: lambda path, m: L.Dropout(m.p),
}

#: gcref layer type -> ``layer -> torch module`` (composites build their children with _module)
_TO_TORCH: dict[type, object] = {
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
    L.BatchNorm2d: _batchnorm_to,
    L.Dropout: lambda layer: nn.Dropout(layer.p),
    L.BasicBlock: BasicBlock,
    L.Bottleneck: Bottleneck,
    Sequential: _chain_module,
}

#: the torch modules ``from_torch`` converts (besides the containers)
SUPPORTED = tuple(t.__name__ for t in _FROM_TORCH) + ("Identity (skipped)",)


def _module(layer) -> nn.Module:
    make = _TO_TORCH.get(type(layer))
    if make is None:
        raise TypeError(f"net: gcref layer {type(layer).__name__} has no PyTorch counterpart in "
                        f"gcref.interop.torch")
    return make(layer)


# ---------------------------------------------------------------------------------------------
# from_torch: the module tree read as a chain
# ---------------------------------------------------------------------------------------------

_VGG_CHILDREN = ("features", "avgpool", "classifier")
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
_BASIC_CHILDREN = {"conv1", "bn1", "relu", "conv2", "bn2"}
_BOTTLENECK_CHILDREN = {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"}


def _join(path, name):
    return f"{path}.{name}" if path else name


def _children(m) -> dict[str, nn.Module]:
    # _modules, not named_children(): a module used twice is computed twice.
    return {name: child for name, child in m._modules.items() if child is not None}


def _is_resnet(children) -> list[str] | None:
    """The chain order of a torchvision-structured ResNet's children, or None."""
    stages = sorted((n for n in children if n.startswith("layer") and n[5:].isdigit()),
                    key=lambda n: int(n[5:]))
    if not stages or [int(n[5:]) for n in stages] != list(range(1, len(stages) + 1)):
        return None
    order = ["conv1", "bn1", "relu"] + (["maxpool"] if "maxpool" in children else []) \
        + stages + ["avgpool", "flatten", "fc"]
    return order if set(children) | {"flatten"} == set(order) else None


def _flatten_module(module, path) -> list[tuple[str, object]]:
    """The module as a chain of ``(path, gcref layer)``; containers are flattened."""
    convert = _FROM_TORCH.get(type(module))
    if convert is not None:
        return [(path, convert(path, module))]
    if type(module) is nn.Identity:
        return []
    if type(module) is TorchNetwork:
        return [item for name, m in zip(module._names, module._order)
                for item in _flatten_module(m, _join(path, name))]
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return _flatten_children(module, path, list(_children(module)))
    children = _children(module)
    if set(children) | {"flatten"} == set(_VGG_CHILDREN) | {"flatten"}:
        return _flatten_children(module, path, ["features", "avgpool", "flatten", "classifier"])
    order = _is_resnet(children)
    if order is not None:
        return _flatten_children(module, path, order)
    block = _block_from(path, module, children)
    if block is not None:
        return [(path, block)]
    what = "its own forward" if children else "no gcref counterpart"
    raise UnsupportedModuleError(
        f"{path or 'module'}: {type(module).__name__} ({what}) is not supported. gcref supports "
        f"{', '.join(SUPPORTED)}; the containers nn.Sequential and torchvision-structured VGG "
        f"(features, avgpool, classifier) and ResNet (conv1, bn1, relu, maxpool, layer1..4, "
        f"avgpool, fc; BasicBlock, Bottleneck)")


def _flatten_children(module, path, order):
    out = []
    for name in order:
        if name == "flatten" and name not in module._modules:
            out.append((_join(path, name), L.Flatten()))
        else:
            out.extend(_flatten_module(getattr(module, name), _join(path, name)))
    return out


def _block_from(path, module, children):
    """A gcref residual block for a torchvision-structured block, or None if it is not one."""
    names = set(children) - {"downsample"}
    if names == _BASIC_CHILDREN:
        conv1 = children["conv1"]
        block = L.BasicBlock(conv1.in_channels, conv1.out_channels,
                             _single(conv1.stride, "stride", _join(path, "conv1"), conv1))
    elif names == _BOTTLENECK_CHILDREN:
        conv2, conv3 = children["conv2"], children["conv3"]
        if conv3.out_channels % L.Bottleneck.expansion:
            raise UnsupportedModuleError(
                f"{_join(path, 'conv3')}: a Bottleneck with {conv3.out_channels} output channels "
                f"is not supported: gcref's has 4 x planes")
        block = L.Bottleneck(children["conv1"].in_channels,
                             conv3.out_channels // L.Bottleneck.expansion,
                             _single(conv2.stride, "stride", _join(path, "conv2"), conv2),
                             width=conv2.out_channels)
    else:
        return None
    _match_block(path, module, children, block, type(module).__name__)
    return block


def _match_block(path, module, children, block, kind):
    """Every child of the torch block must convert to the gcref block's layer of that name."""
    expected = dict(block.main.children)
    expected["relu"] = L.ReLU()                 # torchvision's one ReLU module, used at every ReLU
    for name, child in children.items():
        child_path = _join(path, name)
        if name == "downsample":
            if block.downsample is None:
                raise UnsupportedModuleError(
                    f"{child_path}: a downsample where the shapes need none (stride 1, same "
                    f"channels) is not supported: gcref's {type(block).__name__} uses the identity")
            got = [(n, layer.describe()) for n, layer in _flatten_module(child, child_path)]
            want = [(_join(child_path, n), layer.describe()) for n, layer in block.downsample.children]
            if got != want:
                raise UnsupportedModuleError(
                    f"{child_path}: {got} does not match a torchvision downsample {want}")
            continue
        got = _flatten_module(child, child_path)
        want = expected[name].describe()
        if len(got) != 1 or got[0][1].describe() != want:
            desc = got[0][1].describe() if len(got) == 1 else type(child).__name__
            raise UnsupportedModuleError(
                f"{child_path}: {desc} does not fit a torchvision {kind}, which has {want} there")
    if block.downsample is not None and "downsample" not in children:
        raise UnsupportedModuleError(f"{path}: a {kind} changing the shape "
                                     f"needs a downsample (1x1 conv, batch norm)")


def _input_shape(input_shape):
    if isinstance(input_shape, (int, np.integer)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(f"input_shape must be a tuple of positive ints (one example, no batch "
                        f"axis), got {input_shape!r}")
    return tuple(check_int(s, "input_shape entry", minimum=1) for s in input_shape)


#: layers that are the identity in evaluation mode (dropped after the head)
_IDENTITY_LAYERS = (L.Dropout,)
#: layers that keep their input's values (kept in the embedding before the head)
_VALUE_PRESERVING = _IDENTITY_LAYERS + (L.Flatten,)


def _split_head(chain, embedding):
    """``(embedding layers, (head name, head))`` from the flattened chain."""
    linear_at = [i for i, (_, layer) in enumerate(chain) if type(layer) is L.Linear]
    if embedding is None:
        if not linear_at:
            raise ValueError("module has no nn.Linear: a gcref network is an embedding followed by "
                             "a linear head (the last Linear)")
        head_at = linear_at[-1]
        rest = [(n, layer) for n, layer in chain[head_at + 1:] if type(layer) not in _IDENTITY_LAYERS]
        if rest:
            raise ValueError(f"module: '{rest[0][0]}' ({rest[0][1].describe()}) comes after the last "
                             f"Linear '{chain[head_at][0]}'; a gcref network ends in its linear "
                             f"head (pass embedding= to end the network earlier)")
        return chain[:head_at], chain[head_at]
    if not isinstance(embedding, str):
        raise TypeError(f"embedding must be a module path (str) or None, got {embedding!r}")
    inside = [i for i, (n, _) in enumerate(chain) if n == embedding or n.startswith(embedding + ".")]
    if not inside:
        owner = [n for n, _ in chain if embedding.startswith(n + ".")]
        if owner:
            raise ValueError(f"embedding='{embedding}' is inside the block '{owner[0]}': the "
                             f"embedding must be the output of a module of the chain")
        raise ValueError(f"embedding='{embedding}' names no module of the chain; modules: "
                         f"{', '.join(n for n, _ in chain)}")
    end = inside[-1] + 1
    while end < len(chain) and type(chain[end][1]) in _VALUE_PRESERVING:
        end += 1
    if end >= len(chain) or type(chain[end][1]) is not L.Linear:
        nxt = chain[end][0] if end < len(chain) else "nothing"
        raise ValueError(f"embedding='{embedding}': the module after it is {nxt}, not a Linear; "
                         f"a gcref network is an embedding followed by a linear head")
    return chain[:end], chain[end]


def _params_from(module, net: Network) -> dict[str, np.ndarray]:
    state = module.state_dict()
    wanted = {**net.param_specs(), **net.buffer_specs()}
    params = {}
    for key in wanted:
        t = state[key]
        if not t.is_floating_point():
            raise TypeError(f"module: parameter '{key}' has dtype {t.dtype}; gcref needs real "
                            f"floating-point parameters")
        params[key] = t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    return net.check_params(params, "module's state_dict")


def from_torch(module, input_shape, embedding: str | None = None) -> tuple[Network, dict]:
    """Convert a ``torch.nn.Module`` into a gcref :class:`~gcref.nn.Network` and float64 params.

    Parameters
    ----------
    module : torch.nn.Module
        A chain of supported modules (see the module docstring: ``nn.Sequential``,
        torchvision-structured VGG and ResNet). Its evaluation-mode function is converted; a
        module in training mode gives a ``UserWarning`` (it is not changed).
    input_shape : tuple of int
        The shape of one example, without the batch axis, e.g. ``(3, 32, 32)``.
    embedding : str, optional
        The path of the module whose output is the embedding (default: the input of the last
        ``Linear`` is the embedding and that ``Linear`` is the head).

    Returns
    -------
    (Network, dict)
        The network (layers named by their module paths) and its parameters: ``state_dict()``
        in float64 (``num_batches_tracked`` left out).

    >>> net, params = from_torch(model, (3, 32, 32))      # doctest: +SKIP
    >>> net.embed(params, X)                              # doctest: +SKIP
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    shape = _input_shape(input_shape)
    # Training mode changes the function only where batch norm or dropout sits.
    training = [n or "module" for n, m in module.named_modules()
                if m.training and isinstance(m, _MODE_DEPENDENT)]
    if training:
        warnings.warn(f"module is in training mode ({training[0]}"
                      f"{' and others' if len(training) > 1 else ''}); gcref converts its "
                      f"evaluation-mode function (batch norm with running statistics, dropout as "
                      f"the identity). Call module.eval() to silence this.", UserWarning,
                      stacklevel=2)
    chain = _flatten_module(module, "")
    emb, head = _split_head(chain, embedding)
    try:
        net = Network(emb, head, shape, name=type(module).__name__)
    except ValueError as err:
        raise ValueError(f"input_shape={shape} does not fit module: {err}") from None
    return net, _params_from(module, net)


# ---------------------------------------------------------------------------------------------
# to_torch
# ---------------------------------------------------------------------------------------------

def _leaves(children, prefix=""):
    """gcref ``(name, layer)`` pairs with nested ``Sequential`` chains flattened to dotted names."""
    out = []
    for name, layer in children:
        if type(layer) is Sequential:
            out.extend(_leaves(layer.children, f"{prefix}{name}."))
        else:
            out.append((prefix + name, layer))
    return out


def to_torch(net: Network, params, output: str = "logits") -> TorchNetwork:
    """The gcref network as a float64 ``torch.nn.Module`` in evaluation mode (the inverse of
    :func:`from_torch`): the same parameter names and values, the same function.

    ``output="logits"`` (default): ``forward`` gives the logits, ``embed`` the embedding;
    ``output="embedding"``: the embedding network alone (the head left out), e.g. to pass an
    embedding ``f`` to a GC implementation. Batch-norm ``num_batches_tracked`` is set to 0.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gcref.nn.Network, got {type(net).__name__}")
    if output not in ("logits", "embedding"):
        raise ValueError(f"output must be 'logits' or 'embedding', got {output!r}")
    params = net.check_params(params)
    layers = _leaves(net.embedding.children)
    if output == "logits":
        layers.append((net.head_name, net.head))
    model = TorchNetwork([(name, _module(layer)) for name, layer in layers],
                         has_head=output == "logits", name=net.name)
    model = model.to(torch.float64).eval()
    state = {}
    for key, ref in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(ref)
        else:
            state[key] = torch.from_numpy(np.array(params[key], dtype=np.float64))
    model.load_state_dict(state, strict=True)
    return model
