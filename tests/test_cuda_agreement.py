"""gcref_cuda agrees with gcref: property tests over random architectures, shapes and seeds.

Every public function of ``gcref_cuda`` is run against its ``gcref`` twin on the same network,
parameters and data: float64 within 1e-10 relative, float32 within 1e-4 (``docs/theory.md``).
Each test runs with NumPy as the array module, and again with CuPy where a GPU is present
(``gpu`` marker; skipped with its reason otherwise).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gcref
import gcref_cuda as gcc
from gcref.checks import perturbed_params
from gcref.nn import zoo
from gcref.train import SGD
from gcref_cuda import backend
from gcref_cuda import nn as fast_nn

GPU_REASON = "CuPy GPU not available"
BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not backend.gpu_available(), reason=GPU_REASON)]),
]
DTYPES = [pytest.param(np.float64, 1e-10, id="float64"), pytest.param(np.float32, 1e-4, id="float32")]


def _examples(n):
    """``n`` examples (fewer if the profile asks for fewer); ``GCREF_HYPOTHESIS_EXAMPLES`` set in
    the environment overrides, for deeper runs."""
    env = os.environ.get("GCREF_HYPOTHESIS_EXAMPLES")
    count = int(env) if env else min(n, settings.default.max_examples)
    return settings(max_examples=max(1, count),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def rel(actual, desired) -> float:
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(desired, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0.0 else float(np.linalg.norm(a - b) / scale)


def assert_agree(actual, desired, tol, what):
    err = rel(actual, desired)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def assert_estimate(a, b, tol, what):
    assert a.method == b.method and a.n == b.n, f"{what}: {a} vs {b}"
    assert_agree(a.value, b.value, tol, f"{what} value")
    if math.isinf(b.stderr):                 # one draw per example: no standard error, in both
        assert math.isinf(a.stderr), f"{what} stderr: {a.stderr} vs {b.stderr}"
        return
    # stderr comes from a spread of per-draw values that agree to tol relative to the value
    scale = max(abs(b.value), b.stderr, 1e-300)
    assert abs(a.stderr - b.stderr) <= tol * scale, f"{what} stderr: {a.stderr} vs {b.stderr}"


# --------------------------------------------------------------------------------- strategies

@st.composite
def networks(draw):
    """A small network of every zoo family, with parameters and inputs."""
    kind = draw(st.sampled_from(["mlp", "mlp", "cnn", "cnn", "vgg", "resnet"]))
    k = draw(st.integers(2, 4))
    if kind == "mlp":
        act = draw(st.sampled_from(["relu", "tanh"]))
        hidden = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
        if draw(st.booleans()):
            shape = (draw(st.integers(1, 2)), draw(st.integers(2, 3)), draw(st.integers(2, 3)))
            net = zoo.mlp([int(np.prod(shape))] + hidden, k, input_shape=shape, activation=act)
        else:
            net = zoo.mlp([draw(st.integers(1, 12))] + hidden, k, activation=act)
    elif kind == "cnn":
        shape = (draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
        net = zoo.cnn(shape, k, channels=tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))),
                      hidden=draw(st.integers(2, 7)), activation=draw(st.sampled_from(["relu", "tanh"])),
                      pool=draw(st.sampled_from(["max", "avg"])))
    elif kind == "vgg":
        name = draw(st.sampled_from(["vgg11", "vgg13", "vgg16"]))
        side = draw(st.sampled_from([4, 6, 8]))
        net = zoo.vgg(name, (draw(st.integers(1, 3)), side, side), k, width=1 / 32,
                      hidden=draw(st.integers(3, 6)), batch_norm=draw(st.booleans()))
    else:
        side = draw(st.sampled_from([4, 5, 6]))
        net = zoo.resnet18((draw(st.integers(1, 3)), side, side), k, width=1 / 32)
    seed = draw(st.integers(0, 2 ** 16))
    n = draw(st.integers(2, 6))
    params = perturbed_params(net, seed)
    X = np.random.default_rng(seed + 1).normal(size=(n,) + net.input_shape)
    return net, params, X, seed


def _clustered(net, n_per_class, k, seed, spread=0.3):
    """Inputs around ``k`` well-separated centres (so class means of the embedding differ)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, size=(k,) + net.input_shape)
    y = np.repeat(np.arange(k), n_per_class)
    X = centres[y] + spread * rng.normal(size=(y.shape[0],) + net.input_shape)
    return X, y


