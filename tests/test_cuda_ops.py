"""Per-op agreement: every gcref_cuda op against the gcref layer it was compiled from.

For each op (and the registered ReLU+MaxPool fusion): forward, VJP, JVP, ``vjp_params`` and
``second_order`` on the op's own layouts, against the reference layer's ``forward``, ``vjp``,
``jvp`` and ``second_order`` in float64, on the battery's cases and on hypothesis-drawn shapes
(deterministic, modest example counts: ``tests/conftest.py``). Whole networks are compared in
``test_cuda_agreement.py``; here a wrong op is named by the test that fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcref.checks.cases import layer_cases
from gcref.nn import layers as L
from gcref.testing import relative_error
from gcref.testing.layer import random_layer_params
from gcref_cuda.compile import compile_chain
from gcref_cuda.ops.containers import ChainOp
from gcref_cuda.workspace import Ctx, Rows, Workspace

TOL = 1e-12
NAME = "op"


def _to_layout(a, image: bool):
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)) if image else a.reshape(a.shape[0], -1)


def _from_layout(a, shape):
    if len(shape) == 3:
        return np.array(a.transpose(1, 0, 2, 3))
    return np.array(a).reshape((a.shape[0],) + tuple(shape))


def _agree(actual, desired, what, tol=TOL):
    err = relative_error(actual, desired)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def compare(children, in_shape, seed=0, n=3, ties=False):
    """Compile ``children`` (a list of (name, layer)) and compare every op primitive with the
    reference ``Sequential`` of the same layers (``ties``: small integer inputs, so that max-pool
    windows tie and ReLUs sit on their kink)."""
    ref = L.Sequential(children)
    in_shape = tuple(in_shape)
    out_shape = ref.out_shape(in_shape)
    rng = np.random.default_rng(seed)
    p = random_layer_params(ref, in_shape, rng)
    x = rng.normal(size=(n,) + in_shape)
    if ties:
        x = np.round(x)
    ops = compile_chain(children, in_shape)
    assert all(op.key is not None for op in ops)
    chain = ChainOp(ops, in_shape)
    P = chain.prepare(p, np, np.float64)
    ctx = Ctx(np, np.float64, Workspace(np), keep_inputs=True)
    img_in, img_out = len(in_shape) == 3, len(out_shape) == 3

    y_ref, cache_ref = ref.forward(p, x)
    y, cache = chain.forward(P, _to_layout(x, img_in), ctx)
    _agree(_from_layout(y, out_shape), y_ref, "forward")

    gy = rng.normal(size=y_ref.shape)
    gx_ref, gp_ref = ref.vjp(p, cache_ref, gy)
    gx = chain.vjp(P, cache, _to_layout(gy, img_out), None, ctx)
    _agree(_from_layout(gx, in_shape), gx_ref, "vjp")

    tx = rng.normal(size=x.shape)
    ty = chain.jvp(P, cache, _to_layout(tx, img_in), None, ctx)
    _agree(_from_layout(ty, out_shape), ref.jvp(p, cache_ref, tx), "jvp")

    gx2, gp = chain.vjp_params(P, cache, _to_layout(gy, img_out), ctx)
    _agree(_from_layout(gx2, in_shape), gx_ref, "vjp_params (input)")
    assert set(gp) == set(gp_ref), (sorted(gp), sorted(gp_ref))
    for k in gp_ref:
        _agree(gp[k], gp_ref[k], f"vjp_params {k}")

    g = rng.normal(size=y_ref.shape)
    u = rng.normal(size=x.shape)
    sp_ref, sx_ref = ref.second_order(p, cache_ref, g, u)
    sp, sx = chain.second_order(P, cache, _to_layout(g, img_out), _to_layout(u, img_in), ctx)
    assert set(sp) == set(sp_ref), (sorted(sp), sorted(sp_ref))
    for k in sp_ref:
        _agree(sp[k], sp_ref[k], f"second_order {k}")
    assert (sx is None) == (sx_ref is None), "second_order input term present in one backend only"
    if sx is not None:
        _agree(_from_layout(sx, in_shape), sx_ref, "second_order (input)")

    # rows: two rows per example (the layout the row passes use), against per-example results
    ex = np.repeat(np.arange(n), 2)
    rows = Rows(ex, np)
    t_rows = rng.normal(size=(2 * n,) + in_shape)
    ty_rows = chain.jvp(P, cache, _to_layout(t_rows, img_in), rows, ctx)
    want = np.concatenate([ref.jvp(p, ref.forward(p, x[ex[r]][None])[1], t_rows[r][None])
                           for r in range(2 * n)])
    _agree(_from_layout(ty_rows, out_shape), want, "jvp on rows")
    g_rows = rng.normal(size=(2 * n,) + tuple(out_shape))
    gx_rows = chain.vjp(P, cache, _to_layout(g_rows, img_out), rows, ctx)
    want = np.concatenate([ref.vjp(p, ref.forward(p, x[ex[r]][None])[1], g_rows[r][None], params=False)[0]
                           for r in range(2 * n)])
    _agree(_from_layout(gx_rows, in_shape), want, "vjp on rows")
    return ops


@pytest.mark.parametrize("case", layer_cases(), ids=lambda c: c[0])
def test_battery_cases_agree(case):
    label, layer, shape = case
    compare([(NAME, layer)], shape, seed=len(label))


def test_relu_maxpool_fusion_agrees():
    ops = compare([("a", L.ReLU()), ("b", L.MaxPool2d(2))], (2, 4, 6), seed=1)
    assert len(ops) == 1 and ops[0].key == "a"            # fused into one op
    ops = compare([("a", L.Tanh()), ("b", L.MaxPool2d(2))], (2, 4, 6), seed=2)
    assert len(ops) == 2                                    # only a rectifier is fused


ACTIVATIONS = [L.ReLU, L.Tanh, L.GELU, L.SiLU, L.LeakyReLU, L.Sigmoid, L.ELU, L.Softplus]


@given(act=st.sampled_from(ACTIVATIONS), image=st.booleans(), c=st.integers(1, 3),
       h=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_elementwise_ops_agree(act, image, c, h, seed):
    compare([(NAME, act())], (c, h, h + 1) if image else (c * h,), seed)


@given(fin=st.integers(1, 6), fout=st.integers(1, 6), bias=st.booleans(), seed=st.integers(0, 10_000))
def test_linear_ops_agree(fin, fout, bias, seed):
    compare([(NAME, L.Linear(fin, fout, bias=bias))], (fin,), seed)


@given(cin=st.integers(1, 3), cout=st.integers(1, 3), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 2), h=st.integers(3, 8), bias=st.booleans(), seed=st.integers(0, 10_000))
def test_conv2d_ops_agree(cin, cout, k, stride, pad, h, bias, seed):
    compare([(NAME, L.Conv2d(cin, cout, k, stride, pad, bias=bias))], (cin, h, h + 1), seed)


@given(kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 3), stride=st.integers(1, 3),
       c=st.integers(1, 3), h=st.integers(3, 7), relu=st.booleans(), seed=st.integers(0, 10_000))
def test_pool_ops_agree(kind, k, stride, c, h, relu, seed):
    pool = (L.MaxPool2d if kind == "max" else L.AvgPool2d)(k, stride)
    children = ([("a", L.ReLU())] if relu else []) + [("p", pool)]
    compare(children, (c, h, h + 1), seed, ties=seed % 2 == 0)


@given(c=st.integers(1, 3), h=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_batchnorm_and_flatten_ops_agree(c, h, seed):
    compare([("bn", L.BatchNorm2d(c)), ("f", L.Flatten())], (c, h, h + 1), seed)


@given(c=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_batchnorm1d_ops_agree(c, seed):
    compare([("fc", L.Linear(3, c)), ("bn", L.BatchNorm1d(c)), ("act", L.Tanh())], (3,), seed)


@given(cin=st.integers(1, 3), cout=st.integers(1, 3), stride=st.integers(1, 2), h=st.integers(3, 5),
       seed=st.integers(0, 10_000))
def test_basic_block_ops_agree(cin, cout, stride, h, seed):
    compare([(NAME, L.BasicBlock(cin, cout, stride))], (cin, h, h), seed)


@given(image=st.booleans(), shortcut=st.booleans(), final=st.sampled_from([None, "relu", "leaky"]),
       c=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_residual_ops_agree(image, shortcut, final, c, seed):
    """The general residual connection (traced ``f(x) + g(x)``), with or without a shortcut chain
    and a final piecewise-linear activation, on vectors and images."""
    if image:
        main = L.Sequential([("conv1", L.Conv2d(c, 2, 3, 1, 1)), ("act", L.ELU()),
                             ("conv2", L.Conv2d(2, 2, 3, 1, 1))])
        short = L.Sequential([("0", L.Conv2d(c, 2, 1)), ("1", L.BatchNorm2d(2))])
        shape = (c, 4, 5)
    else:
        main = L.Sequential([("fc1", L.Linear(c, 3)), ("act", L.Sigmoid()), ("fc2", L.Linear(3, 3))])
        short = L.Sequential([("0", L.Linear(c, 3, bias=False))])
        shape = (c,)
    if not shortcut and c != (2 if image else 3):
        shape = (2, 4, 5) if image else (3,)
        main.children[0] = (main.children[0][0], L.Conv2d(2, 2, 3, 1, 1) if image else L.Linear(3, 3))
        main = L.Sequential(main.children)
    final = {None: None, "relu": L.ReLU(), "leaky": L.LeakyReLU(0.1)}[final]
    layer = L.Residual(main, short if shortcut else None, "shortcut.", final)
    compare([(NAME, layer)], shape, seed)


# ------------------------------------------------------------------ networks with GELU / SiLU

@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_fast_networks_with_new_activations_agree(activation):
    """A new Elementwise activation needs nothing in gcref_cuda: the generic op, the row passes
    (top-activation scaling) and the batched penalty gradient agree with the reference."""
    import gcref_cuda as gcc
    from gcref.checks.cases import perturbed_params
    from gcref.metrics.complexity import geometric_complexity
    from gcref.nn import zoo
    from gcref.train.gc_regularizer import gc_penalty_and_grad
    from gcref_cuda import train as fast_train

    for net in (zoo.mlp([6, 7, 5], 3, activation=activation),
                zoo.cnn((2, 6, 6), 3, channels=(3,), hidden=4, activation=activation)):
        params = perturbed_params(net, 1)
        X = np.random.default_rng(2).normal(size=(4,) + net.input_shape)
        fnet = gcc.FastNetwork(net, dtype=np.float64)
        _agree(fnet.forward(params, X), net.forward(params, X), "logits", 1e-12)
        for output in ("embedding", "logits"):
            _agree(fnet.jacobian(params, X, output), net.jacobian(params, X, output=output),
                   f"{output} Jacobian", 1e-12)
        _agree(gcc.geometric_complexity(net, params, X, dtype=np.float64),
               geometric_complexity(net, params, X), "GC", 1e-12)
        value, grads = fast_train.gc_penalty_and_grad(net, params, X, dtype=np.float64)
        ref_value, ref_grads = gc_penalty_and_grad(net, params, X)
        _agree(value, ref_value, "GC penalty", 1e-12)
        for k in ref_grads:
            _agree(grads[k], ref_grads[k], f"GC penalty gradient {k}", 1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("gcref_cuda").backend.gpu_available(), reason="CuPy GPU not available")
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "silu"])
def test_elementwise_definitions_run_on_cupy(activation, dtype, tol):
    """The reference's s, s', s'' evaluated on CuPy arrays (NumPy and scipy.special ufuncs
    dispatch to CuPy and cupyx.scipy.special), keeping the compute dtype."""
    import gcref_cuda as gcc
    from gcref.checks.cases import perturbed_params
    from gcref.nn import zoo
    from gcref_cuda import backend

    net = zoo.cnn((2, 6, 6), 3, channels=(3,), hidden=4, activation=activation)
    params = perturbed_params(net, 1)
    X = np.random.default_rng(2).normal(size=(4,) + net.input_shape)
    with backend.using("cupy"):
        fnet = gcc.FastNetwork(net, dtype=dtype)
        J = fnet.jacobian(params, X, "logits")
        value, grads = gcc.gc_penalty_and_grad(net, params, X, dtype=dtype)
    assert J.dtype == dtype
    _agree(J, net.jacobian(params, X, output="logits"), "Jacobian on CuPy", tol)
    from gcref.train.gc_regularizer import gc_penalty_and_grad
    ref_value, ref_grads = gc_penalty_and_grad(net, params, X)
    _agree(value, ref_value, "GC penalty on CuPy", tol)
    for k in ref_grads:
        _agree(grads[k], ref_grads[k], f"GC penalty gradient {k} on CuPy", 100 * tol)


def _net_with_new_layers():
    """Every layer added for custom PyTorch modules in one network: BatchNorm1d, LeakyReLU,
    Sigmoid, ELU, Softplus and residual connections (identity and projection shortcuts)."""
    from gcref.nn.network import Network
    block = L.Residual(L.Sequential([("conv1", L.Conv2d(2, 2, 3, 1, 1)), ("act", L.ELU(0.7)),
                                     ("conv2", L.Conv2d(2, 2, 3, 1, 1))]))
    down = L.Residual(L.Sequential([("conv", L.Conv2d(2, 3, 3, 2, 1)), ("act", L.Softplus(1.5))]),
                      L.Sequential([("0", L.Conv2d(2, 3, 1, 2, 0)), ("1", L.BatchNorm2d(3))]),
                      "downsample.")
    mlp = L.Residual(L.Sequential([("fc", L.Linear(12, 12)), ("bn", L.BatchNorm1d(12)),
                                   ("act", L.Sigmoid())]))
    return Network([("stem", L.Conv2d(1, 2, 3, 1, 1)), ("act", L.LeakyReLU(0.1)),
                    ("block", block), ("down", down), ("flat", L.Flatten()), ("mlp", mlp),
                    ("fc", L.Linear(12, 5)), ("act2", L.LeakyReLU(0.2))],
                   ("head", L.Linear(5, 3)), (1, 4, 4), name="new-layers")


@pytest.mark.parametrize("array_module,dtype,tol", [
    pytest.param("numpy", np.float64, 1e-12, id="numpy-float64"),
    pytest.param("cupy", np.float64, 1e-12, id="cupy-float64", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not __import__("gcref_cuda").backend.gpu_available(),
                                            reason="CuPy GPU not available")]),
    pytest.param("cupy", np.float32, 1e-4, id="cupy-float32", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not __import__("gcref_cuda").backend.gpu_available(),
                                            reason="CuPy GPU not available")]),
])
def test_fast_network_with_the_new_layers_agrees(array_module, dtype, tol):
    """The new leaves and the general residual connection through the whole fast engine (row
    passes, GC and the GC penalty's gradient), on NumPy and, with a GPU, CuPy (the activations'
    np.where / expm1 / log1p / expit dispatch to CuPy, keeping the compute dtype)."""
    import gcref_cuda as gcc
    from gcref.checks.cases import perturbed_params
    from gcref.metrics.complexity import geometric_complexity
    from gcref.train.gc_regularizer import gc_penalty_and_grad
    from gcref_cuda import backend

    net = _net_with_new_layers()
    params = perturbed_params(net, 1)
    X = np.random.default_rng(2).normal(size=(4,) + net.input_shape)
    with backend.using(array_module):
        fnet = gcc.FastNetwork(net, dtype=dtype)
        logits = fnet.forward(params, X)
        J = fnet.jacobian(params, X, "logits")
        gc = gcc.geometric_complexity(net, params, X, dtype=dtype)
        value, grads = gcc.gc_penalty_and_grad(net, params, X, dtype=dtype)
    assert J.dtype == dtype
    _agree(logits, net.forward(params, X), "logits", tol)
    _agree(J, net.jacobian(params, X, output="logits"), "logits Jacobian", tol)
    _agree(gc, geometric_complexity(net, params, X), "GC", tol)
    ref_value, ref_grads = gc_penalty_and_grad(net, params, X)
    _agree(value, ref_value, "GC penalty", tol)
    for k in ref_grads:
        _agree(grads[k], ref_grads[k], f"GC penalty gradient {k}", 100 * tol)


def test_op_keys_are_unique_and_required():
    """Keys name the parameters and scratch buffers of a network's ops: a head named like an
    embedding layer must not share a buffer with it, and an op without a key refuses to run."""
    import gcref_cuda as gcc
    from gcref.nn.network import Network
    from gcref_cuda.ops.linear import LinearOp

    net = Network([("fc", L.Linear(3, 4)), ("classifier", L.Tanh())], ("classifier", L.Linear(4, 2)), (3,))
    fnet = gcc.FastNetwork(net, dtype=np.float64)
    keys = [op.key for op in fnet.chain("logits")]
    assert keys == ["fc", "classifier", "classifier#2"]
    params = net.init(0)
    X = np.random.default_rng(0).normal(size=(3, 3))
    _agree(fnet.jacobian(params, X, "logits"), net.jacobian(params, X, output="logits"), "Jacobian")
    blocks = gcc.FastNetwork(__import__("gcref").nn.zoo.resnet18((3, 6, 6), 3, width=1 / 32))
    inner = [sub.key for op in blocks.ops for sub in [op] + op.sub_ops()]
    assert len(inner) == len(set(inner)) and "layer2.0.downsample.0" in inner
    op = LinearOp("x.", L.Linear(2, 2), (2,))
    with pytest.raises(ValueError, match="no key"):
        op.slot("gx")
