"""The module tree read as a chain of ``(path, gcref layer)``: leaves by the conversion table,
``nn.Sequential`` and torchvision-structured VGG / ResNet (and their blocks) by their structure
and names, and any other module with a ``forward`` of its own through its traced graph
(:mod:`.trace`)."""

from __future__ import annotations

from torch import nn

from ...nn import layers as L
from ._common import UnsupportedModuleError, join
from .leaves import FROM_TORCH, SUPPORTED, single
from .modules import TorchNetwork
from .trace import trace_chain

__all__ = ["flatten_module", "is_structural"]

_VGG_CHILDREN = ("features", "avgpool", "classifier")
_BASIC_CHILDREN = {"conv1", "bn1", "relu", "conv2", "bn2"}
_BOTTLENECK_CHILDREN = {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"}


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


def _is_vgg(children) -> bool:
    return set(children) | {"flatten"} == set(_VGG_CHILDREN) | {"flatten"}


def _is_plain_sequential(module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _own_forward(module) -> bool:
    """A module written outside PyTorch with a ``forward`` of its own: read through tracing."""
    cls = type(module)
    return not cls.__module__.startswith("torch.") and cls.forward is not nn.Module.forward


def is_structural(module) -> bool:
    """Whether :func:`flatten_module` reads ``module`` without tracing it (a leaf of the trace)."""
    if type(module) in FROM_TORCH or type(module) in (nn.Identity, TorchNetwork) \
            or _is_plain_sequential(module):
        return True
    children = _children(module)
    if _is_vgg(children) or _is_resnet(children) is not None or _block_kind(children) is not None:
        return True
    return not _own_forward(module)          # torch's own modules: converted or refused by name


def flatten_module(module, path) -> list[tuple[str, object]]:
    """The module as a chain of ``(path, gcref layer)``; containers are flattened."""
    convert = FROM_TORCH.get(type(module))
    if convert is not None:
        return [(path, convert(path, module))]
    if type(module) is nn.Identity:
        return []
    if type(module) is TorchNetwork:
        return [item for name, m in zip(module._names, module._order)
                for item in flatten_module(m, join(path, name))]
    if _is_plain_sequential(module):
        return _flatten_children(module, path, list(_children(module)))
    children = _children(module)
    if _is_vgg(children):
        return _flatten_children(module, path, ["features", "avgpool", "flatten", "classifier"])
    order = _is_resnet(children)
    if order is not None:
        return _flatten_children(module, path, order)
    block = _block_from(path, module, children)
    if block is not None:
        return [(path, block)]
    if _own_forward(module):
        return trace_chain(module, path, flatten_module, is_structural)
    what = "its own forward" if children else "no gcref counterpart"
    raise UnsupportedModuleError(
        f"{path or 'module'}: {type(module).__name__} ({what}) is not supported. gcref supports "
        f"{', '.join(SUPPORTED)}; the containers nn.Sequential and torchvision-structured VGG "
        f"(features, avgpool, classifier) and ResNet (conv1, bn1, relu, maxpool, layer1..4, "
        f"avgpool, fc; BasicBlock, Bottleneck); modules of your own through their traced forward")


def _flatten_children(module, path, order):
    out = []
    for name in order:
        if name == "flatten" and name not in module._modules:
            out.append((join(path, name), L.Flatten()))
        else:
            out.extend(flatten_module(getattr(module, name), join(path, name)))
    return out


def _block_kind(children):
    names = set(children) - {"downsample"}
    if names == _BASIC_CHILDREN:
        return "basic"
    if names == _BOTTLENECK_CHILDREN:
        return "bottleneck"
    return None


def _block_from(path, module, children):
    """A gcref residual block for a torchvision-structured block, or None if it is not one."""
    kind = _block_kind(children)
    if kind == "basic":
        conv1 = children["conv1"]
        block = L.BasicBlock(conv1.in_channels, conv1.out_channels,
                             single(conv1.stride, "stride", join(path, "conv1"), conv1))
    elif kind == "bottleneck":
        conv2, conv3 = children["conv2"], children["conv3"]
        if conv3.out_channels % L.Bottleneck.expansion:
            raise UnsupportedModuleError(
                f"{join(path, 'conv3')}: a Bottleneck with {conv3.out_channels} output channels "
                f"is not supported: gcref's has 4 x planes")
        block = L.Bottleneck(children["conv1"].in_channels,
                             conv3.out_channels // L.Bottleneck.expansion,
                             single(conv2.stride, "stride", join(path, "conv2"), conv2),
                             width=conv2.out_channels)
    else:
        return None
    _match_block(path, children, block, type(module).__name__)
    return block


def _match_block(path, children, block, kind):
    """Every child of the torch block must convert to the gcref block's layer of that name."""
    expected = dict(block.main.children)
    expected["relu"] = L.ReLU()                 # torchvision's one ReLU module, used at every ReLU
    for name, child in children.items():
        child_path = join(path, name)
        if name == "downsample":
            if block.downsample is None:
                raise UnsupportedModuleError(
                    f"{child_path}: a downsample where the shapes need none (stride 1, same "
                    f"channels) is not supported: gcref's {type(block).__name__} uses the identity")
            got = [(n, layer.describe()) for n, layer in flatten_module(child, child_path)]
            want = [(join(child_path, n), layer.describe()) for n, layer in block.downsample.children]
            if got != want:
                raise UnsupportedModuleError(
                    f"{child_path}: {got} does not match a torchvision downsample {want}")
            continue
        got = flatten_module(child, child_path)
        want = expected[name].describe()
        if len(got) != 1 or got[0][1].describe() != want:
            desc = got[0][1].describe() if len(got) == 1 else type(child).__name__
            raise UnsupportedModuleError(
                f"{child_path}: {desc} does not fit a torchvision {kind}, which has {want} there")
    if block.downsample is not None and "downsample" not in children:
        raise UnsupportedModuleError(f"{path}: a {kind} changing the shape "
                                     f"needs a downsample (1x1 conv, batch norm)")
