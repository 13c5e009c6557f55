"""What a student reads is what the tool measured: the tables of ``gcref train / sweep /
transfer`` never cut a number, at any terminal width and when piped; a table over runs that
hit their cap says why it is empty and what to change; the command line speaks its own
spelling."""

import json
import re

import pytest
from typer.testing import CliRunner

from gcref.cli import app

runner = CliRunner()
RUN = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
       "--batch-size", "16", "--until-train-acc", "0"]
TINY = [*RUN, "--parallel-backend", "sequential"]
TRANSFER = ["--dataset", "digits", "--episodes", "4", "--queries", "5"]


def invoke(*args, columns=None):
    env = {"COLUMNS": str(columns)} if columns else {}
    return runner.invoke(app, [str(a) for a in args], env=env)


def _tokens(text):
    return set(text.split())


#: Summary keys of the run table's value columns, and the header words that name them.
SWEEP_VALUES = {"loss": "loss", "gc": "GC", "nc": "NC", "geometric_collapse": "geom.",
                "test_accuracy": "test"}
TRANSFER_VALUES = {"gc": "source GC", "nc": "source NC", "target_nc": "target NC"}


def _left_out(stdout):
    """The columns a table's note says it left out (``''`` when none)."""
    m = re.search(r"Left out to fit \d+ columns: (.*?);", " ".join(stdout.split()))
    return m.group(1) if m else ""


def _assert_no_number_cut(result, summary, values, width):
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\u2026" not in out                                   # rich's ellipsis: a cut cell
    assert max(len(line) for line in out.splitlines()) <= width
    tokens, left_out = _tokens(out), _left_out(out)
    for run in summary["runs"]:
        for key, head in values.items():
            shown = f"{run['final'][key]:.4g}"
            assert shown in tokens or head in left_out, (width, key, shown, out)
        for value in run["settings"].values():               # settings are never dropped
            assert f"{value:g}" in tokens
        status = f"{'done' if run['status'] == 'completed' else run['status']}@{run['epochs']:.3g}"
        assert status in tokens, (width, status, out)
    return left_out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "s"
    r = invoke("sweep", *TINY, "--param", "lr=0.02,0.1", "--param", "l2=0.0001,0.005", "--seeds", "0",
               "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def transfer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "t"
    r = invoke("transfer", *TINY, *TRANSFER, "--param", "lr=0.02,0.1,0.2", "--seeds", "0,1", "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("width", [60, 80, 200])
def test_sweep_table_never_cuts_a_number(sweep_dir, width):
    summary = json.loads((sweep_dir / "summary.json").read_text())
    r = invoke("sweep", *TINY, "--param", "lr=0.02,0.1", "--param", "l2=0.0001,0.005", "--seeds", "0",
               "--out", sweep_dir, columns=width)
    left_out = _assert_no_number_cut(r, summary, SWEEP_VALUES, width)
    if width == 200:
        assert left_out == "" and "\u2193" in r.stdout and "\u2191" in r.stdout
    if left_out:                                  # says where the whole table is
        assert "summary.csv" in r.stdout and "--json" in r.stdout


@pytest.mark.parametrize("width", [60, 80, 200])
def test_transfer_table_never_cuts_a_number(transfer_dir, width):
    summary = json.loads((transfer_dir / "summary.json").read_text())
    r = invoke("transfer", *TINY, *TRANSFER, "--param", "lr=0.02,0.1,0.2", "--seeds", "0,1",
               "--out", transfer_dir, columns=width)
    left_out = _assert_no_number_cut(r, summary, TRANSFER_VALUES, width)
    text = " ".join(r.stdout.split())
    for run in summary["runs"]:
        f = run["final"]
        cell = f"{f['few_shot_accuracy']:.3f} \u00b1 {f['few_shot_ci95']:.3f}"
        assert cell in text or "few-shot" in left_out
    assert "seed" in _tokens(r.stdout) and "status" in _tokens(r.stdout)
    if width >= 80:
        assert left_out == ""


def test_train_table_never_cuts_a_number(tmp_path):
    out = tmp_path / "r"
    assert invoke("train", *RUN, "--out", out).exit_code == 0
    summary = json.loads(invoke("train", *RUN, "--out", out, "--json").stdout)
    for width in (40, 60, 200):
        r = invoke("train", *RUN, "--out", out, columns=width)
        assert "\u2026" not in r.stdout and max(map(len, r.stdout.splitlines())) <= width
        for key, value in summary["final"].items():
            assert f"{value:.4g}" in _tokens(r.stdout), (width, key)
