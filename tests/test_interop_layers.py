"""The layers added for PyTorch interop: adaptive average pooling, padded max-pooling, dropout
(evaluation: the identity), the Bottleneck block and the ResNet stems of the zoo.

Reference: values against hand-computed cases, and padded max-pooling through the layer battery
of ``gcref check`` (``MaxPool2d.examples()`` keeps its two unpadded cases, so that every existing
case of ``gcref check`` keeps its seed and value; the other new layers are in the battery through
their ``examples()``).

Fast backend: property tests (hypothesis, modest and deterministic: the ``gcref`` profile of conftest.py) over
geometries and seeds, each layer inside a small network: forward, full Jacobian, VJP (input and
parameters), per-example GC and the GC penalty's gradient; float64 within 1e-10 relative, float32
within 1e-4, with NumPy and (where a GPU is present) CuPy as the array module.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gcref
import gcref_cuda as gcc
from gcref.checks import perturbed_params
from gcref.testing import check_layer
from gcref.nn import (AdaptiveAvgPool2d, Bottleneck, Conv2d, Dropout, Flatten, Linear, MaxPool2d,
                      Network, ReLU, Sequential, Tanh, zoo)
from gcref.nn.pooling import adaptive_windows
from gcref_cuda import backend

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not backend.gpu_available(), reason="CuPy GPU not available")]),
]
DTYPES = [pytest.param(np.float64, 1e-10, id="float64"), pytest.param(np.float32, 1e-4, id="float32")]
FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=BACKENDS)
def on_backend(request):
    with backend.using(request.param):
        yield request.param


# ----------------------------------------------------------------------------- reference

def test_adaptive_windows_are_pytorchs():
    # start = floor(i H / o), end = ceil((i + 1) H / o)
    assert adaptive_windows(4, 2) == [(0, 2), (2, 4)]                    # divides: a tiling
    assert adaptive_windows(5, 3) == [(0, 2), (1, 4), (3, 5)]            # does not: overlaps
    assert adaptive_windows(7, 7) == [(i, i + 1) for i in range(7)]
    assert adaptive_windows(2, 3) == [(0, 1), (0, 2), (1, 2)]            # more outputs than cells
    assert adaptive_windows(3, 1) == [(0, 3)]


def test_adaptive_avg_pool_values():
    x = np.arange(2 * 5 * 4, dtype=float).reshape(1, 2, 5, 4)
    y, _ = AdaptiveAvgPool2d((3, 2)).forward({}, x)
    # rows (0, 2), (1, 4), (3, 5); columns (0, 2), (2, 4)
    want = np.array([[x[0, c, r0:r1, c0:c1].mean() for c0, c1 in ((0, 2), (2, 4))]
                     for c in range(2) for r0, r1 in ((0, 2), (1, 4), (3, 5))]).reshape(2, 3, 2)
    np.testing.assert_array_equal(y[0], want)
    assert AdaptiveAvgPool2d((None, 1)).out_shape((2, 5, 4)) == (2, 5, 1)
    with pytest.raises(ValueError, match="output_size"):
        AdaptiveAvgPool2d((1, 2, 3))
    with pytest.raises(ValueError, match="output_size entry"):
        AdaptiveAvgPool2d(0)


def test_padded_max_pool_values_and_arguments():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)                        # all negative
    y, _ = MaxPool2d(2, 2, padding=1).forward({}, x)
    # padded cells (-inf) never win: windows {-1}, {-2, -3}, {-4, -7}, {-5, -6, -8, -9}
    np.testing.assert_array_equal(y[0, 0], [[-1.0, -2.0], [-4.0, -5.0]])
    assert MaxPool2d(3, 2, padding=1).out_shape((4, 7, 6)) == (4, 4, 3)
    with pytest.raises(ValueError, match="padding must be <= 1"):
        MaxPool2d(3, padding=2)                                          # PyTorch: q <= k // 2
    assert MaxPool2d(2).describe() == "MaxPool2d(kernel_size=2, stride=2)"   # unchanged


@pytest.mark.parametrize("layer,shape", [(MaxPool2d(3, 2, padding=1), (2, 6, 6)),
                                         (MaxPool2d(2, 1, padding=1), (1, 4, 5)),
                                         (MaxPool2d(3, 3, padding=1), (1, 5, 7))])
def test_padded_max_pool_passes_the_layer_battery(layer, shape):
    report = check_layer(layer, shape, seed=7)
    assert len(report) == 6 and report.passed, str(report)


def test_dropout_and_bottleneck_arguments():
    assert Dropout(0.0).p == 0.0
    with pytest.raises(ValueError, match="p must be <= 1"):
        Dropout(1.5)
    with pytest.raises(TypeError, match="planes"):
        Bottleneck(4, 1.5)
    block = Bottleneck(16, 8, 2)
    assert block.out_channels == 32 and block.width == 8
    assert set(block.keys()) == {f"{c}.weight" for c in ("conv1", "conv2", "conv3", "downsample.0")} | {
        f"{b}.{k}" for b in ("bn1", "bn2", "bn3", "downsample.1")
        for k in ("weight", "bias", "running_mean", "running_var")}
    assert Bottleneck(32, 8).downsample is None                          # 32 = 4 x 8, stride 1


def test_zoo_resnets_match_torchvision_sizes():
    # torchvision's resnet18 / resnet50 (ImageNet, 1000 classes) have these many parameters
    assert zoo.resnet18((3, 224, 224), 1000, stem="imagenet").num_params() == 11_689_512
    assert zoo.resnet50((3, 224, 224), 1000, stem="imagenet").num_params() == 25_557_032
    assert zoo.resnet50((3, 32, 32), 100).embedding_dim == 2048
    names = [n for n, _ in zoo.resnet50((3, 32, 32), 10, width=1 / 16).layers()]
    assert names[:3] == ["conv1", "bn1", "relu"] and "maxpool" not in names     # CIFAR stem
    assert [n for n in names if n.startswith("layer")] == \
        [f"layer{s}.{i}" for s, d in zip(range(1, 5), (3, 4, 6, 3)) for i in range(d)]
    with pytest.raises(ValueError, match="stem must be one of"):
        zoo.resnet18(stem="tiny")
    assert zoo.build("resnet50", (3, 8, 8), 3, width=1 / 32, stem="imagenet").name == \
        "resnet50(width=0.03125, stem=imagenet)"


# ----------------------------------------------------------------------------- fast backend

def rel(actual, desired) -> float:
    a = np.asarray(backend.to_host(actual), dtype=np.float64)
    b = np.asarray(desired, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0.0 else float(np.linalg.norm(a - b) / scale)


def assert_networks_agree(layers, in_shape, seed, dtype, tol):
    """The layers, then flatten, a dense layer and tanh (an embedding of 3), and a head of 2."""
    try:
        width = Sequential(layers + [("flat", Flatten())]).out_shape(in_shape)[0]
    except ValueError:
        assume(False)
    layers = layers + [("flat", Flatten()), ("dense", Linear(width, 3)), ("act", Tanh())]
    net = Network(layers, ("head", Linear(3, 2)), in_shape)
    params = perturbed_params(net, seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3,) + tuple(in_shape))
    fnet = gcc.FastNetwork(net, dtype=dtype)
    checks = {
        "forward": (fnet.forward(params, X), net.forward(params, X)),
        "Jacobian": (fnet.jacobian(params, X), net.jacobian(params, X)),
        "per-example GC": (gcc.per_example_gc(net, params, X, dtype=dtype),
                           gcref.per_example_gc(net, params, X)),
    }
    v = rng.normal(size=(3, 2))
    gx, gp = fnet.vjp(params, X, v)
    gx_ref, gp_ref = net.vjp(params, X, v)
    checks["VJP wrt input"] = (gx, gx_ref)
    _, g1 = gcc.gc_penalty_and_grad(net, params, X, dtype=dtype)
    _, g2 = gcref.train.gc_penalty_and_grad(net, net.check_params(params), X)
    for what, a, b in (("VJP wrt", gp, gp_ref), ("GC penalty gradient wrt", g1, g2)):
        # all parameters as one vector; key by key in float64 (in float32 a one-channel batch
        # norm's bias gradient, a sum of terms that cancel, loses more than 1e-4 of itself)
        checks[f"{what} parameters"] = (_cat(a, b), _cat(b, b))
        if dtype == np.float64:
            checks.update({f"{what} {k}": (a[k], b[k]) for k in b})
    for what, (a, b) in checks.items():
        err = rel(a, b)
        assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def _cat(grads, like):
    return np.concatenate([np.ravel(backend.to_host(grads[k])) for k in sorted(like)])


@pytest.mark.parametrize("dtype,tol", DTYPES)
@FIXTURES
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.one_of(st.none(), st.integers(1, 5)), ow=st.one_of(st.none(), st.integers(1, 5)),
       seed=st.integers(0, 2 ** 16))
def test_adaptive_avg_pool_agrees(on_backend, dtype, tol, c, h, w, oh, ow, seed):
    """Output sizes that divide the input, that do not, and larger than it (overlapping windows)."""
    layers = [("conv", Conv2d(c, 2, 1)), ("relu", ReLU()), ("pool", AdaptiveAvgPool2d((oh, ow)))]
    assert_networks_agree(layers, (c, h, w), seed, dtype, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@FIXTURES
@given(c=st.integers(1, 3), k=st.integers(1, 4), s=st.integers(1, 3), data=st.data(),
       h=st.integers(1, 9), w=st.integers(1, 9), relu=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_padded_max_pool_agrees(on_backend, dtype, tol, c, k, s, data, h, w, relu, seed):
    """Every padding PyTorch allows (q <= k // 2); after a ReLU, windows hold ties at zero."""
    q = data.draw(st.integers(0, k // 2), label="padding")
    layers = [("conv", Conv2d(c, 2, 1))] + ([("relu", ReLU())] if relu else []) + \
        [("pool", MaxPool2d(k, s, padding=q))]
    assert_networks_agree(layers, (c, h, w), seed, dtype, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@FIXTURES
@given(c=st.integers(1, 3), side=st.integers(2, 6), where=st.sampled_from(["image", "vector"]),
       seed=st.integers(0, 2 ** 16))
def test_dropout_is_the_identity_in_both_backends(on_backend, dtype, tol, c, side, where, seed):
    layers = [("conv", Conv2d(c, 2, 3, padding=1)), ("relu", ReLU())]
    if where == "image":
        layers.append(("drop", Dropout(0.5)))
    else:   # dropout on a vector, right before a dense layer (the Gram/column shortcuts' case)
        layers = [("flat0", Flatten()), ("drop", Dropout(0.5)), ("lin", Linear(c * side * side, 4)),
                  ("relu", ReLU())]
    assert_networks_agree(layers, (c, side, side), seed, dtype, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@FIXTURES
@given(cin=st.integers(1, 8), planes=st.integers(1, 3), stride=st.integers(1, 2),
       width=st.one_of(st.none(), st.integers(1, 4)), side=st.integers(2, 6), seed=st.integers(0, 2 ** 16))
def test_bottleneck_agrees(on_backend, dtype, tol, cin, planes, stride, width, side, seed):
    """Identity shortcuts (cin = 4 planes, stride 1) and downsampling ones."""
    layers = [("block", Bottleneck(cin, planes, stride, width=width)),
              ("block2", Bottleneck(4 * planes, planes, 1))]
    assert_networks_agree(layers, (cin, side, side), seed, dtype, tol)
