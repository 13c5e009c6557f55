"""Seeded small cases shared by `gcref check`, the conformance suite and the tests: one instance of every layer
type (``layer_cases``) and one small network of every zoo architecture (``small_zoo``)."""

from __future__ import annotations

import inspect

import numpy as np

from .. import nn
from ..nn import zoo
from .layer import random_layer_params

__all__ = ["layer_types", "layer_cases", "random_layer_params", "small_zoo", "perturbed_params"]


def layer_types() -> list[type]:
    """Every concrete :class:`~gcref.nn.Layer` class exported by :mod:`gcref.nn`, in the order of
    ``gcref.nn.__all__`` (abstract ones such as ``Layer``/``Elementwise`` left out)."""
    out = []
    for name in nn.__all__:
        obj = getattr(nn, name)
        if isinstance(obj, type) and issubclass(obj, nn.Layer) and not inspect.isabstract(obj):
            out.append(obj)
    return out


def layer_cases():
    """``(label, layer, in_shape)`` for every concrete layer class of :mod:`gcref.nn`: its
    ``examples()``, class by class in the order of ``gcref.nn.__all__``.

    A case's seed is ``seed + its position``: new classes go at the end of ``gcref.nn.__all__``
    (and new examples at the end of a class's list) so that existing cases keep their numbers.
    A concrete class without examples raises (``gcref check`` shows it as a failing row).
    """
    cases = []
    for cls in layer_types():
        examples = list(cls.examples())
        if not examples:
            raise TypeError(f"layer {cls.__name__} has no examples(): every concrete layer of "
                            f"gcref.nn provides at least one (label, layer, in_shape) case")
        cases.extend(examples)
    return cases


def small_zoo():
    """One small network of every zoo architecture (for checks and tests)."""
    return [
        zoo.mlp([6, 7, 5], num_classes=3),
        zoo.mlp([12, 6, 4], num_classes=3, input_shape=(3, 2, 2), activation="tanh"),
        zoo.cnn((2, 6, 6), num_classes=3, channels=(3, 4), hidden=5),
        zoo.cnn((1, 6, 6), num_classes=3, channels=(2,), hidden=4, activation="tanh", pool="avg"),
        zoo.vgg("vgg11", (3, 8, 8), num_classes=4, width=1 / 32, hidden=6),
        zoo.vgg("vgg13", (1, 8, 8), num_classes=3, width=1 / 32, hidden=5, batch_norm=True),
        zoo.vgg("vgg16", (3, 4, 4), num_classes=3, width=1 / 16, hidden=4),
        zoo.resnet18((3, 6, 6), num_classes=3, width=1 / 32),
    ]


def perturbed_params(net, seed: int):
    """Initial parameters with batch-norm statistics moved off their trivial values."""
    rng = np.random.default_rng(seed)
    params = net.init(seed)
    for k in params:
        if k.endswith("running_var"):
            params[k] = rng.uniform(0.5, 2.0, params[k].shape)
        elif k.endswith("running_mean"):
            params[k] = rng.normal(0, 0.2, params[k].shape)
        elif params[k].ndim == 1 and k.rsplit(".", 1)[0] + ".running_var" in params:
            params[k] = (rng.uniform(0.8, 1.3, params[k].shape) if k.endswith("weight")
                         else rng.normal(0, 0.1, params[k].shape))
    return params
