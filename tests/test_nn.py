"""Reference networks: every derivative against finite differences, in float64."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcref import testing as T
from gcref.checks import (layer_cases, layer_checks, network_checks, perturbed_params, run_checks,
                         small_zoo)
from gcref.nn import (AvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d,
                      ReLU, Sequential, Tanh, load_params, save_params, zoo)


# ------------------------------------------------------------------------------ layers

@pytest.mark.parametrize("case", layer_cases(), ids=lambda c: c[0])
def test_layer_derivatives(case):
    label, layer, shape = case
    for r in layer_checks(label, layer, shape, seed=3):
        T.assert_check(r)


@given(
    cin=st.integers(1, 3), cout=st.integers(1, 4), k=st.integers(1, 3), stride=st.integers(1, 3),
    pad=st.integers(0, 2), h=st.integers(3, 7), w=st.integers(3, 7), bias=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_conv2d_random_shapes(cin, cout, k, stride, pad, h, w, bias, seed):
    layer = Conv2d(cin, cout, k, stride, pad, bias=bias)
    for r in layer_checks("conv", layer, (cin, h, w), seed):
        T.assert_check(r)


@given(k=st.integers(1, 3), stride=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(3, 7),
       w=st.integers(3, 7), kind=st.sampled_from(["max", "avg"]), seed=st.integers(0, 10_000))
def test_pooling_random_shapes(k, stride, c, h, w, kind, seed):
    layer = (MaxPool2d if kind == "max" else AvgPool2d)(k, stride)
    for r in layer_checks(kind, layer, (c, h, w), seed):
        T.assert_check(r)


def test_conv2d_matches_direct_formula():
    # y[n,o,i,j] = b[o] + sum_{c,a,e} W[o,c,a,e] xpad[n,c,i*s+a,j*s+e], written as plain loops
    rng = np.random.default_rng(0)
    layer = Conv2d(2, 3, 3, stride=2, padding=1)
    p = layer.init(rng, (2, 5, 6))
    x = rng.normal(size=(2, 2, 5, 6))
    y, _ = layer.forward(p, x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(y)
    for n in range(2):
        for o in range(3):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    ref[n, o, i, j] = p["bias"][o] + np.sum(p["weight"][o] * xp[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3])
    T.assert_close(y, ref, rtol=1e-13, atol=1e-14, name="conv forward")


def test_pool_and_bn_closed_forms():
    x = np.arange(16, dtype=float).reshape(1, 1, 4, 4)
    y, _ = MaxPool2d(2).forward({}, x)
    np.testing.assert_array_equal(y[0, 0], [[5, 7], [13, 15]])
    y, _ = AvgPool2d(2).forward({}, x)
    np.testing.assert_array_equal(y[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    bn = BatchNorm2d(1, eps=0.0)
    p = {"weight": np.array([2.0]), "bias": np.array([1.0]), "running_mean": np.array([3.0]),
         "running_var": np.array([4.0])}
    y, _ = bn.forward(p, x)
    T.assert_close(y, 2.0 * (x - 3.0) / 2.0 + 1.0, rtol=1e-15)


def test_tanh_second_derivative_closed_form():
    # d/dx <g, tanh'(x) u> = g u tanh''(x), tanh'' = -2 tanh (1 - tanh^2)
    x = np.array([[0.3, -1.2]])
    _, cache = Tanh().forward({}, x)
    _, gx = Tanh().second_order({}, cache, np.ones_like(x), np.ones_like(x))
    t = np.tanh(x)
    T.assert_close(gx, -2 * t * (1 - t ** 2), rtol=1e-14)


# ------------------------------------------------------------------------------ networks

@pytest.mark.parametrize("net", small_zoo(), ids=lambda n: n.name)
def test_zoo_network_derivatives(net):
    for r in network_checks(net, seed=1):
        T.assert_check(r)


@st.composite
def random_mlps(draw):
    depth = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 7)) for _ in range(depth + 1)]
    act = draw(st.sampled_from(["relu", "tanh", "gelu", "silu"]))
    return zoo.mlp(widths, draw(st.integers(1, 4)), activation=act)


@given(net=random_mlps(), seed=st.integers(0, 10_000))
def test_random_mlp_derivatives(net, seed):
    for r in network_checks(net, seed=seed):
        T.assert_check(r)


@st.composite
def random_cnns(draw):
    c = draw(st.integers(1, 3))
    h = draw(st.integers(2, 7))
    channels = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    return zoo.cnn((c, h, h), draw(st.integers(1, 3)), channels=channels, hidden=draw(st.integers(1, 5)),
                   activation=draw(st.sampled_from(["relu", "tanh", "gelu", "silu"])), pool=draw(st.sampled_from(["max", "avg"])))


@given(net=random_cnns(), seed=st.integers(0, 10_000))
def test_random_cnn_derivatives(net, seed):
    for r in network_checks(net, seed=seed):
        T.assert_check(r)


def test_mlp_jacobian_closed_form():
    # one hidden ReLU layer: J(x) = diag(1[W1 x + b1 > 0]) W1
    net = zoo.mlp([4, 6], num_classes=2)
    params = net.init(5)
    X = np.random.default_rng(0).normal(size=(3, 4))
    J = net.jacobian(params, X)
    W, b = params["features.0.weight"], params["features.0.bias"]
    for n in range(3):
        T.assert_close(J[n], ((X[n] @ W.T + b) > 0)[:, None] * W, rtol=1e-15, name="J")
    Jl = net.jacobian(params, X, output="logits")
    for n in range(3):
        T.assert_close(Jl[n], params["classifier.weight"] @ J[n], rtol=1e-13, atol=1e-15)


def test_jacobian_chunking_and_modes_agree():
    net = small_zoo()[2]
    params = perturbed_params(net, 0)
    X = np.random.default_rng(2).normal(size=(5,) + net.input_shape)
    J = net.jacobian(params, X, chunk_size=2)
    T.assert_close(J, net.jacobian(params, X, chunk_size=5, mode="forward"), rtol=1e-12, atol=1e-15)


def test_resnet_names_follow_torchvision():
    net = zoo.resnet18((3, 8, 8), 5, width=1 / 16)
    names = set(net.param_specs()) | set(net.buffer_specs())
    for key in ["conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                "layer4.1.bn2.bias", "fc.weight", "fc.bias"]:
        assert key in names, key
    assert net.param_specs()["conv1.weight"] == (4, 3, 3, 3)
    assert net.embedding_dim == 32


def test_vgg_layout_and_widths():
    net = zoo.vgg("vgg13", (3, 32, 32), 10, width=0.25)
    specs = net.param_specs()
    assert specs["features.0.weight"] == (16, 3, 3, 3)
    assert specs["classifier.0.weight"] == (128, 128)
    assert specs["classifier.2.weight"] == (10, 128)
    assert net.embedding_dim == 128
    mnist = zoo.vgg("vgg11", (1, 28, 28), 10, width=0.125)  # pools skipped once 1x1
    assert mnist.embedding_dim == 64


# ------------------------------------------------------------------------------ bad input

def test_bad_inputs_name_the_argument():
    net = zoo.mlp([4, 5, 3], num_classes=2)
    params = net.init(0)
    with pytest.raises(ValueError, match="X must have shape"):
        net.forward(params, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.forward(params, np.full((2, 4), np.nan))
    with pytest.raises(TypeError, match="X must be an array of real numbers"):
        net.forward(params, np.array([["a"] * 4]))
    with pytest.raises(TypeError, match="real numbers"):
        net.forward(params, np.ones((2, 4), dtype=complex))
    bad = dict(params)
    bad["features.0.weight"] = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"'features.0.weight' has shape \(5, 3\), expected \(5, 4\)"):
        net.forward(bad, np.zeros((2, 4)))
    missing = dict(params)
    del missing["classifier.bias"]
    with pytest.raises(ValueError, match="missing keys \\['classifier.bias'\\]"):
        net.embed(missing, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unexpected keys"):
        net.embed({**params, "extra.weight": np.zeros(3)}, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="width must be positive"):
        zoo.vgg("vgg11", width=0)
    with pytest.raises(ValueError, match="widths entry must be >= 1"):
        zoo.mlp([4, 0, 3], 2)
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.vgg("vgg19")
    with pytest.raises(ValueError, match="output must be one of"):
        net.jacobian(params, np.zeros((1, 4)), output="hidden")
    with pytest.raises(TypeError, match="seed"):
        net.init(seed=None)
    with pytest.raises(ValueError, match="cotangent must have shape"):
        net.vjp(params, np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="layer 'x1'"):
        Sequential([("x0", Linear(3, 4)), ("x1", Linear(5, 2))]).shapes((3,))


def test_torch_state_dict_bookkeeping_is_ignored():
    net = zoo.resnet18((3, 4, 4), 2, width=1 / 32)
    params = net.init(0)
    params["bn1.num_batches_tracked"] = np.array(0)
    net.forward(params, np.zeros((1, 3, 4, 4)))


# ------------------------------------------------------------------------------ files

def test_params_round_trip_and_mismatch(tmp_path):
    net = zoo.vgg("vgg11", (3, 8, 8), 4, width=1 / 32, batch_norm=True)
    params = perturbed_params(net, 0)
    path = tmp_path / "p.npz"
    save_params(path, params, net)
    loaded = load_params(path, net)
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])
    other = zoo.vgg("vgg11", (3, 8, 8), 4, width=1 / 16, batch_norm=True)
    with pytest.raises(ValueError, match=r"has shape .* expected"):
        load_params(path, other)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_params(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_params(tmp_path / "none.npz")


def test_params_files_refuse_pickles(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_params(path)


# ------------------------------------------------------------------------------ testing module

def test_testing_module_catches_wrong_derivatives():
    def f(x):
        return np.sin(x) * x

    def good_vjp(v, x):
        return v * (np.cos(x) * x + np.sin(x))

    x = np.linspace(0.1, 1.0, 5)
    assert T.check_vjp(f, lambda v: good_vjp(v, x), x).passed
    assert not T.check_vjp(f, lambda v: v * np.cos(x) * x, x).passed
    assert T.check_jvp(f, lambda u: good_vjp(u, x), x).passed
    assert not T.check_jvp(f, lambda u: 1.01 * good_vjp(u, x), x).passed
    def jac(x):
        return np.diag(np.cos(x) * x + np.sin(x))

    assert T.check_jacobian(f, jac, x).passed
    assert not T.check_jacobian(f, lambda x: jac(x) + 1e-3, x).passed
    assert T.check_gradient(lambda p: float(np.sum(f(p["a"]))),
                            lambda p: {"a": good_vjp(np.ones(5), p["a"])}, {"a": x}).passed
    with pytest.raises(AssertionError, match="exceeds"):
        T.assert_close([1.0, 2.0], [1.0, 2.1], rtol=1e-3)


def test_check_suite_passes():
    results = run_checks(["layers", "parameters"])
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]


def test_sequential_second_order_on_tanh_chain():
    # the input-dependent sigma'' terms must flow back along the primal chain
    net = zoo.mlp([3, 4, 4, 2], num_classes=2, activation="tanh")
    params = net.check_params(net.init(1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    g = rng.normal(size=(2, 2))
    u = rng.normal(size=(2, 3))

    def s(pp, xx):
        _, c = net.embedding.forward(pp, xx)
        return float(np.vdot(g, net.embedding.jvp(pp, c, u)))

    def s_grad(pp, xx):  # (gradient wrt parameters, gradient wrt input)
        return net.embedding.second_order(pp, net.embedding.forward(pp, xx)[1], g, u)

    names = net.embedding.param_specs(net.input_shape)
    T.assert_check(T.check_gradient(lambda pp: s({**params, **pp}, x),
                                    lambda pp: {k: s_grad({**params, **pp}, x)[0][k] for k in names},
                                    {k: params[k] for k in names}))
    T.assert_check(T.check_gradient(lambda xx: s(params, xx), lambda xx: s_grad(params, xx)[1], x))
