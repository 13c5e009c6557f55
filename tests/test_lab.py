"""gcref.lab: runs, sweeps (parallel, resumable), transfer and plots, on tiny settings."""

import json
import os

import numpy as np
import pytest

from gcref import lab
from gcref.nn import load_params
from gcref.train import load_history

TINY = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}
TINY_TRANSFER = dict(TINY, dataset="digits", l2=0.005, until_train_acc=None, source_classes=[0, 1, 2, 3, 4],
                     target_classes=[5, 6, 7, 8, 9], episodes=4, queries=5)


def _png_ok(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


# ---------------------------------------------------------------------------- config

def test_defaults_are_the_teaching_run():
    cfg = lab.TrainConfig()
    assert (cfg.dataset, cfg.arch, cfg.lr, cfg.batch_size, cfg.l2, cfg.steps) == ("digits", "mlp", 0.05, 32, 0.005, 3000)


@pytest.mark.parametrize("bad, match", [
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"momentum": 1.0}, "momentum"),
    ({"l2": -1e-3}, "l2 must be a non-negative"),
    ({"steps": 2.5}, "steps must be a positive integer"),
    ({"dataset": "imagenet"}, "valid names are: digits, gaussian_mixture"),
    ({"arch": "vit"}, "valid names are: mlp, cnn, vgg11"),
    ({"gc_method": "magic"}, "exact"),
    ({"source_classes": [0, 1]}, "both source_classes and target_classes"),
])
def test_validate_config_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        lab.validate_config(bad)


def test_unknown_setting_lists_valid_ones():
    with pytest.raises(ValueError, match="valid settings are: dataset"):
        lab.as_config({"learning_rate": 0.1})


def test_batch_size_larger_than_data_rejected_before_work(tmp_path):
    with pytest.raises(ValueError, match="larger than the training data"):
        lab.run_training(dict(TINY, batch_size=100_000), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_missing_data_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="looked for"):
        lab.run_training(dict(TINY, dataset="mnist", data_root=str(tmp_path)), tmp_path / "r")


# ---------------------------------------------------------------------------- one run

def test_run_training_writes_files_and_summary_equals_history(tmp_path):
    out = tmp_path / "run"
    seen = []
    s = lab.run_training(TINY, out, progress=lambda step, steps, rec: seen.append(step))
    for name in ("config.json", "history.jsonl", "checkpoint.npz", "params.npz", "done.json"):
        assert (out / name).stat().st_size > 0
    assert s["status"] == "completed" and s["steps"] == 20 and not s["skipped"]
    assert seen == list(range(1, 21))
    last = load_history(out)[-1]
    assert last["step"] == 20
    for k, v in s["final"].items():
        assert v == last[k]
    assert set(s["final"]) >= {"loss", "gc", "nc", "geometric_collapse", "train_accuracy", "test_accuracy"}
    assert json.loads((out / "config.json").read_text())["lab_config"]["hidden"] == [16, 8]
    params = load_params(out / "params.npz")
    assert "classifier.weight" in params

    again = lab.run_training(TINY, out)                      # finished: skipped, same summary
    assert again["skipped"] and again["final"] == s["final"]
    with pytest.raises(ValueError, match="other settings"):
        lab.run_training(dict(TINY, lr=0.1), out)
    redo = lab.run_training(dict(TINY, lr=0.1), out, overwrite=True)
    assert not redo["skipped"] and redo["config"]["lr"] == 0.1


