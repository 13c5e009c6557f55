"""PyTorch interop: ``from_torch`` (a ``torch.nn.Module`` -> gcref ``Network`` + float64 params)
and its inverse ``to_torch``.

A gcref network is an embedding ``f`` (a chain of layers) followed by a linear head ``h``; its
parameters are a ``dict[str, ndarray]`` with PyTorch's names and layouts (:mod:`gcref.nn.network`).
Converting is therefore a matter of reading the module as a chain and copying ``state_dict()``
in float64. The module is read in one of three ways (:mod:`.structure`):

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
- **Modules of your own** (any other class with its own ``forward``) are read through their
  traced graph (``torch.fx``, :mod:`.trace`): calls of supported modules and the functional
  calls ``F.relu``/``gelu``/``silu``/``leaky_relu``/``elu``/``softplus``, ``torch.tanh``/
  ``sigmoid``, ``F.max_pool2d``/``avg_pool2d``/``adaptive_avg_pool2d``, ``x.mean((2, 3))``
  (global average pooling: ``AdaptiveAvgPool2d(1)`` and a ``Flatten``), ``+ - * /`` with a
  number (input scaling such as ``x / 255 * 2 - 1``: consecutive ones are one
  :class:`~gcref.nn.Affine`), ``torch.flatten(x, 1)``,
  ``x.view(x.size(0), -1)``/``reshape``, and residual ``+`` (``out += identity``, with or
  without a downsample branch: a :class:`~gcref.nn.Residual`); loops over an ``nn.ModuleList``
  unroll. Concatenation, data-dependent control flow and unsupported operations are refused
  naming the graph node and its source line.
- **Leaves** (:data:`SUPPORTED`): ``Linear``; ``Conv2d`` (square kernel, stride, zero padding,
  bias; ``groups=1``, ``dilation=1``); ``ReLU``, ``Tanh``, ``GELU`` (exact erf form), ``SiLU``,
  ``LeakyReLU``, ``Sigmoid``, ``ELU``, ``Softplus``; ``MaxPool2d`` (kernel, stride, padding);
  ``AvgPool2d`` (no padding); ``AdaptiveAvgPool2d``; ``Flatten`` (from axis 1); ``BatchNorm2d``
  and ``BatchNorm1d`` (affine, running statistics, ``(C,)`` inputs for 1d); ``Dropout``.
  ``nn.Identity`` is skipped. Any other module, or a supported one with an unsupported setting,
  raises :class:`UnsupportedModuleError` naming its path (``layer3.1.conv2: Conv2d with
  groups=2 is not supported ...``).
- **Names**: each gcref layer is named by its module path (``features.0``, ``layer1.0``,
  ``classifier.6``), so the parameter keys are the module's ``state_dict`` keys; a functional
  call is named by its graph node (``relu_1``, ``view``), a traced residual connection by its
  modules' parent (``layer1.0``) or, where they have none, by its graph node (``add``: its keys
  are then ``add.conv1.weight`` for the module's ``conv1.weight``). The two chains' implicit
  flattens are named ``flatten`` (they have no parameters).

Choices, documented once here:

- **Evaluation mode.** gcref computes a module's evaluation-mode function (batch norm with its
  running statistics, dropout as the identity, a ``forward`` that reads ``self.training`` as in
  evaluation mode). A module in training mode (``module.training`` or any submodule's) is
  converted all the same, with a ``UserWarning`` saying so; the module itself is not changed.
- **float64.** Parameters and buffers of any real floating dtype are converted to float64
  (float16/bfloat16/float32 values are float64 values: the conversion is exact). The gcref
  network then computes in float64, i.e. it matches ``module.double()``. Complex or integer
  parameters raise a ``TypeError``.
- **The embedding** is the input of the last ``Linear`` (the head). ``embedding="path"``
  instead names the module whose *output* is the embedding: the head is then the first
  ``Linear`` after it (``Dropout`` and ``Flatten`` in between are kept in the embedding: they do
  not change its values). Either way, only modules that are the identity in evaluation mode
  (``Dropout``, ``Identity``) or a softmax may follow the head: anything else would be left out
  of the gcref network and change its logits, so it is refused. A module that is a single
  ``Linear`` has the identity embedding (the input itself, a layer named ``input``).
- **A softmax or log-softmax after the head** (``F.log_softmax(self.fc(x), dim=1)``,
  ``nn.LogSoftmax(1)``, ``nn.Softmax``) is accepted and left out: gcref's logits are defined as
  the head's output, the pre-softmax scores. The embedding, its GC and NC, and the predicted
  class (argmax, which a monotone softmax keeps) are unchanged; the module's output is
  ``log_softmax(net.forward(params, X))``. Anywhere else a softmax is refused.
"""

from __future__ import annotations

from ._common import UnsupportedModuleError
from .convert import from_torch, to_torch
from .leaves import SUPPORTED
from .modules import BasicBlock, Bottleneck, ResidualModule, TorchNetwork
from .modules import leaves as _leaves  # noqa: F401  (the name tests and tools import)

__all__ = ["from_torch", "to_torch", "TorchNetwork", "BasicBlock", "Bottleneck", "ResidualModule",
           "UnsupportedModuleError", "SUPPORTED"]
