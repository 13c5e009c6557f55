"""Architectures used in the paper and in teaching runs, with PyTorch parameter names.

Every constructor returns a :class:`~gcref.nn.network.Network` whose embedding is the penultimate
layer's (post-activation) features and whose head is the last linear layer.
"""

from __future__ import annotations

import numbers

from .._validation import check_int
from .layers import (GELU, AdaptiveAvgPool2d, AvgPool2d, BasicBlock, BatchNorm2d, Bottleneck,
                     Conv2d, Flatten, Linear, MaxPool2d, ReLU, SiLU, Tanh)
from .network import Network

__all__ = ["mlp", "cnn", "vgg", "resnet18", "resnet50", "VGG_CONFIGS", "ARCHITECTURES", "build"]

VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}

_ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "gelu": GELU, "silu": SiLU}


def _check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, numbers.Real):
        raise TypeError(f"width must be a positive number, got {width!r}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    return float(width)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _input_shape(input_shape, name="input_shape"):
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of positive ints, got {input_shape!r}") from None
    return tuple(check_int(s, name, minimum=1) for s in shape)


def mlp(widths, num_classes: int, input_shape=None, activation: str = "relu") -> Network:
    """Fully connected network ``widths[0] -> ... -> widths[-1]`` (embedding) ``-> num_classes``.

    Every hidden linear layer is followed by the activation, so the embedding ``f`` is the
    post-activation output of the last hidden layer (``p = widths[-1]``). Names follow
    ``nn.Sequential``: ``features.0`` (Flatten, only when ``input_shape`` has several axes),
    then Linear / activation pairs, and the head ``classifier``.

    >>> net = mlp([64, 128, 128, 32], num_classes=10)
    """
    widths = [check_int(w, "widths entry", minimum=1) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"widths needs the input size and at least one hidden width, got {widths}")
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    act = _activation(activation)
    shape = (widths[0],) if input_shape is None else _input_shape(input_shape)
    layers = []
    if len(shape) > 1:
        if widths[0] != int(__import__("numpy").prod(shape)):
            raise ValueError(f"widths[0]={widths[0]} must equal prod(input_shape)={shape}")
        layers.append(Flatten())
    elif shape != (widths[0],):
        raise ValueError(f"input_shape {shape} does not match widths[0]={widths[0]}")
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [Linear(a, b), act()]
    named = [(f"features.{i}", layer) for i, layer in enumerate(layers)]
    return Network(named, ("classifier", Linear(widths[-1], num_classes)), shape,
                   name=f"mlp({'-'.join(map(str, widths))}, {activation})")


def cnn(input_shape=(1, 28, 28), num_classes: int = 10, channels=(16, 32), hidden: int = 64,
        activation: str = "relu", pool: str = "max") -> Network:
    """Small CNN: [conv3x3 (pad 1), activation, pool 2] per entry of ``channels``, flatten,
    linear ``hidden``, activation (the embedding, ``p = hidden``), linear head.

    The default on 3x32x32 inputs is the benchmark network of the project
    (conv 16, ReLU, maxpool 2, conv 32, ReLU, maxpool 2, flatten, linear 64).
    """
    shape = _input_shape(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape}")
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    hidden = check_int(hidden, "hidden", minimum=1)
    act = _activation(activation)
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    Pool = MaxPool2d if pool == "max" else AvgPool2d
    c, h, w = shape
    layers = []
    for out in channels:
        out = check_int(out, "channels entry", minimum=1)
        layers += [Conv2d(c, out, 3, padding=1), act()]
        c = out
        if min(h, w) >= 2:
            layers.append(Pool(2))
            h, w = h // 2, w // 2
    layers += [Flatten(), Linear(c * h * w, hidden), act()]
    named = [(f"features.{i}", layer) for i, layer in enumerate(layers)]
    return Network(named, ("classifier", Linear(hidden, num_classes)), shape,
                   name=f"cnn({','.join(map(str, channels))}; {hidden})")


def vgg(name: str = "vgg11", input_shape=(3, 32, 32), num_classes: int = 10, width: float = 1.0,
        hidden: int | None = None, batch_norm: bool = False) -> Network:
    """VGG-11/13/16 (Simonyan & Zisserman 2015) for small images, with a width factor.

    ``features``: the configuration's 3x3 convolutions (padding 1, each followed by ReLU, with
    BatchNorm2d (eval) in between when ``batch_norm``) and 2x2 max-pools; a pool is skipped once the
    feature map is 1x1 (so 28x28 MNIST works). Then ``flatten``, ``classifier.0`` Linear to
    ``hidden`` (default ``512 * width``), ``classifier.1`` ReLU: that output is the embedding;
    the head is ``classifier.2``. Channel counts are ``round(c * width)`` (at least 1).
    """
    if name not in VGG_CONFIGS:
        raise ValueError(f"name must be one of {sorted(VGG_CONFIGS)}, got {name!r}")
    width = _check_width(width)
    shape = _input_shape(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape}")
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    hidden = _scaled(512, width) if hidden is None else check_int(hidden, "hidden", minimum=1)
    c, h, w = shape
    layers = []
    for item in VGG_CONFIGS[name]:
        if item == "M":
            if min(h, w) >= 2:
                layers.append(MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        out = _scaled(item, width)
        layers.append(Conv2d(c, out, 3, padding=1))
        if batch_norm:
            layers.append(BatchNorm2d(out))
        layers.append(ReLU())
        c = out
    named = [(f"features.{i}", layer) for i, layer in enumerate(layers)]
    named += [("flatten", Flatten()), ("classifier.0", Linear(c * h * w, hidden)),
              ("classifier.1", ReLU())]
    return Network(named, ("classifier.2", Linear(hidden, num_classes)), shape,
                   name=f"{name}{'_bn' if batch_norm else ''}(width={width:g})")


_STEMS = ("cifar", "imagenet")


def _resnet(arch, block, depths, input_shape, num_classes, width, stem) -> Network:
    """The ResNet family on ``block`` (``BasicBlock`` or ``Bottleneck``), ``depths`` blocks per
    stage, torchvision names.

    Stem ``"cifar"``: ``conv1`` 3x3 stride 1 (padding 1), ``bn1``, ``relu``, no max-pool; the head
    pools with ``AvgPool2d`` over the whole (square) map. Stem ``"imagenet"`` (torchvision):
    ``conv1`` 7x7 stride 2 (padding 3), ``bn1``, ``relu``, ``maxpool`` 3x3 stride 2 padding 1; the
    head pools with ``AdaptiveAvgPool2d(1)``. Stage ``i`` (base channels 64, 128, 256, 512 times
    ``width``) has stride 2 except stage 1 and maps already below 2x2.
    """
    width = _check_width(width)
    shape = _input_shape(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape}")
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    if stem not in _STEMS:
        raise ValueError(f"stem must be one of {_STEMS}, got {stem!r}")
    c0 = _scaled(64, width)
    if stem == "cifar":
        layers = [("conv1", Conv2d(shape[0], c0, 3, 1, 1, bias=False))]
    else:
        layers = [("conv1", Conv2d(shape[0], c0, 7, 2, 3, bias=False))]
    layers += [("bn1", BatchNorm2d(c0)), ("relu", ReLU())]
    if stem == "imagenet":
        layers.append(("maxpool", MaxPool2d(3, 2, padding=1)))
    c, h, w = shape
    for _, layer in layers:
        c, h, w = layer.out_shape((c, h, w))
    for stage, (base, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        planes = _scaled(base, width)
        stride = 1 if stage == 1 or min(h, w) < 2 else 2
        for i in range(depth):
            layer = block(c, planes, stride if i == 0 else 1)     # out: planes * expansion
            layers.append((f"layer{stage}.{i}", layer))
            c = layer.out_channels
        if stride == 2:
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    if stem == "cifar":
        layers += [("avgpool", AvgPool2d(kernel_size=min(h, w))), ("flatten", Flatten())]
        if h != w:
            raise ValueError(f"{arch} needs square inputs, got {shape}")
    else:
        layers += [("avgpool", AdaptiveAvgPool2d(1)), ("flatten", Flatten())]
    name = f"{arch}(width={width:g}{', stem=imagenet' if stem == 'imagenet' else ''})"
    return Network(layers, ("fc", Linear(c, num_classes)), shape, name=name)


def resnet18(input_shape=(3, 32, 32), num_classes: int = 10, width: float = 1.0,
             stem: str = "cifar") -> Network:
    """ResNet-18 (``BasicBlock`` x [2, 2, 2, 2]) with a width factor; by default in its CIFAR form
    (3x3 stem, stride 1, no max-pool), ``stem="imagenet"`` for torchvision's (see :func:`_resnet`).

    torchvision names: ``conv1``, ``bn1``, ``layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2,downsample.*}``,
    ``fc``. Batch norm runs in evaluation mode. The embedding is the global-average-pooled output
    of ``layer4`` (``p = 512 * width``).
    """
    return _resnet("resnet18", BasicBlock, (2, 2, 2, 2), input_shape, num_classes, width, stem)


def resnet50(input_shape=(3, 32, 32), num_classes: int = 10, width: float = 1.0,
             stem: str = "cifar") -> Network:
    """ResNet-50 (``Bottleneck`` x [3, 4, 6, 3], torchvision v1.5) with a width factor, as the
    paper's appendix uses on CIFAR-100; stems as :func:`resnet18`.

    torchvision names: ``layer{1..4}.{i}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.*}``, ``fc``.
    The embedding is the global-average-pooled output of ``layer4`` (``p = 2048 * width``).
    """
    return _resnet("resnet50", Bottleneck, (3, 4, 6, 3), input_shape, num_classes, width, stem)


ARCHITECTURES = ("mlp", "cnn", "vgg11", "vgg13", "vgg16", "resnet18", "resnet50")


def build(arch: str, input_shape, num_classes: int, width: float = 1.0, **kwargs) -> Network:
    """Build a zoo architecture by name (``ARCHITECTURES``) for inputs of ``input_shape``.

    ``mlp`` uses hidden widths ``kwargs.get("hidden", (256, 256, 64))`` scaled by ``width``.
    """
    shape = _input_shape(input_shape)
    if arch == "mlp":
        import numpy as np
        hidden = kwargs.pop("hidden", (256, 256, 64))
        widths = [int(np.prod(shape))] + [_scaled(hw, _check_width(width)) for hw in hidden]
        return mlp(widths, num_classes, input_shape=shape, **kwargs)
    if arch == "cnn":
        w = _check_width(width)
        return cnn(shape, num_classes, channels=tuple(_scaled(c, w) for c in kwargs.pop("channels", (16, 32))),
                   hidden=_scaled(kwargs.pop("hidden", 64), w), **kwargs)
    if arch in VGG_CONFIGS:
        return vgg(arch, shape, num_classes, width=width, **kwargs)
    if arch == "resnet18":
        return resnet18(shape, num_classes, width=width, **kwargs)
    if arch == "resnet50":
        return resnet50(shape, num_classes, width=width, **kwargs)
    raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
