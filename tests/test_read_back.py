"""Every file the lab reads back is read safely (issue 19): a damaged checkpoint on resume, a
finished run whose outputs are corrupt, the glyph cache, folders holding another kind of work,
and a gzip bomb given to the IDX reader."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from gcref import lab
from gcref.cli import app

TINY = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}
# TINY on the command line (TrainConfig's L2 and no criterion spelled out: gcref train's
# defaults are the protocol's)
TINY_CLI = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
            "--batch-size", "16", "--l2", "0.005", "--until-train-acc", "0"]
runner = CliRunner()


class _Stop(Exception):
    pass


def _stop_at(n):
    def progress(step, steps, rec):
        if step == n:
            raise _Stop
    return progress


def _interrupted_run(folder):
    with pytest.raises(_Stop):
        lab.run_training(TINY, folder, progress=_stop_at(15))
    assert (folder / "checkpoint.npz").exists()


def _damage(path, how):
    good = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    elif how == "pickle":
        np.savez(path.with_suffix(""), a=np.array([{"x": 1}], dtype=object))
        os.replace(str(path.with_suffix("")) + ".npz", path)


@pytest.mark.parametrize("how", ["empty", "truncated", "random", "pickle"])
def test_damaged_checkpoint_on_resume_is_one_clear_error(tmp_path, how):
    folder = tmp_path / "r"
    _interrupted_run(folder)
    _damage(folder / "checkpoint.npz", how)
    with pytest.raises(ValueError) as info:
        lab.run_training(TINY, folder)
    text = str(info.value)
    assert f"cannot resume from {folder / 'checkpoint.npz'}, a damaged checkpoint: it " in text
    assert "--overwrite" in text and "allow_pickle" not in text
    # the CLI: one Error: line, exit 2
    result = runner.invoke(app, ["train", *TINY_CLI, "--out", str(folder)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: cannot resume from") and "checkpoint.npz" in lines[-1]
    assert "allow_pickle" not in result.output and "Traceback" not in result.output
    # and starting afresh works
    assert lab.run_training(TINY, folder, overwrite=True)["status"] == "completed"


# ---------------------------------------------------------------------------- finished runs

def test_done_json_records_the_outputs_checksums(tmp_path):
    import hashlib
    folder = tmp_path / "r"
    lab.run_training(TINY, folder)
    done = json.loads((folder / "done.json").read_text())
    for name in ("params.npz", "checkpoint.npz"):
        data = (folder / name).read_bytes()
        assert done["outputs"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert done["param_shapes"] == {"features.1.weight": [16, 64], "features.1.bias": [16],
                                    "features.3.weight": [8, 16], "features.3.bias": [8],
                                    "classifier.weight": [10, 8], "classifier.bias": [10]}


@pytest.mark.parametrize("how", ["empty", "truncated", "flipped byte", "other numbers", "old done.json"])
def test_finished_run_with_a_corrupt_output_is_reported_and_redone(tmp_path, how):
    folder = tmp_path / "r"
    first = lab.run_training(TINY, folder)
    good = (folder / "params.npz").read_bytes()
    p = folder / "params.npz"
    if how == "empty":
        p.write_bytes(b"")
    elif how == "truncated":
        p.write_bytes(good[:100])
    elif how == "flipped byte":
        p.write_bytes(good[:-30] + bytes([good[-30] ^ 1]) + good[-29:])
    elif how == "other numbers":                     # loadable, right shapes, other values
        from gcref.nn import load_params, save_params
        save_params(p, {k: v + 1.0 for k, v in load_params(p).items()})
    else:                                            # written before checksums were recorded
        done = json.loads((folder / "done.json").read_text())
        del done["outputs"], done["param_shapes"]
        (folder / "done.json").write_text(json.dumps(done))
    cfg = lab.as_config(TINY)
    done, reason = lab.verify_finished(folder, cfg)
    assert done is None and reason
    again = lab.run_training(TINY, folder)
    assert not again["skipped"] and again["redone"] == reason
    assert again["final"] == first["final"] and again["resumed_from"] == 20
    assert (folder / "params.npz").read_bytes() == good          # written again, bitwise
    assert lab.verify_finished(folder, cfg)[0] is not None
    # the CLI says so, then "already finished" the next time
    result = runner.invoke(app, ["train", *TINY_CLI, "--out", str(folder)])
    assert result.exit_code == 0 and "already finished" in " ".join(result.output.split())


def test_cli_reports_a_redone_run(tmp_path):
    folder = tmp_path / "r"
    assert runner.invoke(app, ["train", *TINY_CLI, "--out", str(folder)]).exit_code == 0
    (folder / "params.npz").write_bytes(b"")
    result = runner.invoke(app, ["train", *TINY_CLI, "--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert "already finished" not in result.output
    assert "redone: params.npz has 0 bytes, done.json recorded" in " ".join(result.output.split())


def test_finished_run_with_a_damaged_checkpoint_is_refused_naming_it(tmp_path):
    folder = tmp_path / "r"
    lab.run_training(TINY, folder)
    (folder / "checkpoint.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint.npz, a damaged checkpoint: "
                                         r"it is empty.*--overwrite"):
        lab.run_training(TINY, folder)


# ---------------------------------------------------------------------------- mixed folders

def _one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_folder_kinds_do_not_mix(tmp_path):
    from gcref.train.checkpoint import folder_kind
    run = tmp_path / "run"
    _interrupted_run(run)                                     # an unfinished training run
    assert folder_kind(run) == ("run", "config.json")
    before = sorted(os.listdir(run))
    sweep_cli = ["sweep", *TINY_CLI, "--param", "lr=0.05,0.2", "--seeds", "0", "--parallel-backend",
                 "sequential"]
    for extra in ([], ["--overwrite"]):
        line = _one_line_error(runner.invoke(app, [*sweep_cli, "--out", str(run), *extra]))
        assert f"{run} holds a training run (config.json), not a sweep" in line
    with pytest.raises(ValueError, match="holds a training run .*not a transfer sweep"):
        lab.run_transfer(dict(TINY, dataset="digits"), {"lr": [0.05]}, seeds=[0], out_dir=run, backend="sequential",
                         overwrite=True)
    assert sorted(os.listdir(run)) == before                  # nothing interleaved

    sweep = tmp_path / "sweep"
    lab.run_sweep(TINY, {"lr": [0.05]}, seeds=[0], out_dir=sweep, backend="sequential")
    assert folder_kind(sweep) == ("sweep", "sweep.json")
    before = sorted(os.listdir(sweep))
    for extra in ([], ["--overwrite"]):
        line = _one_line_error(runner.invoke(app, ["train", *TINY_CLI, "--out", str(sweep), *extra]))
        assert f"{sweep} holds a sweep (sweep.json), not a training run" in line
    with pytest.raises(ValueError, match="holds a sweep .*not a transfer sweep"):
        lab.run_transfer(dict(TINY, dataset="digits"), {"lr": [0.05]}, seeds=[0], out_dir=sweep, backend="sequential")
    from gcref.train import fit
    from gcref import zoo
    from gcref.data import gaussian_mixture
    net = zoo.mlp([5, 8, 3], num_classes=3)
    with pytest.raises(ValueError, match="holds a sweep"):
        fit(net, net.init(0), gaussian_mixture(10, 3, 5, seed=0).dataset, lr=0.1, batch_size=4,
            steps=2, out_dir=sweep, progress=False)
    assert sorted(os.listdir(sweep)) == before
