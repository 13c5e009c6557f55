"""``gcref train / sweep / transfer / plot`` through typer's CliRunner, on tiny settings."""

import json
import os

import pytest
from typer.testing import CliRunner

from gcref.cli import app
from gcref.train import load_history

runner = CliRunner()
# --until-train-acc 0: the whole budget (sweep and transfer train to a criterion by default)
TINY = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
        "--batch-size", "16", "--until-train-acc", "0"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_commands_are_registered_and_check_untouched():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("check", "train", "sweep", "transfer", "plot"):
        assert name in result.stdout


def test_train_writes_files_and_json(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    assert "embedding GC" in result.stdout and "NC (CDNV)" in result.stdout
    for name in ("config.json", "history.jsonl", "checkpoint.npz", "params.npz", "done.json"):
        assert (out / name).exists()
    result = invoke("train", *TINY, "--out", out, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["skipped"] is True and summary["steps"] == 20
    assert summary["final"]["gc"] == load_history(out)[-1]["gc"]


def test_sweep_resumable_json_and_table(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", *TINY, "--param", "lr=0.02,0.1,0.3", "--seeds", "0", "--n-jobs", "2",
            "--parallel-backend", "threading", "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Spearman" in result.stdout
    # 3 runs cannot reach p < 0.05 (p >= 1/3): the line states no direction
    words = " ".join(result.stdout.split())
    assert "measured: no clear association between GC and NC at n = 3" in words
    assert "no |rho| reaches p < 0.05 at n = 3" in words
    assert {"summary.json", "summary.csv", "sweep.json", "lr=0.02_seed=0", "lr=0.3_seed=0"} <= set(os.listdir(out))
    result = invoke(*args, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 3 and summary["ran"] == 0
    rho = summary["correlations"]["gc_vs_nc"]["rho"]
    assert rho is None or -1 <= rho <= 1
    os.unlink(out / "lr=0.3_seed=0" / "done.json")
    summary = json.loads(invoke(*args, "--json").stdout)
    assert summary["ran"] == 1 and summary["skipped"] == 2


def test_sweep_two_params_loky(tmp_path):
    out = tmp_path / "s2"
    result = invoke("sweep", *TINY, "--param", "lr=0.05,0.2", "--param", "l2=0,0.01", "--seeds", "0",
                    "--n-jobs", "2", "--parallel-backend", "loky", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["completed"] == 4
    assert {r["name"] for r in summary["runs"]} == {"lr=0.05_l2=0.0_seed=0", "lr=0.05_l2=0.01_seed=0",
                                                    "lr=0.2_l2=0.0_seed=0", "lr=0.2_l2=0.01_seed=0"}


def test_transfer_and_plot(tmp_path):
    out = tmp_path / "transfer"
    result = invoke("transfer", *TINY, "--dataset", "digits", "--episodes", "4", "--queries", "5", "--param", "lr=0.05,0.2",
                    "--seeds", "0", "--parallel-backend", "sequential", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "transfer"
    for run in summary["runs"]:
        assert run["final"]["few_shot_accuracy"] is not None and run["final"]["target_nc"] is not None
    result = invoke("plot", out)
    assert result.exit_code == 0, result.output
    for name in ("curves.png", "final.png", "transfer.png", "fig4.png"):
        path = out / "figures" / name
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    result = invoke("plot", out, "--out", tmp_path / "figs", "--json")
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)["figures"]) == 4


@pytest.mark.parametrize("args, message", [
    (["train", "--lr", "0"], "lr must be a positive number"),
    (["train", "--lr", "-0.5"], "lr must be a positive number"),
    (["train", "--batch-size", "100000"], "larger than the training data"),
    (["train", "--dataset", "imagenet"], "valid names are: digits"),
    (["train", "--arch", "vit"], "valid names are: mlp, cnn, vgg11"),
    (["train", "--dataset", "mnist", "--data-root", "{tmp}"], "looked for"),
    (["train", "--source-classes", "0,1,2", "--target-classes", "2,3"], "disjoint"),
    (["sweep", "--param", "lr=0.1,0"], "sweep point lr=0.0_seed=0: --lr must be"),
    (["sweep", "--param", "batch_size=8,100000"], "larger than the training data"),
    (["sweep", "--param", "learning_rate=0.1"], "unknown setting 'learning_rate'"),
    (["sweep", "--param", "lr=fast"], "is not a number"),
    (["sweep", "--parallel-backend", "spark"], "unknown parallel backend 'spark'"),
    (["sweep", "--seeds", "a,b"], "--seeds must be"),
    (["transfer", "--arch", "transformer"], "valid names are"),
    (["plot", "{tmp}"], "neither a run"),
])
def test_bad_input_fails_before_work(tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] != "plot":
        args += ["--out", str(out)]
    result = invoke(*args)
    assert result.exit_code != 0
    text = " ".join((result.stderr + result.stdout).split())      # undo rich's line wrapping
    assert message in text, text
    assert not out.exists()


def test_json_error_is_machine_readable(tmp_path):
    result = invoke("train", "--lr", "0", "--json", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "lr must be a positive number" in json.loads(result.stdout)["error"]


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["train", "sweep", "transfer", "plot"])
def test_out_that_is_a_file_is_one_error_line(tmp_path, command):
    bad = tmp_path / "a_file"
    bad.write_text("not a folder")
    if command == "plot":
        run = tmp_path / "run"
        assert invoke("train", *TINY, "--out", run).exit_code == 0
        args = ["plot", run, "--out", bad]
    else:
        args = [command, *TINY, "--seeds", "0"] if command != "train" else ["train", *TINY]
        args += ["--out", bad]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error:") and "is a file, not a folder" in lines[0]
    assert bad.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_that_cannot_be_written_is_one_error_line(tmp_path, command):
    out = "/proc/gcref-cannot-write-here"          # no folder can be made there, even as root
    args = [command, *TINY, "--out", out] + (["--seeds", "0"] if command == "sweep" else [])
    result = invoke(*args)
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"Error: --out {out} cannot be written")


def test_unwritable_figure_folder_is_one_error_line(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", *TINY, "--out", run).exit_code == 0
    result = invoke("plot", run, "--out", "/proc/gcref-no-figures")
    assert result.exit_code == 2
    assert len(_error_lines(result)) == 1 and "cannot be written" in result.stderr


def test_resumed_run_says_from_which_step(tmp_path):
    from gcref import lab

    class Stop(Exception):
        pass

    def interrupt(step, steps, rec):
        if step == 15:
            raise Stop
    cfg = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16,
           "l2": 5e-4}                                # gcref train's default (the protocol's)
    with pytest.raises(Stop):
        lab.run_training(cfg, tmp_path / "run", progress=interrupt)
    result = invoke("train", *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "resumed from step 10" in result.stderr
    assert "(resumed from step 10)" in " ".join(result.stdout.split())


def test_other_grid_into_a_sweep_folder_is_an_error(tmp_path):
    out = tmp_path / "s"
    base = ["sweep", *TINY, "--seeds", "0", "--parallel-backend", "sequential", "--out", out]
    assert invoke(*base, "--param", "lr=0.05,0.2").exit_code == 0
    result = invoke(*base, "--param", "lr=0.05,0.1")
    assert result.exit_code == 2
    assert "holds a sweep over other runs" in result.stderr and len(_error_lines(result)) == 1
    assert invoke(*base, "--param", "lr=0.05,0.1", "--overwrite").exit_code == 0


def test_tables_are_not_cut_at_80_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "s"
    result = invoke("sweep", *TINY, "--param", "lr=0.02,0.1", "--param", "l2=0.0001,0.005",
                    "--seeds", "0,1", "--parallel-backend", "sequential", "--out", out)
    assert result.exit_code == 0, result.output
    assert "\u2026" not in result.stdout                     # no "0.09…"
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"]:
        for key in ("gc", "nc"):
            assert f"{run['final'][key]:.4g}" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "lower is better" in result.stdout
    result = invoke("train", *TINY, "--out", tmp_path / "r")
    assert "\u2026" not in result.stdout and "lower" in result.stdout and "higher" in result.stdout
