"""`gcref check` and `gcref --help` through typer's CliRunner."""

import json

from typer.testing import CliRunner

from gcref.cli import app

runner = CliRunner()


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert "check" in res.output


def test_check_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "checks.json"
    res = runner.invoke(app, ["check", "--group", "layers", "--group", "parameters", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "passed, 0 failed" in res.output
    data = json.loads(out.read_text())
    assert data["failed"] == 0 and data["passed"] == len(data["results"]) > 50
    row = data["results"][0]
    assert set(row) >= {"name", "error", "tolerance", "passed"}
    assert all(r["error"] <= r["tolerance"] for r in data["results"])


def test_check_json_to_stdout():
    res = runner.invoke(app, ["check", "-g", "parameters", "--json", "-"])
    assert res.exit_code == 0
    start = res.stdout.index("{")
    assert json.loads(res.stdout[start:])["failed"] == 0


def test_check_unknown_group_is_an_error():
    res = runner.invoke(app, ["check", "--group", "nonsense"])
    assert res.exit_code != 0
    assert "unknown group" in res.output


def test_check_exit_code_one_on_failure(monkeypatch):
    from gcref import checks as check_module
    from gcref.testing import CheckResult
    monkeypatch.setitem(check_module.GROUPS, "broken",
                        lambda seed: [CheckResult("always fails", 1.0, 0.0, False)])
    res = runner.invoke(app, ["check", "--group", "broken"])
    assert res.exit_code == 1
    assert "FAIL" in res.output and "0 passed, 1 failed" in res.output


def test_bare_gcref_prints_help_and_succeeds():
    res = runner.invoke(app, [])
    assert res.exit_code == 0
    assert "Usage" in res.output and "train" in res.output and "check" in res.output


def test_version():
    from importlib.metadata import version
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"gcref {version('gcref')}"


def test_lab_commands_do_not_import_the_cli():
    """The app is built in gcref.cli only: gcref.lab.commands knows nothing of it (no cycle)."""
    import subprocess
    import sys
    code = ("import sys, gcref.lab.commands as c; assert 'gcref.cli' not in sys.modules; "
            "import typer; a = typer.Typer(); c.register(a); "
            "print(sorted(cmd.callback.__name__ for cmd in a.registered_commands))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['plot', 'sweep', 'train', 'transfer']"
