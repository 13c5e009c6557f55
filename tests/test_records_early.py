"""More records early (``eval_early``): the record steps, the unchanged trajectory, resume, the lab
setting and the CLI option."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from gcref import lab, zoo
from gcref.cli import app
from gcref.data import gaussian_mixture
from gcref.lab.config import SettingError
from gcref.nn import load_params
from gcref.train import fit, load_history
from gcref.train.fit import record_steps


@pytest.mark.parametrize("every,early,steps", [(32, 2, 1000), (32, 4, 1000), (10, 1, 40), (200, 8, 5000),
                                               (5, 3, 3), (1, 2, 100)])
def test_record_steps_are_geometric_until_eval_every_apart(every, early, steps):
    got = sorted(record_steps(every, early, steps))
    # closed form: round(2 ** (j / early)) for j = 0.. while the step after is < every further
    want, j = set(), 0
    while 2.0 ** (j / early) <= steps + 0.5:
        want.add(round(2.0 ** (j / early)))
        if 2.0 ** ((j + 1) / early) - 2.0 ** (j / early) >= every:
            break
        j += 1
    assert got == sorted(want)
    assert got[0] == 1 and got[-1] <= steps
    # dense where it matters: no gap between early records is wider than eval_every
    assert all(b - a <= every for a, b in zip(got, got[1:]))
    # `early` records per doubling, where the steps are far enough apart not to merge by rounding
    top = got[-1]
    if top / 2 * (2 ** (1 / early) - 1) >= 1:
        assert abs(sum(top / 2 < s <= top for s in got) - early) <= 1


def test_record_steps_example_and_off():
    assert sorted(record_steps(32, 2, 1000)) == [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91]
    assert record_steps(32, None, 1000) == frozenset() == record_steps(32, 0, 1000)
    with pytest.raises(ValueError, match="eval_early"):
        record_steps(32, -1, 1000)
    with pytest.raises((TypeError, ValueError), match="eval_early"):
        record_steps(32, 1.5, 1000)


@pytest.fixture(scope="module")
def setting():
    data = gaussian_mixture(30, 3, 5, separation=2.0, seed=0).dataset
    net = zoo.mlp([5, 8, 4], num_classes=3)
    kw = dict(lr=0.1, batch_size=8, steps=40, l2=1e-3, momentum=0.9, seed=2, eval_every=10, eval_size=30,
              progress=False)
    return net, data, kw


def test_early_records_leave_the_trajectory_bitwise_and_match_dense_records(setting):
    net, data, kw = setting
    plain = fit(net, net.init(0), data, **kw)
    early = fit(net, net.init(0), data, eval_early=2, **kw)
    dense = fit(net, net.init(0), data, **dict(kw, eval_every=1))
    assert all(np.array_equal(plain.params[k], early.params[k]) for k in plain.params)
    steps = [r["step"] for r in early.history]
    assert steps == sorted({0, *record_steps(10, 2, 40), 10, 20, 30, 40})
    assert steps[:8] == [0, 1, 2, 3, 4, 6, 8, 10]
    # an early record evaluates the network of that step: the same numbers as a run recording
    # every step (evaluation draws depend on [seed, step] only)
    by_step = {r["step"]: r for r in dense.history}
    for r in early.history:
        for key in ("train_loss", "train_accuracy", "gc", "nc", "geometric_collapse"):
            assert r[key] == by_step[r["step"]][key], (r["step"], key)
    # the record at a multiple of eval_every averages the batch losses since the previous record
    assert early.history[7]["loss"] == pytest.approx(np.mean([by_step[s]["loss"] for s in (9, 10)]), rel=1e-12)


class Stop(Exception):
    pass


def stop_at(n):
    """A progress callback that interrupts a run at step ``n`` (as a kill would, between records)."""
    def progress(step, steps, rec):
        if step == n:
            raise Stop
    return progress


def test_early_records_resume_bitwise(setting, tmp_path):
    net, data, kw = setting
    full = fit(net, net.init(0), data, eval_early=3, out_dir=tmp_path / "full", **kw)
    with pytest.raises(Stop):
        fit(net, net.init(0), data, eval_early=3, out_dir=tmp_path / "cut", **dict(kw, progress=stop_at(7)))
    cfg = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert cfg["eval_early"] == 3
    # another record schedule is another setting: refused, saying what differs
    with pytest.raises(ValueError, match="eval_early"):
        fit(net, net.init(0), data, eval_early=2, out_dir=tmp_path / "cut", resume=True, **kw)
    resumed = fit(net, net.init(0), data, eval_early=3, out_dir=tmp_path / "cut", resume=True, **kw)
    assert resumed.history == full.history
    assert all(np.array_equal(resumed.params[k], full.params[k]) for k in full.params)


def test_unset_is_not_written(setting, tmp_path):
    """Run folders written before eval_early existed keep their settings fingerprint."""
    net, data, kw = setting
    fit(net, net.init(0), data, out_dir=tmp_path, **kw)
    assert "eval_early" not in json.loads((tmp_path / "config.json").read_text())


TINY = {"steps": 40, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16, "max_per_class": 30}


def test_lab_folders_made_before_eval_early_resume(tmp_path):
    """Unset, eval_early is not in the lab's config dict, config.json or the fingerprint: a run
    folder written before the setting existed resumes (its checkpoint's binding is unchanged)."""
    assert "eval_early" not in lab.as_config(TINY).to_dict()
    assert lab.as_config(dict(TINY, eval_early=2)).to_dict()["eval_early"] == 2
    with pytest.raises(Stop):
        lab.run_training(TINY, tmp_path / "r", progress=stop_at(15))
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert "eval_early" not in cfg and "eval_early" not in cfg["lab_config"]
    assert lab.run_training(TINY, tmp_path / "r", progress=False)["resumed_from"] == 10


def test_lab_setting(tmp_path):
    assert lab.validate_config(dict(TINY, eval_early=0)).eval_early is None
    with pytest.raises(SettingError, match="eval_early must be a non-negative integer, got -2"):
        lab.validate_config(dict(TINY, eval_early=-2))
    s = lab.run_training(dict(TINY, eval_early=2), tmp_path / "r", progress=False)
    steps = [r["step"] for r in load_history(tmp_path / "r")]
    assert steps == [0, 1, 2, 3, 4, 6, 8, 10, 11, 16, 20, 23, 30, 32, 40]
    plain = lab.run_training(TINY, tmp_path / "p", progress=False)
    # the same network (the batch-loss means cover the steps since the previous record)
    ignore = ("loss", "objective", "flatness")
    assert {k: v for k, v in s["final"].items() if k not in ignore} == \
        {k: v for k, v in plain["final"].items() if k not in ignore}
    a, b = load_params(tmp_path / "r" / "params.npz"), load_params(tmp_path / "p" / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert lab.run_training(dict(TINY, eval_early=2), tmp_path / "r", progress=False)["skipped"]


def test_cli_option(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--out", str(out), "--steps", "40", "--eval-every", "10",
                                   "--eval-early", "1", "--hidden", "16,8", "--batch-size", "16",
                                   "--eval-size", "64", "--max-per-class", "30", "--until-train-acc", "0",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert [r["step"] for r in load_history(out)] == [0, 1, 2, 4, 8, 10, 16, 20, 30, 40]
    bad = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "bad"), "--eval-early", "-1"])
    assert bad.exit_code == 2 and "Error:" in bad.output and "eval-early" in bad.output
