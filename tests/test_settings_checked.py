"""Every setting of every point checked before any run starts, named as the user wrote it
(issue 19): data-dependent settings (GC-penalty rows, evaluation size, class counts, few-shot
protocol), usage errors as one Error: line, diverged sweeps exit non-zero, Ctrl-C says where to
resume."""

import os

import pytest
from typer.testing import CliRunner

from gcref import lab
from gcref.cli import app
from gcref.lab.config import SettingError

runner = CliRunner()
# TINY_CFG on the command line (TrainConfig's L2 and no criterion spelled out: gcref train's
# defaults are the protocol's)
TINY = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
        "--batch-size", "16", "--l2", "0.005", "--until-train-acc", "0"]
TINY_CFG = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}


def _one_error_line(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["sweep", "--gc-rows", "1000", "--gc-reg", "0.01", "--steps", "20", "--seeds", "0"],
     "Error: sweep point lr=0.01_seed=0: --gc-rows=1000 is more than the 32 rows of the network's "
     "embedding"),
    (["train", "--gc-rows", "33", "--gc-reg", "0.01", "--steps", "20"], "it must be at most 32"),
    (["transfer", "--ways", "1", "--seeds", "0"], "Error: --ways must be at least 2"),
    (["transfer", "--dataset", "digits", "--ways", "6", "--seeds", "0"],
     "--ways=6 is more than the 5 target classes"),
    (["train", "--source-classes", "0", "--target-classes", "5,6"],
     "Error: --source-classes must name at least 2 classes"),
    (["transfer", "--dataset", "digits", "--num-source", "1", "--seeds", "0"],
     "Error: --num-source must be at least 2"),
    (["train", "--eval-size", "1"], "Error: --eval-size must be at least 2 (NC needs 2 examples"),
    (["sweep", "--param", "eval_size=64,1", "--seeds", "0"], "sweep point eval_size=1_seed=0: --eval-size"),
    (["train", "--steps", "1.5"], "Error: Invalid value for '--steps'"),
    (["train", "--eval-every", "30", "--steps", "20"], "Error: --eval-every=30 is larger than --steps=20"),
    (["check", "--group", "nonsense"], "Error: Invalid value for '--group': unknown group(s) ['nonsense']"),
    (["sweep", "--no-such-option"], "Error: No such option: --no-such-option"),
])
def test_bad_settings_are_one_line_naming_the_option_before_anything_is_written(tmp_path, args, says):
    out = tmp_path / "out"
    if args[0] != "check":
        args = [*args, "--out", str(out)]
    line = _one_error_line(runner.invoke(app, args))
    assert says in line, line
    assert not out.exists()


def test_the_python_api_names_settings_as_python_does(tmp_path):
    with pytest.raises(SettingError, match=r"sweep point lr=0.01_seed=0: gc_rows=1000 is more than "
                                           r"the 8 rows") as info:
        lab.run_sweep(dict(TINY_CFG, gc_rows=1000, gc_reg=0.01), {"lr": [0.01]}, seeds=[0],
                      out_dir=tmp_path / "s", backend="sequential")
    assert info.value.settings == ("gc_rows",)
    assert not (tmp_path / "s").exists()
    with pytest.raises(SettingError, match="eval_size must be at least 2"):
        lab.run_training(dict(TINY_CFG, eval_size=1), tmp_path / "r")
    with pytest.raises(SettingError, match="ways must be at least 2"):
        lab.run_transfer(dict(TINY_CFG, dataset="digits", ways=1), {"lr": [0.05]}, out_dir=tmp_path / "t")
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()


def test_data_checks_are_not_skipped_when_the_data_is_cached(tmp_path):
    ok = dict(TINY_CFG, num_source=5)
    lab.validate_config(ok, data=lab.load_run_data(ok))            # loads and caches the data
    bad = dict(ok, ways=6)                                           # same data, other protocol
    with pytest.raises(SettingError, match="ways=6 is more than the 5 target classes"):
        lab.validate_config(bad, data=lab.load_run_data(bad))


