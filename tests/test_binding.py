"""Every result file bound to its run (issue 30): a foreign or edited history, an unreadable
file or a run that has not finished never becomes a result.

Fault replays: a history copied from another run, edited values, a done.json of an older gcref
(no checksum of the history), a done.json that is not UTF-8, an unfinished run in the figures.
"""

import json
import os

import numpy as np
import pytest

from gcref import lab
from gcref.train import load_history

TINY = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}
GRID = {"lr": [0.05, 0.2]}


def _sweep(out, **kw):
    return lab.run_sweep(TINY, GRID, seeds=[0], out_dir=out, backend="sequential", n_jobs=1, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "sweep"
    summary = _sweep(out)
    return out, summary


def _copy_sweep(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def _rows(summary):
    return {r["name"]: (r["status"], r["final"].get("gc")) for r in summary["runs"]}


# ---------------------------------------------------------------------------- item 1


def test_foreign_history_of_the_same_length_is_not_taken_as_finished(tmp_path, reference):
    ref_dir, ref = reference
    out = _copy_sweep(ref_dir, tmp_path / "s")
    (out / "lr=0.05_seed=0" / "history.jsonl").write_bytes(
        (out / "lr=0.2_seed=0" / "history.jsonl").read_bytes())
    cfg = lab.as_config(dict(TINY, lr=0.05, seed=0))
    done, reason = lab.verify_finished(out / "lr=0.05_seed=0", cfg)
    assert done is None and "history.jsonl" in reason
    again = _sweep(out)
    assert again["ran"] == 1 and again["skipped"] == 1
    assert _rows(again) == _rows(ref)            # the run was trained again: its own numbers
    assert load_history(out / "lr=0.05_seed=0") == load_history(ref_dir / "lr=0.05_seed=0")


def test_edited_history_value_is_not_reported(tmp_path, reference):
    ref_dir, ref = reference
    out = _copy_sweep(ref_dir, tmp_path / "s")
    path = out / "lr=0.2_seed=0" / "history.jsonl"
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    last["gc"] = 1234.5
    path.write_text("\n".join(lines[:-1] + [json.dumps(last, sort_keys=True)]) + "\n")
    s = lab.summarize_sweep(out)
    assert _rows(s)["lr=0.2_seed=0"] == ("unfinished", 1234.5)     # listed, never correlated
    assert s["counts"]["completed"] == 1
    again = _sweep(out)
    assert _rows(again) == _rows(ref) and again["ran"] == 1


def test_foreign_longer_history_is_not_redone_on_top_of(tmp_path):
    """A converged run's folder given a longer history (another run's): the run does not resume
    on the foreign records nor report a convergence step it never had."""
    a = dict(TINY, steps=60, until_train_acc=0.01)       # converges at its first record
    b = dict(TINY, steps=60, lr=0.01)
    ra = lab.run_training(a, tmp_path / "a")
    lab.run_training(b, tmp_path / "b")
    assert ra["status"] == "converged"
    own = load_history(tmp_path / "a")
    (tmp_path / "a" / "history.jsonl").write_bytes((tmp_path / "b" / "history.jsonl").read_bytes())
    again = lab.run_training(a, tmp_path / "a")
    assert not again["skipped"] and "history.jsonl" in again["redone"]
    assert again["status"] == "converged" and again["converged_step"] == ra["converged_step"]
    assert load_history(tmp_path / "a") == own and again["final"] == ra["final"]


def test_fit_refuses_to_resume_on_a_history_the_checkpoint_was_not_written_with(tmp_path):
    from gcref.data import load_dataset
    from gcref.nn import zoo
    from gcref.train import fit
    train = load_dataset("digits")
    net = zoo.mlp([64, 8], 10, input_shape=(1, 8, 8))
    kw = dict(lr=0.05, batch_size=16, steps=20, eval_every=10, eval_size=64, out_dir=tmp_path / "r")
    fit(net, net.init(0), train, **kw)
    fit(net, net.init(0), train, **dict(kw, lr=0.2, out_dir=tmp_path / "o"))
    (tmp_path / "r" / "history.jsonl").write_bytes((tmp_path / "o" / "history.jsonl").read_bytes())
    with pytest.raises(ValueError, match=r"history.jsonl is not the history checkpoint.npz was "
                                         r"written with"):
        fit(net, net.init(0), train, **dict(kw, steps=30), resume=True)


def _as_older_gcref(run_dir):
    """What the previous gcref left: done.json checksums params and checkpoint only, and the
    checkpoint records no digest of the history."""
    done = json.loads((run_dir / "done.json").read_text())
    done["outputs"] = {k: v for k, v in done["outputs"].items()
                       if k in ("params.npz", "checkpoint.npz")}
    ckpt = run_dir / "checkpoint.npz"
    with np.load(ckpt, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__history_sha256__"}
    with open(ckpt, "wb") as fh:
        np.savez(fh, **arrays)
    from gcref.lab.run import _file_record
    done["outputs"]["checkpoint.npz"] = _file_record(ckpt)
    (run_dir / "done.json").write_text(json.dumps(done))


def test_done_json_of_an_older_gcref_is_rerun_not_believed(tmp_path, reference):
    ref_dir, ref = reference
    out = _copy_sweep(ref_dir, tmp_path / "s")
    for name in ("lr=0.05_seed=0", "lr=0.2_seed=0"):
        _as_older_gcref(out / name)
    fingerprint = json.loads((out / "lr=0.05_seed=0" / "done.json").read_text())["config_sha256"]
    cfg = lab.as_config(dict(TINY, lr=0.05, seed=0))
    done, reason = lab.verify_finished(out / "lr=0.05_seed=0", cfg)
    assert done is None and reason == ("done.json was written by an older gcref and does not "
                                       "bind history.jsonl")
    # the foreign history the older done.json cannot tell apart
    (out / "lr=0.05_seed=0" / "history.jsonl").write_bytes(
        (out / "lr=0.2_seed=0" / "history.jsonl").read_bytes())
    s = lab.summarize_sweep(out)
    assert s["counts"]["completed"] == 0 and s["counts"]["unfinished"] == 2
    assert all(c["n"] == 0 for c in s["correlations"].values())
    again = _sweep(out)
    assert again["ran"] == 2 and _rows(again) == _rows(ref)
    new = json.loads((out / "lr=0.05_seed=0" / "done.json").read_text())
    assert new["config_sha256"] == fingerprint           # the settings' fingerprint is unchanged
    assert set(new["outputs"]) == {"params.npz", "checkpoint.npz", "history.jsonl", "config.json"}


def test_edited_config_json_is_not_reported(tmp_path):
    r = lab.run_training(TINY, tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["network"] = "resnet-152"
    path.write_text(json.dumps(cfg, indent=2))
    done, reason = lab.verify_finished(tmp_path / "r", lab.as_config(TINY))
    assert done is None and reason.startswith("config.json has ") or reason == "config.json does not match the SHA-256 recorded in done.json"
    again = lab.run_training(TINY, tmp_path / "r")
    assert again["network"] == r["network"] and again["final"] == r["final"]


# ---------------------------------------------------------------------------- item 3


def test_done_json_not_utf8_is_unfinished(tmp_path):
    r = lab.run_training(TINY, tmp_path / "r")
    (tmp_path / "r" / "done.json").write_bytes(b'{"status": "\xff\xfe"}')
    assert lab.read_done(tmp_path / "r") is None
    assert lab.run_summary(tmp_path / "r")["status"] == "unfinished"
    again = lab.run_training(TINY, tmp_path / "r")
    assert again["final"] == r["final"] and again["status"] == "completed"


def test_unreadable_files_in_a_sweep_are_unfinished_or_one_error(tmp_path, reference):
    ref_dir, ref = reference
    out = _copy_sweep(ref_dir, tmp_path / "s")
    (out / "lr=0.05_seed=0" / "done.json").write_bytes(b"\xff\xfe\x00")
    (out / "lr=0.2_seed=0" / "config.json").write_bytes(b"\xff{")
    s = lab.summarize_sweep(out)
    assert {r["status"] for r in s["runs"]} == {"unfinished"}
    again = _sweep(out)
    assert _rows(again) == _rows(ref) and again["ran"] == 2


def test_history_not_utf8_names_the_file(tmp_path):
    lab.run_training(TINY, tmp_path / "r")
    path = tmp_path / "r" / "history.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\n")
    with pytest.raises(ValueError, match=r"history.jsonl: line 4 is not valid UTF-8"):
        load_history(path)


# ---------------------------------------------------------------------------- item 2

TRANSFER = dict(TINY, dataset="digits", l2=0.005, until_train_acc=None, source_classes=[0, 1, 2, 3, 4],
                target_classes=[5, 6, 7, 8, 9], episodes=4, queries=5)


@pytest.fixture(scope="module")
def transfer_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "t"
    summary = lab.run_transfer(TRANSFER, {"lr": [0.05, 0.2]}, seeds=[0, 1], out_dir=out,
                               backend="sequential")
    return out, summary


def test_unfinished_run_is_not_drawn_as_a_result(tmp_path, transfer_sweep, monkeypatch, drawn_figures):
    ref_dir, ref = transfer_sweep
    out = _copy_sweep(ref_dir, tmp_path / "t")
    cut = out / "lr=0.2_seed=1"
    os.unlink(cut / "done.json")
    lines = (cut / "history.jsonl").read_text().splitlines(keepends=True)
    (cut / "history.jsonl").write_text("".join(lines[:2]))          # stopped at step 10 of 20
    figures = drawn_figures
    paths = lab.plot_run_or_sweep(out)
    assert sorted(os.path.basename(p) for p in paths) == ["curves.png", "fig4.png", "final.png",
                                                          "transfer.png"]
    want = ("unfinished (no done.json that checks out; left out of final values, open grey "
            "markers): lr=0.2_seed=1")
    assert want in paths.notes
    for name in ("fig4.png", "transfer.png", "final.png"):
        assert any(want in t.get_text() for t in figures[name].texts), name
    gc = {r["name"]: r["final"]["gc"] for r in ref["runs"]}
    mean_line = figures["fig4.png"].axes[0].lines[0]          # mean ± s.d. of source GC
    assert list(mean_line.get_xdata()) == [0.05, 0.2]
    assert list(mean_line.get_ydata()) == [pytest.approx((gc["lr=0.05_seed=0"] + gc["lr=0.05_seed=1"]) / 2),
                                           pytest.approx(gc["lr=0.2_seed=0"])]
    assert len(figures["transfer.png"].axes[0].collections) == 3 + 1     # 3 runs, 1 open marker


def test_every_run_at_the_cap_says_nothing_to_draw(tmp_path, drawn_figures):
    out = tmp_path / "t"
    lab.run_transfer(dict(TRANSFER, until_train_acc=1.0), {"lr": [0.05, 0.2]}, seeds=[0],
                     out_dir=out, backend="sequential")
    figures = drawn_figures
    paths = lab.plot_run_or_sweep(out)
    assert sorted(os.path.basename(p) for p in paths) == ["curves.png", "fig4.png", "final.png",
                                                          "transfer.png"]
    assert "nothing to draw: no run finished as asked (completed or converged)" in paths.notes
    assert any("nothing to draw" in t.get_text() for t in figures["transfer.png"].texts)


def test_cli_plot_says_what_was_left_out(tmp_path, transfer_sweep):
    from typer.testing import CliRunner
    from gcref.cli import app
    ref_dir, _ = transfer_sweep
    out = _copy_sweep(ref_dir, tmp_path / "t")
    os.unlink(out / "lr=0.05_seed=0" / "done.json")
    result = CliRunner().invoke(app, ["plot", str(out)])
    assert result.exit_code == 0
    assert ("Note: unfinished (no done.json that checks out; left out of final values, open grey "
            "markers): lr=0.05_seed=0") in " ".join(result.stderr.split())      # rich wraps lines


def test_cli_train_sweep_plot_on_a_done_json_that_is_not_utf8(tmp_path):
    """Replay: each gave ``Error: 'utf-8' codec can't decode...`` (no file named) or, for the
    sweep, a traceback with rc 1; a damaged done.json is an unfinished run."""
    from typer.testing import CliRunner
    from gcref.cli import app
    opts = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
            "--batch-size", "16", "--until-train-acc", "0"]
    runner = CliRunner()
    assert runner.invoke(app, ["train", *opts, "--out", str(tmp_path / "r")]).exit_code == 0
    (tmp_path / "r" / "done.json").write_bytes(b"\xff\xfe")
    result = runner.invoke(app, ["train", *opts, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0 and "redone: done.json cannot be read" in " ".join(result.stdout.split())
    (tmp_path / "r" / "done.json").write_bytes(b"\xff\xfe")
    assert runner.invoke(app, ["plot", str(tmp_path / "r")]).exit_code == 0
    sweep = ["sweep", *opts, "--param", "lr=0.05,0.2", "--seeds", "0", "--n-jobs", "1", "--out", str(tmp_path / "s")]
    assert runner.invoke(app, sweep).exit_code == 0
    (tmp_path / "s" / "lr=0.05_seed=0" / "done.json").write_bytes(b"\xff\xfe")
    result = runner.invoke(app, sweep)
    assert result.exit_code == 0 and "1 run now, 1 already finished" in " ".join(result.stdout.split())