@pytest.fixture(params=BACKENDS)
def on_backend(request):
    with backend.using(request.param):
        yield request.param


# --------------------------------------------------------------------------------- networks

@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(12)
@given(case=networks())
def test_network_functions_agree(on_backend, dtype, tol, case):
    net, params, X, seed = case
    fnet = gcc.FastNetwork(net, dtype=dtype)
    assert_agree(fnet.forward(params, X), net.forward(params, X), tol, "forward")
    assert_agree(fnet.embed(params, X), net.embed(params, X), tol, "embed")
    rng = np.random.default_rng(seed)
    for output in ("embedding", "logits"):
        assert_agree(fnet.jacobian(params, X, output), net.jacobian(params, X, output), tol,
                     f"{output} Jacobian")
        t = rng.normal(size=X.shape)
        assert_agree(fnet.jvp(params, X, t, output), net.jvp(params, X, t, output), tol, f"{output} JVP")
        v = rng.normal(size=(X.shape[0], net.output_dim(output)))
        gx, gp = fnet.vjp(params, X, v, output)
        gx_ref, gp_ref = net.vjp(params, X, v, output)
        assert_agree(gx, gx_ref, tol, f"{output} VJP wrt input")
        assert set(gp) == set(gp_ref)
        for key in gp_ref:
            assert_agree(gp[key], gp_ref[key], tol, f"{output} VJP wrt {key}")


@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(25)
@given(cin=st.integers(1, 3), cout=st.integers(1, 4), k=st.integers(1, 5), stride=st.integers(1, 2),
       pad=st.integers(0, 3), h=st.integers(1, 10), w=st.integers(1, 10), bias=st.booleans(),
       pool=st.sampled_from([None, "max", "avg"]), seed=st.integers(0, 2 ** 16))
def test_convolution_geometries_agree(on_backend, dtype, tol, cin, cout, k, stride, pad, h, w, bias,
                                      pool, seed):
    """Every kernel/stride/padding/size, on the flat-grid and the strided paths alike."""
    from hypothesis import assume

    from gcref.nn import layers as L
    from gcref.nn.network import Network
    conv = L.Conv2d(cin, cout, k, stride, pad, bias=bias)
    try:
        shape = conv.out_shape((cin, h, w))
        layers = [("conv", conv), ("act", L.ReLU())]
        if pool is not None and min(shape[1:]) >= 2:
            layers.append(("pool", (L.MaxPool2d if pool == "max" else L.AvgPool2d)(2)))
        layers.append(("flat", L.Flatten()))
        p = L.Sequential(layers).out_shape((cin, h, w))[0]
    except ValueError:
        assume(False)
    layers += [("dense", L.Linear(p, 3)), ("out", L.ReLU())]       # embedding of 3
    net = Network(layers, ("head", L.Linear(3, 2)), (cin, h, w))
    params = perturbed_params(net, seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3, cin, h, w))
    fnet = gcc.FastNetwork(net, dtype=dtype)
    assert_agree(fnet.forward(params, X), net.forward(params, X), tol, "forward")
    assert_agree(fnet.jacobian(params, X), net.jacobian(params, X), tol, "Jacobian")
    v = rng.normal(size=(3, 2))
    gx, gp = fnet.vjp(params, X, v)
    gx_ref, gp_ref = net.vjp(params, X, v)
    assert_agree(gx, gx_ref, tol, "VJP wrt input")
    for key in gp_ref:
        assert_agree(gp[key], gp_ref[key], tol, f"VJP wrt {key}")
    assert_agree(gcc.per_example_gc(net, params, X, dtype=dtype), gcref.per_example_gc(net, params, X),
                 tol, "per_example_gc")
    _, g1 = gcc.gc_penalty_and_grad(net, params, X, dtype=dtype)
    _, g2 = gcref.train.gc_penalty_and_grad(net, net.check_params(params), X)
    for key in g2:
        assert_agree(g1[key], g2[key], tol, f"GC penalty gradient {key}")


# --------------------------------------------------------------------------------- GC

