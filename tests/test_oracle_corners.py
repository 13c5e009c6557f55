"""The oracle's last corners (issue 27) and the conformance suite's words (issue 29, item 7).

Each test was written against the code before its fix and failed there:

1. torch implementations that return inf/nan on the must-raise cases, and probes that raise
   anything at all, give rows, never a crash;
2. a correct NCC computed in float32 is diagnosed as float32, not as Gram-form distances;
3. NCC / few-shot cases above ``torch.cdist``'s 25-row switch to its matrix-multiply path;
4. ``precision="float32"`` with a Python float result agrees to float32 precision;
5. ``from_torch`` warns whenever the module is in training mode;
6. SimpleShot's cosine prototypes, float16 hints, ``x.mean((2, 3))`` and ``x / 255 * 2 - 1``,
   the in-place refusal, and an estimator with a nan standard error;
7. the verdict's words: every case raised, a known mistake, failing cases one per line.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gcref
from gcref.metrics.ncc import ncc_fit, ncc_predict
from gcref.testing import (check_cdnv_implementation, check_few_shot_implementation,
                           check_gc_estimator, check_gc_implementation, check_nc_implementation,
                           check_ncc_implementation)
from gcref.testing.conformance import few_shot_cases, ncc_cases
from gcref.testing.conventions import implementation


def gcref_ncc(Z_train, y_train, Z_test):
    return ncc_predict(*ncc_fit(Z_train, y_train), Z_test)


# ------------------------------------------------------------------ 1. never a crash

def _nc_torch_no_guard(Z, y):
    """rhubarbwu-style NC in torch: divides by a zero distance on coinciding means (inf/nan)."""
    import torch
    cl = torch.unique(y)
    mu = torch.stack([Z[y == c].mean(0) for c in cl])
    var = torch.stack([((Z[y == c] - m) ** 2).sum(1).mean() for c, m in zip(cl, mu)])
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    off = ~torch.eye(len(cl), dtype=torch.bool)
    return ((var[:, None] + var[None])[off] / (2 * d2[off])).mean()


def _cdnv_torch_no_guard(Z, y):
    import torch
    cl = torch.unique(y)
    mu = torch.stack([Z[y == c].mean(0) for c in cl])
    var = torch.stack([((Z[y == c] - m) ** 2).sum(1).mean() for c, m in zip(cl, mu)])
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    return (var[:, None] + var[None]) / (2 * d2)


@pytest.mark.parametrize("check, fn", [(check_nc_implementation, _nc_torch_no_guard),
                                       (check_cdnv_implementation, _cdnv_torch_no_guard)])
def test_torch_returning_inf_on_the_must_raise_case_is_a_row(check, fn):
    pytest.importorskip("torch")
    report = check(fn, framework="torch")
    row = next(r for r in report.rows if "must raise" in r.case)
    assert not row.passed and row.matches == ("nonfinite_instead_of_raise",)
    assert row.detail == "returned inf/nan where gcref raises"
    assert check(fn, framework="torch", accept=("nonfinite_instead_of_raise",)).passed


class _Unconvertible:
    """A result whose conversion to an array raises something other than TypeError/ValueError."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("cannot convert")


def test_any_exception_while_reading_a_result_is_a_row():
    for check in (check_nc_implementation, check_cdnv_implementation):
        report = check(lambda Z, y: _Unconvertible())
        assert not report.passed and all(not r.passed for r in report.rows)
        row = next(r for r in report.rows if "must raise" in r.case)
        assert "RuntimeError: cannot convert" in row.detail


# ---------------------------------------------------- 2. float32 NCC is not Gram-form

def ncc_float32(Z_train, y_train, Z_test):
    """A correct difference-form NCC, computed in float32."""
    Ztr, Zte = np.asarray(Z_train, np.float32), np.asarray(Z_test, np.float32)
    ytr = np.asarray(y_train)
    cl = np.unique(ytr)
    mu = np.stack([Ztr[ytr == c].mean(0) for c in cl])
    return cl[np.argmin(((Zte[:, None] - mu[None]) ** 2).sum(-1), axis=1)]


def ncc_gram64(Z_train, y_train, Z_test):
    """Gram-form distances in float64, at every size."""
    Ztr, Zte, ytr = np.asarray(Z_train), np.asarray(Z_test), np.asarray(y_train)
    cl = np.unique(ytr)
    mu = np.stack([Ztr[ytr == c].mean(0) for c in cl])
    d2 = (Zte ** 2).sum(1)[:, None] + (mu ** 2).sum(1)[None] - 2 * Zte @ mu.T
    return cl[np.argmin(d2, axis=1)]


