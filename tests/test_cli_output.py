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


def _defaults(command):
    """``{option: default}`` of a ``gcref`` command, as typer builds it."""
    import typer.main
    group = typer.main.get_command(app)
    return {p.name: p.default for p in group.commands[command].params}


def test_train_sweep_and_transfer_share_the_protocol_defaults():
    """One protocol for the three commands: weight decay 5e-4 at the base, each run trained to
    99% training accuracy, the step budget a cap (transfer's data and cap are its own)."""
    train, sweep, transfer = (_defaults(c) for c in ("train", "sweep", "transfer"))
    for key in ("lr", "batch_size", "l2", "until_train_acc", "until_loss", "momentum", "gc_reg",
                "eval_size", "arch", "width"):
        assert train[key] == sweep[key] == transfer[key], key
    assert train["l2"] == 5e-4 and train["until_train_acc"] == 0.99
    assert train["steps"] == sweep["steps"] == 6000 and transfer["steps"] == 40000
    help_text = " ".join(invoke("train", "--help", columns=200).stdout.split())
    assert "L2 0.005" not in help_text and "3000 steps" not in help_text


def test_train_defaults_resume_folders_made_with_explicit_settings(tmp_path):
    """Changing the defaults moves no fingerprint: a folder made with explicit settings is
    found finished by the same command, and one made with the old defaults (L2 0.005, no
    criterion) is refused by the new ones with both values named, not mixed."""
    old = ["--l2", "0.005", "--until-train-acc", "0", *RUN[:-2]]
    assert invoke("train", *old, "--out", tmp_path / "r").exit_code == 0
    again = json.loads(invoke("train", *old, "--out", tmp_path / "r", "--json").stdout)
    assert again["skipped"] is True
    r = invoke("train", *RUN[:-2], "--out", tmp_path / "r")
    assert r.exit_code == 2
    assert "--l2: 0.005 there, 0.0005 now" in " ".join(r.stderr.split())
    r = invoke("train", *RUN[:-2], "--steps", "600", "--out", tmp_path / "new", "--json")
    s = json.loads(r.stdout)
    assert s["config"]["l2"] == 5e-4 and s["config"]["until_train_acc"] == 0.99
    assert s["status"] in ("converged", "cap")


def test_a_diverged_run_says_where_it_stopped(tmp_path):
    r = invoke("train", *RUN, "--lr", "50", "--steps", "100", "--out", tmp_path / "d", columns=200)
    assert r.exit_code == 1
    text = " ".join(r.stdout.split())
    assert "0 steps (0 epochs)" not in text
    assert "status diverged at step 3 (the values above are its last record before it: step 0, 0 epochs)" in text


def test_a_converged_run_says_its_criterion_and_cap(tmp_path):
    r = invoke("train", *RUN[:-2], "--until-train-acc", "0.15", "--out", tmp_path / "c", columns=200)
    assert r.exit_code == 0, r.output
    assert "status converged (train accuracy >= 0.15, cap 20 steps)" in " ".join(r.stdout.split())


def test_cli_errors_name_the_cli_flag(tmp_path):
    out = tmp_path / "r"
    assert invoke("train", *RUN, "--out", out).exit_code == 0
    r = invoke("train", *RUN, "--lr", "0.2", "--out", out)
    assert r.exit_code == 2
    error = " ".join(r.stderr.split())
    assert "overwrite=True" not in error and "pass --overwrite to start it afresh" in error
    (out / "checkpoint.npz").write_bytes(b"broken")
    (out / "done.json").unlink()
    error = " ".join(invoke("train", *RUN, "--out", out).stderr.split())
    assert "damaged checkpoint" in error and "overwrite=True" not in error and "(--overwrite)" in error


def test_help_shows_no_type_for_flags():
    for args in ([], ["train"], ["sweep"], ["check"]):
        text = invoke(*args, "--help", columns=200).stdout
        assert "<bool>" not in text, args
        assert "--version" in text or args
    assert "<float>" in invoke("train", "--help", columns=200).stdout      # values keep theirs


def test_an_mlp_given_images_hints_input_shape():
    import numpy as np

    import gcref
    net = gcref.zoo.mlp([64, 16], num_classes=3)
    with pytest.raises(ValueError, match=r"input_shape=\(1, 8, 8\)"):
        net.forward(net.init(0), np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"must have shape \(n, 64\)") as err:
        net.forward(net.init(0), np.zeros((2, 63)))
    assert "input_shape=" not in str(err.value)           # no hint where it would not help


def _markdown_tables(path):
    """``[(first line number, lines)]`` of each run of table lines (``| ...``) of a file."""
    groups, current = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.lstrip().startswith("|"):
                current.append((number, line.strip()))
            elif current:
                groups.append(current)
                current = []
    return groups + ([current] if current else [])


def test_every_markdown_table_has_its_header():
    """A blank line inside a table starts another table without a header, which Markdown
    draws as text (docs/conventions.md after the NC4 rows)."""
    import glob
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [os.path.join(root, "README.md"), *glob.glob(os.path.join(root, "docs", "*.md"))]
    for path in files:
        for group in _markdown_tables(path):
            assert len(group) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", group[1][1]), \
                f"{os.path.relpath(path, root)} line {group[0][0]}: a table without its header line"


CAPPED = ["--eval-every", "5", "--eval-size", "64", "--hidden", "16,8", "--batch-size", "16",
          "--max-per-class", "30", "--seeds", "0", "-j", "1"]


def test_a_table_over_capped_runs_says_why_it_is_empty(tmp_path):
    r = invoke("sweep", *CAPPED, "--steps", "20", "--param", "lr=0.001,0.01,0.02", "--out", tmp_path / "s",
               columns=100)
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "x vs y" not in text                               # no table of headers without rows
    assert ("No correlations: all 3 runs reached the cap of 20 steps before train accuracy >= 0.99; "
            "to let them converge, raise --steps (now 20) or lower --until-train-acc (now 0.99)") in text


def test_capped_runs_are_said_to_be_unfinished(tmp_path):
    r = invoke("sweep", *CAPPED, "--steps", "60", "--until-train-acc", "0.2", "--param", "lr=0.0001,0.3",
               "--out", tmp_path / "s", columns=100)
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert ("1 of 2 runs reached the cap of 60 steps before train accuracy >= 0.2: their values are "
            "of unfinished training") in text