@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(12)
@given(case=networks())
def test_exact_gc_agrees(on_backend, dtype, tol, case):
    net, params, X, seed = case
    for output in ("embedding", "logits"):
        ref = gcref.per_example_gc(net, params, X, output)
        assert_agree(gcc.per_example_gc(net, params, X, output, dtype=dtype), ref, tol,
                     f"per_example_gc({output})")
        assert_agree(gcc.geometric_complexity(net, params, X, output, dtype=dtype),
                     gcref.geometric_complexity(net, params, X, output), tol, "geometric_complexity")
    y = np.arange(X.shape[0]) % 2
    c1, v1 = gcc.per_class_gc(net, params, X, y, dtype=dtype)
    c2, v2 = gcref.per_class_gc(net, params, X, y)
    np.testing.assert_array_equal(c1, c2)
    assert_agree(v1, v2, tol, "per_class_gc")


@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(10)
@given(case=networks(), data=st.data())
def test_estimators_same_seed_same_value(on_backend, dtype, tol, case, data):
    net, params, X, seed = case
    n, p = X.shape[0], net.embedding_dim
    chunk = data.draw(st.integers(1, 4), label="chunk_size")
    budgets = {
        "examples": data.draw(st.one_of(st.none(), st.integers(1, n)), label="examples size"),
        "outputs": data.draw(st.one_of(st.none(), st.integers(1, p)), label="outputs size"),
        "mask": data.draw(st.one_of(st.none(), st.floats(0.05, 1.0)), label="mask q"),
        "projection": data.draw(st.one_of(st.none(), st.integers(1, 5)), label="probes"),
    }
    for method, size in budgets.items():
        probes = ["rademacher", "sphere"] if method == "projection" else ["rademacher"]
        for probe in probes:
            a = gcc.estimate_gc(net, params, X, method, size, seed=seed, probe=probe,
                                chunk_size=chunk, dtype=dtype)
            b = gcref.estimate_gc(net, params, X, method, size, seed=seed, probe=probe, chunk_size=chunk)
            assert_estimate(a, b, tol, f"estimate_gc({method}, {size}, {probe})")


@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(8)
@given(case=networks())
def test_geometric_collapse_agrees(on_backend, dtype, tol, case):
    net, params, _, seed = case
    X, y = _clustered(net, 3, 3, seed)
    for output in ("embedding", "logits"):
        try:
            ref = gcref.geometric_collapse(net, params, X, y, output)
        except ValueError as err:          # coinciding means (e.g. a dead ReLU embedding)
            with pytest.raises(ValueError, match="coincide"):
                gcc.geometric_collapse(net, params, X, y, output, dtype=np.float64)
            assert "coincide" in str(err)
            continue
        if dtype == np.float32 and _means_condition(net.embed(params, X) if output == "embedding"
                                                    else net.forward(params, X), y) > 1e2:
            continue                       # float32 features cannot resolve the mean distances
        assert_agree(gcc.geometric_collapse(net, params, X, y, output, dtype=dtype), ref, tol,
                     f"geometric_collapse({output})")


def _means_condition(Z, y):
    """``max |mu|^2 / min d_ij^2``: how much feature rounding is amplified by the ratios."""
    stats = gcref.class_stats(Z, y)
    M = stats.means
    d2 = np.sum((M[:, None] - M[None]) ** 2, axis=2)
    d2 = d2[~np.eye(M.shape[0], dtype=bool)]
    return float(np.max(np.sum(M ** 2, axis=1)) / max(d2.min(), 1e-300))


# --------------------------------------------------------------------------------- statistics

@st.composite
def features(draw):
    k = draw(st.integers(2, 7))
    p = draw(st.integers(1, 9))
    counts = draw(st.lists(st.integers(2, 6), min_size=k, max_size=k))
    seed = draw(st.integers(0, 2 ** 16))
    offset = draw(st.sampled_from([0.0, 3.0, 1e3]))
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(0, 3 * k, 3))[:k]        # arbitrary, unsorted labels
    means = rng.normal(0.0, 2.0, size=(k, p)) + offset
    y = np.repeat(labels, counts)
    Z = means[np.searchsorted(np.sort(labels), y)] + rng.normal(size=(y.shape[0], p))
    perm = rng.permutation(y.shape[0])
    return Z[perm], y[perm], seed


