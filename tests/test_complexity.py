"""Geometric complexity: closed forms, invariants, and unbiased estimators (Monte Carlo)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gcref
from gcref.checks import perturbed_params, small_zoo
from gcref.nn import Linear, Network, ReLU, zoo
from gcref.testing import assert_close


def linear_net(A, b, k=2):
    p, d = A.shape
    net = Network([("f.0", Linear(d, p))], ("head", Linear(p, k)), (d,), name="linear")
    params = net.init(0)
    params["f.0.weight"], params["f.0.bias"] = A, b
    return net, params


@given(p=st.integers(1, 5), d=st.integers(1, 6), n=st.integers(1, 20), seed=st.integers(0, 1000))
def test_gc_of_linear_map_is_frobenius_norm(p, d, n, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, d))
    net, params = linear_net(A, rng.normal(size=p))
    X = rng.normal(size=(n, d)) * 10
    assert_close(gcref.geometric_complexity(net, params, X), gcref.metrics.gc_of_linear_map(A), rtol=1e-12)
    assert_close(gcref.per_example_gc(net, params, X), np.full(n, np.sum(A ** 2)), rtol=1e-12)


def test_gc_of_one_relu_layer_closed_form():
    # f(x) = relu(W x + b): ||J||_F^2 = sum_j 1[w_j.x + b_j > 0] ||w_j||^2
    net = zoo.mlp([4, 7], num_classes=3)
    params = net.init(1)
    X = np.random.default_rng(0).normal(size=(30, 4))
    W, b = params["features.0.weight"], params["features.0.bias"]
    expected = (((X @ W.T + b) > 0) * np.sum(W ** 2, axis=1)).sum(axis=1)
    assert_close(gcref.per_example_gc(net, params, X), expected, rtol=1e-13)


def test_gc_scales_quadratically_with_output_scale():
    # ReLU is positively homogeneous: scaling the last embedding layer by c scales f by c, GC by c^2
    net = zoo.mlp([5, 6, 4], num_classes=2)
    params = net.init(0)
    X = np.random.default_rng(1).normal(size=(12, 5))
    gc = gcref.geometric_complexity(net, params, X)
    scaled = dict(params)
    scaled["features.2.weight"] = 3.0 * params["features.2.weight"]
    scaled["features.2.bias"] = 3.0 * params["features.2.bias"]
    assert_close(gcref.geometric_complexity(net, scaled, X), 9.0 * gc, rtol=1e-12)


@pytest.mark.parametrize("net", small_zoo(), ids=lambda n: n.name)
def test_gc_equals_sum_of_squared_jacobian(net):
    params = perturbed_params(net, 0)
    X = np.random.default_rng(3).normal(size=(4,) + net.input_shape)
    for output in ("embedding", "logits"):
        J = net.jacobian(params, X, output=output)
        assert_close(gcref.per_example_gc(net, params, X, output=output, chunk_size=3),
                     np.sum(J ** 2, axis=(1, 2)), rtol=1e-12, atol=1e-300)


def test_per_class_gc_and_geometric_collapse():
    net = zoo.mlp([3, 8, 4], num_classes=3)
    params = net.init(2)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    X = rng.normal(size=(30, 3)) + 2.0 * y[:, None]
    classes, gc = gcref.per_class_gc(net, params, X, y)
    pe = gcref.per_example_gc(net, params, X)
    assert_close(gc, [pe[y == c].mean() for c in range(3)], rtol=1e-14)
    Z = net.embed(params, X)
    mu = np.array([Z[y == c].mean(0) for c in range(3)])
    G = [(gc[i] + gc[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i in range(3) for j in range(3) if i != j]
    assert_close(gcref.geometric_collapse(net, params, X, y), np.mean(G), rtol=1e-12)


# ----------------------------------------------------------------------------- estimators

@pytest.fixture(scope="module")
def cnn_case():
    net = zoo.cnn((1, 6, 6), 3, channels=(3,), hidden=10)
    params = net.init(0)
    X = np.random.default_rng(0).normal(size=(25, 1, 6, 6))
    return net, params, X, gcref.geometric_complexity(net, params, X)


@pytest.mark.parametrize("method,kw", [("examples", {"size": 8}), ("outputs", {"size": 3}),
                                       ("mask", {"size": 0.3}), ("projection", {"size": 3}),
                                       ("projection", {"size": 3, "probe": "sphere"})])
def test_estimators_unbiased_and_calibrated(cnn_case, method, kw):
    net, params, X, exact = cnn_case
    R = 150
    est = [gcref.estimate_gc(net, params, X, method=method, seed=s, **kw) for s in range(R)]
    values = np.array([e.value for e in est])
    sd = values.std(ddof=1)
    # unbiased: the Monte Carlo mean is within 4 standard errors of the exact value
    assert abs(values.mean() - exact) <= 4 * sd / np.sqrt(R)
    # calibrated: the reported standard error matches the spread across seeds (within 35%)
    assert np.mean([e.stderr for e in est]) == pytest.approx(sd, rel=0.35)
    assert all(e.n > 0 and e.method == method for e in est)


def test_estimators_exact_at_full_budget(cnn_case):
    net, params, X, exact = cnn_case
    e = gcref.estimate_gc(net, params, X, method="examples", size=X.shape[0])
    assert e.value == pytest.approx(exact, rel=1e-12) and e.stderr == 0.0
    e = gcref.estimate_gc(net, params, X, method="outputs", size=net.embedding_dim)
    assert e.value == pytest.approx(exact, rel=1e-12) and e.stderr == 0.0
    e = gcref.estimate_gc(net, params, X, method="mask", size=1.0)
    assert e.value == pytest.approx(exact, rel=1e-12) and e.stderr == 0.0


@pytest.mark.parametrize("method", ["examples", "outputs", "projection"])
def test_one_draw_has_no_standard_error(cnn_case, method):
    # A single draw per example spreads (tens of % of GC here) but cannot estimate its own
    # spread: the value is unbiased, the standard error unknown (inf), never a false 0.0.
    net, params, X, exact = cnn_case
    est = [gcref.estimate_gc(net, params, X, method=method, size=1, seed=s) for s in range(40)]
    values = np.array([e.value for e in est])
    assert values.std(ddof=1) > 0.01 * exact
    assert all(e.stderr == np.inf for e in est)
    assert abs(values.mean() - exact) <= 4 * values.std(ddof=1) / np.sqrt(len(values))
    # two draws give a finite standard error; the whole budget an exact value (stderr 0)
    assert 0.0 < gcref.estimate_gc(net, params, X, method=method, size=2, seed=0).stderr < np.inf
    tiny = gcref.estimate_gc(net, params, X[:1], method="examples", size=1)
    assert tiny.stderr == 0.0 and tiny.value == pytest.approx(gcref.geometric_complexity(net, params, X[:1]))
    # the mask estimator estimates its variance from one draw
    assert 0.0 < gcref.estimate_gc(net, params, X, method="mask", size=0.3).stderr < np.inf


def test_projection_draws_do_not_depend_on_chunk_size(cnn_case):
    net, params, X, _ = cnn_case
    for probe in ("rademacher", "sphere"):
        a = gcref.estimate_gc(net, params, X, method="projection", size=3, probe=probe, seed=2, chunk_size=4)
        b = gcref.estimate_gc(net, params, X, method="projection", size=3, probe=probe, seed=2, chunk_size=256)
        assert a.value == pytest.approx(b.value, rel=1e-13) and a.stderr == pytest.approx(b.stderr, rel=1e-12)
    a = gcref.estimate_gc(net, params, X, method="mask", size=0.3, seed=2, chunk_size=4)
    b = gcref.estimate_gc(net, params, X, method="mask", size=0.3, seed=2, chunk_size=256)
    assert a.value == pytest.approx(b.value, rel=1e-13) and a.n == b.n


def test_engine_argument(cnn_case):
    from gcref.engine import Engine, ReferenceEngine, as_engine
    net, params, X, exact = cnn_case
    eng = ReferenceEngine(net, chunk_size=7)
    assert gcref.geometric_complexity(net, params, X, engine=eng) == pytest.approx(exact, rel=1e-13)
    assert as_engine(net, ReferenceEngine) .net is net          # a factory is called with net
    with pytest.raises(ValueError, match="engine was built for"):
        gcref.per_example_gc(zoo.cnn((1, 6, 6), 3, channels=(3,), hidden=10), params, X, engine=eng)
    with pytest.raises(TypeError, match="engine must be"):
        gcref.per_example_gc(net, params, X, engine=3)
    with pytest.raises(NotImplementedError):
        Engine().forward(params, X)


def test_estimators_reproducible(cnn_case):
    net, params, X, _ = cnn_case
    for m in gcref.ESTIMATORS:
        a = gcref.estimate_gc(net, params, X, method=m, seed=5)
        b = gcref.estimate_gc(net, params, X, method=m, seed=np.random.default_rng(5))
        assert a == b


def test_estimator_bad_input(cnn_case):
    net, params, X, _ = cnn_case
    with pytest.raises(ValueError, match="method must be one of"):
        gcref.estimate_gc(net, params, X, method="hutch")
    with pytest.raises(ValueError, match="size must be <= 25"):
        gcref.estimate_gc(net, params, X, method="examples", size=26)
    with pytest.raises(ValueError, match="size must be > 0"):
        gcref.estimate_gc(net, params, X, method="mask", size=0.0)
    with pytest.raises(ValueError, match="probe must be"):
        gcref.estimate_gc(net, params, X, method="projection", probe="gauss")
    with pytest.raises(TypeError, match="seed"):
        gcref.estimate_gc(net, params, X, seed=None)
    with pytest.raises(ValueError, match="output must be"):
        gcref.geometric_complexity(net, params, X, output="features")


# ----------------------------------------------------------------------------- flatness, Poincaré

@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4), seed=st.integers(0, 1000),
       act=st.sampled_from(["relu", "tanh"]))
def test_flatness_inequality_holds(widths, seed, act):
    net = zoo.mlp(widths, num_classes=2, activation=act)
    params = net.init(seed)
    X = np.random.default_rng(seed).normal(size=(6, widths[0]))
    rep = gcref.flatness_bound(net, params, X)
    assert rep.holds
    # an independent check of the parameter-gradient side: central differences over the first
    # layer's (W, b), squared and summed over every embedding coordinate
    h, fd = 1e-6, np.zeros(X.shape[0])
    for key in (f"{rep.layer}.weight", f"{rep.layer}.bias"):
        for idx in np.ndindex(params[key].shape):
            plus, minus = dict(params), dict(params)
            plus[key], minus[key] = params[key].copy(), params[key].copy()
            plus[key][idx] += h
            minus[key][idx] -= h
            d = (net.embed(plus, X) - net.embed(minus, X)) / (2 * h)
            fd += np.sum(d * d, axis=1)
    np.testing.assert_allclose(rep.param_grad_sq, fd, rtol=1e-6, atol=1e-12)


def test_flatness_equality_for_one_linear_layer_with_orthogonal_rows():
    # f(x) = W x + b with W having equal singular values: ||J||^2 = ||W||_2^2 * p ... equality
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    net, params = linear_net(2.0 * Q[:3], np.zeros(3))
    X = np.random.default_rng(1).normal(size=(5, 4))
    rep = gcref.flatness_bound(net, params, X)
    assert_close(rep.lhs, rep.rhs, rtol=1e-12)


def test_flatness_rejects_conv_first_layer():
    net = zoo.cnn((1, 4, 4), 2, channels=(2,), hidden=3)
    with pytest.raises(ValueError, match="dense first layer"):
        gcref.flatness_bound(net, net.init(0), np.zeros((1, 1, 4, 4)))


def test_poincare_inequality_gaussian_classes_through_network():
    from gcref.data import gaussian_mixture
    gm = gaussian_mixture(400, 3, 4, separation=4.0, anisotropy=3.0, seed=0)
    net = zoo.mlp([4, 16, 6], num_classes=3, activation="tanh")
    params = net.init(0)
    rep = gcref.poincare_inequality(net, params, gm.dataset.X, gm.dataset.y, rho=gm.poincare)
    assert rep.holds and rep.chain_holds
    assert np.all(rep.class_lhs <= rep.class_rhs)
