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
TINY_CLI = ["--steps", "20", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
            "--batch-size", "16"]
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
