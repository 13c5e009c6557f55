"""The layer contract (docs/theory.md, "The layer contract"): enforced, not remembered."""

import inspect

import numpy as np
import pytest

from gcref import nn
from gcref.checks.cases import layer_cases, layer_types
from gcref.checks.nn import layer_checks
from gcref.nn import Elementwise, Layer, Linear, PiecewiseLinear, Sequential, Tanh
from gcref.testing import check_layer
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
    chain = Sequential([("a", Tanh()), ("s", Scale())])          # no shapes given: forward checks
    with pytest.raises(ValueError, match=r"Scale \('s'\).*keys\(\)"):
        chain.forward({"s.weight": np.ones(3)}, np.ones((2, 3)))

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


# ------------------------------------------------------------------------------ check_layer

def test_check_layer_reports_every_row():
    report = check_layer(nn.Conv2d(2, 3, 3, padding=1), (2, 4, 5), seed=1)
    assert report.passed and len(report) == 8 and not report.failures
    assert "all passed" in str(report)
    report = check_layer(nn.GELU(), (5,), label="gelu")
    assert report.passed and [r.name for r in report][0] == "gelu: VJP wrt input vs FD"


def test_check_layer_is_the_gcref_check_battery():
    label, layer, shape = layer_cases()[5]
    rows = layer_checks(label, layer, shape, seed=7)
    again = check_layer(layer, shape, seed=7, label=label)
    assert [(r.name, r.error) for r in rows] == [(r.name, r.error) for r in again]


class _TanhOptedInAsPiecewiseLinear(PiecewiseLinear, _TanhWithoutSecondOrder):
    """Issue 9 item 1's smooth activation that 'forgot' second_order: here it gets past the
    abstract method by wrongly opting in to the piecewise-linear zero."""


def test_check_layer_catches_a_smooth_layer_without_its_second_order():
    report = check_layer(_TanhOptedInAsPiecewiseLinear(), (6,))
    assert not report.passed
    assert [r.name.split(": ")[1] for r in report.failures] == ["second order wrt input vs FD"]
    assert report.failures[0].error > 0.1              # an O(1) error, not round-off
    assert check_layer(Tanh(), (6,)).passed


def test_check_layer_rejects_bad_arguments():
    with pytest.raises(TypeError, match="layer must be a gcref.nn.Layer"):
        check_layer(np.tanh, (3,))
    with pytest.raises(TypeError, match="in_shape"):
        check_layer(Tanh(), 3)
    with pytest.raises(ValueError, match="in_shape"):
        check_layer(Tanh(), (0, 2))
    with pytest.raises(ValueError, match="Linear"):
        check_layer(Linear(3, 2), (4,))
    with pytest.raises(TypeError, match="seed"):
        check_layer(Tanh(), (3,), seed=1.5)


# ------------------------------------------------------------------------------ GELU, SiLU

def _torch_derivatives(module, x):
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = module(t)
    (d,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    (d2,) = torch.autograd.grad(d.sum(), t)
    return y.detach().numpy(), d.detach().numpy(), d2.numpy()


@pytest.mark.parametrize("name", ["GELU", "SiLU"])
def test_gelu_silu_equal_torch(name):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-12.0, 12.0, 2401), np.random.default_rng(0).normal(size=500)])
    layer = getattr(nn, name)()
    y_t, d_t, d2_t = _torch_derivatives(getattr(torch.nn, name)(), x)
    y, cache = layer.forward({}, x)
    d = layer.jvp({}, cache, np.ones_like(x))
    _, d2 = layer.second_order({}, cache, np.ones_like(x), np.ones_like(x))
    # float64, the same functions: differences are rounding (torch's GELU evaluates 1 + erf(.),
    # which cancels for x < 0: absolute errors ~1e-16 where the value is ~1e-3)
    np.testing.assert_allclose(y, y_t, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d, d_t, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d2, d2_t, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_zoo_networks_with_gelu_silu_equal_torch(activation):
    torch = pytest.importorskip("torch")
    net = nn.zoo.mlp([5, 7, 4], num_classes=3, activation=activation)
    params = net.init(3)
    act = torch.nn.GELU if activation == "gelu" else torch.nn.SiLU
    mirror = torch.nn.Sequential(torch.nn.Linear(5, 7), act(), torch.nn.Linear(7, 4), act(),
                                 torch.nn.Linear(4, 3)).double()
    names = ["features.0", "features.2", "classifier"]
    state = {f"{i}.{k}": torch.tensor(params[f"{n}.{k}"])
             for i, n in zip((0, 2, 4), names) for k in ("weight", "bias")}
    mirror.load_state_dict(state, strict=True)
    X = np.random.default_rng(0).normal(size=(6, 5))
    ours = net.forward(params, X)
    theirs = mirror(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)
    J = torch.func.vmap(torch.func.jacrev(lambda v: mirror[:4](v)))(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(net.jacobian(params, X), J, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_zoo_networks_with_gelu_silu_are_checked(activation):
    from gcref import testing as T
    from gcref.checks import network_checks
    for net in (nn.zoo.mlp([6, 5, 4], 3, activation=activation),
                nn.zoo.cnn((1, 5, 5), 3, channels=(2,), hidden=4, activation=activation)):
        for r in network_checks(net, seed=2):
            T.assert_check(r)
