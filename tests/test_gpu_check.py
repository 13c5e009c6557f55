"""``bench/gpu_check.sh --dry``: the GPU readiness script runs end to end on the CPU (so it cannot
rot before a GPU machine is at hand) and writes its report."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "gpu-results.md"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", os.path.join(REPO, "bench", "gpu_check.sh"), "--dry", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    text = out.read_text()
    for phase in ("| pytest | 0 |", "| check | 0 |", "| bench | 0 |", "| vgg13 | 0 |"):
        assert phase in text, text
    assert "## bench_gc cases" in text and "## VGG-13 training step" in text
    assert "(cpu)" in text and "--dry" in text
    # every bench row measured gcref_cuda, and PyTorch where it is installed, and they agree
    has_torch = importlib.util.find_spec("torch") is not None
    rows = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")
            or line.startswith("| 3 ")]
    assert len(rows) == 4
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0, line
        if has_torch:
            assert float(cells[2]) > 0 and float(cells[4]) < 1e-6, line
        else:
            assert cells[2] == "-" and cells[4] == "-", line
    assert not (tmp_path / "gpu-results.md.tmp").exists()
