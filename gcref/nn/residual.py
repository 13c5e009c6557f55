"""The ResNet bottleneck block (ResNet-50/101/152), with torchvision's names."""

from __future__ import annotations

from .._validation import check_int
from .activations import ReLU
from .containers import BasicBlock, Sequential
from .linear import Conv2d
from .norm import BatchNorm2d

__all__ = ["Bottleneck"]


class Bottleneck(BasicBlock):
    """ResNet bottleneck block as torchvision's ``Bottleneck`` (v1.5: the stride on the 3x3
    convolution), evaluation-mode batch norm, torchvision names.

    ``y = relu( bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x) )`` with
    ``conv1`` 1x1 (``in_channels -> width``), ``conv2`` 3x3 with stride ``s`` and padding 1
    (``width -> width``), ``conv3`` 1x1 (``width -> 4 planes``), none with a bias;
    ``shortcut = downsample = [1x1 conv (stride s, no bias), bn]`` when ``s != 1`` or
    ``in_channels != 4 planes``, else the identity. ``width`` defaults to ``planes``
    (torchvision's ``base_width=64, groups=1``; wide ResNets use ``2 planes``).

    The residual computation (forward, derivatives, second order, parameter names) is
    :class:`BasicBlock`'s, which works for any main path: only the main path differs.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, width: int | None = None):
        self.planes = check_int(planes, "planes", minimum=1)
        self.width = self.planes if width is None else check_int(width, "width", minimum=1)
        # BasicBlock's constructor checks the arguments and builds the shortcut and the final ReLU
        # for in_channels -> 4 planes; the main path is then the bottleneck's.
        super().__init__(in_channels, self.expansion * self.planes, stride)
        w = self.width
        self.main = Sequential([
            ("conv1", Conv2d(self.in_channels, w, 1, 1, 0, bias=False)),
            ("bn1", BatchNorm2d(w)),
            ("relu1", ReLU()),
            ("conv2", Conv2d(w, w, 3, self.stride, 1, bias=False)),
            ("bn2", BatchNorm2d(w)),
            ("relu2", ReLU()),
            ("conv3", Conv2d(w, self.out_channels, 1, 1, 0, bias=False)),
            ("bn3", BatchNorm2d(self.out_channels)),
        ])

    @classmethod
    def examples(cls):
        return [("Bottleneck(id)", cls(4, 1, 1), (4, 3, 3)),
                ("Bottleneck(down)", cls(2, 1, 2, width=2), (2, 5, 5))]

    def describe(self):
        width = f", width={self.width}" if self.width != self.planes else ""
        return f"Bottleneck({self.in_channels}, {self.planes}, stride={self.stride}{width})"
