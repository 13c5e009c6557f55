"""The conformance suite (gcref.testing.conformance): correct implementations pass, implementations
written in each known convention fail and are diagnosed by name, in NumPy, PyTorch and JAX."""

import json
import math

import numpy as np
import pytest

import gcref
from gcref.testing import (CONVENTIONS, check_cdnv_implementation, check_gc_estimator,
                           check_gc_implementation, check_nc_implementation,
                           check_papyan_implementation, parametrize_conformance)
from gcref.testing.conformance import (OFFSET, feature_cases, gc_cases, papyan_cases)
from gcref.testing.conventions import convention, implementation


# ----------------------------------------------------------------------------- helpers

def gcref_gc(f, X):
    """GC through gcref itself (the numpy framework's f carries its network and scales)."""
    return (f.out_scale / f.in_scale) ** 2 * gcref.geometric_complexity(f.net, f.params, X / f.in_scale)


def jacobians(f, X):
    """Exact per-example Jacobians (n, p, d) of the numpy-framework f, via gcref."""
    J = f.net.jacobian(f.params, X / f.in_scale)
    return J * f.out_scale / f.in_scale


def case(cases, name):
    return next(c for c in cases if c.name == name)


# ------------------------------------------------------------- correct implementations pass

def test_gcref_passes_its_own_batteries():
    for report in (check_gc_implementation(gcref_gc),
                   check_cdnv_implementation(gcref.cdnv),
                   check_nc_implementation(gcref.neural_collapse),
                   check_papyan_implementation(gcref.papyan_nc)):
        assert report.passed, report.table()
        assert max(r.error for r in report.rows) <= 1e-15
    assert len(check_gc_implementation(gcref_gc).rows) == len(gc_cases()) == 19


@pytest.mark.parametrize("method", gcref.ESTIMATORS)
def test_gcref_estimators_are_unbiased_and_calibrated(method):
    def est(f, X, seed, method):
        return gcref.estimate_gc(f.net, f.params, X, method=method, seed=seed)
    report = check_gc_estimator(est, method=method)
    assert report.passed, report.table()
    assert len(report.rows) == 4


