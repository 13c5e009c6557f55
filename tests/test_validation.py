"""The validation scripts (validation/claim*.py) cannot rot: each runs at --scale smoke, and each
paper-scale configuration runs end to end (--tiny) on fake datasets written here in the original
file formats (CIFAR-10 / CIFAR-100 binary, MNIST IDX), so a GPU user's run will not fail on a
path or a format. Everything in-process, one process (--jobs 1)."""

from __future__ import annotations

import importlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

VALIDATION = Path(__file__).resolve().parents[1] / "validation"
sys.path.insert(0, str(VALIDATION))

import common  # noqa: E402
import reporting  # noqa: E402
import verdicts  # noqa: E402

SCRIPTS = {1: "claim1_hyperparams", 2: "claim2_sampled_gc", 3: "claim3_ncc_bound", 4: "claim4_transfer",
           5: "claim5_gc_regularization", 6: "claim6_inequalities"}


def _module(claim):
    return importlib.import_module(SCRIPTS[claim])


def _check_outputs(out: Path, claim: int, summary: dict, scale: str):
    path = out / f"claim{claim}.json"
    assert path.is_file(), f"claim{claim}.json not written"
    on_disk = json.loads(path.read_text())
    for key in reporting.SUMMARY_FIELDS:
        assert key in on_disk, f"claim{claim}.json lacks {key!r}"
    assert on_disk["claim"] == claim
    assert on_disk["scale"] == scale
    assert on_disk["verdict"] in verdicts.VERDICTS
    assert isinstance(on_disk["setting"], str) and on_disk["setting"]
    assert isinstance(on_disk["statistic"], dict) and "name" in on_disk["statistic"]
    assert isinstance(on_disk["uncertainty"], dict)
    assert isinstance(on_disk["parts"], list) and on_disk["parts"]
    for part in on_disk["parts"]:
        assert part["verdict"] in verdicts.VERDICTS
    assert on_disk["verdict"] == verdicts.combine_verdicts(on_disk["parts"])
    assert on_disk["figure"] == f"claim{claim}.png"
    png = out / f"claim{claim}.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["verdict"] == on_disk["verdict"]
    assert not list(out.glob(".tmp-*")), "a temporary file was left behind"


# ------------------------------------------------------------------------------- smoke runs
@pytest.mark.parametrize("claim", sorted(SCRIPTS))
def test_smoke(claim, tmp_path):
    out = tmp_path / "results"
    summary = _module(claim).main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--quiet"])
    _check_outputs(out, claim, summary, "smoke")


def test_run_all_writes_the_index(tmp_path):
    import run_all
    assert run_all.main(["--claims", "6", "--scale", "smoke", "--out", str(tmp_path), "--jobs", "1",
                         "--quiet"]) == 0
    index = json.loads((tmp_path / "summary.json").read_text())
    assert [c["claim"] for c in index["claims"]] == [6] and index["scale"] == "smoke"
    assert (tmp_path / "claim6.json").is_file() and (tmp_path / "claim6.png").is_file()
    assert "| 6 |" in run_all.table([json.loads((tmp_path / "claim6.json").read_text())])


# ----------------------------------------------------------------- fake datasets, original formats
def _images(rng, labels, shape):
    # class-dependent mean so that training has something to fit
    base = (labels[:, None] * 23 % 200).astype(np.int64)
    noise = rng.integers(0, 56, size=(labels.size, int(np.prod(shape))))
    return (base + noise).astype(np.uint8)


def write_cifar10(root: Path, per_class_train=2, per_class_test=3):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, per in [(f"data_batch_{i}.bin", per_class_train) for i in range(1, 6)] + [("test_batch.bin", per_class_test)]:
        labels = np.repeat(np.arange(10, dtype=np.uint8), per)
        rec = np.concatenate([labels[:, None], _images(rng, labels, (3, 32, 32))], axis=1)
        (folder / name).write_bytes(rec.astype(np.uint8).tobytes())
    from gcref.data import CIFAR10_CLASSES
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n")


def write_cifar100(root: Path, per_class_train=2, per_class_test=1):
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, per in (("train.bin", per_class_train), ("test.bin", per_class_test)):
        fine = np.repeat(np.arange(100, dtype=np.uint8), per)
        coarse = (fine % 20).astype(np.uint8)
        rec = np.concatenate([coarse[:, None], fine[:, None], _images(rng, fine, (3, 32, 32))], axis=1)
        (folder / name).write_bytes(rec.astype(np.uint8).tobytes())
    from gcref.data import CIFAR100_COARSE_LABELS, CIFAR100_FINE_LABELS
    (folder / "fine_label_names.txt").write_text("\n".join(CIFAR100_FINE_LABELS) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(CIFAR100_COARSE_LABELS) + "\n")