@_examples(25)
@given(data=features())
def test_class_statistics_agree(on_backend, data):
    Z, y, seed = data
    tol = 1e-10
    a, b = gcc.class_stats(Z, y), gcref.class_stats(Z, y)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert_agree(a.means, b.means, tol, "means")
    assert_agree(a.variances, b.variances, tol, "variances")
    try:
        ref = gcref.cdnv(Z, y)
    except ValueError as err:
        with pytest.raises(ValueError, match="coincide"):
            gcc.cdnv(Z, y)
        assert "coincide" in str(err)
        return
    assert_agree(gcc.cdnv(Z, y), ref, tol, "cdnv")
    assert_agree(gcc.neural_collapse(Z, y), gcref.neural_collapse(Z, y), tol, "neural_collapse")
    vals = np.random.default_rng(seed).uniform(0, 2, size=a.num_classes)
    assert_agree(gcc.pairwise_ratio(b.means, vals), gcref.metrics.pairwise_ratio(b.means, vals), tol,
                 "pairwise_ratio")


@_examples(25)
@given(data=features(), shots=st.integers(1, 10), constant=st.sampled_from([1.0, 2.0, 4.0]),
       form=st.sampled_from(["variance", "gc", "capped", "capped_gc"]), ways_all=st.booleans(),
       rho_scalar=st.booleans())
def test_ncc_bound_agrees(on_backend, data, shots, constant, form, ways_all, rho_scalar):
    Z, y, seed = data
    stats = gcref.class_stats(Z, y)
    k = stats.num_classes
    rng = np.random.default_rng(seed)
    gc = rng.uniform(0.0, 3.0, size=k)
    rho = float(rng.uniform(0.1, 2.0)) if rho_scalar else rng.uniform(0.1, 2.0, size=k)
    ways = None if ways_all else int(rng.integers(2, k + 1))
    kwargs = dict(form=form, constant=constant, gc_per_class=gc, rho=rho, ways=ways)
    a = gcc.ncc_error_bound(stats.means, stats.variances, shots, **kwargs)
    b = gcref.ncc_error_bound(stats.means, stats.variances, shots, **kwargs)
    assert (a.form, a.constant, a.shots, a.ways, a.num_classes, a.proven) == \
        (b.form, b.constant, b.shots, b.ways, b.num_classes, b.proven)
    assert_agree(a.value, b.value, 1e-10, "bound value")
    assert_agree(a.pairwise, b.pairwise, 1e-10, "pairwise terms")
    assert_agree(a.per_class, b.per_class, 1e-10, "per-class bound")
    assert (a.closed_form is None) == (b.closed_form is None)
    if b.closed_form is not None:
        assert_agree(a.closed_form, b.closed_form, 1e-10, "closed form")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@_examples(6)
@given(case=networks(), ways=st.integers(2, 3), shots=st.integers(1, 3), queries=st.integers(1, 3),
       episodes=st.integers(2, 12))
def test_few_shot_accuracy_agrees(on_backend, dtype, case, ways, shots, queries, episodes):
    net, params, _, seed = case
    X, y = _clustered(net, shots + queries + 1, 3, seed, spread=0.05)
    a = gcc.few_shot_accuracy(net, params, X, y, ways, shots, queries, episodes, seed=seed, dtype=dtype)
    b = gcref.few_shot_accuracy(net, params, X, y, ways, shots, queries, episodes, seed=seed)
    Z = net.embed(params, X)
    if dtype == np.float32 and _near_ties(Z, y, ways, shots, queries, episodes, seed):
        return                             # a float32 rounding may flip a near tie
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    assert (a.mean, a.ci95, a.ways, a.shots, a.queries, a.episodes) == \
        (b.mean, b.ci95, b.ways, b.shots, b.queries, b.episodes)
    c = gcc.few_shot_accuracy_features(Z, y, ways, shots, queries, episodes, seed=seed)
    d = gcref.few_shot_accuracy_features(Z, y, ways, shots, queries, episodes, seed=seed)
    np.testing.assert_array_equal(c.accuracies, d.accuracies)


