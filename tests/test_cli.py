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