@pytest.mark.parametrize("check", [check_ncc_implementation, check_few_shot_implementation])
def test_float32_ncc_is_diagnosed_as_float32_not_gram(check):
    report = check(ncc_float32)
    assert not report.passed
    assert report.diagnosis.precision == "float32" and "gram_distances" not in report.diagnosis.keys
    assert report.verdict == "agrees to float32 precision"
    # the case that separates them: float32 flips labels there, Gram-form float64 does not
    assert check(ncc_gram64).diagnosis.keys == ("gram_distances",)


def test_a_failure_at_one_offset_case_is_not_blamed_on_float32():
    def off_at_first_offset(Z_train, y_train, Z_test):
        labels = gcref_ncc(Z_train, y_train, Z_test)
        if np.abs(Z_test).max() > 1e6 and len(Z_test) == 24:
            labels = labels[::-1].copy()
        return labels
    report = check_ncc_implementation(off_at_first_offset)
    assert "gram_distances" not in report.diagnosis.keys
    assert "reduced precision" not in report.diagnosis.cancellation
    assert report.diagnosis.cancellation == ("Gram-form distances",)


def test_float32_case_flips_float32_labels_and_no_gram_label():
    case = next(c for c in ncc_cases() if "float32" in c.name)
    ref = gcref_ncc(case.Z_train, case.y_train, case.Z_test)
    assert np.sum(ncc_float32(case.Z_train, case.y_train, case.Z_test) != ref) >= 2
    np.testing.assert_array_equal(ncc_gram64(case.Z_train, case.y_train, case.Z_test), ref)
    assert not case.ill_conditioned


# ------------------------------------------------------ 3. torch.cdist above 25 rows

def protonet_cdist(Z_support, y_support, Z_query):
    """easyfsl's PrototypicalNetworks: torch.cdist to the prototypes, argmin."""
    import torch
    cl = torch.unique(y_support)
    proto = torch.stack([Z_support[y_support == c].mean(0) for c in cl])
    return cl[torch.cdist(Z_query, proto).argmin(1)]


def test_cases_above_cdists_threshold_exist():
    big = [c for c in ncc_cases() if "offset 1e8" in c.name and len(c.Z_test) > 25
           and len(c.Z_train) > 25]
    assert big
    pools = [c for c in few_shot_cases() if "offset 1e8" in c.name]
    assert any((c.ways, c.shots, c.queries) == (5, 5, 15) for c in pools)


@pytest.mark.parametrize("check", [check_ncc_implementation, check_few_shot_implementation])
def test_easyfsl_cdist_protonet_fails_and_is_named(check):
    pytest.importorskip("torch")
    report = check(protonet_cdist, framework="torch")
    assert not report.passed
    assert report.diagnosis.keys == ("cdist_mm",), report.table()
    failing = {r.case for r in report.failures}
    assert failing and all("offset 1e8" in c for c in failing)


def test_standard_episode_at_offset_mislabels_with_cdist():
    torch = pytest.importorskip("torch")
    pool = next(c for c in few_shot_cases() if (c.ways, c.shots, c.queries) == (5, 5, 15))
    wrong = 0
    for _, ncase in pool.episode_cases():
        got = protonet_cdist(torch.tensor(ncase.Z_train), torch.tensor(ncase.y_train),
                             torch.tensor(ncase.Z_test)).numpy()
        wrong += int(np.sum(got != gcref_ncc(ncase.Z_train, ncase.y_train, ncase.Z_test)))
    assert wrong >= 10


# ----------------------------------------------- 4. precision="float32" and a float

def gc_float32_as_python_float(f, X):
    J = f.net.jacobian(f.params, X / f.in_scale) * f.out_scale / f.in_scale
    return float(np.mean(np.sum(np.float32(J) ** 2, axis=(1, 2), dtype=np.float32)))


def test_float32_with_a_python_float_agrees_to_float32_with_precision_float32():
    report = check_gc_implementation(gc_float32_as_python_float, precision="float32")
    assert report.passed and report.verdict == "agrees to float32 precision"
    assert "not explained" not in report.summary()
    assert check_gc_implementation(gc_float32_as_python_float).verdict == "agrees to float32 precision"


# --------------------------------------------------------- 5. training-mode warning