def _idx(data: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, data.ndim]) + b"".join(struct.pack(">i", d) for d in data.shape)
    return header + data.astype(np.uint8).tobytes()


def write_mnist(root: Path, per_class_train=3, per_class_test=3):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for stem, per in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per)
        images = _images(rng, labels, (28, 28)).reshape(-1, 28, 28)
        (root / f"{stem}-images-idx3-ubyte").write_bytes(_idx(images))
        (root / f"{stem}-labels-idx1-ubyte").write_bytes(_idx(labels))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-datasets")
    write_cifar10(root)
    write_cifar100(root)
    write_mnist(root)
    return root


def test_fake_files_read_back(fake_root):
    from gcref.data import load_cifar_fs, load_dataset
    c10 = load_dataset("cifar10", fake_root, "train")
    assert c10.X.shape == (100, 3, 32, 32) and c10.num_classes == 10
    mn = load_dataset("mnist", fake_root, "test")
    assert mn.X.shape == (30, 1, 28, 28)
    fs = load_cifar_fs(fake_root, part="test", split="all")
    assert fs.num_classes == 20 and fs.n == 60


@pytest.mark.parametrize("claim", sorted(SCRIPTS))
def test_paper_config_on_fake_files(claim, fake_root, tmp_path):
    """The paper-scale configuration, shrunk by --tiny (same datasets, files and architectures)."""
    out = tmp_path / "results"
    argv = ["--scale", "paper", "--tiny", "--data-root", str(fake_root), "--out", str(out), "--jobs", "1",
            "--quiet", "--seeds", "1"]
    # one swept hyperparameter per setting is enough to run every dataset and architecture
    n_settings = {1: 2, 4: 1}.get(claim, 0)
    for i in range(n_settings):
        argv += ["--set", f"settings.{i}.sweeps={{'lr': [0.01, 0.02]}}"]
    summary = _module(claim).main(argv)
    _check_outputs(out, claim, summary, "paper")
    cfg = summary["config"]
    text = json.dumps(cfg)
    expected = {1: ["cifar10", "vgg13", "mnist", "vgg11"], 2: ["cifar10", "vgg13"], 3: ["cifar10", "vgg13"],
                4: ["cifar_fs", "resnet18"], 5: ["cifar10", "vgg13"], 6: ["gaussian"]}[claim]
    for word in expected:
        assert word in text, f"claim {claim}'s paper configuration should use {word}"


def test_cuda_backend_trains_through_gcref_cuda(tmp_path, monkeypatch):
    """--backend cuda: training goes through gcref_cuda.fit (NumPy here), and the results match."""
    from gcref_cuda.fast_engine import FastEngine
    calls = []
    original = FastEngine.step_passes          # the trainer's training pass (gcref.train.trainer)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(FastEngine, "step_passes", counting)
    ref = _module(5).main(["--scale", "smoke", "--out", str(tmp_path / "ref"), "--jobs", "1", "--quiet"])
    fast = _module(5).main(["--scale", "smoke", "--out", str(tmp_path / "cuda"), "--jobs", "1", "--quiet",
                            "--backend", "cuda"])
    assert calls, "the cuda backend did not train with gcref_cuda's FastEngine"
    assert fast["backend"]["name"] == "cuda" and ref["backend"]["name"] == "reference"
    for a, b in zip(ref["parts"], fast["parts"]):
        assert a["spearman_rho"] == pytest.approx(b["spearman_rho"], abs=1e-9, nan_ok=True)
        assert a["cap_runs"] == b["cap_runs"] and a["n"] == b["n"]
    # nothing is swapped: the reference loop and the lab's fit are untouched
    assert importlib.import_module("gcref.train.fit").train_step.__module__ == "gcref.train.fit"
    assert importlib.import_module("gcref.lab.run").fit.__module__ == "gcref.train.fit"


