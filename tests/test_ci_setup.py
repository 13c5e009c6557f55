"""CI runs what it claims: the test extra installs the PyTorch and JAX oracles (CPU builds), the
CI script installs exactly as the README says, and a test whose dependency the test extra
installs fails, instead of skipping, when that dependency cannot be imported."""

import os
import re
import shutil
import subprocess
import sys

from conftest import PYPROJECT, test_extra_modules

REPO = os.path.dirname(PYPROJECT)


def test_the_test_extra_installs_the_oracles():
    assert {"torch", "jax", "dask", "distributed", "pytest", "hypothesis"} <= test_extra_modules()
    with open(PYPROJECT, encoding="utf-8") as fh:
        assert '"torch==2.13.0"' in fh.read()          # the version that takes a CPU wheel


def test_ci_installs_as_the_readme_says():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        setup = re.search(r"## Set-up.*?```bash\n(.*?)```", fh.read(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    assert commands == ["pip install -e . && gcref check", "pip install -e '.[test]' && pytest -q"]
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as fh:
        ci = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    assert "pip install -e . && gcref check --failures-only" in ci
    assert "pip install -e '.[test]' && pytest -q" in ci


def test_a_missing_dependency_of_the_test_extra_fails_not_skips(tmp_path):
    (tmp_path / "tests").mkdir()
    shutil.copy(os.path.join(REPO, "tests", "conftest.py"), tmp_path / "tests" / "conftest.py")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.optional-dependencies]\n'
        'test = ["pytest>=7", "gcref_absent_oracle==1.0"]\n')
    (tmp_path / "tests" / "test_in_a_test.py").write_text(
        "import pytest\n\n"
        "def test_needs_the_oracle():\n    pytest.importorskip('gcref_absent_oracle')\n\n"
        "def test_needs_an_optional_package():\n    pytest.importorskip('gcref_absent_optional')\n")
    (tmp_path / "tests" / "test_at_module_level.py").write_text(
        "import pytest\n\noracle = pytest.importorskip('gcref_absent_oracle.sub')\n\n"
        "def test_x():\n    pass\n")

    def run(path):
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        return res.returncode, res.stdout + res.stderr
    code, out = run("tests/test_in_a_test.py")
    assert code == 1 and re.search(r"1 failed, 1 skipped", out), out    # the optional one skips
    assert "gcref_absent_oracle cannot be imported, but gcref's test extra installs it" in out
    code, out = run("tests/test_at_module_level.py")                 # the whole module errs
    assert code == 2 and "1 error" in out, out
    assert "gcref_absent_oracle.sub cannot be imported, but gcref's test extra installs it" in out