def test_training_mode_warns_when_forward_reads_self_training():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from torch import nn

    from gcref.interop.torch import from_torch

    class EvalDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(F.dropout(torch.tanh(self.fc(x)), 0.3, training=self.training))

    m = EvalDropout().double().train()
    with pytest.warns(UserWarning, match="training mode"):
        from_torch(m, (4,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_torch(m.eval(), (4,))


# ------------------------------------------------------------------- 6. smaller ones

def simpleshot(Z_support, y_support, Z_query):
    """easyfsl's SimpleShot: mean of the raw features, then normalise; cosine to the queries."""
    Zs, Zq, ys = map(np.asarray, (Z_support, Z_query, y_support))
    cl = np.unique(ys)
    proto = np.stack([Zs[ys == c].mean(0) for c in cl])
    proto /= np.linalg.norm(proto, axis=1, keepdims=True)
    q = Zq / np.linalg.norm(Zq, axis=1, keepdims=True)
    return cl[np.argmax(q @ proto.T, axis=1)]


@pytest.fixture(autouse=True)
def _quiet_zero_norms():
    with np.errstate(invalid="ignore", divide="ignore"):    # SimpleShot on a zero feature
        yield


def test_simpleshot_cosine_prototypes_are_a_named_convention():
    report = check_ncc_implementation(simpleshot)
    assert report.diagnosis.keys == ("cosine_raw_means",), report.table()
    assert check_ncc_implementation(implementation("ncc", "cosine_raw_means")).diagnosis.keys == \
        ("cosine_raw_means",)
    assert check_ncc_implementation(implementation("ncc", "cosine")).diagnosis.keys == ("cosine",)


def nc_float16_out(Z, y):
    return np.float16(gcref.neural_collapse(np.asarray(Z, np.float16).astype(np.float64), y))


def test_float16_outputs_are_diagnosed_as_float16():
    with np.errstate(over="ignore"):
        report = check_nc_implementation(nc_float16_out)
    assert report.diagnosis.precision == "float16"
    assert "float16" in report.summary().splitlines()[1]


def test_estimator_with_a_nan_stderr_is_not_both_explained_and_not():
    def half_nan(f, X, seed):
        e = gcref.estimate_gc(f.net, f.params, X, method="projection", seed=seed)
        return e.value / 2, float("nan")
    report = check_gc_estimator(half_nan, draws=10)
    assert report.verdict.startswith("partly explained")
    row = next(r for r in report.rows if "stderr" in r.case)
    assert "not finite" in row.detail


# ------------------------------------------------------------------- 7. the words

def test_every_case_raised_says_so_with_the_likely_cause():
    torch = pytest.importorskip("torch")

    def torch_only(f, X):
        return torch.func.vmap(lambda x: x.sum())(X).mean()
    report = check_gc_implementation(torch_only)                 # numpy arrays given
    assert report.verdict.startswith("every case raised")
    assert "--framework torch" in report.summary()


def test_a_known_mistake_reads_as_such():
    report = check_nc_implementation(implementation("nc", "no_half"))
    assert report.verdict == "matches a known mistake / convention: no_half"


def test_not_explained_lists_the_failing_cases_one_per_line():
    def off(Z, y):
        return gcref.neural_collapse(Z, y) * (1 + 1e-3 * np.sin(len(y)))
    summary = check_nc_implementation(off).summary()
    lines = summary.splitlines()
    assert lines[0].endswith("not explained")
    listed = [ln for ln in lines if ln.startswith("  - ")]
    assert len(listed) >= 5 and any("offset 1e8" in ln for ln in listed)


def _scaled_global_pool_net():
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 2)

        def forward(self, x):
            x = x / 255 * 2 - 1
            return self.head(F.relu(self.conv(x)).mean((2, 3)))
    return Net


def test_scaling_and_global_mean_pooling_convert_exactly():
    torch = pytest.importorskip("torch")
    from gcref.interop.torch import from_torch
    torch.manual_seed(0)
    model = _scaled_global_pool_net()().double().eval()
    net, params = from_torch(model, (3, 5, 5))
    assert [type(layer).__name__ for _, layer in net.layers()][:2] == ["Affine", "Conv2d"]
    X = np.random.default_rng(0).uniform(0, 255, size=(4, 3, 5, 5))
    with torch.no_grad():
        want = model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(net.forward(params, X), want, rtol=1e-13, atol=1e-13)
    import gcref_cuda as gcc
    fast = gcc.as_fast(net, dtype=np.float64)
    np.testing.assert_allclose(fast.forward(params, X), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fast.jacobian(params, X), net.jacobian(params, X), rtol=1e-12,
                               atol=1e-15)


@pytest.mark.parametrize("expr", ["x.mean((2, 3))", "x.mean(dim=[-2, -1])", "torch.mean(x, (2, 3))",
                                  "x.mean((2, 3), keepdim=True).flatten(1)"])
def test_global_mean_pooling_spellings(expr):
    torch = pytest.importorskip("torch")
    from torch import nn

    from gcref.interop.torch import from_torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Linear(3, 2)

        def forward(self, x):
            x = self.conv(x)
            return self.head(eval(expr, {"torch": torch}, {"x": x}))
    model = Net().double().eval()
    net, params = from_torch(model, (2, 6, 6))
    X = np.random.default_rng(1).normal(size=(3, 2, 6, 6))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(params, X), model(torch.from_numpy(X)).numpy(),
                                   rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("expr, scale, shift", [("x / 255 * 2 - 1", 2 / 255, -1.0),
                                                ("2 * x + 1", 2.0, 1.0), ("1 - x", -1.0, 1.0),
                                                ("(x - 0.5) / 0.25", 4.0, -2.0),
                                                ("x.div(255).sub(0.5)", 1 / 255, -0.5)])
def test_scalar_input_scaling_is_one_affine_layer(expr, scale, shift):
    torch = pytest.importorskip("torch")
    from torch import nn

    from gcref.interop.torch import from_torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(torch.tanh(self.fc(eval(expr, {}, {"x": x}))))
    model = Net().double().eval()
    net, params = from_torch(model, (3,))
    affine = net.layers()[0][1]
    assert type(affine).__name__ == "Affine"
    assert affine.scale == pytest.approx(scale, rel=1e-15) and affine.shift == pytest.approx(shift)
    X = np.random.default_rng(2).uniform(0, 255, size=(5, 3))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(params, X), model(torch.from_numpy(X)).numpy(),
                                   rtol=1e-13, atol=1e-13)


