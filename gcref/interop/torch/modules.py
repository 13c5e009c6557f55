"""Torch-side modules of gcref networks (what :func:`~gcref.interop.torch.to_torch` builds):
torchvision's ``BasicBlock`` / ``Bottleneck`` (same children, names and forward), a residual
connection, and :class:`TorchNetwork`."""

from __future__ import annotations

from torch import nn

from ...nn import layers as L
from ...nn.containers import Sequential
from .leaves import LEAF_TO_TORCH

__all__ = ["BasicBlock", "Bottleneck", "ResidualModule", "TorchNetwork", "module_of", "leaves"]


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (same children, names and forward), built from gcref's:
    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, ``shortcut = downsample or identity``."""

    def __init__(self, block: L.BasicBlock):
        super().__init__()
        for name, layer in block.main.children:
            self.add_module(name, module_of(layer))
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
                self.add_module(name, module_of(layer))
        self.relu = nn.ReLU()
        self.downsample = None if block.downsample is None else _chain_module(block.downsample)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResidualModule(nn.Module):
    """A gcref :class:`~gcref.nn.Residual`: ``final(main(x) + shortcut(x))``, the branches'
    modules at their gcref names (the shortcut's under ``shortcut_prefix``)."""

    def __init__(self, block: L.Residual):
        super().__init__()
        pre = block.shortcut_prefix
        main = [(n, module_of(layer)) for n, layer in leaves(block.main.children)]
        short = [] if block.shortcut is None else \
            [(pre + n, module_of(layer)) for n, layer in leaves(block.shortcut.children)]
        for dotted, module in main + short:
            attach(self, dotted, module)
        self._main = [m for _, m in main]
        self._short = [m for _, m in short]
        self._final = None if block.final is None else module_of(block.final)

    def forward(self, x):
        out = x
        for m in self._main:
            out = m(out)
        identity = x
        for m in self._short:
            identity = m(identity)
        out = out + identity
        return out if self._final is None else self._final(out)


def _chain_module(seq: Sequential) -> nn.Sequential:
    out = nn.Sequential()
    for name, layer in seq.children:
        out.add_module(name, module_of(layer))
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
            attach(self, dotted, module)
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


def attach(root: nn.Module, dotted: str, module: nn.Module) -> None:
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


#: gcref layer type -> ``layer -> torch module`` (composites build their children with module_of)
TO_TORCH: dict[type, object] = {
    **LEAF_TO_TORCH,
    L.BasicBlock: BasicBlock,
    L.Bottleneck: Bottleneck,
    L.Residual: ResidualModule,
    Sequential: _chain_module,
}


def module_of(layer) -> nn.Module:
    """The torch module of a gcref layer."""
    make = TO_TORCH.get(type(layer))
    if make is None:
        raise TypeError(f"net: gcref layer {type(layer).__name__} has no PyTorch counterpart in "
                        f"gcref.interop.torch")
    return make(layer)


def leaves(children, prefix=""):
    """gcref ``(name, layer)`` pairs with nested ``Sequential`` chains flattened to dotted names."""
    out = []
    for name, layer in children:
        if type(layer) is Sequential:
            out.extend(leaves(layer.children, f"{prefix}{name}."))
        else:
            out.append((prefix + name, layer))
    return out
