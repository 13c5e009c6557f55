"""Reference networks: hand-written layers with manual backprop and analytic input Jacobians.

The layer contract (``Layer``, ``PiecewiseLinear``, ``Elementwise``) is in :mod:`gcref.nn.base`
and ``docs/theory.md``. ``gcref check``'s layer battery runs every concrete layer class listed in
``__all__``, in this order, on its ``examples()`` (so new layers go at the end).
"""

from . import zoo
from .layers import (ELU, GELU, AdaptiveAvgPool2d, Affine, AvgPool2d, BasicBlock, BatchNorm1d, BatchNorm2d,
                     Bottleneck, Conv2d, Dropout, Elementwise, Flatten, Layer, LeakyReLU, Linear,
                     MaxPool2d, PiecewiseLinear, ReLU, Residual, Sequential, Sigmoid, SiLU, Softplus, Tanh)
from .network import Network
from .params_io import atomic_write, load_params, save_params

__all__ = ["Layer", "PiecewiseLinear", "Elementwise", "Linear", "Conv2d", "ReLU", "Tanh",
           "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "BasicBlock", "GELU", "SiLU",
           "Sequential", "AdaptiveAvgPool2d", "Dropout", "Bottleneck", "LeakyReLU", "Sigmoid", "ELU",
           "Softplus", "BatchNorm1d", "Residual", "Affine", "Network", "zoo", "save_params", "load_params", "atomic_write"]
