"""Training: exact gradients of the regularized objective, SGD steps, resume, divergence."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gcref
from gcref.checks import perturbed_params, small_zoo
from gcref.nn import zoo
from gcref.testing import assert_check, assert_close, check_gradient
from gcref.train import (SGD, fit, gc_penalty_and_grad, load_history, objective_and_grad,
                         softmax_cross_entropy, train_step)


@pytest.mark.parametrize("net", small_zoo(), ids=lambda n: n.name)
def test_gc_penalty_gradient_matches_finite_differences(net):
    params = net.check_params(perturbed_params(net, 1))
    X = np.random.default_rng(0).normal(size=(3,) + net.input_shape)
    value, grads = gc_penalty_and_grad(net, params, X)
    assert value == pytest.approx(gcref.geometric_complexity(net, params, X), rel=1e-12)
    names = net.param_names
    assert_check(check_gradient(lambda pp: gcref.geometric_complexity(net, {**params, **pp}, X),
                                lambda pp: gc_penalty_and_grad(net, {**params, **pp}, X)[1],
                                {k: params[k] for k in names}))


@given(widths=st.lists(st.integers(1, 5), min_size=2, max_size=4), seed=st.integers(0, 1000),
       act=st.sampled_from(["relu", "tanh"]), l2=st.sampled_from([0.0, 0.1]),
       gc_reg=st.sampled_from([0.0, 0.05]))
def test_regularized_objective_gradient(widths, seed, act, l2, gc_reg):
    net = zoo.mlp(widths, num_classes=3, activation=act)
    params = net.check_params(net.init(seed))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(5, widths[0]))
    y = rng.integers(0, 3, 5)
    obj, parts, grads = objective_and_grad(net, params, X, y, l2=l2, gc_reg=gc_reg)
    names = net.param_names
    assert_check(check_gradient(lambda pp: objective_and_grad(net, {**params, **pp}, X, y, l2, gc_reg)[0],
                                lambda pp: objective_and_grad(net, {**params, **pp}, X, y, l2, gc_reg)[2],
                                {k: params[k] for k in names}))
    expected = parts["loss"] + 0.5 * l2 * sum(np.sum(params[k] ** 2) for k in names)
    if gc_reg:
        expected += gc_reg * gcref.geometric_complexity(net, params, X)
    assert obj == pytest.approx(expected, rel=1e-12)


def test_sampled_gc_gradient_is_unbiased():
    net = zoo.mlp([4, 6, 6], num_classes=2)
    params = net.check_params(net.init(0))
    X = np.random.default_rng(0).normal(size=(4, 4))
    exact_v, exact_g = gc_penalty_and_grad(net, params, X)
    R = 400
    acc = {k: np.zeros_like(v) for k, v in exact_g.items()}
    vals = []
    for s in range(R):
        v, g = gc_penalty_and_grad(net, params, X, rows=2, seed=s)
        vals.append(v)
        for k in acc:
            acc[k] += g[k] / R
    assert abs(np.mean(vals) - exact_v) < 4 * np.std(vals) / np.sqrt(R)
    w = exact_g["features.0.weight"]
    assert np.linalg.norm(acc["features.0.weight"] - w) < 0.15 * np.linalg.norm(w)


def test_cross_entropy_closed_forms():
    loss, grad = softmax_cross_entropy(np.zeros((4, 5)), np.array([0, 1, 2, 3]))
    assert loss == pytest.approx(np.log(5), rel=1e-15)
    assert_close(grad.sum(axis=1), np.zeros(4), atol=1e-16)
    # huge logits stay finite
    loss, _ = softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0)


def test_sgd_momentum_weight_decay_step_by_hand():
    opt = SGD(lr=0.1, momentum=0.9, weight_decay=0.01)
    p = {"w": np.array([1.0, -2.0])}
    g1 = {"w": np.array([0.5, 0.5])}
    p1, s1 = opt.step(p, g1, opt.init_state(p))
    b1 = g1["w"] + 0.01 * p["w"]
    assert_close(p1["w"], p["w"] - 0.1 * b1, rtol=1e-15)
    g2 = {"w": np.array([-1.0, 0.0])}
    p2, s2 = opt.step(p1, g2, s1)
    b2 = 0.9 * b1 + g2["w"] + 0.01 * p1["w"]
    assert_close(p2["w"], p1["w"] - 0.1 * b2, rtol=1e-15)
    assert_close(s2["w"], b2, rtol=1e-15)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SGD(lr=0.0)


@pytest.fixture(scope="module")
def tiny_data():
    from gcref.data import gaussian_mixture
    gm = gaussian_mixture(20, 3, 5, separation=2.0, seed=0)
    return gm.dataset


def test_resume_equals_uninterrupted_bitwise(tmp_path, tiny_data):
    net = zoo.mlp([5, 8, 4], num_classes=3)
    kw = dict(lr=0.1, batch_size=8, steps=12, l2=1e-3, gc_reg=1e-2, momentum=0.9, seed=3, eval_every=4,
              eval_size=30)
    full = fit(net, net.init(0), tiny_data, out_dir=tmp_path / "full", **kw)
    part = fit(net, net.init(0), tiny_data, out_dir=tmp_path / "part", **{**kw, "steps": 8})
    assert part.steps == 8
    resumed = fit(net, net.init(0), tiny_data, out_dir=tmp_path / "part", resume=True, **kw)
    for k in full.params:
        np.testing.assert_array_equal(resumed.params[k], full.params[k])
    assert load_history(tmp_path / "part") == load_history(tmp_path / "full")
    assert [r["step"] for r in full.history] == [0, 4, 8, 12]
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["gc_reg"] == 1e-2
    assert not list((tmp_path / "full").glob(".tmp-*"))  # atomic writes left no temp files


def test_divergence_stops_and_keeps_history(tmp_path, tiny_data):
    net = zoo.mlp([5, 8, 4], num_classes=3)
    res = fit(net, net.init(0), tiny_data, lr=1e4, batch_size=8, steps=50, eval_every=1, eval_size=30,
              out_dir=tmp_path, max_param_norm=1e3)
    assert res.status == "diverged" and "diverged at step" in res.message
    assert res.history[-1]["diverged"] and len(res.history) >= 2
    assert load_history(tmp_path)[-1]["diverged"]
    with pytest.raises(gcref.train.TrainingDiverged) as info:
        fit(net, net.init(0), tiny_data, lr=1e4, batch_size=8, steps=50, eval_size=30, max_param_norm=1e3,
            on_divergence="raise")
    assert info.value.history


def test_invalid_hyperparameters_rejected_before_work(tiny_data):
    net = zoo.mlp([5, 8, 4], num_classes=3)
    p = net.init(0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        fit(net, p, tiny_data, lr=0.0, batch_size=8, steps=5)
    with pytest.raises(ValueError, match="batch_size=100 is larger than the training data"):
        fit(net, p, tiny_data, lr=0.1, batch_size=100, steps=5)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        fit(net, p, tiny_data, lr=0.1, batch_size=8, steps=5, l2=-1.0)
    with pytest.raises(ValueError, match="data.y must lie in 0..1"):
        fit(zoo.mlp([5, 4], 2), zoo.mlp([5, 4], 2).init(0), tiny_data, lr=0.1, batch_size=8, steps=5)
    with pytest.raises(ValueError, match="gc_method"):
        fit(net, p, tiny_data, lr=0.1, batch_size=8, steps=5, gc_method="approx")


def test_gc_regularization_lowers_gc(tiny_data):
    net = zoo.mlp([5, 16, 8], num_classes=3)
    kw = dict(lr=0.05, batch_size=16, steps=150, seed=0, eval_every=150, eval_size=60)
    plain = fit(net, net.init(0), tiny_data, **kw).history[-1]
    reg = fit(net, net.init(0), tiny_data, gc_reg=0.05, **kw).history[-1]
    l2 = fit(net, net.init(0), tiny_data, l2=0.05, **kw).history[-1]
    assert reg["gc"] < plain["gc"]
    assert l2["gc"] < plain["gc"]


def test_history_records_target_metrics(tiny_data):
    from gcref.data import gaussian_mixture
    target = gaussian_mixture(20, 5, 5, separation=3.0, seed=9).dataset
    net = zoo.mlp([5, 8, 4], num_classes=3)
    res = fit(net, net.init(0), tiny_data, lr=0.1, batch_size=8, steps=4, eval_every=2, test_data=tiny_data,
              target_data=target, few_shot=dict(ways=3, shots=2, queries=3, episodes=10), eval_size=60)
    rec = res.history[-1]
    for key in ("loss", "flatness", "train_accuracy", "test_accuracy", "gc", "nc", "geometric_collapse",
                "target_nc", "target_gc", "few_shot_accuracy", "few_shot_ci95"):
        assert key in rec and np.isfinite(rec[key]), key


def test_training_functions_compute_in_float64_from_float32_params(tiny_data):
    # A float32 state_dict (``v.numpy()``) gives the float64 result of the same values, as every
    # other public function does (before, these four computed in float32: ~1e-7 relative off).
    net = zoo.mlp([5, 8, 4], num_classes=3, activation="tanh")
    p64 = {k: v.astype(np.float32).astype(np.float64) for k, v in net.init(1).items()}
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    X, y = tiny_data.X[:10], tiny_data.y[:10]
    X32 = X.astype(np.float32)
    v64, g64 = gc_penalty_and_grad(net, p64, X32.astype(np.float64))
    v32, g32 = gc_penalty_and_grad(net, p32, X32)
    assert v32 == v64 and all(g32[k].dtype == np.float64 and np.array_equal(g32[k], g64[k]) for k in g64)
    o64, parts64, gr64 = objective_and_grad(net, p64, X32.astype(np.float64), y, l2=1e-3, gc_reg=0.1)
    o32, parts32, gr32 = objective_and_grad(net, p32, X32, y, l2=1e-3, gc_reg=0.1)
    assert o32 == o64 and parts32 == parts64
    assert all(gr32[k].dtype == np.float64 and np.array_equal(gr32[k], gr64[k]) for k in gr64)
    opt = SGD(0.1, momentum=0.5)
    new32 = train_step(net, p32, {}, X32, y, opt, l2=1e-3, gc_reg=0.1)
    new64 = train_step(net, p64, {}, X32.astype(np.float64), y, opt, l2=1e-3, gc_reg=0.1)
    assert new32[2] == new64[2]
    assert all(new32[0][k].dtype == np.float64 and np.array_equal(new32[0][k], new64[0][k]) for k in p64)
    from gcref.train import evaluate
    assert evaluate(net, p32, X32, y) == evaluate(net, p64, X32.astype(np.float64), y)


def test_evaluate_reports_missing_stderr_as_none(tiny_data):
    from gcref.train import evaluate
    net = zoo.mlp([5, 8, 4], num_classes=3)
    ev = evaluate(net, net.init(0), tiny_data.X, tiny_data.y, gc_method="projection", gc_size=1)
    assert ev["gc_stderr"] is None and "gc_size=1" in ev["gc_stderr_error"] and ev["gc"] > 0
    ev2 = evaluate(net, net.init(0), tiny_data.X, tiny_data.y, gc_method="projection", gc_size=2)
    assert 0 < ev2["gc_stderr"] < np.inf and "gc_stderr_error" not in ev2


def test_fit_with_an_explicit_reference_engine_is_bitwise_the_default(tiny_data):
    from gcref.engine import ReferenceEngine
    net = zoo.mlp([5, 8, 4], num_classes=3)
    kw = dict(lr=0.1, batch_size=8, steps=4, gc_reg=1e-2, seed=1, eval_every=2, gc_method="outputs", gc_size=2)
    a = fit(net, net.init(0), tiny_data, **kw)
    b = fit(net, net.init(0), tiny_data, engine=ReferenceEngine(net, chunk_size=3), **kw)
    c = fit(net, net.init(0), tiny_data, engine=ReferenceEngine, **kw)
    assert a.history == c.history
    assert all(np.array_equal(a.params[k], c.params[k]) for k in a.params)
    for ra, rb in zip(a.history, b.history):             # other chunks: the same up to rounding
        assert ra.keys() == rb.keys() and all(ra[k] == pytest.approx(rb[k], rel=1e-12) for k in ra)
    with pytest.raises(ValueError, match="engine was built for"):
        fit(zoo.mlp([5, 8, 4], num_classes=3), net.init(0), tiny_data, engine=ReferenceEngine(net), **kw)