def test_a_sweep_with_a_diverged_run_exits_nonzero_naming_it(tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["sweep", *TINY, "--param", "lr=0.05,10000", "--seeds", "0",
                                 "--parallel-backend", "sequential", "--out", str(out)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert "run lr=10000.0_seed=0 diverged:" in text and "lr=0.05_seed=0 diverged" not in text


def _interrupt_at_step(monkeypatch, n, run_number=1):
    """Ctrl-C at step n of the run_number-th run (``fit`` reports every step to ``progress``)."""
    import gcref.lab.run as run_module
    real = run_module.fit
    runs = []

    def fit(*args, progress=None, **kwargs):
        runs.append(1)
        this = len(runs)

        def interrupting(step, steps, record):
            if this == run_number and step == n:
                raise KeyboardInterrupt
            if progress is not None:
                progress(step, steps, record)
        return real(*args, progress=interrupting, **kwargs)
    monkeypatch.setattr(run_module, "fit", fit)


def test_ctrl_c_says_where_the_run_resumes(tmp_path, monkeypatch):
    out = tmp_path / "r"
    _interrupt_at_step(monkeypatch, 15)             # checkpoints at steps 10 and 20
    result = runner.invoke(app, ["train", *TINY, "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert (f"Interrupted: the same command resumes the run in {out} from its checkpoint at step 10"
            in " ".join(result.stderr.split()))
    monkeypatch.undo()
    again = runner.invoke(app, ["train", *TINY, "--out", str(out), "--json"])
    assert again.exit_code == 0 and '"resumed_from": 10' in again.stdout


def test_ctrl_c_in_a_sweep_says_how_to_resume(tmp_path, monkeypatch):
    out = tmp_path / "s"
    _interrupt_at_step(monkeypatch, 15, run_number=2)
    args = ["sweep", *TINY, "--param", "lr=0.05,0.2", "--seeds", "0", "--parallel-backend",
            "sequential", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert (f"Interrupted: 1 of 2 runs finished; the same command resumes the sweep in {out}, each "
            "unfinished run from its checkpoint" in " ".join(result.stderr.split()))
    monkeypatch.undo()
    assert runner.invoke(app, args).exit_code == 0
    assert os.path.exists(out / "summary.json")


def test_an_evaluation_size_below_two_per_class_is_said_not_silent(tmp_path):
    from gcref.lab.config import SettingWarning
    from gcref.train import load_history
    with pytest.warns(SettingWarning, match=r"eval_size=3 is below 2 examples of each of the 10 "
                                            r"training classes: GC and NC are measured on 20"):
        lab.run_training(dict(TINY_CFG, eval_size=3), tmp_path / "r")
    result = runner.invoke(app, ["train", *TINY, "--eval-size", "3", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("Note:")]
    assert notes == ["Note: --eval-size=3 is below 2 examples of each of the 10 training classes: GC "
                     "and NC are measured on 20 examples (2 per class)"]
    result = runner.invoke(app, ["sweep", *TINY, "--eval-size", "3", "--param", "lr=0.05,0.1",
                                 "--seeds", "0", "--parallel-backend", "sequential", "--out",
                                 str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert sum(ln.startswith("Note: --eval-size=3") for ln in result.stderr.splitlines()) == 1
    assert "Warning" not in result.stderr


# ---------------------------------------------------------------------------- README, followed

def test_gcref_transfer_and_run_transfer_share_their_defaults(monkeypatch, tmp_path):
    import gcref.lab.sweep as sweep_module
    import gcref.lab.transfer as transfer_module
    seen = []

    def capture(base, grid, seeds, out_dir, **kw):
        seen.append((lab.as_config(base).to_dict(), grid, list(seeds) if seeds is not None else None,
                     kw.get("kind")))
        return {"kind": "transfer", "dir": str(out_dir), "runs": [], "correlations": {},
                "counts": {"completed": 0, "diverged": 0, "error": 0}}
    monkeypatch.setattr(transfer_module, "run_sweep", capture)
    monkeypatch.setattr(sweep_module, "run_sweep", capture)
    lab.run_transfer({"max_per_class": 20}, out_dir=tmp_path / "py")
    result = runner.invoke(app, ["transfer", "--max-per-class", "20", "--out", str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 2 and seen[0] == seen[1]
    cfg, grid, seeds, kind = seen[0]
    assert (cfg["dataset"], grid, seeds, kind) == ("glyphs", {"lr": [0.01, 0.05, 0.2]}, [0, 1], "transfer")
    assert (cfg["l2"], cfg["until_train_acc"], cfg["steps"]) == (5e-4, 0.99, 40000)   # the protocol


def test_a_folder_holding_other_runs_lists_every_difference_in_the_users_terms(tmp_path):
    out = tmp_path / "s"
    lab.run_sweep(TINY_CFG, {"lr": [0.05]}, seeds=[0], out_dir=out, backend="sequential")
    want = ("holds a sweep over other runs (batch_size: 16 there, 8 now; l2: 0.005 there, 0.0 now; "
            "max_per_class: unset (the default) there, 30 now; swept lr: [0.05] there, [0.05, 0.2] now; "
            "seeds: [0] there, [0, 1] now)")
    with pytest.raises(SettingError) as info:
        lab.run_sweep(dict(TINY_CFG, batch_size=8, l2=0.0, max_per_class=30), {"lr": [0.05, 0.2]},
                      seeds=[0, 1], out_dir=out, backend="sequential")
    assert f"{out} {want}" in str(info.value)
    line = _one_error_line(runner.invoke(app, [
        "sweep", *TINY, "--until-train-acc", "0", "--batch-size", "8", "--l2", "0", "--max-per-class", "30", "--param",
        "lr=0.05,0.2", "--seeds", "0,1", "--out", str(out)]))
    assert (f"{out} holds a sweep over other runs (--batch-size: 16 there, 8 now; --l2: 0.005 there, "
            "0.0 now; --max-per-class: unset (the default) there, 30 now; swept --lr: [0.05] there, "
            "[0.05, 0.2] now; --seeds: [0] there, [0, 1] now)") in line
    # a run folder likewise lists every differing setting
    lab.run_training(TINY_CFG, tmp_path / "r")
    with pytest.raises(SettingError, match=r"holds a run with other settings \(batch_size: 16 there, 8 "
                                           r"now; eval_every: 10 there, unset \(the default\) now; "
                                           r"lr: 0.05 there, 0.2 now\)"):
        lab.run_training(dict(TINY_CFG, lr=0.2, batch_size=8, eval_every=None), tmp_path / "r")


def test_a_checkpoint_made_with_other_settings_lists_every_difference(tmp_path):
    folder = tmp_path / "r"

    def stop(step, steps, record):
        if step == 15:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        lab.run_training(TINY_CFG, folder, progress=stop)
    os.unlink(folder / "config.json")                  # only the checkpoint's binding is left
    other = dict(TINY_CFG, lr=0.2, batch_size=8, l2=0.0, momentum=0.5, seed=3, eval_size=100,
                 max_per_class=40, gc_method="outputs")
    with pytest.raises(ValueError) as info:
        lab.run_training(other, folder)
    text = str(info.value)
    for part in ("lr: 0.05 in the checkpoint, 0.2 now", "batch_size: 16 in the checkpoint, 8 now",
                 "l2: 0.005 in the checkpoint, 0.0 now", "momentum: 0.0 in the checkpoint, 0.5 now",
                 "seed: 0 in the checkpoint, 3 now", "eval_size: 64 in the checkpoint, 100 now",
                 "max_per_class: unset (the default) in the checkpoint, 40 now",
                 "gc_method: 'exact' in the checkpoint, 'outputs' now"):
        assert part in text, text
    assert "..." not in text
