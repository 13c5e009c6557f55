"""The trainer built once per run (gcref.train.trainer): the fast engine's training equals the
reference's, state stays on the backend between records, float32 training, stopping rules."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gcref_cuda
from gcref import zoo
from gcref.train import fit
from gcref.train.fit import CHECKPOINT_FILE, check_until, criterion_met, steps_for
from gcref_cuda.backend import count_transfers, set_cpu_threads, using

FAMILIES = {
    "mlp": lambda: (zoo.mlp([12, 10, 8, 6], num_classes=4), (12,)),
    "mlp_tanh": lambda: (zoo.mlp([12, 10, 8, 6], num_classes=4, activation="tanh"), (12,)),
    "cnn": lambda: (zoo.cnn((1, 8, 8), 3, channels=(3, 4), hidden=6), (1, 8, 8)),
    "vgg_bn": lambda: (zoo.vgg("vgg11", (3, 32, 32), 3, width=0.0625, batch_norm=True), (3, 32, 32)),
    "resnet": lambda: (zoo.resnet18((3, 8, 8), 3, width=0.125), (3, 8, 8)),
}


def _data(shape, k, n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape), rng.integers(0, k, n)


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _assert_runs_agree(r1, r2, rtol):
    assert r1.status == r2.status and r1.steps == r2.steps
    assert len(r1.history) == len(r2.history)
    for h1, h2 in zip(r1.history, r2.history):
        assert h1.keys() == h2.keys()
        for key, v in h1.items():
            if isinstance(v, float):
                assert math.isclose(v, h2[key], rel_tol=rtol, abs_tol=rtol * 1e-3), (key, h1["step"])
    for k in r1.params:
        assert _rel(r1.params[k], r2.params[k]) <= rtol, k


# ------------------------------------------------------------------ fast trainer == reference

@pytest.fixture(params=["whole", "sharded"])
def shards(request, monkeypatch):
    """The fast step on the whole batch, and split into shards on three worker threads (the
    fast engine shards batches with a large forward pass; these nets are small, so the fixture
    lowers the threshold). Yields the list of shard counts the steps used."""
    seen = []
    original = gcref_cuda.FastEngine._shards

    def counting(self, n):
        out = original(self, n)
        seen.append(len(out))
        return out

    monkeypatch.setattr(gcref_cuda.FastEngine, "_shards", counting)
    if request.param == "sharded":
        monkeypatch.setattr(gcref_cuda.FastEngine, "SHARD_MACS", 1)
        set_cpu_threads(3)
    try:
        yield request.param, seen
    finally:
        set_cpu_threads(None)
    if request.param == "sharded":
        assert seen and min(seen) == 3, seen


SETTINGS = [dict(), dict(l2=5e-3, momentum=0.9), dict(gc_reg=0.01), dict(gc_reg=0.01, gc_rows=3, l2=1e-3,
                                                                       momentum=0.5)]


@pytest.mark.parametrize("family", ["mlp", "mlp_tanh", "cnn"])
@pytest.mark.parametrize("setting", range(len(SETTINGS)))
def test_fast_trainer_equals_reference_over_50_steps(family, setting, shards):
    net, shape = FAMILIES[family]()
    X, y = _data(shape, net.num_classes)
    kw = dict(lr=0.05, batch_size=8, steps=50, eval_every=25, eval_size=12, progress=False,
              **SETTINGS[setting])
    ref = fit(net, net.init(3), (X, y), **kw)
    fast = gcref_cuda.fit(net, net.init(3), (X, y), dtype="float64", **kw)
    _assert_runs_agree(fast, ref, 1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vgg_bn", "resnet"])
@pytest.mark.parametrize("setting", [0, 3])
def test_fast_trainer_equals_reference_deep_families(family, setting, shards):
    net, shape = FAMILIES[family]()
    X, y = _data(shape, net.num_classes, n=16)
    kw = dict(lr=0.02, batch_size=4, steps=50, eval_every=50, eval_size=8, progress=False,
              **SETTINGS[setting])
    _assert_runs_agree(gcref_cuda.fit(net, net.init(1), (X, y), dtype="float64", **kw),
                       fit(net, net.init(1), (X, y), **kw), 1e-10)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 16), lr=st.floats(0.005, 0.2), l2=st.sampled_from([0.0, 1e-3, 1e-2]),
       momentum=st.sampled_from([0.0, 0.5, 0.9]), gc_reg=st.sampled_from([0.0, 0.01]),
       gc_rows=st.sampled_from([None, 2]))
def test_fast_trainer_equals_reference_property(seed, lr, l2, momentum, gc_reg, gc_rows):
    net = zoo.mlp([6, 8, 5], num_classes=3)
    X, y = _data((6,), 3, n=16, seed=seed)
    kw = dict(lr=lr, batch_size=4, steps=50, eval_every=10, eval_size=8, progress=False, l2=l2,
              momentum=momentum, gc_reg=gc_reg, gc_rows=gc_rows, seed=seed % 7)
    _assert_runs_agree(gcref_cuda.fit(net, net.init(seed), (X, y), dtype="float64", **kw),
                       fit(net, net.init(seed), (X, y), **kw), 1e-10)


def test_float32_training_tracks_float64():
    """float32 training agrees with float64 to the tolerance the README states (1e-4 relative
    on the loss and the parameters over 50 steps of a small MLP)."""
    net = zoo.mlp([12, 16, 8], num_classes=4)
    X, y = _data((12,), 4, n=32)
    kw = dict(lr=0.05, batch_size=8, steps=50, eval_every=25, eval_size=16, progress=False, l2=1e-3,
              momentum=0.9)
    r32 = gcref_cuda.fit(net, net.init(0), (X, y), dtype="float32", **kw)
    r64 = gcref_cuda.fit(net, net.init(0), (X, y), dtype="float64", **kw)
    for k in r64.params:
        assert _rel(r32.params[k], r64.params[k]) < 1e-4, k
    assert abs(r32.history[-1]["loss"] - r64.history[-1]["loss"]) < 1e-4 * r64.history[-1]["loss"]
    # and they are not the same computation
    assert any(_rel(r32.params[k], r64.params[k]) > 0 for k in r64.params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_keeps_the_dtype_and_resume_is_bitwise(tmp_path, dtype):
    net = zoo.mlp([12, 16, 8], num_classes=4)
    X, y = _data((12,), 4, n=32)
    kw = dict(lr=0.05, batch_size=8, eval_every=10, eval_size=16, progress=False, momentum=0.9,
              l2=1e-3, dtype=dtype)
    full = gcref_cuda.fit(net, net.init(0), (X, y), steps=30, **kw)
    gcref_cuda.fit(net, net.init(0), (X, y), steps=20, out_dir=tmp_path, **kw)
    with np.load(tmp_path / CHECKPOINT_FILE) as ck:
        assert ck["features.0.weight"].dtype == np.dtype(dtype)
        assert ck["__momentum__/features.0.weight"].dtype == np.dtype(dtype)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == dtype
    resumed = gcref_cuda.fit(net, net.init(0), (X, y), steps=30, out_dir=tmp_path, resume=True, **kw)
    for k in full.params:
        assert np.array_equal(full.params[k], resumed.params[k]), k
    assert [r["loss"] for r in full.history[1:]] == [r["loss"] for r in resumed.history[1:]]
    # a checkpoint of the other dtype is refused (the dtype is a bound setting)
    other = "float64" if dtype == "float32" else "float32"
    with pytest.raises(ValueError, match="dtype"):
        gcref_cuda.fit(net, net.init(0), (X, y), steps=40, out_dir=tmp_path, resume=True,
                       **{**kw, "dtype": other})


# ------------------------------------------------------------------ state stays on the backend

@pytest.mark.parametrize("gc_reg", [0.0, 0.01])
def test_no_parameter_sized_transfer_between_records(gc_reg, shards):
    net = zoo.mlp([40, 32, 24, 16], num_classes=12)
    X, y = _data((40,), 12, n=64)
    # every weight matrix is larger than what a step may move: the batch indices, the GC
    # penalty's (example, row) pairs (batch x p) and a few scalars
    smallest = min(int(np.prod(s)) for s in net.param_specs().values() if len(s) == 2)
    assert smallest > 8 * net.embedding_dim
    steps_seen = []

    with using("numpy"), count_transfers() as log:
        marks = {}

        def progress(step, total, rec):
            marks[step] = log.mark()
            steps_seen.append(rec is not None)

        gcref_cuda.fit(net, net.init(0), (X, y), lr=0.05, batch_size=8, steps=30, eval_every=15,
                       eval_size=20, progress=progress, momentum=0.9, l2=1e-3, gc_reg=gc_reg)
    between = [e for t in range(2, 15) for e in log.entries[marks[t - 1]:marks[t]]]
    assert between, "the counter saw nothing: it is not counting"
    per_step = len(between) / 13
    assert per_step <= 8
    shapes = {tuple(s) for s in net.param_specs().values()}
    for direction, shape, nbytes, dtype in between:
        n_el = int(np.prod(shape)) if shape else 1
        assert n_el <= 8 * net.embedding_dim, (direction, shape)   # indices and scalars only
        if np.dtype(dtype).kind == "f":                            # no parameter-shaped floats
            assert shape not in shapes or n_el == 1, (direction, shape, dtype)
    # the records do bring the parameters back (the counter sees real crossings)
    at_record = log.entries[marks[14]:marks[15]]
    assert any(d == "to_host" and int(np.prod(s)) >= smallest for d, s, _, _ in at_record)


@pytest.mark.parametrize("gc_reg", [0.0, 0.01])
def test_memory_does_not_grow_from_step_to_step(gc_reg, shards):
    """200 steps of the fast trainer allocate nothing that stays (fit itself keeps three floats
    per step until the next record, for the record's means)."""
    from gcref.train.optim import SGD
    from gcref.train.trainer import Trainer
    net = zoo.mlp([30, 32, 16], num_classes=4)
    X, y = _data((30,), 4, n=64)
    engine = gcref_cuda.FastEngine(net, dtype="float64")
    trainer = Trainer(engine, net.init(0), {}, X, y, SGD(0.01, momentum=0.9), l2=1e-3, gc_reg=gc_reg)
    batches = [np.random.default_rng([0, t]).choice(64, 16, replace=False) for t in range(221)]
    tracemalloc.start()
    try:
        with engine.training_scope(16):                 # as fit runs the steps
            for t in range(221):
                trainer.step(batches[t], gc_seed=[0, t, 2])
                if t == 20:
                    before = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 4 * 1024, (before, after)


# ------------------------------------------------------------------ stopping rules

def test_until_stops_at_the_first_record_meeting_the_criterion(tmp_path):
    net = zoo.mlp([12, 32, 16], num_classes=3)
    X, y = _data((12,), 3, n=48)
    kw = dict(lr=0.2, batch_size=16, steps=600, eval_every=10, eval_size=48, progress=False,
              momentum=0.9)
    free = fit(net, net.init(0), (X, y), **kw)
    acc = [(r["step"], r["train_accuracy"]) for r in free.history]
    target = max(a for _, a in acc)
    assert target > acc[0][1] + 0.2                         # training does get somewhere
    first = next(s for s, a in acc if s > 0 and a >= target)
    assert first < 600
    until = {"train_accuracy": target}
    r = fit(net, net.init(0), (X, y), until=until, out_dir=tmp_path / "a", **kw)
    assert r.status == "converged" and r.converged_step == first and r.steps == first
    assert r.history[-1]["step"] == first and r.history[-1]["converged"] is True
    assert [h["loss"] for h in r.history[1:]] == [h["loss"] for h in free.history[1:len(r.history)]]
    # resumed: stops at the same step, nothing more is run
    again = fit(net, net.init(0), (X, y), until=until, out_dir=tmp_path / "a",
                resume=True, **kw)
    assert again.status == "converged" and again.steps == first
    # a criterion never met within the cap: status "cap", not "converged"
    cap = fit(net, net.init(0), (X, y), **{**kw, "steps": 20}, until={"train_loss": 1e-9})
    assert cap.status == "cap" and cap.converged_step is None and "cap of 20 steps" in cap.message


def test_train_loss_is_the_cross_entropy_on_the_evaluation_subset():
    from gcref.train.losses import softmax_cross_entropy
    net = zoo.mlp([12, 16, 8], num_classes=3)
    X, y = _data((12,), 3, n=30)
    r = fit(net, net.init(0), (X, y), lr=0.1, batch_size=10, steps=5, eval_size=None, progress=False)
    expect, _ = softmax_cross_entropy(net.forward(r.params, X), y)
    assert r.history[-1]["train_loss"] == pytest.approx(expect, rel=1e-12)
    assert r.history[-1]["epoch"] == pytest.approx(5 * 10 / 30)


def test_epochs_set_the_step_budget():
    assert steps_for(None, 2, 100, 32) == 7 and steps_for(None, 1, 96, 32) == 3
    assert steps_for(5, None, 100, 32) == 5
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        steps_for(5, 2, 100, 32)
    with pytest.raises(ValueError, match="epochs"):
        steps_for(None, 0, 100, 32)
    net = zoo.mlp([12, 8], num_classes=3)
    X, y = _data((12,), 3, n=30)
    r = fit(net, net.init(0), (X, y), lr=0.1, batch_size=10, epochs=2, progress=False)
    assert r.steps == 6 and r.history[-1]["epoch"] == pytest.approx(2.0)


def test_until_is_validated():
    assert check_until(None) is None
    assert check_until({"train_loss": 0.1, "train_accuracy": 0.99}) == {"train_accuracy": 0.99,
                                                                          "train_loss": 0.1}
    with pytest.raises(ValueError, match="unknown criterion 'accuracy'"):
        check_until({"accuracy": 0.9})
    with pytest.raises(ValueError, match="train_accuracy"):
        check_until({"train_accuracy": 1.5})
    with pytest.raises(TypeError, match="until"):
        check_until(0.99)
    assert criterion_met({"train_accuracy": 0.9, "train_loss": 0.5}, {"train_accuracy": 0.95, "train_loss": 0.4})
    assert not criterion_met({"train_accuracy": 0.9, "train_loss": 0.5}, {"train_accuracy": 0.95, "train_loss": 0.6})
    assert not criterion_met({"train_loss": 0.5}, {"train_loss": None})


# ------------------------------------------------------------------ dtype in the lab and the CLI

def test_lab_and_cli_train_in_float32_with_the_cuda_backend(tmp_path):
    from typer.testing import CliRunner

    from gcref.cli import app
    from gcref.lab import run_training
    from gcref.lab.config import SettingError
    base = dict(steps=6, eval_every=3, eval_size=20, hidden=[16], max_per_class=10)
    run_training({**base, "backend": "cuda", "dtype": "float32"}, tmp_path / "f32", progress=False)
    cfg = json.loads((tmp_path / "f32" / "config.json").read_text())
    assert cfg["dtype"] == "float32" and cfg["lab_config"]["dtype"] == "float32"
    with np.load(tmp_path / "f32" / CHECKPOINT_FILE) as ck:
        assert ck["features.1.weight"].dtype == np.float32
    with pytest.raises(SettingError, match="float32 needs backend cuda"):
        run_training({**base, "dtype": "float32"}, tmp_path / "ref32", progress=False)
    res = CliRunner().invoke(app, ["train", "--steps", "4", "--eval-every", "2", "--eval-size", "20",
                                   "--hidden", "16", "--max-per-class", "10", "--backend", "cuda", "--until-train-acc", "0",
                                   "--dtype", "float32", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["dtype"] == "float32"
    res = CliRunner().invoke(app, ["train", "--steps", "4", "--dtype", "float16", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "Error:" in res.output and "dtype" in res.output