def _near_ties(Z, y, ways, shots, queries, episodes, seed, margin=1e-3):
    for sup, qry, _ in gcref.few_shot_episodes(y, ways, shots, queries, episodes, seed):
        centres = Z[sup].mean(axis=1)
        d2 = np.sum((Z[qry.ravel()][:, None] - centres[None]) ** 2, axis=2)
        d2.sort(axis=1)
        if np.any(d2[:, 1] - d2[:, 0] <= margin * (d2[:, 1] + 1e-30)):
            return True
    return False


# --------------------------------------------------------------------------------- training

@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(8)
@given(case=networks(), l2=st.sampled_from([0.0, 0.01]), gc_reg=st.sampled_from([0.0, 0.3]),
       gc_rows=st.sampled_from([None, 1]), momentum=st.sampled_from([0.0, 0.9]))
def test_training_step_agrees(on_backend, dtype, tol, case, l2, gc_reg, gc_rows, momentum):
    net, params, X, seed = case
    params = net.check_params(params)
    y = np.random.default_rng(seed).integers(0, net.num_classes, X.shape[0])
    o1, p1, g1 = gcc.objective_and_grad(net, params, X, y, l2, gc_reg, gc_rows, seed, dtype=dtype)
    o2, p2, g2 = gcref.train.objective_and_grad(net, params, X, y, l2, gc_reg, gc_rows, seed)
    assert_agree(o1, o2, tol, "objective")
    assert set(p1) == set(p2)
    for key in p2:
        if p2[key] is None:
            assert p1[key] is None
        elif key == "accuracy":
            assert abs(p1[key] - p2[key]) <= 1.0 / X.shape[0] * (dtype == np.float32)
        else:
            assert_agree(p1[key], p2[key], tol, key)
    for key in g2:
        assert_agree(g1[key], g2[key], tol, f"gradient {key}")
    opt = SGD(0.05, momentum=momentum)
    a_params = b_params = params
    a_state, b_state = {}, {}
    for step in range(2):                              # two steps: momentum buffers too
        prev = b_state
        a_params, a_state, _, _ = gcc.train_step(net, a_params, a_state, X, y, opt, l2, gc_reg,
                                                  gc_rows, seed, dtype=dtype)
        b_params, b_state, _, parts = gcref.train.train_step(net, b_params, b_state, X, y, opt, l2,
                                                              gc_reg, gc_rows, seed)
    for key in b_params:
        assert_agree(a_params[key], b_params[key], tol, f"params after 2 steps: {key}")
    for key in b_state:
        # b = mu b_prev + g may cancel: errors are relative to the size of its two terms
        scale = np.linalg.norm(b_state[key] - momentum * prev.get(key, 0.0)) + \
            momentum * np.linalg.norm(prev.get(key, 0.0)) + np.linalg.norm(b_state[key])
        err = np.linalg.norm(a_state[key] - b_state[key])
        assert err <= tol * max(scale, 1e-300), f"momentum {key}: {err:.3g} vs scale {scale:.3g}"


def test_checkpoint_from_fast_training_loads_in_gcref(on_backend, tmp_path):
    net = zoo.cnn((2, 6, 6), 3, channels=(3,), hidden=5)
    params = net.init(0)
    X, y = _clustered(net, 4, 3, 0)
    params, state, _, _ = gcc.train_step(net, params, {}, X, y, SGD(0.1), l2=0.01, gc_reg=0.1)
    gcref.save_params(tmp_path / "p.npz", params, net)
    loaded = gcref.load_params(tmp_path / "p.npz", net)
    assert_agree(gcc.FastNetwork(net).forward(params, X), net.forward(loaded, X), 1e-12, "reloaded")


# --------------------------------------------------------------------------------- chunking

@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(6)
@given(case=networks())
def test_small_chunks_give_the_same_values(on_backend, dtype, tol, case, monkeypatch_chunks):
    """Examples one at a time and rows two at a time (and two worker threads): same values."""
    net, params, X, seed = case
    ref = gcref.per_example_gc(net, params, X)
    with monkeypatch_chunks():
        assert_agree(gcc.per_example_gc(net, params, X, dtype=dtype), ref, tol, "per_example_gc")
        a = gcc.estimate_gc(net, params, X, "projection", 3, seed=seed, dtype=dtype)
        b = gcref.estimate_gc(net, params, X, "projection", 3, seed=seed)
        assert_estimate(a, b, tol, "projection")
        a = gcc.estimate_gc(net, params, X, "mask", 0.5, seed=seed, dtype=dtype)
        b = gcref.estimate_gc(net, params, X, "mask", 0.5, seed=seed)
        assert_estimate(a, b, tol, "mask")
        assert_agree(gcc.FastNetwork(net, dtype=dtype).jacobian(params, X), net.jacobian(params, X),
                     tol, "jacobian")
        v1, g1 = gcc.gc_penalty_and_grad(net, params, X, dtype=dtype)
        v2, g2 = gcref.train.gc_penalty_and_grad(net, net.check_params(params), X)
        assert_agree(v1, v2, tol, "GC penalty")
        for key in g2:
            assert_agree(g1[key], g2[key], tol, f"GC penalty gradient {key}")


