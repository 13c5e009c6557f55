"""gcref_cuda's ops for the layers added for PyTorch interop agree with gcref: adaptive average
pooling, padded max-pooling, dropout (evaluation: the identity) and the Bottleneck block.

Property tests (hypothesis, modest and deterministic: the ``gcref`` profile of conftest.py) over
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
from gcref.nn import (AdaptiveAvgPool2d, Bottleneck, Conv2d, Dropout, Flatten, Linear, MaxPool2d,
                      Network, ReLU, Sequential, Tanh)
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
