"""gcref check --against: --rtol, --keys, --precision, --accept, --labels and --failures-only."""

import json

import pytest
from typer.testing import CliRunner

from gcref.cli import app


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usercode2.py").write_text(
        "import numpy as np\n"
        "import gcref\n"
        "def nc_half_off(Z, y):\n    return gcref.neural_collapse(Z, y) * (1 + 1e-7)\n"
        "def nc_inf(Z, y):\n"
        "    try:\n        return gcref.neural_collapse(Z, y)\n"
        "    except ValueError:\n        return float('inf')\n"
        "def nc_dense(Z, y):\n"
        "    y = np.asarray(y)\n"
        "    assert np.array_equal(np.unique(y), np.arange(len(np.unique(y))))\n"
        "    return gcref.neural_collapse(Z, y)\n"
        "def papyan_nc1(Z, y, W, b):\n    return {'NC1': gcref.papyan_nc(Z, y, W, b)['NC1']}\n"
        "def est_value_only(f, X, seed):\n"
        "    return gcref.estimate_gc(f.net, f.params, X, method='projection', seed=seed).value\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, ["check", *args])


def test_rtol_is_honoured(user_module):
    assert run("--against", "usercode2:nc_half_off", "--quantity", "nc").exit_code == 1
    res = run("--against", "usercode2:nc_half_off", "--quantity", "nc", "--rtol", "1e-6")
    assert res.exit_code == 0, res.output


def test_keys_accept_labels_and_failures_only(user_module):
    res = run("--against", "usercode2:papyan_nc1", "--quantity", "papyan", "--keys", "returned")
    assert res.exit_code == 0, res.output
    res = run("--against", "usercode2:papyan_nc1", "--quantity", "papyan", "--keys", "NC1,NC3")
    assert res.exit_code == 1 and "key missing" in res.output
    res = run("--against", "usercode2:nc_inf", "--quantity", "nc", "--failures-only")
    assert res.exit_code == 1
    assert "coinciding means" in res.output and "gaussian" not in res.output   # passing rows hidden
    assert "nonfinite_instead_of_raise" in res.output
    res = run("--against", "usercode2:nc_inf", "--quantity", "nc", "--accept", "nonfinite_instead_of_raise")
    assert res.exit_code == 0, res.output
    assert run("--against", "usercode2:nc_dense", "--quantity", "nc").exit_code == 1
    assert run("--against", "usercode2:nc_dense", "--quantity", "nc", "--labels", "contiguous").exit_code == 0


def test_json_carries_the_verdict(user_module):
    res = run("--against", "usercode2:nc_inf", "--quantity", "nc", "--json", "-")
    payload = json.loads(res.stdout)
    assert payload["diagnosis"] == ["nonfinite_instead_of_raise"]
    assert payload["precision"] == "float64" and payload["verdict"].startswith("matches a known mistake / convention: ")


def test_options_that_do_not_apply_are_one_error_line(user_module):
    for args, msg in ((["--quantity", "nc", "--keys", "NC1"], "--keys applies to --quantity papyan"),
                      (["--quantity", "nc", "--precision", "float16"], "precision must be one of"),
                      (["--quantity", "nc", "--rtol", "-1"], "rtol"),
                      (["--quantity", "estimator", "--rtol", "1e-3"], "--rtol applies to")):
        res = run("--against", "usercode2:nc_inf", *args)
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:") and msg in lines[0], res.output


def test_an_estimator_without_stderr_is_checked_for_bias_alone(user_module):
    from gcref.testing import check_gc_estimator
    import usercode2
    report = check_gc_estimator(usercode2.est_value_only, draws=20)
    assert report.passed, report.table()
    calib = [r for r in report.rows if "calibrated" in r.case]
    assert calib and all(r.status == "n/a" and r.passed for r in calib)
    assert "n/a" in report.table()
