"""The layer contract (docs/theory.md, "The layer contract"): enforced, not remembered."""

import inspect

import numpy as np
import pytest

from gcref import nn
from gcref.checks.cases import layer_cases, layer_types
from gcref.nn import Elementwise, Layer, Linear, PiecewiseLinear, Sequential, Tanh
from gcref_cuda.compile import compile_chain, has_op
from gcref_cuda.ops.activations import ElementwiseOp


class _TanhWithoutSecondOrder(Layer):
    """A smooth activation written like Tanh before the contract, without its second_order."""

    def forward(self, p, x):
        y = np.tanh(x)
        return y, y

    def vjp(self, p, cache, gy, params=True):
        return gy * (1.0 - cache ** 2), {}

    def jvp(self, p, cache, tx):
        return tx * (1.0 - cache ** 2)

    def local_jacobian(self, p, x):
        return np.diag((1.0 - np.tanh(x) ** 2).ravel())


def test_smooth_layer_without_second_order_cannot_be_instantiated():
    with pytest.raises(TypeError, match="second_order.*PiecewiseLinear"):
        _TanhWithoutSecondOrder()


def test_elementwise_without_second_derivative_cannot_be_instantiated():
    class Softplus(Elementwise):
        def s(self, x):
            return np.logaddexp(x, 0.0)

        def ds(self, x, y):
            return 1.0 / (1.0 + np.exp(-x))

    with pytest.raises(TypeError, match="d2s"):
        Softplus()


def test_piecewise_linear_opts_in_to_zero_second_order():
    class Negate(PiecewiseLinear):
        def forward(self, p, x):
            return -x, None

        def vjp(self, p, cache, gy, params=True):
            return -gy, {}

        def jvp(self, p, cache, tx):
            return -tx

        def local_jacobian(self, p, x):
            return -np.eye(x.size)

    assert Negate().second_order({}, None, np.ones(3), np.ones(3)) == ({}, None)


def test_abstract_methods_are_the_contract():
    assert Layer.__abstractmethods__ == {"forward", "vjp", "jvp", "second_order", "local_jacobian"}
    assert Elementwise.__abstractmethods__ == {"s", "ds", "d2s"}


def test_layer_with_parameters_that_forgets_keys_fails_clearly():
    class Scale(Layer):                  # a weight per feature, but keys() not written
        def param_specs(self, in_shape):
            return {"weight": tuple(in_shape)}

        def init(self, rng, in_shape):
            return {"weight": rng.normal(size=in_shape)}

        def forward(self, p, x):
            return x * p["weight"], x

        def vjp(self, p, cache, gy, params=True):
            return gy * p["weight"], ({"weight": (gy * cache).sum(0)} if params else {})

        def jvp(self, p, cache, tx):
            return tx * p["weight"]

        def second_order(self, p, cache, g, u):
            return {"weight": (g * u).sum(0)}, None

        def local_jacobian(self, p, x):
            return np.diag(p["weight"].ravel())

    with pytest.raises(ValueError, match=r"Scale \('s'\).*\['weight'\].*keys\(\)"):
        nn.Network([("s", Scale()), ("a", Tanh())], ("head", Linear(3, 2)), (3,))

    class ScaleWithKeys(Scale):
        def keys(self):
            return ("weight",)

    net = nn.Network([("s", ScaleWithKeys()), ("a", Tanh())], ("head", Linear(3, 2)), (3,))
    assert set(net.param_names) == {"s.weight", "head.weight", "head.bias"}
    assert net.forward(net.init(0), np.ones((2, 3))).shape == (2, 2)


def test_keys_list_every_parameter_and_buffer():
    for label, layer, shape in layer_cases():
        specs = set(layer.param_specs(shape)) | set(layer.buffer_specs(shape))
        assert specs <= set(layer.keys()), label
        assert set(layer.init(np.random.default_rng(0), shape)) == specs, label


def test_every_concrete_layer_of_gcref_nn_is_in_the_battery():
    exported = [getattr(nn, n) for n in nn.__all__]
    concrete = {c for c in exported if isinstance(c, type) and issubclass(c, Layer)
                and not inspect.isabstract(c)}
    assert concrete == set(layer_types())
    assert {Sequential, nn.GELU, nn.SiLU, nn.BasicBlock} <= concrete
    in_battery = {type(layer) for _, layer, _ in layer_cases()}
    assert concrete <= in_battery, concrete - in_battery
    labels = [label for label, _, _ in layer_cases()]
    assert len(set(labels)) == len(labels)


def test_battery_keeps_the_existing_order():
    # gcref check seeds case i with seed + i: the cases that existed keep their positions.
    labels = [label for label, _, _ in layer_cases()]
    assert labels[:13] == ["Linear", "Linear(no bias)", "Conv2d(s1,p1)", "Conv2d(s2,p0)", "ReLU",
                           "Tanh", "MaxPool2d(2)", "MaxPool2d(3,s2)", "AvgPool2d(2)", "Flatten",
                           "BatchNorm2d", "BasicBlock(id)", "BasicBlock(down)"]


def test_every_layer_type_has_a_fast_op():
    for cls in layer_types():
        assert has_op(cls), cls.__name__
    for label, layer, shape in layer_cases():
        ops = compile_chain([("x", layer)], shape)
        assert ops and all(op.key is not None for op in ops), label


def test_a_users_elementwise_activation_gets_the_generic_fast_op():
    class Softsign(Elementwise):
        def s(self, x):
            return x / (1.0 + np.abs(x))

        def ds(self, x, y):
            return 1.0 / (1.0 + np.abs(x)) ** 2

        def d2s(self, x, y):
            return -2.0 * np.sign(x) / (1.0 + np.abs(x)) ** 3

    assert has_op(Softsign)
    (op,) = compile_chain([("act", Softsign())], (4,))
    assert isinstance(op, ElementwiseOp) and op.key == "act" and not op.rectifier