@pytest.fixture
def monkeypatch_chunks(monkeypatch):
    import contextlib

    @contextlib.contextmanager
    def small():
        with monkeypatch.context() as m:
            m.setattr(fast_nn.FastNetwork, "example_chunk", lambda self, *a, **k: 1)
            m.setattr(fast_nn.FastNetwork, "row_chunk", lambda self, *a, **k: 2)
            # training rows: a chunk of about one row (step = budget / (3 * example_bytes))
            m.setattr(fast_nn.FastNetwork, "example_bytes", lambda self, *a, **k: self.memory_budget)
            old = backend.cpu_threads()
            backend.set_cpu_threads(2)
            try:
                yield
            finally:
                backend.set_cpu_threads(old)
    return small


# --------------------------------------------------------------------------------- errors

def test_same_errors_as_reference(on_backend):
    net = zoo.mlp([4, 5, 3], 2)
    params = net.init(0)
    X = np.random.default_rng(0).normal(size=(4, 4))
    cases = [
        lambda m: m.per_example_gc(net, params, X, output="hidden"),
        lambda m: m.estimate_gc(net, params, X, method="nope"),
        lambda m: m.estimate_gc(net, params, X, method="projection", probe="gauss"),
        lambda m: m.estimate_gc(net, params, X, method="examples", size=5),
        lambda m: m.estimate_gc(net, params, X, method="mask", size=0.0),
        lambda m: m.per_example_gc(net, params, X[:, :3]),
        lambda m: m.per_example_gc(net, {k: v for k, v in list(params.items())[1:]}, X),
        lambda m: m.class_stats(np.ones((3, 2)), [0, 0, 1]),
        lambda m: m.cdnv(np.ones((4, 2)), [0, 0, 1, 1]),
        lambda m: m.neural_collapse(np.array([[0.0], [np.nan]]), [0, 0]),
        lambda m: m.ncc_error_bound(np.eye(3), None, 2),
        lambda m: m.ncc_error_bound(np.eye(3), np.ones(3), 2, form="gc"),
        lambda m: m.ncc_error_bound(np.zeros((3, 2)), np.ones(3), 2),
        lambda m: m.few_shot_accuracy(net, params, X, [0, 0, 1, 1], ways=2, shots=2, queries=1),
    ]
    for i, case in enumerate(cases):
        with pytest.raises((ValueError, TypeError)) as ref_err:
            case(gcref)
        with pytest.raises(type(ref_err.value)) as err:
            case(gcc)
        assert str(err.value) == str(ref_err.value), f"case {i}"


def test_fast_network_rejects_unknown_layers():
    from gcref.nn.layers import Dropout, Linear
    from gcref.nn.network import Network

    class Odd(Dropout):     # a valid layer (the identity); ops are registered per exact type
        pass

    net = Network([("a", Linear(3, 2)), ("b", Odd())], ("head", Linear(2, 2)), (3,))
    with pytest.raises(TypeError, match="Odd"):
        gcc.FastNetwork(net)