def test_paper_scale_without_data_root_says_so(tmp_path):
    with pytest.raises(SystemExit, match="--data-root"):
        _module(5).main(["--scale", "paper", "--tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])


# ------------------------------------------------------------------------------ the helpers
def test_spearman_test_direction_and_pvalue():
    x = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 3)
    y = -x + np.random.default_rng(0).normal(0, 0.3, x.size)
    t = verdicts.spearman_test(x, y)
    from scipy.stats import spearmanr
    assert t.rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert t.p_value < 0.01 and t.ci95[1] < 0
    assert verdicts.direction_verdict(t, -1)["verdict"] == "reproduced"
    assert verdicts.direction_verdict(t, +1) == {"verdict": "not reproduced", "direction": "opposite"}
    flat = verdicts.spearman_test(x, np.random.default_rng(1).normal(size=x.size))
    assert flat.p_value > 0.01
    constant = verdicts.spearman_test([1, 1, 1], [1, 2, 3])
    assert np.isnan(constant.rho) and verdicts.direction_verdict(constant, 1)["verdict"] == "not reproduced"


def test_overrides_seeds_and_tiny():
    cfg = {"a": {"b": 1}, "settings": [{"steps": 100}], "seeds": [0, 1, 2]}
    out = common.apply_overrides(cfg, ["a.b=0.5", "settings.0.steps=3"])
    assert out["a"]["b"] == 0.5 and out["settings"][0]["steps"] == 3 and cfg["a"]["b"] == 1
    with pytest.raises(KeyError, match="unknown key"):
        common.apply_overrides(cfg, ["a.c=1"])
    assert common.parse_seeds("3", [9]) == [0, 1, 2]
    assert common.parse_seeds("4,7", [9]) == [4, 7]
    assert common.parse_seeds(None, [9]) == [9]
    tiny = common.apply_tiny({"config": {"steps": 20000, "batch_size": 256, "width": 1.0, "dataset": "cifar10"},
                              "sweeps": {"lr": [0.1, 0.2, 0.3], "batch_size": [32, 64, 128]}})
    assert tiny["config"] == {"steps": 1, "batch_size": 4, "width": 1 / 64, "dataset": "cifar10"}
    assert tiny["sweeps"] == {"lr": [0.1, 0.2], "batch_size": [2, 4]}


def test_write_json_is_strict_json(tmp_path):
    p = reporting.write_json(tmp_path / "x.json", {"a": float("nan"), "b": np.float64(1.5), "c": np.arange(2)})
    assert json.loads(p.read_text()) == {"a": None, "b": 1.5, "c": [0, 1]}


# ------------------------------------------------------------------- default result folders
def test_each_scale_writes_its_own_folder():
    """No scale writes into another's committed results; smoke and --tiny never into them."""
    def out(*argv):
        return Path(common.parse_args(list(argv), claim=1, description="").out).resolve()
    results = common.RESULTS.resolve()
    assert out("--scale", "small") == results
    assert out("--scale", "medium") == results / "medium"
    assert out("--scale", "paper") == results / "paper"
    for argv in (["--scale", "smoke"], ["--scale", "small", "--tiny"], ["--scale", "paper", "--tiny"]):
        folder = out(*argv)
        assert results not in folder.parents and folder != results, argv
    assert len({out("--scale", s) for s in common.SCALES}) == len(common.SCALES)
    for argv in (["--scale", "smoke", "--out", str(common.RESULTS)],
                 ["--scale", "small", "--tiny", "--out", str(common.RESULTS / "medium")]):
        with pytest.raises(SystemExit) as err:
            common.parse_args(argv, claim=1, description="")
        assert err.value.code == 2


def test_run_all_smoke_leaves_the_committed_results_alone(tmp_path, monkeypatch):
    """``run_all.py --scale smoke`` without --out: the committed files are untouched (issue 11)."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = {p.name: p.read_bytes() for p in common.RESULTS.glob("*") if p.is_file()}
    run_all = importlib.import_module("run_all")
    assert run_all.main(["--claims", "5", "--scale", "smoke", "--jobs", "1", "--quiet"]) == 0
    after = {p.name: p.read_bytes() for p in common.RESULTS.glob("*") if p.is_file()}
    assert after == before
    written = tmp_path / "gcref-validation-smoke"
    assert (written / "claim5.json").is_file() and (written / "summary.json").is_file()


def test_scale_without_configuration_is_not_run(tmp_path):
    with pytest.raises(SystemExit, match="no configuration at --scale medium"):
        _module(5).main(["--scale", "medium", "--out", str(tmp_path), "--jobs", "1", "--quiet"])


# ------------------------------------------------------------- one definition of the statistics
def test_statistics_are_gcrefs():
    """validation and gcref.lab share gcref.lab.stats: the same rho and the same seeded p-value."""
    import gcref.lab as lab
    from gcref.lab import stats
    from scipy.stats import spearmanr
    assert verdicts.spearman_test is stats.spearman_test and verdicts.bootstrap_ci is stats.bootstrap_ci
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    y[:6] += 2 * x[:6]
    ref = spearmanr(x, y)
    r = lab.spearman(list(x), list(y))
    assert r["rho"] == stats.spearman_rho(x, y) == pytest.approx(ref.statistic, abs=1e-14)
    t = stats.spearman_test(x, y, seed=0)
    assert t.rho == r["rho"] and t.p_value == r["pvalue"] and t.ci95[0] <= t.rho <= t.ci95[1]
    assert abs(t.p_value - ref.pvalue) < 4 * t.mc_error + 0.01        # near the t approximation
    assert stats.spearman_test(x, y, seed=0) == t               # seeded: the same numbers
    exact = stats.spearman_test([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12], n_permutations=999)
    assert exact.rho == 1.0 and exact.p_value == 2 / 720 and exact.method == "exact"   # never 0
    assert stats.spearman_asymptotic_p(1.0, 6) == 0.0
    with pytest.raises(ValueError, match="same length"):
        stats.spearman_test([1, 2, 3], [1, 2])


def test_importing_common_mutates_neither_path_nor_environment():
    import subprocess
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); p = list(sys.path); e = dict(os.environ); "
            "import common, run_all, claim4_transfer; assert sys.path == p, 'sys.path changed'; "
            "assert dict(os.environ) == e, 'environment changed'")
    res = subprocess.run([sys.executable, "-c", code, str(VALIDATION)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_matched_fit_reads_every_run_at_the_common_level():
    h = lambda losses, gcs: [{"step": 10 * i, "epoch": i / 2, "train_loss": l, "gc": g}  # noqa: E731
                             for i, (l, g) in enumerate(zip(losses, gcs))]
    records = [{"history": h([2.0, 1.0, 0.5, 0.2], [10, 20, 30, 40])},
               {"history": h([2.0, 0.8, 0.4], [11, 21, 31])},
               {"history": h([2.0, 1.5, 0.9, 0.6], [12, 22, 32, 42])},
               {"history": [{"step": 0, "loss": 1.0}]}]           # no training loss recorded
    mf = verdicts.matched_fit(records, ("gc",))
    assert mf["level"] == 0.6 and mf["missing"] == [3]
    assert [(r["index"], r["step"], r["gc"]) for r in mf["rows"]] == [(0, 20, 30), (1, 20, 31), (2, 30, 42)]
    t = verdicts.matched_fit_tests(records[:3], lambda r, row: row["index"], ("gc",), +1, "x")
    assert t["level"] == 0.6 and t["n"] == 3 and t["epochs_range"] == [1.0, 1.5]
    assert t["tests"][0]["spearman_rho"] == pytest.approx(1.0) and t["tests"][0]["expected_sign"] == 1


def test_the_converged_protocol_is_the_primary_configuration():
    """Claims 1, 3, 4, 5 at --scale small: base weight decay 5e-4, every run trained to >= 99%
    training accuracy, the L2 sweeps spanning 0..5e-3, >= 3 seeds; the fixed budget is kept."""
    for claim in (1, 3, 4, 5):
        mod = _module(claim)
        small = mod.CONFIGS["small"]
        assert len(small["seeds"]) >= 3 and "small" in mod.FIXED_BUDGET
        for st in small["settings"]:
            cfg = st.get("config") or st["train"]
            assert cfg["l2"] == 5e-4
            assert cfg.get("until_train_acc") == 0.99 or cfg.get("until") == {"train_accuracy": 0.99}
            if "l2" in st.get("sweeps", {}):
                assert min(st["sweeps"]["l2"]) == 0.0 and max(st["sweeps"]["l2"]) == 5e-3
    assert common.default_out("small", protocol="fixed-budget") == common.RESULTS / "fixed_budget"
    with pytest.raises(SystemExit, match="one protocol"):
        _module(6).main(["--scale", "smoke", "--protocol", "fixed-budget", "--quiet"])


def test_reanalyse_recomputes_the_statistics_from_the_stored_runs(tmp_path):
    """--reanalyse trains nothing: the same runs give the same parts; a stored final value
    changed by hand changes the recomputed rho; the figure and the matched fit stay."""
    out = tmp_path / "r"
    first = _module(5).main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--quiet"])
    png = (out / "claim5.png").read_bytes()
    again = _module(5).main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--quiet", "--reanalyse"])
    def numbers(summary):
        return json.dumps([[p["spearman_rho"], p["p_value_permutation"], p["n"]] for p in summary["parts"]])
    assert numbers(again) == numbers(first)
    stored = json.loads((out / "claim5.json").read_text())
    assert (out / "claim5.png").read_bytes() == png and "reanalysed" in stored
    gcs = [r["final"]["gc"] for r in stored["runs"]]
    for r in stored["runs"]:                 # GC now rises with lambda_GC: rho flips sign
        r["final"]["gc"] = 1.0 + r["hp"]["gc_reg"] + 1e-3 * r["seed"]
        r["status"] = "converged"
    (out / "claim5.json").write_text(json.dumps(stored))
    flipped = _module(5).main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--quiet", "--reanalyse"])
    assert flipped["parts"][0]["metric"] == "gc" and flipped["parts"][0]["spearman_rho"] == 1.0
    assert gcs != [r["final"]["gc"] for r in flipped["runs"]]
    with pytest.raises(SystemExit, match="not found"):
        _module(5).main(["--scale", "smoke", "--out", str(tmp_path / "none"), "--quiet", "--reanalyse"])
