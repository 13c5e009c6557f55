"""gcref.lab trains to a criterion (``until_train_acc`` / ``until_loss``) and in epochs, and
reports how each run ended (converged / cap / completed / diverged) everywhere."""

import json
import math

import pytest
from typer.testing import CliRunner

from gcref import lab
from gcref.cli import app
from gcref.lab.run import verify_finished
from gcref.train import load_history

TINY = {"steps": 60, "eval_every": 5, "eval_size": 64, "hidden": [16, 8], "batch_size": 16,
        "max_per_class": 30}


def test_converged_run_stops_at_the_first_record_meeting_the_criterion(tmp_path):
    plain = lab.run_training(TINY, tmp_path / "plain", progress=False)
    hist_plain = load_history(tmp_path / "plain")
    # a criterion met inside the budget: the first record (after step 0) at >= a
    a = sorted(r["train_accuracy"] for r in hist_plain[1:])[len(hist_plain) // 2]
    first = next(r["step"] for r in hist_plain[1:] if r["train_accuracy"] >= a)
    s = lab.run_training(dict(TINY, until_train_acc=a), tmp_path / "until", progress=False)
    assert s["status"] == "converged" and s["steps"] == first == s["converged_step"]
    hist = load_history(tmp_path / "until")
    # the same run as without the criterion, stopped: records equal (bitwise) up to that step
    assert [dict(r, converged=None) for r in hist] == \
        [dict(r, converged=None) for r in hist_plain if r["step"] <= first]
    assert hist[-1]["converged"] is True and not any(r.get("converged") for r in hist[:-1])
    n = json.loads((tmp_path / "until" / "config.json").read_text())["n_train"]
    assert s["epochs"] == hist[-1]["epoch"] == first * 16 / n
    done = json.loads((tmp_path / "until" / "done.json").read_text())
    assert done["status"] == "converged" and done["converged_step"] == first
    assert verify_finished(tmp_path / "until")[0] is not None
    again = lab.run_training(dict(TINY, until_train_acc=a), tmp_path / "until", progress=False)
    assert again["skipped"] and again["status"] == "converged" and again["final"] == s["final"]
    assert plain["status"] == "completed" and plain["converged_step"] is None


def test_a_tampered_converged_run_is_not_finished(tmp_path):
    cfg = dict(TINY, until_train_acc=0.2)
    lab.run_training(cfg, tmp_path / "r", progress=False)
    done_path = tmp_path / "r" / "done.json"
    done = json.loads(done_path.read_text())
    done_path.write_text(json.dumps(dict(done, converged_step=done["steps"] + 5)))
    ok, reason = verify_finished(tmp_path / "r")
    assert ok is None and "converged" in reason
    assert lab.run_summary(tmp_path / "r")["status"] == "unfinished"


def test_a_criterion_never_met_ends_at_the_cap(tmp_path):
    s = lab.run_training(dict(TINY, until_loss=1e-9), tmp_path / "r", progress=False)
    assert s["status"] == "cap" and s["steps"] == 60 and s["converged_step"] is None
    assert "reached the cap of 60 steps" in s["message"]
    assert verify_finished(tmp_path / "r")[0]["status"] == "cap"


def test_epochs_set_the_budget(tmp_path):
    s = lab.run_training(dict(TINY, epochs=2.5, eval_every=7), tmp_path / "r", progress=False)
    n = json.loads((tmp_path / "r" / "config.json").read_text())["n_train"]
    steps = math.ceil(2.5 * n / 16)
    assert s["status"] == "completed" and s["steps"] == steps
    hist = load_history(tmp_path / "r")
    assert hist[-1]["step"] == steps and hist[-1]["epoch"] == steps * 16 / n
    assert [r["step"] for r in hist] == list(range(0, steps, 7)) + ([steps] if steps % 7 else [])
    assert lab.TrainConfig(epochs=2.5, batch_size=16).step_budget(n) == steps


@pytest.mark.parametrize("bad, match", [
    ({"until_train_acc": 1.5}, "until_train_acc is a training accuracy"),
    ({"until_train_acc": 0.0}, "until_train_acc must be a positive number"),
    ({"until_loss": -1.0}, "until_loss must be a positive number"),
    ({"epochs": 0}, "epochs must be a positive number"),
])
def test_bad_criteria_are_rejected_before_work(bad, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        lab.run_training(dict(TINY, **bad), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_sweep_counts_cap_runs_apart_and_correlates_only_converged_ones(tmp_path):
    # lr 1e-4 cannot reach the criterion within 60 steps; the other two do
    grid = {"lr": [1e-4, 0.1, 0.3]}
    s = lab.run_sweep(dict(TINY, until_train_acc=0.3), grid, [0, 1], tmp_path / "sw", n_jobs=1,
                      backend="sequential")
    status = {r["name"]: r["status"] for r in s["runs"]}
    assert status["lr=0.0001_seed=0"] == status["lr=0.0001_seed=1"] == "cap"
    n_conv, n_cap = (sum(v == st for v in status.values()) for st in ("converged", "cap"))
    assert n_conv >= 2 and n_conv + n_cap == 6
    assert s["counts"]["cap"] == n_cap and s["counts"]["converged"] == n_conv and s["counts"]["completed"] == 0
    assert s["correlated_statuses"] == ["completed", "converged"]
    assert s["correlations"]["gc_vs_nc"]["n"] == n_conv
    assert all(r["epochs"] == r["final"]["epoch"] for r in s["runs"])
    assert sum(g["runs"] for g in s["by_setting"]) == n_conv
    csv = (tmp_path / "sw" / "summary.csv").read_text().splitlines()
    assert "epoch" in csv[0].split(",") and sum(",cap," in line for line in csv) == n_cap


runner = CliRunner()
CLI_TINY = ["--eval-every", "5", "--eval-size", "64", "--hidden", "16,8", "--batch-size", "16",
            "--max-per-class", "30"]


def test_cli_options_reach_the_run_and_the_table(tmp_path):
    r = runner.invoke(app, ["train", *CLI_TINY, "--epochs", "3", "--until-train-acc", "0.2",
                            "--out", str(tmp_path / "t"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["status"] == "converged" and s["config"]["until_train_acc"] == 0.2 and s["config"]["epochs"] == 3.0
    r = runner.invoke(app, ["train", *CLI_TINY, "--steps", "20", "--until-loss", "1e-9",
                            "--out", str(tmp_path / "c")])
    assert r.exit_code == 1 and "status cap" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["sweep", *CLI_TINY, "--steps", "60", "--until-train-acc", "0.2", "--param",
                            "lr=0.0001,0.3", "--seeds", "0", "-j", "1", "--out", str(tmp_path / "s")],
                      env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "cap@" in text and "conv@" in text and "conv = converged to the criterion" in text
    assert "1 converged (train_accuracy=0.2), 1 reached the cap" in text
    r = runner.invoke(app, ["sweep", *CLI_TINY, "--until-train-acc", "2", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--until-train-acc" in r.output


def test_plot_fig4_marks_the_runs_at_the_cap(tmp_path, monkeypatch):
    from gcref.lab import plots
    cfg = dict(TINY, dataset="digits", source_classes=[0, 1, 2, 3, 4], target_classes=[5, 6, 7, 8, 9], episodes=4,
               queries=5, until_train_acc=0.4)
    s = lab.run_transfer(cfg, {"lr": [1e-4, 0.3, 0.5]}, [0, 1], tmp_path / "tr", n_jobs=1,
                         backend="sequential")
    status = {r["name"]: r["status"] for r in s["runs"]}
    cap = sorted(n for n, v in status.items() if v == "cap")
    assert "lr=0.0001_seed=0" in cap and len(cap) < len(status)
    drawn = {}

    def spy(plt, runs, status_, numeric, note, path):
        drawn.update(status=status_, numeric=numeric, note=note)
        return real(plt, runs, status_, numeric, note, path)
    real = plots._plot_fig4
    monkeypatch.setattr(plots, "_plot_fig4", spy)
    paths = plots.plot_run_or_sweep(tmp_path / "tr")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["curves.png", "final.png", "transfer.png", "fig4.png"]
    assert drawn["status"] == status and drawn["numeric"] == ["lr"]
    assert all(name in drawn["note"] for name in cap) and "reached the cap" in drawn["note"]
    with open(paths[-1], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sweep_and_transfer_default_to_the_protocol(tmp_path):
    """gcref sweep / transfer: weight decay 5e-4 at the base and >= 99% training accuracy, the
    step budget being the cap; ``--until-train-acc 0`` trains the whole budget."""
    from gcref.lab.commands import PROTOCOL_DEFAULTS
    assert PROTOCOL_DEFAULTS == {"l2": 5e-4, "until_train_acc": 0.99}
    for command, steps in (("sweep", 6000), ("transfer", 40000)):
        help_text = " ".join(runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout.split())
        assert "[default: 0.99]" in help_text and f"[default: {steps}]" in help_text
    r = runner.invoke(app, ["sweep", *CLI_TINY, "--steps", "10", "--param", "lr=0.0001", "--seeds", "0", "-j", "1",
                            "--out", str(tmp_path / "a"), "--json"])
    s = json.loads(r.stdout)
    assert s["base_config"]["l2"] == 5e-4 and s["base_config"]["until_train_acc"] == 0.99
    assert s["counts"]["cap"] == 1
    r = runner.invoke(app, ["sweep", *CLI_TINY, "--steps", "10", "--param", "lr=0.0001", "--seeds", "0", "-j", "1",
                            "--until-train-acc", "0", "--out", str(tmp_path / "b"), "--json"])
    s = json.loads(r.stdout)
    assert s["base_config"]["until_train_acc"] is None and s["counts"]["completed"] == 1


@pytest.mark.parametrize("budget, until, expected", [(200, 0.99, 10), (6000, 0.99, 60), (40000, 0.99, 400),
                                                     (3000, 0.99, 30), (10, 0.99, 1), (6000, None, None)])
def test_records_with_a_criterion_every_percent_of_the_cap(budget, until, expected):
    from gcref.lab.run import _eval_every
    assert _eval_every(lab.TrainConfig(steps=budget, until_train_acc=until), 1000) == expected
    assert _eval_every(lab.TrainConfig(steps=budget, until_train_acc=until, eval_every=7), 1000) == 7


def test_progress_counts_budgets_in_epochs_and_fills_at_convergence(tmp_path):
    from gcref.lab.config import load_run_data
    from gcref.train.checkpoint import ProgressBar, record_line
    base = dict(TINY, steps=3000, epochs=2.0)               # steps unused: the budget is in epochs
    points = lab.plan_sweep(base, {"lr": [0.05, 0.2]}, [0])
    n = load_run_data(points[0].config).train.n
    budget = math.ceil(2.0 * n / 16)
    assert [p["steps"] for p in points] == [budget, budget]
    assert lab.sweep_progress(tmp_path / "sw", points) == (0, 2 * budget, 0, 2)
    lab.run_sweep(dict(base, until_train_acc=0.3), {"lr": [0.05, 0.2]}, [0], tmp_path / "sw", n_jobs=1,
                  backend="sequential")
    # read back from sweep.json alone: every finished run counts its whole budget
    assert lab.sweep_progress(tmp_path / "sw") == (2 * budget, 2 * budget, 2, 2)

    assert record_line({"loss": 0.12345, "train_accuracy": 0.5, "gc": 12.34567, "nc": None}) == \
        "loss 0.123 acc 0.5 GC 12.35 NC -"
    assert record_line({"loss": 1.0, "train_accuracy": 1.0, "gc": 2.0, "nc": 0.5, "converged": True}) \
        .endswith("NC 0.5 converged")
    bar = ProgressBar("t")
    bar(1, 100, None)
    bar(10, 100, {"loss": 1.0, "train_accuracy": 0.7})
    assert bar._bar.tasks[0].total == 100 and "acc 0.7" in bar._bar.tasks[0].fields["line"]
    bar(20, 100, {"loss": 1.0, "train_accuracy": 0.99, "converged": True})
    assert bar._bar.tasks[0].total == 20 == bar._bar.tasks[0].completed      # full, not 20 %
    bar.close()