def test_interrupted_run_resumes_bitwise(tmp_path):
    full = lab.run_training(TINY, tmp_path / "full")

    class Stop(Exception):
        pass

    def interrupt(step, steps, rec):
        if step == 15:
            raise Stop

    with pytest.raises(Stop):
        lab.run_training(TINY, tmp_path / "cut", progress=interrupt)
    assert not (tmp_path / "cut" / "done.json").exists()
    assert load_history(tmp_path / "cut")[-1]["step"] == 10       # checkpoint at the last record
    resumed = lab.run_training(TINY, tmp_path / "cut")
    assert not resumed["skipped"]
    a = load_params(tmp_path / "full" / "params.npz")
    b = load_params(tmp_path / "cut" / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert load_history(tmp_path / "cut")[-1]["gc"] == full["final"]["gc"]


# ---------------------------------------------------------------------------- sweeps

def test_expand_grid_is_the_cartesian_product_times_seeds():
    pts = lab.expand_grid(TINY, {"lr": [0.01, 0.1], "batch_size": [8, 16]}, seeds=[0, 1])
    assert len(pts) == 8
    assert pts[0].name == "lr=0.01_batch_size=8_seed=0"
    assert pts[-1].config.lr == 0.1 and pts[-1].config.batch_size == 16 and pts[-1].config.seed == 1
    assert len({p.name for p in pts}) == 8
    with pytest.raises(ValueError, match="repeats"):
        lab.expand_grid(TINY, {"lr": [0.1, 0.1]})
    with pytest.raises(ValueError, match="unknown sweep setting"):
        lab.expand_grid(TINY, {"learning_rate": [0.1]})
    with pytest.raises(ValueError, match="not both"):
        lab.expand_grid(TINY, {"seed": [0, 1]}, seeds=[0])


def test_whole_grid_validated_before_any_run(tmp_path):
    with pytest.raises(ValueError, match=r"sweep point lr=-0.1_seed=0: lr must be"):
        lab.run_sweep(TINY, {"lr": [0.1, -0.1]}, out_dir=tmp_path / "s", backend="threading")
    with pytest.raises(ValueError, match="batch_size=5000 is larger"):
        lab.run_sweep(TINY, {"batch_size": [8, 5000]}, out_dir=tmp_path / "s", backend="threading")
    with pytest.raises(ValueError, match="unknown parallel backend 'spark'"):
        lab.run_sweep(TINY, {"lr": [0.1]}, out_dir=tmp_path / "s", backend="spark")
    assert not (tmp_path / "s").exists()


def test_spearman():
    r = lab.spearman([1, 2, 3, 4], [10, 20, 30, 25])
    assert r["rho"] == pytest.approx(0.8) and r["n"] == 4
    assert lab.spearman([1, 2, 3], [3, 2, 1])["rho"] == pytest.approx(-1.0)
    assert lab.spearman([1, 2, 3], [5, 5, 5])["rho"] is None
    assert lab.spearman([1, 2, None, 4], [1, 2, 3, None])["rho"] is None      # 2 pairs left


def test_sweep_threading_resumable_and_summary_equals_histories(tmp_path):
    out = tmp_path / "sweep"
    events = []
    s = lab.run_sweep(TINY, {"lr": [0.02, 0.1, 0.3]}, seeds=[0], out_dir=out, n_jobs=2,
                      backend="threading", progress=lambda f, t, r: events.append((f, t)))
    assert s["ran"] == 3 and s["skipped"] == 0 and s["counts"]["completed"] == 3
    assert events[0] == (0, 3) and events[-1] == (3, 3)
    assert (out / "summary.json").exists() and (out / "summary.csv").exists()
    stored = json.loads((out / "summary.json").read_text())
    for run in stored["runs"]:
        last = load_history(out / run["name"])[-1]
        assert run["final"]["gc"] == last["gc"] and run["final"]["nc"] == last["nc"]
    rho = stored["correlations"]["gc_vs_nc"]
    gcs = [r["final"]["gc"] for r in stored["runs"]]
    ncs = [r["final"]["nc"] for r in stored["runs"]]
    assert rho["rho"] == pytest.approx(lab.spearman(gcs, ncs)["rho"]) and rho["n"] == 3
    assert {"lr_vs_gc", "lr_vs_nc", "lr_vs_geometric_collapse"} <= set(stored["correlations"])
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("name,status,lr,seed,step,loss,gc,nc") and len(csv_lines) == 4

    again = lab.run_sweep(TINY, {"lr": [0.02, 0.1, 0.3]}, seeds=[0], out_dir=out, backend="threading")
    assert again["skipped"] == 3 and again["ran"] == 0
    assert again["correlations"] == s["correlations"]

    os.unlink(out / "lr=0.1_seed=0" / "done.json")
    third = lab.run_sweep(TINY, {"lr": [0.02, 0.1, 0.3]}, seeds=[0], out_dir=out, backend="threading")
    assert third["skipped"] == 2 and third["ran"] == 1
    assert third["runs"][1]["final"] == s["runs"][1]["final"]
    assert lab.sweep_progress(out) == (60, 60, 3, 3)


def test_sweep_loky_processes(tmp_path):
    s = lab.run_sweep(TINY, {"batch_size": [8, 16]}, seeds=[0, 1], out_dir=tmp_path / "s", n_jobs=2,
                      backend="loky")
    assert s["counts"]["completed"] == 4
    names = sorted(r["name"] for r in s["runs"])
    assert names == ["batch_size=16_seed=0", "batch_size=16_seed=1", "batch_size=8_seed=0", "batch_size=8_seed=1"]
    # the same runs in one process give the same numbers
    one = lab.run_training(dict(TINY, batch_size=8, seed=1))
    assert one["final"]["gc"] == next(r for r in s["runs"] if r["name"] == "batch_size=8_seed=1")["final"]["gc"]


def test_transfer_reports_target_metrics_and_correlations(tmp_path):
    base = {k: v for k, v in TINY_TRANSFER.items() if k not in ("source_classes", "target_classes")}
    s = lab.run_transfer(base, {"lr": [0.02, 0.1, 0.3]}, seeds=[0], out_dir=tmp_path / "t", n_jobs=1,
                         backend="sequential")
    assert s["kind"] == "transfer" and s["counts"]["completed"] == 3
    cfg = json.loads((tmp_path / "t" / "sweep.json").read_text())["base_config"]
    assert cfg["source_classes"] == [0, 1, 2, 3, 4] and cfg["target_classes"] == [5, 6, 7, 8, 9]
    for run in s["runs"]:
        f = run["final"]
        assert 0 <= f["few_shot_accuracy"] <= 1 and f["few_shot_ci95"] > 0 and f["target_nc"] > 0
    for key in ("gc_vs_few_shot_accuracy", "gc_vs_target_nc", "gc_vs_nc"):
        assert s["correlations"][key]["n"] == 3


def test_random_class_split_transfer_run():
    s = lab.run_training(dict(TINY, num_source=6, split_seed=3, episodes=3, queries=5, ways=4))
    assert s["final"]["few_shot_accuracy"] is not None
    with pytest.raises(ValueError, match="ways=5 is more than the 4 target classes"):
        lab.run_training(dict(TINY, num_source=6, ways=5))


# ---------------------------------------------------------------------------- plots

def test_plots_of_run_sweep_and_transfer(tmp_path):
    lab.run_training(TINY, tmp_path / "run")
    paths = lab.plot_run_or_sweep(tmp_path / "run")
    assert [os.path.basename(p) for p in paths] == ["curves.png"] and all(_png_ok(p) for p in paths)

    lab.run_transfer(dict(TINY_TRANSFER), {"lr": [0.05, 0.2]}, seeds=[0], out_dir=tmp_path / "t",
                     backend="sequential")
    paths = lab.plot_run_or_sweep(tmp_path / "t", tmp_path / "figs")
    assert sorted(os.path.basename(p) for p in paths) == ["curves.png", "fig4.png", "final.png", "transfer.png"]
    assert all(_png_ok(p) and str(tmp_path / "figs") in p for p in paths)
    assert not any(n.startswith(".tmp") for n in os.listdir(tmp_path / "figs"))

    with pytest.raises(FileNotFoundError, match="neither a run"):
        lab.plot_run_or_sweep(tmp_path)


def test_diverged_run_is_finished_but_not_correlated(tmp_path):
    s = lab.run_sweep(TINY, {"lr": [0.05, 1e4, 0.1, 0.2]}, out_dir=tmp_path / "s", backend="sequential")
    assert s["counts"]["completed"] == 3 and s["counts"]["diverged"] == 1
    assert s["correlations"]["gc_vs_nc"]["n"] == 3
    diverged = next(r for r in s["runs"] if r["status"] == "diverged")
    assert "diverged" in diverged["message"] and "smaller lr" in diverged["message"]
    assert lab.run_sweep(TINY, {"lr": [0.05, 1e4, 0.1, 0.2]}, out_dir=tmp_path / "s",
                         backend="sequential")["skipped"] == 4


def test_backend_setting_and_estimated_gc_size():
    from gcref.lab import run_training
    kw = {"steps": 6, "eval_every": 3, "eval_size": 60, "gc_method": "outputs", "gc_size": 4}
    ref = run_training(kw)
    fast = run_training({**kw, "backend": "cuda"})   # gcref_cuda on NumPy here: the same numbers
    assert ref["final"]["gc"] == pytest.approx(fast["final"]["gc"], rel=1e-10)
    with pytest.raises(ValueError, match="unknown backend"):
        run_training({**kw, "backend": "tpu"})
    with pytest.raises(ValueError, match="gc_size must be a positive integer"):
        run_training({**kw, "gc_size": 2.5})
    with pytest.raises(ValueError, match="keep probability"):
        run_training({**kw, "gc_method": "mask", "gc_size": 2.0})


# ---------------------------------------------------------------------------- progress, figures

def test_fit_progress_bar_on_request_and_off_otherwise(capsys):
    from gcref import zoo
    from gcref.data import gaussian_mixture
    from gcref.train import fit
    data = gaussian_mixture(20, 3, 5, separation=2.0, seed=0).dataset
    net = zoo.mlp([5, 8, 4], num_classes=3)
    kw = dict(lr=0.1, batch_size=8, steps=12, eval_every=4, eval_size=30)
    a = fit(net, net.init(0), data, progress=True, **kw)
    err = capsys.readouterr().err
    assert "train mlp" in err and "12/12" in err and "loss 0.9" in err     # the last record's line
    b = fit(net, net.init(0), data, **kw)          # stderr is not a terminal here: no bar
    c = fit(net, net.init(0), data, progress=False, **kw)
    assert capsys.readouterr().err == ""
    assert all(np.array_equal(a.params[k], b.params[k]) and np.array_equal(a.params[k], c.params[k])
               for k in a.params)


def test_final_figure_has_a_legend_and_names_diverged_runs(tmp_path, drawn_figures):
    figures = drawn_figures
    lab.run_sweep(TINY, {"lr": [0.05, 1e4, 0.2]}, seeds=[0, 1], out_dir=tmp_path / "s", backend="sequential")
    lab.plot_run_or_sweep(tmp_path / "s")
    final = figures["final.png"]
    legend = final.axes[2].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["lr=0.05", "lr=0.2"]
    for name in ("final.png", "curves.png"):
        notes = [t.get_text() for t in figures[name].texts]
        assert any("diverged" in n and "lr=10000.0_seed=0" in n and "lr=10000.0_seed=1" in n
                   for n in notes), notes