def test_in_place_refusal_names_the_in_place_operation():
    pytest.importorskip("torch")
    import torch.nn.functional as F
    from torch import nn

    from gcref.interop.torch import UnsupportedModuleError, from_torch

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 1, 3, padding=1), nn.Linear(16, 3)

        def forward(self, x):
            identity = x
            F.relu(x, inplace=True)
            return self.fc((self.conv(x) + identity).flatten(1))
    with pytest.raises(UnsupportedModuleError, match=r"relu.*in place on 'x'") as err:
        from_torch(M().double().eval(), (1, 4, 4))
    assert "used by 3 operations" not in str(err.value)


def _leaf_cases():
    from gcref.testing.cases import layer_cases
    return [c for c in layer_cases() if not isinstance(c[1], (gcref.nn.Sequential, gcref.nn.Residual))]


@pytest.mark.parametrize("case", _leaf_cases(), ids=lambda c: c[0])
def test_every_leaf_layer_has_a_torch_module_with_the_same_function(case):
    """The torch interop cross-check over the layer battery: to_torch's module of each leaf layer
    (Affine included) computes the layer's function, and from_torch reads it back as that layer."""
    torch = pytest.importorskip("torch")
    from gcref.interop.torch.leaves import FROM_TORCH, LEAF_TO_TORCH
    label, layer, shape = case
    assert type(layer) in LEAF_TO_TORCH, f"{label}: no torch module in LEAF_TO_TORCH"
    module = LEAF_TO_TORCH[type(layer)](layer).double().eval()
    params = {k: np.random.default_rng(0).uniform(0.5, 1.5, v) for k, v in
              {**layer.param_specs(shape), **layer.buffer_specs(shape)}.items()}
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    x = np.random.default_rng(1).normal(size=(2,) + tuple(shape))
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.forward(params, x)[0], want, rtol=1e-13, atol=1e-13)
    assert FROM_TORCH[type(module)]("m", module).describe() == layer.describe()


def test_affine_runs_in_jax_as_in_gcref():
    pytest.importorskip("jax")
    from gcref.nn import Affine, Linear, Network
    from gcref.testing import to_jax
    net = Network([("scale", Affine(2 / 255, -1.0)), ("fc", Linear(3, 4))], ("head", Linear(4, 2)), (3,))
    params = net.init(0)
    X = np.random.default_rng(3).uniform(0, 255, size=(4, 3))
    np.testing.assert_allclose(np.asarray(to_jax(net, params)(X)), net.embed(params, X), rtol=1e-14)


def test_cli_wrong_framework_says_which_one(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from gcref.cli import app
    (tmp_path / "torchcode.py").write_text(
        "import torch\n"
        "def nc(Z, y):\n"
        "    classes = torch.unique(y)\n"
        "    return torch.stack([Z[y == c].mean(0) for c in classes]).var()\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["check", "--against", "torchcode:nc", "--quantity", "nc"])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "every case raised" in text and "did you mean framework='torch' (`--framework torch`)" in text
