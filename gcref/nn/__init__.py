"""Reference networks: hand-written layers with manual backprop and analytic input Jacobians."""

from . import zoo
from .layers import (AvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Flatten, Layer, Linear,
                     MaxPool2d, ReLU, Sequential, Tanh)
from .network import Network
from .params_io import atomic_write, load_params, save_params

__all__ = ["Layer", "Linear", "Conv2d", "ReLU", "Tanh", "MaxPool2d", "AvgPool2d", "Flatten",
           "BatchNorm2d", "Sequential", "BasicBlock", "Network", "zoo", "save_params",
           "load_params", "atomic_write"]