def test_fit_history_and_files_match_the_reference(on_backend, tmp_path):
    """gcref_cuda.fit: same batches, same history records, same checkpoint as gcref.train.fit."""
    import importlib
    import json
    net = zoo.mlp([6, 8, 5], 3)
    params = net.init(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    X = rng.normal(size=(30, 6)) + y[:, None]
    ty = np.repeat(np.arange(3), 8)
    tX = rng.normal(size=(24, 6)) - ty[:, None]
    kw = dict(lr=0.1, batch_size=8, steps=6, l2=0.01, gc_reg=0.1, momentum=0.9, seed=3, eval_every=2,
              target_data=(tX, ty), few_shot=dict(ways=2, shots=2, queries=3, episodes=5))
    a = gcc.fit(net, params, (X, y), out_dir=tmp_path / "fast", **kw)
    b = gcref.train.fit(net, params, (X, y), out_dir=tmp_path / "ref", **kw)
    assert a.status == b.status == "completed" and len(a.history) == len(b.history)
    for ra, rb in zip(a.history, b.history):
        assert set(ra) == set(rb)
        for key, vb in rb.items():
            if isinstance(vb, float):
                assert abs(ra[key] - vb) <= 1e-10 * max(1.0, abs(vb)), (key, ra[key], vb)
            else:
                assert ra[key] == vb, key
    for key in b.params:
        assert_agree(a.params[key], b.params[key], 1e-10, key)
    lines = (tmp_path / "fast" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [r["step"] for r in b.history]
    ref_module = importlib.import_module("gcref.train.fit")
    assert ref_module.train_step is gcref.train.train_step          # restored after the run


# --------------------------------------------------------------------------------- the engine seam

@pytest.mark.parametrize("dtype,tol", DTYPES)
@_examples(8)
@given(case=networks(), data=st.data())
def test_fast_engine_primitives_agree_with_the_reference_engine(on_backend, dtype, tol, case, data):
    """Every primitive of the seam, FastEngine against ReferenceEngine, on host float64 results."""
    from gcref.engine import ReferenceEngine
    net, params, X, seed = case
    fast, ref = gcc.FastEngine(net, dtype), ReferenceEngine(net, chunk_size=data.draw(st.integers(1, 4)))
    P = ref.check_params(params)
    assert all(np.array_equal(v, P[k]) for k, v in fast.check_params(params).items())
    rng = np.random.default_rng(seed)
    for output in ("embedding", "logits"):
        p = net.output_dim(output)
        a = fast.forward(P, X, output)
        assert a.dtype == np.float64
        assert_agree(a, ref.forward(P, X, output), tol, f"forward({output})")
        assert_agree(fast.jacobian_sq_norms(P, X, output), ref.jacobian_sq_norms(P, X, output), tol,
                     f"jacobian_sq_norms({output})")
        rows = rng.integers(0, p, size=(X.shape[0], 2))
        assert_agree(fast.row_sq_norms(P, X, rows, output), ref.row_sq_norms(P, X, rows, output), tol,
                     f"row_sq_norms({output})")
        V = rng.normal(size=(X.shape[0], 3, p))
        assert_agree(fast.probe_sq_norms(P, X, V, output), ref.probe_sq_norms(P, X, V, output), tol,
                     f"probe_sq_norms({output})")
        Jf = np.concatenate([J for _, J in fast.jacobian_blocks(P, X, output)])
        Jr = np.concatenate([J for _, J in ref.jacobian_blocks(P, X, output)])
        assert Jf.dtype == np.float64
        assert_agree(Jf, Jr, tol, f"jacobian_blocks({output})")
    (Zf, Lf), (Zr, Lr) = fast.embed_and_logits(P, X), ref.embed_and_logits(P, X)
    assert_agree(Zf, Zr, tol, "embed")
    assert_agree(Lf, Lr, tol, "logits")
    (lf, pf), (lr, pr) = fast.logits_and_pullback(P, X), ref.logits_and_pullback(P, X)
    v = rng.normal(size=lf.shape)
    gf, gr = pf(v), pr(v)
    assert gf.keys() == gr.keys()
    for k in gr:
        assert_agree(gf[k], gr[k], tol, f"pullback {k}")
    chosen = np.sort(rng.choice(net.embedding_dim, size=min(2, net.embedding_dim), replace=False))
    (vf, Gf), (vr, Gr) = fast.gc_rows_value_and_grad(P, X, chosen), ref.gc_rows_value_and_grad(P, X, chosen)
    assert_agree(vf, vr, tol, "gc rows value")
    assert list(Gf) == list(Gr) == net.param_names
    for k in Gr:
        assert Gf[k].dtype == np.float64
        assert_agree(Gf[k], Gr[k], tol * 10 if dtype == np.float32 else tol, f"gc rows grad {k}")