def test_cases_have_their_closed_forms():
    c = case(feature_cases(), "closed form (Var_c = sigma_c^2)")
    mu = np.array([[0.0, 0, 0, 0], [3, 1, 0, 2], [-1, 4, 2, 0]])
    s2 = np.array([1.0, 0.25, 4.0])
    V = np.array([[0 if i == j else (s2[i] + s2[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
                   for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(gcref.cdnv(c.Z, c.y), V, rtol=1e-15)
    etf = case(feature_cases(), "simplex ETF means")
    st = gcref.class_stats(etf.Z, etf.y)
    d2 = np.sum((st.means[0] - st.means[1:]) ** 2, axis=1)
    np.testing.assert_allclose(d2, 2 * 5 * 4.0 / 4, rtol=1e-14)       # 2 k r^2 / (k - 1)
    np.testing.assert_allclose(st.variances, 1 / 16, rtol=1e-14)
    off = case(feature_cases(), "offset 1e8")
    base = gcref.class_stats(off.Z - OFFSET, off.y)
    np.testing.assert_array_equal(gcref.class_stats(off.Z, off.y).variances, base.variances)
    lin = case(gc_cases(), "linear map (GC = ||A||_F^2)")
    assert lin.reference == pytest.approx(np.sum(lin.params["features.0.weight"] ** 2), rel=1e-14)
    three = case(gc_cases(), "scaling: 3 f (GC x 9)")
    assert three.reference == pytest.approx(9 * gcref.geometric_complexity(three.net, three.params, three.X),
                                            rel=1e-14)
    etf_p = case(papyan_cases(), "simplex ETF, self-dual head")
    out = gcref.papyan_nc(etf_p.Z, etf_p.y, etf_p.W, etf_p.b)
    assert out["NC3"] < 1e-28 and out["NC2_equinorm"] < 1e-14 and out["NC4"] == 0.0


# ------------------------------------------------------- every convention is diagnosed by name

@pytest.mark.parametrize("quantity,key", [
    (q, c.key) for q in ("cdnv", "nc", "papyan", "ncc", "few_shot_summary", "ncc_bound")
    for c in CONVENTIONS[q] if c.key != "pooled_accuracy"])    # (= the mean on gcref's episodes)
def test_each_convention_fails_and_is_named(quantity, key):
    from gcref.testing import check_implementation
    report = check_implementation(quantity, implementation(quantity, key))
    assert not report.passed
    assert [c.key for c in report.diagnosis.conventions] == [key], report.table()
    assert not report.diagnosis.unexplained
    assert key in report.table()


# Independent implementations written as the published code does (not through the registry).

def cdnv_torch_var(Z, y):
    """torch.var(unbiased=True) for the class variance (ddof = 1)."""
    torch = pytest.importorskip("torch")
    Z, y = torch.as_tensor(Z), torch.as_tensor(y)
    cls = torch.unique(y)
    mu = torch.stack([Z[y == c].mean(0) for c in cls])
    var = torch.stack([Z[y == c].var(0, unbiased=True).sum() for c in cls])
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    if (d2 + torch.eye(len(cls), dtype=Z.dtype) == 0).any():
        raise ValueError("coinciding means")
    V = (var[:, None] + var[None]) / (2 * d2)
    return V.fill_diagonal_(0)


def nc_one_pass(Z, y):
    """Galanti et al.'s NeuralCollapseDepth style: E||z||^2 - ||E z||^2 accumulated in one pass."""
    Z, y = np.asarray(Z), np.asarray(y)
    cls = np.unique(y)
    s1 = np.array([Z[y == c].sum(0) for c in cls])
    s2 = np.array([(Z[y == c] ** 2).sum() for c in cls])
    n = np.array([np.sum(y == c) for c in cls])
    mu = s1 / n[:, None]
    var = s2 / n - (mu ** 2).sum(1)
    k = len(cls)
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = [(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i in range(k) for j in range(k) if i != j]
    if not np.all(np.isfinite(vals)):
        raise ValueError("coinciding means")
    return float(np.mean(vals))


def nc_rhubarbwu_dist_exp2(Z, y):
    """rhubarbwu/neural-collapse variability_cdnv(V, M, dist_exp=2): distance to the 4th power,
    averaged over the upper triangle."""
    Z, y = np.asarray(Z), np.asarray(y)
    cls = np.unique(y)
    M = np.array([Z[y == c].mean(0) for c in cls])
    V = np.array([np.mean(np.sum((Z[y == c] - m) ** 2, 1)) for c, m in zip(cls, M)])
    iu = np.triu_indices(len(cls), 1)
    d2 = np.sum((M[:, None] - M[None]) ** 2, -1)[iu]
    if np.any(d2 == 0):
        raise ValueError("coinciding means")
    return float(np.mean((V[:, None] + V[None])[iu] / 2 / d2 ** 2))


def nc_np_mean_of_matrix(Z, y):
    return float(np.mean(gcref.cdnv(Z, y)))


def nc_per_dim_variance(Z, y):
    Z, y = np.asarray(Z), np.asarray(y)
    cls = np.unique(y)
    M = np.array([Z[y == c].mean(0) for c in cls])
    V = np.array([Z[y == c].var(0).mean() for c in cls])      # mean over dims, not the sum
    k = len(cls)
    d2 = np.array([[np.sum((M[i] - M[j]) ** 2) for j in range(k)] for i in range(k)])
    if np.any(d2 + np.eye(k) == 0):
        raise ValueError("coinciding means")
    return float(sum((V[i] + V[j]) / (2 * d2[i, j]) for i in range(k) for j in range(k) if i != j) / (k * (k - 1)))


@pytest.mark.parametrize("fn,quantity,expected", [
    (cdnv_torch_var, "cdnv", "ddof1"),
    (nc_one_pass, "nc", "one_pass"),
    (nc_rhubarbwu_dist_exp2, "nc", "distance_4th_power"),
    (nc_np_mean_of_matrix, "nc", "mean_with_diagonal"),
    (nc_per_dim_variance, "nc", "per_dim_variance"),
])
def test_published_style_implementations_are_diagnosed(fn, quantity, expected):
    report = (check_cdnv_implementation if quantity == "cdnv" else check_nc_implementation)(fn)
    assert not report.passed
    assert [c.key for c in report.diagnosis.conventions] == [expected], report.table()


def test_one_pass_is_exact_except_where_its_variance_cancels():
    report = check_nc_implementation(nc_one_pass)
    failing = [r.case for r in report.failures]
    assert failing == ["offset 1e8", "tight classes at 1e3 (one-pass variance cancels)"]
    row = report.failures[0]
    assert row.error > 0.1                      # NC 2.5 times too large here (Galanti's data: 73 % off)
    assert 1e-6 < report.failures[1].error < 1e-3


def papyan_rhubarbwu_style(Z, y, W, b):
    """NC1 as tr(Sigma_W)/tr(Sigma_B) and NC4 as the agreement rate without the bias."""
    out = dict(gcref.papyan_nc(Z, y, W, b))
    Z, y = np.asarray(Z), np.asarray(y)
    cls = np.unique(y)
    M = np.array([Z[y == c].mean(0) for c in cls])
    Sw = sum(((Z[y == c] - m) ** 2).sum() for c, m in zip(cls, M)) / len(y)
    Sb = ((M - M.mean(0)) ** 2).sum() / len(cls)
    out["NC1"] = Sw / Sb
    ncc = cls[np.argmin(((Z[:, None] - M[None]) ** 2).sum(-1), axis=1)]
    out["NC4"] = float(np.mean(np.argmax(Z @ np.asarray(W).T, axis=1) == ncc))
    return out


def test_two_papyan_conventions_at_once_are_both_named():
    report = check_papyan_implementation(papyan_rhubarbwu_style)
    assert sorted(c.key for c in report.diagnosis.conventions) == ["nc1_trace_ratio", "nc4_agreement_no_bias"]
    assert {r.case.split(": ")[1] for r in report.failures} == {"NC1", "NC4"}


# GC conventions, each written on exact Jacobians as a user would.

GC_WRONG = {
    "half": lambda f, X: 0.5 * np.mean(np.sum(jacobians(f, X) ** 2, axis=(1, 2))),
    "sum_examples": lambda f, X: np.sum(jacobians(f, X) ** 2),
    "norm_not_squared": lambda f, X: np.mean(np.linalg.norm(jacobians(f, X), axis=(1, 2))),
    "mean_outputs": lambda f, X: np.mean(np.mean(np.sum(jacobians(f, X) ** 2, axis=2), axis=1)),
    "mean_inputs": lambda f, X: np.mean(np.sum(np.mean(jacobians(f, X) ** 2, axis=2), axis=1)),
    "mean_entries": lambda f, X: np.mean(jacobians(f, X) ** 2),
    "logits": lambda f, X: ((f.out_scale / f.in_scale) ** 2
                            * gcref.geometric_complexity(f.net, f.params, X / f.in_scale, output="logits")),
}


def test_gc_conventions_list_is_covered():
    assert sorted(GC_WRONG) == sorted(c.key for c in CONVENTIONS["gc"])


@pytest.mark.parametrize("key", sorted(GC_WRONG))
def test_gc_conventions_fail_and_are_named(key):
    report = check_gc_implementation(GC_WRONG[key])
    assert not report.passed
    assert [c.key for c in report.diagnosis.conventions] == [key], report.table()
    if key == "logits":      # the scaled functions have no head: not explained, said so
        assert all(name.startswith("scaling") for name in report.diagnosis.unexplained)
    else:
        assert not report.diagnosis.unexplained


@pytest.mark.parametrize("other", sorted(k for k in GC_WRONG if k != "half"))
def test_gc_half_with_another_convention_is_named_as_the_pair(other):
    report = check_gc_implementation(lambda f, X: 0.5 * GC_WRONG[other](f, X))
    assert [c.key for c in report.diagnosis.conventions] == [f"half+{other}"], report.table()


PAPYAN_GROUPS = {c.key: c.key.split("_")[0].upper() for c in CONVENTIONS["papyan"]
                 if c.key != "nonfinite_instead_of_raise"}


@pytest.mark.parametrize("a,b", [(a, b) for a in PAPYAN_GROUPS for b in PAPYAN_GROUPS
                                 if a < b and PAPYAN_GROUPS[a] != PAPYAN_GROUPS[b]])
def test_two_papyan_conventions_on_different_keys_are_both_named(a, b):
    ca, cb = convention("papyan", a), convention("papyan", b)

    def both(Z, y, W, b_):
        from gcref.testing.conventions import FeatureCase
        c = FeatureCase("x", np.asarray(Z), np.asarray(y), np.asarray(W), np.asarray(b_))
        return {**gcref.papyan_nc(Z, y, W, b_), **ca.transform(c), **cb.transform(c)}

    report = check_papyan_implementation(both)
    assert sorted(c.key for c in report.diagnosis.conventions) == sorted([a, b]), report.table()


def test_estimator_bias_is_diagnosed():
    def jacobian_reg(f, X, seed):        # JacobianReg: projections, then GC/2
        e = gcref.estimate_gc(f.net, f.params, X, method="projection", seed=seed)
        return e.value / 2, e.stderr / 2

    report = check_gc_estimator(jacobian_reg, draws=40)
    assert [c.key for c in report.diagnosis.conventions] == ["half"]
    assert [r.passed for r in report.rows] == [False, True, False, True]

    def overconfident(f, X, seed):       # reports the spread of one example, not the mean's
        e = gcref.estimate_gc(f.net, f.params, X, method="projection", seed=seed)
        return e.value, e.stderr / 3

    report = check_gc_estimator(overconfident, draws=40)
    assert [r.passed for r in report.rows] == [True, False, True, False]
    assert "calibrated" in report.failures[0].case


# ------------------------------------------------------------------------- frameworks

def test_torch_func_gc_implementation_passes():
    torch = pytest.importorskip("torch")
    pytest.importorskip("gcref.interop.torch")
    from torch.func import jacrev, vmap

    def torch_gc(f, X):
        J = vmap(jacrev(lambda x: f(x[None])[0]))(X)
        return (J ** 2).flatten(1).sum(1).mean()

    report = check_gc_implementation(torch_gc, framework="torch")
    assert report.passed, report.table()
    assert max(r.error for r in report.rows) < 1e-14

    def jacobian_reg_exact(f, X):       # JacobianReg's normalisation with all projections
        J = vmap(jacrev(lambda x: f(x[None])[0]))(X)
        return 0.5 * (J ** 2).flatten(1).sum(1).mean()

    report = check_gc_implementation(jacobian_reg_exact, framework="torch")
    assert [c.key for c in report.diagnosis.conventions] == ["half"]
    assert isinstance(torch.zeros(1), torch.Tensor)


def test_torch_float32_gc_agrees_to_float32_precision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("gcref.interop.torch")
    from torch.func import jacrev, vmap

    def torch_gc32(f, X):                  # the model cast to float32, as training code runs it
        f = f.float()
        J = vmap(jacrev(lambda x: f(x[None])[0]))(X.float())
        return (J ** 2).flatten(1).sum(1).mean()

    report = check_gc_implementation(torch_gc32, framework="torch")
    assert report.diagnosis.precision_source == "dtype"
    assert report.verdict == "agrees to float32 precision", report.table()
    assert 1e-9 < max(r.error for r in report.rows) < 1e-5
    assert isinstance(torch.zeros(1), torch.Tensor)


def test_torch_feature_implementations():
    torch = pytest.importorskip("torch")

    def torch_nc(Z, y):
        assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float64
        cls = torch.unique(y)
        mu = torch.stack([Z[y == c].mean(0) for c in cls])
        var = torch.stack([((Z[y == c] - m) ** 2).sum(1).mean() for c, m in zip(cls, mu)])
        d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
        k = len(cls)
        off = ~torch.eye(k, dtype=torch.bool)
        if (d2[off] == 0).any():
            raise ValueError("coinciding means")
        return ((var[:, None] + var[None])[off] / (2 * d2[off])).mean()

    report = check_nc_implementation(torch_nc, framework="torch")
    assert report.passed, report.table()


@pytest.mark.slow
def test_jax_gc_implementation_passes():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def jax_gc(f, X):
        J = jax.vmap(jax.jacrev(lambda x: f(x[None])[0]))(X)
        return jnp.mean(jnp.sum(J.reshape(J.shape[0], -1) ** 2, axis=1))

    report = check_gc_implementation(jax_gc, framework="jax")
    assert report.passed, report.table()
    assert max(r.error for r in report.rows) < 1e-14


@pytest.mark.slow
def test_to_jax_matches_gcref_on_every_case():
    jax = pytest.importorskip("jax")
    from gcref.testing import to_jax
    for c in gc_cases():
        Z = np.asarray(to_jax(c.net, c.params)(jax.numpy.asarray(c.X)))
        np.testing.assert_allclose(Z, c.net.embed(c.params, c.X), rtol=1e-12, atol=1e-300)


# ------------------------------------------------------------------------ report and errors

def test_report_rows_table_and_json():
    report = check_nc_implementation(implementation("nc", "ddof1"))
    d = json.loads(json.dumps(report.as_dict()))
    assert d["passed"] is False and d["diagnosis"] == ["ddof1"]
    assert {"case", "value", "reference", "error", "tolerance", "passed"} <= set(d["rows"][0])
    text = report.table()
    assert "FAIL ~ ddof1" in text and "matches a known mistake / convention: ddof1" in text
    with pytest.raises(AssertionError, match="ddof1"):
        report.assert_passed()
    must_raise = [r for r in report.rows if "must raise" in r.case]
    assert must_raise[0].passed and "ValueError" in must_raise[0].detail


def test_values_instead_of_errors_and_crashes_fail():
    def returns_inf(Z, y):
        try:
            return gcref.neural_collapse(Z, y)
        except ValueError:
            return math.inf

    report = check_nc_implementation(returns_inf)
    assert [r.case for r in report.failures] == ["coinciding means (must raise)"]
    # the documented behaviour has a key, and an opt-out
    assert [c.key for c in report.diagnosis.conventions] == ["nonfinite_instead_of_raise"]
    ok = check_nc_implementation(returns_inf, accept=("nonfinite_instead_of_raise",))
    assert ok.passed and "accepted conventions: nonfinite_instead_of_raise" in ok.verdict

    def crashes(Z, y):
        raise RuntimeError("boom")

    report = check_nc_implementation(crashes)
    assert sum(not r.passed for r in report.rows) == len(report.rows) - 1
    assert "RuntimeError: boom" in report.rows[0].detail

    report = check_cdnv_implementation(lambda Z, y: gcref.neural_collapse(Z, y))
    assert "shape" in report.rows[0].detail


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="fn must be a callable"):
        check_nc_implementation(3)
    with pytest.raises(ValueError, match="framework must be one of"):
        check_gc_implementation(gcref_gc, framework="tensorflow")
    with pytest.raises(ValueError, match="rtol"):
        check_cdnv_implementation(gcref.cdnv, rtol=-1)
    with pytest.raises(ValueError, match="keys"):
        check_papyan_implementation(gcref.papyan_nc, keys=())
    with pytest.raises(ValueError, match="draws"):
        check_gc_estimator(lambda f, X, seed: (0.0, 0.0), draws=1)
    with pytest.raises(ValueError, match="no convention"):
        convention("nc", "nope")


# ------------------------------------------------------------------ the pytest entry point

@parametrize_conformance("nc", gcref.neural_collapse)
def test_entry_point_three_lines(check):
    check()


def test_entry_point_ids_and_failures():
    from gcref.testing import conformance_checks
    checks = conformance_checks("cdnv", implementation("cdnv", "no_half"))
    assert [c.case for c in checks] == [c.name for c in feature_cases()]
    with pytest.raises(AssertionError, match="no_half"):
        checks[0]()
    mark = parametrize_conformance("papyan", gcref.papyan_nc)
    assert mark.args[0] == "check" and len(mark.args[1]) == len(papyan_cases())


# ------------------------------------------------------------------------------------ CLI

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usercode.py").write_text(
        "import numpy as np\n"
        "import gcref\n"
        "def nc(Z, y):\n    return gcref.neural_collapse(Z, y)\n"
        "def nc_sum(Z, y):\n    V = gcref.cdnv(Z, y)\n    return float(V.sum())\n"
        "VALUE = 3\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_against(user_module):
    from typer.testing import CliRunner
    from gcref.cli import app
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--against", "usercode:nc", "--quantity", "nc"])
    assert ok.exit_code == 0, ok.output
    assert "10 passed, 0 failed: agrees" in ok.output
    bad = runner.invoke(app, ["check", "--against", "usercode:nc_sum", "--quantity", "nc", "--json", "-"])
    assert bad.exit_code == 1
    payload = json.loads(bad.stdout)
    assert payload["diagnosis"] == ["sum_pairs"] and payload["passed"] is False
    for args, msg in ((["--against", "usercode:nope"], "no attribute"),
                      (["--against", "nomodule_xyz:f"], "cannot import"),
                      (["--against", "usercode"], "MODULE:FUNCTION"),
                      (["--against", "usercode:VALUE"], "not a function"),
                      (["--against", "usercode:nc", "--quantity", "nc5"], "--quantity"),
                      (["--against", "usercode:nc", "--framework", "tf"], "--framework")):
        res = runner.invoke(app, ["check", *args])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:") and msg in lines[0], res.output


def test_cdnv_diagonal_is_not_compared():
    def nan_diagonal(Z, y):
        V = gcref.cdnv(Z, y)
        np.fill_diagonal(V, np.nan)
        return V

    assert check_cdnv_implementation(nan_diagonal).passed
    with pytest.raises(TypeError, match="do not apply"):
        parametrize_conformance("nc", gcref.neural_collapse, keys=("NC1",))
