"""The conformance diagnosis tested like the numbers: every convention (alone and in pairs) is named,
near-miss wrong implementations are never credited with a convention they do not have, rounding
patterns and float32 precision are told apart, and the verdict says "I don't know" when it must."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gcref
from gcref.testing import (check_cdnv_implementation, check_nc_implementation,
                           check_papyan_implementation)
from gcref.testing.conformance import feature_cases, papyan_cases
from gcref.testing.conventions import (CONVENTIONS, FeatureCase, convention, implementation,
                                       pairs_for)
from gcref.testing.diagnosis import EPS32, EPS64, precision_tolerance


def named(report):
    return [c.key for c in report.diagnosis.conventions]


def case(cases, name):
    return next(c for c in cases if c.name == name)


# -------------------------------------------------------------------- implementations in use

def _stats(Z, y, dtype=np.float64):
    Z, y = np.asarray(Z, dtype=dtype), np.asarray(y)
    cl = np.unique(y)
    mu = np.stack([Z[y == c].mean(0) for c in cl])
    var = np.array([((Z[y == c] - mu[i]) ** 2).sum(1).mean() for i, c in enumerate(cl)])
    return Z, y, cl, mu, var


def _nc_from(mu, var, d2):
    k = len(var)
    off = ~np.eye(k, dtype=bool)
    if np.any(~np.isfinite(d2[off])) or np.any(d2[off] <= 0):
        raise ValueError("coinciding means")
    return float(((var[:, None] + var[None]) / (2 * np.where(off, d2, 1)))[off].mean())


def nc_gram(Z, y):
    """The issue's reproduction: two-pass variance, Gram-form distances."""
    Z, y, cl, mu, var = _stats(Z, y)
    sq = (mu ** 2).sum(1)
    return _nc_from(mu, var, sq[:, None] + sq[None] - 2 * mu @ mu.T)


def _one_pass_stats(Z, y):
    """Sums and sums of squares in one pass: ``Var = E||z||^2 - ||mu||^2``."""
    Z, y = np.asarray(Z), np.asarray(y)
    cl = np.unique(y)
    n = np.array([np.sum(y == c) for c in cl])
    mu = np.array([Z[y == c].sum(0) for c in cl]) / n[:, None]
    return mu, np.array([(Z[y == c] ** 2).sum() for c in cl]) / n - (mu ** 2).sum(1)


def nc_one_pass(Z, y):
    """Galanti et al.'s one-pass variance, exact distances."""
    mu, var = _one_pass_stats(Z, y)
    return _nc_from(mu, var, ((mu[:, None] - mu[None]) ** 2).sum(-1))


def nc_one_pass_gram(Z, y):
    """Both cancellations."""
    mu, var = _one_pass_stats(Z, y)
    sq = (mu ** 2).sum(1)
    return _nc_from(mu, var, sq[:, None] + sq[None] - 2 * mu @ mu.T)


def nc_float32(Z, y):
    """The right formula on float32 features, accumulated in float32, returned as a Python float."""
    Z, y, cl, mu, var = _stats(Z, y, np.float32)
    with np.errstate(all="ignore"):
        return _nc_from(mu, var, ((mu[:, None] - mu[None]) ** 2).sum(-1))


def nc_float32_dtype(Z, y):
    """As nc_float32, but returns a float32 scalar (the dtype says it)."""
    Z, y, cl, mu, var = _stats(Z, y, np.float32)
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    off = ~np.eye(len(cl), dtype=bool)
    if np.any(d2[off] <= 0):
        raise ValueError("coinciding means")
    with np.errstate(all="ignore"):
        return ((var[:, None] + var[None]) / (2 * np.where(off, d2, 1)))[off].mean()


def nc_ddof1_float32(Z, y):
    Z, y, cl, mu, var = _stats(Z, y, np.float32)
    n = np.array([np.sum(y == c) for c in cl], dtype=np.float32)
    with np.errstate(all="ignore"):
        return _nc_from(mu, var * n / (n - 1), ((mu[:, None] - mu[None]) ** 2).sum(-1))


def nc_pooled(Z, y):
    """A pooled, size-weighted within-class variance for every class."""
    Z, y, cl, mu, var = _stats(Z, y)
    n = np.array([np.sum(y == c) for c in cl])
    pooled = np.full(len(cl), np.sum(var * n) / n.sum())
    return _nc_from(mu, pooled, ((mu[:, None] - mu[None]) ** 2).sum(-1))


def nc_first_pair(Z, y):
    """Returns the first output only: V_01 instead of the mean."""
    return float(gcref.cdnv(Z, y)[0, 1])


def nc_labels_shuffled(Z, y):
    """Labels permuted against the features (a common data-loader slip)."""
    y = np.asarray(y)
    return gcref.neural_collapse(Z, np.random.default_rng(0).permutation(y))


def nc_max_pair(Z, y):
    return float(np.max(gcref.cdnv(Z, y)))


def nc_median_var(Z, y):
    """Class 'variance' as the median squared deviation."""
    Z, y, cl, mu, _ = _stats(Z, y)
    var = np.array([np.median(((Z[y == c] - mu[i]) ** 2).sum(1)) for i, c in enumerate(cl)])
    return _nc_from(mu, var, ((mu[:, None] - mu[None]) ** 2).sum(-1))


def nc_l1_distance(Z, y):
    Z, y, cl, mu, var = _stats(Z, y)
    d = np.abs(mu[:, None] - mu[None]).sum(-1)
    return _nc_from(mu, var, d ** 2)


def nc_global_centred_var(Z, y):
    """Variance around the global mean instead of the class mean."""
    Z, y, cl, mu, _ = _stats(Z, y)
    g = Z.mean(0)
    var = np.array([((Z[y == c] - g) ** 2).sum(1).mean() for c in cl])
    return _nc_from(mu, var, ((mu[:, None] - mu[None]) ** 2).sum(-1))


def cdnv_transposed_order(Z, y):
    """CDNV with rows in reverse label order (the matrix is symmetric, so only a permutation)."""
    return gcref.cdnv(Z, y)[::-1, ::-1]


def _ulp_noise(Z, seed=0):
    """Features moved by one ulp at random: what an honest float64 computation's rounding does."""
    Z = np.asarray(Z, dtype=np.float64)
    up = np.random.default_rng(seed).random(Z.shape) < 0.5
    return np.where(up, np.nextafter(Z, np.inf), np.nextafter(Z, -np.inf))


# ---------------------------------------------------------------------------- the cases

def test_nc_gram_is_named_gram_distances_not_one_pass():
    report = check_nc_implementation(nc_gram)
    assert named(report) == ["gram_distances"], report.table()
    assert "one_pass" not in report.summary()
    assert [r.case for r in report.failures] == [
        "offset 1e8", "close means at 1e3 (Gram distances cancel)"]


def test_one_pass_is_named_on_the_case_that_separates_it():
    report = check_nc_implementation(nc_one_pass)
    assert named(report) == ["one_pass"], report.table()
    ok = check_nc_implementation(nc_one_pass, accept=("one_pass",))
    assert ok.passed and [r.case for r in ok.rows if r.status == "accepted"] == [
        "offset 1e8", "tight classes at 1e3 (one-pass variance cancels)"]
    assert not check_nc_implementation(nc_gram, accept=("one_pass",)).passed   # not Gram's cases


def test_both_cancellations_are_named_together():
    report = check_nc_implementation(nc_one_pass_gram)
    assert sorted(named(report)) == ["gram_distances", "one_pass"], report.table()


def test_cancellation_cases_separate_the_two_patterns():
    cases = feature_cases()
    a = case(cases, "close means at 1e3 (Gram distances cancel)")
    b = case(cases, "tight classes at 1e3 (one-pass variance cancels)")
    ref_a, ref_b = gcref.neural_collapse(a.Z, a.y), gcref.neural_collapse(b.Z, b.y)
    err = lambda v, r: abs(v - r) / abs(r)   # noqa: E731
    assert err(nc_gram(a.Z, a.y), ref_a) > 1e-7 and err(nc_one_pass(a.Z, a.y), ref_a) < 1e-10
    assert err(nc_one_pass(b.Z, b.y), ref_b) > 1e-7 and err(nc_gram(b.Z, b.y), ref_b) < 1e-10
    # both are exact for gcref's two-pass statistics: centring changes nothing
    for c in (a, b):
        np.testing.assert_allclose(gcref.neural_collapse(c.Z - c.Z.mean(0), c.y),
                                   gcref.neural_collapse(c.Z, c.y), rtol=1e-12)


def test_float32_agrees_to_float32_precision_not_float64():
    report = check_nc_implementation(nc_float32)
    d = report.diagnosis
    assert not report.passed
    assert d.precision == "float32" and d.precision_source == "errors", report.table()
    assert report.verdict == "agrees to float32 precision"
    assert not d.unexplained
    well = [r for r in report.rows if not r.ill_conditioned and r.reference is not None]
    assert all(r.status in ("float32", "agrees") for r in well)
    assert max(r.error for r in well) > 1e-9            # float32 shows on well-conditioned cases
    offset = next(r for r in report.rows if r.case == "offset 1e8")
    assert "coinciding means" in offset.detail        # float32 cannot see these means apart
    assert offset.status == "float32" and "beyond float32 precision" in offset.detail
    ok = check_nc_implementation(nc_float32, precision="float32")
    assert ok.passed, ok.table()                      # raising there is float32's limit, not a bug


def test_float32_dtype_is_read_from_the_outputs():
    report = check_nc_implementation(nc_float32_dtype)
    assert report.diagnosis.precision == "float32"
    assert report.diagnosis.precision_source == "dtype"
    assert report.verdict == "agrees to float32 precision", report.table()
    assert "agrees to float32 precision" in report.summary()


def test_a_convention_at_float32_precision_is_named():
    report = check_nc_implementation(nc_ddof1_float32)
    assert named(report) == ["ddof1"], report.table()
    assert report.diagnosis.precision == "float32"


def test_honest_float64_rounding_keeps_a_convention_named_on_the_offset_case():
    def nc_4th_power_peer(Z, y):
        return implementation("nc", "distance_4th_power")(_ulp_noise(Z), y)

    report = check_nc_implementation(nc_4th_power_peer)
    offset = next(r for r in report.rows if r.case == "offset 1e8")
    assert offset.error > 1e-9                 # the ulp noise is visible at the offset ...
    assert "distance_4th_power" in offset.matches   # ... and within the conditioning-scaled tolerance
    assert named(report) == ["distance_4th_power"], report.table()

    def papyan_ddof1_peer(Z, y, W, b):
        return implementation("papyan", "nc2_ddof1")(_ulp_noise(Z), y, W, b)

    report = check_papyan_implementation(papyan_ddof1_peer)
    assert named(report) == ["nc2_ddof1"], report.table()


def test_honest_float64_peer_passes_within_conditioning():
    report = check_nc_implementation(lambda Z, y: gcref.neural_collapse(_ulp_noise(Z), y))
    assert report.passed, report.table()
    statuses = {r.case: r.status for r in report.rows}
    assert statuses["offset 1e8"] == "agrees within conditioning"
    assert report.verdict.startswith("agrees (within float64 rounding on the ill-conditioned")


def test_tolerances_scale_with_conditioning():
    assert precision_tolerance(1e-9, 1.0, EPS64) == 1e-9
    assert precision_tolerance(1e-9, 1e8, EPS64) == pytest.approx(16 * EPS64 * 1e8)
    assert precision_tolerance(1e-9, 10.0, EPS32) == pytest.approx(160 * EPS32)
    off = case(feature_cases(), "offset 1e8")
    assert 1e7 < off.conditioning < 1e9
    assert case(feature_cases(), "gaussian, unequal class sizes").conditioning < 100


def test_failures_only_where_cancellation_matters_say_so():
    def papyan_cancels(Z, y, W, b):          # off only on the offset case, by a non-convention amount
        out = dict(gcref.papyan_nc(Z, y, W, b))
        if np.abs(np.asarray(Z)).max() > 1e6:
            out["NC1"] *= 1.3
        return out

    report = check_papyan_implementation(papyan_cancels)
    d = report.diagnosis
    assert not d.keys and d.cancellation == ("one-pass variance", "Gram-form distances", "reduced precision")
    assert "fails only where cancellation matters (offset 1e8: NC1): one-pass variance, " \
           "Gram-form distances or reduced precision" in report.summary()
    assert report.verdict == "fails only where cancellation matters"


def test_not_explained_names_the_worst_rows():
    report = check_nc_implementation(nc_pooled)
    d = report.diagnosis
    assert not d.keys and d.unexplained and not d.cancellation
    assert report.verdict == "not explained"
    assert len(d.worst) == min(3, len(d.unexplained))
    assert d.worst[0][1] == max(r.error for r in report.failures)
    assert f"  - {d.worst[0][0]} (error {d.worst[0][1]:.2g})" in report.summary().splitlines()


# --------------------------------------------------------------- every convention, alone and in pairs

@pytest.mark.parametrize("quantity,key", [(q, c.key) for q in ("cdnv", "nc") for c in pairs_for(q)])
def test_each_pair_of_conventions_is_named(quantity, key):
    check = check_cdnv_implementation if quantity == "cdnv" else check_nc_implementation
    report = check(implementation(quantity, key))
    assert not report.passed
    assert named(report) == [key], report.table()
    assert not report.diagnosis.unexplained


def test_pairs_are_only_tried_when_no_single_convention_explains():
    report = check_nc_implementation(implementation("nc", "ddof1"))
    assert named(report) == ["ddof1"]
    assert len(pairs_for("nc")) > len(pairs_for("cdnv")) > 0
    keys = {c.key for c in pairs_for("nc")}
    # pairs that collapse algebraically are not in the catalogue
    assert "per_dim_variance+per_dim_distance" not in keys
    assert "no_half+sum_unordered_pairs" not in keys                 # = sum_pairs
    assert "no_half+unordered_sum_ordered_count" not in keys         # = gcref's NC
    assert "ddof1+no_half" in keys and "ddof1+sum_pairs" in keys
    assert pairs_for("papyan") == () and all(c.key.startswith("half+") for c in pairs_for("gc"))


# ---------------------------------------------------------------- near misses are never credited

NEAR_MISSES = [nc_gram, nc_one_pass, nc_float32, nc_pooled, nc_first_pair, nc_labels_shuffled,
               nc_max_pair, nc_median_var, nc_l1_distance, nc_global_centred_var, nc_one_pass_gram]
# what each may be credited with, at most (its own cancellation pattern, the returned-inf key)
ALLOWED = {"nc_gram": {"gram_distances"}, "nc_one_pass": {"one_pass"},
           "nc_one_pass_gram": {"one_pass", "gram_distances"},
           "nc_float32": {"nonfinite_instead_of_raise"}}


@pytest.mark.parametrize("fn", NEAR_MISSES, ids=lambda f: f.__name__)
def test_near_misses_are_never_credited_with_a_convention_they_do_not_have(fn):
    report = check_nc_implementation(fn)
    assert not report.passed
    assert set(named(report)) <= ALLOWED.get(fn.__name__, set()), report.table()
    if fn.__name__ not in ALLOWED:
        assert report.verdict in ("not explained", "fails only where cancellation matters")


def test_cdnv_in_another_order_is_not_credited_and_can_be_declared():
    report = check_cdnv_implementation(cdnv_transposed_order)
    assert not report.passed and not named(report)

    def cdnv_appearance(Z, y):              # rows in order of first appearance of each label
        y = np.asarray(y)
        _, first = np.unique(y, return_index=True)
        cl = np.unique(y)[np.argsort(first)]
        s = np.searchsorted(np.unique(y), cl)
        return gcref.cdnv(Z, y)[np.ix_(s, s)]

    assert not check_cdnv_implementation(cdnv_appearance).passed
    assert check_cdnv_implementation(cdnv_appearance, order="appearance").passed


def test_wrong_tie_rule_in_nc4_fails_per_point():
    """NC4 per point: a peer with two wrong labels whose count still coincides is caught."""
    def papyan_points(Z, y, W, b):
        out = dict(gcref.papyan_nc(Z, y, W, b))
        c = FeatureCase("x", np.asarray(Z), np.asarray(y), np.asarray(W), np.asarray(b))
        from gcref.testing.conventions import nc4_points
        out["NC4"] = nc4_points(c)
        return out

    assert check_papyan_implementation(papyan_points).passed

    def papyan_two_swapped(Z, y, W, b):
        out = papyan_points(Z, y, W, b)
        flags = out["NC4"].copy()
        i, j = np.flatnonzero(flags == 1)[:1], np.flatnonzero(flags == 0)[:1]
        if i.size and j.size:
            flags[i], flags[j] = 0.0, 1.0             # the same count, two points wrong
        out["NC4"] = flags
        return out

    report = check_papyan_implementation(papyan_two_swapped)
    per_point = [r for r in report.failures if r.case.endswith("NC4 per point")]
    assert per_point and all("2 of" in r.detail for r in per_point), report.table()
    rates = [r for r in report.rows if r.case.endswith(": NC4")]
    assert all(r.passed for r in rates)               # the rate alone would have passed


def test_nc4_points_mean_is_gcrefs_nc4():
    from gcref.testing.conventions import nc4_points
    for c in papyan_cases():
        if not c.raises:
            assert np.mean(nc4_points(c)) == gcref.papyan_nc(c.Z, c.y, c.W, c.b)["NC4"]


# ------------------------------------------------------------------------- fits the user's code

def test_contiguous_labels_and_papyan_key_subsets():
    def needs_0_to_k(Z, y):
        y = np.asarray(y)
        assert np.array_equal(np.unique(y), np.arange(len(np.unique(y))))
        return gcref.neural_collapse(Z, y)

    assert not check_nc_implementation(needs_0_to_k).passed
    assert check_nc_implementation(needs_0_to_k, labels="contiguous").passed

    def nc1_only(Z, y, W, b):
        return {"NC1": gcref.papyan_nc(Z, y, W, b)["NC1"]}

    assert not check_papyan_implementation(nc1_only).passed
    report = check_papyan_implementation(nc1_only, keys="returned")
    assert report.passed and all(r.case.endswith("NC1") or "must raise" in r.case for r in report.rows)

    def head_rows_0_to_k(Z, y, W, b):
        assert np.asarray(W).shape[0] == len(np.unique(y))
        return gcref.papyan_nc(Z, y, W, b)

    assert check_papyan_implementation(head_rows_0_to_k, labels="contiguous").passed


def test_option_errors_name_themselves():
    with pytest.raises(ValueError, match="precision"):
        check_nc_implementation(gcref.neural_collapse, precision="float16")
    with pytest.raises(ValueError, match="labels"):
        check_nc_implementation(gcref.neural_collapse, labels="dense")
    with pytest.raises(ValueError, match="order"):
        check_cdnv_implementation(gcref.cdnv, order="random")
    with pytest.raises(TypeError, match="accept"):
        check_nc_implementation(gcref.neural_collapse, accept=(1,))
    with pytest.raises(ValueError, match="keys"):
        check_papyan_implementation(gcref.papyan_nc, keys=())


# ---------------------------------------------------------------------------- property tests

@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), key=st.sampled_from(
    [c.key for c in CONVENTIONS["nc"] if not c.unstable and c.key != "nonfinite_instead_of_raise"]))
def test_a_convention_is_recognised_on_random_data(seed, key):
    """On random features, a convention's value matches itself and, where it differs from gcref,
    no other single convention claims it."""
    from gcref.testing.diagnosis import gather_evidence
    rng = np.random.default_rng(seed)
    k, p = int(rng.integers(2, 5)), int(rng.integers(1, 5))
    sizes = rng.integers(2, 7, size=k)
    Z = np.concatenate([rng.normal(3 * rng.normal(size=p), rng.uniform(0.2, 2), (m, p)) for m in sizes])
    y = np.repeat(rng.permutation(50)[:k], sizes)
    c = FeatureCase("random", Z, y)
    value = convention("nc", key).transform(c)
    ref = gcref.neural_collapse(Z, y)
    ev = gather_evidence("nc", c, value, ref, 1e-9, conditioning=c.conditioning)
    if key in ev.exact:
        assert ev.exact[key] <= ev.tol64
        others = [o for o, e in ev.exact.items() if e <= ev.tol64 and o != key and "+" not in o]
        for o in others:    # another convention may coincide on this case only when equal here
            assert np.isclose(convention("nc", o).transform(c), value, rtol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(1e-3, 1e3))
def test_gcref_itself_always_agrees_on_random_data(seed, scale):
    from gcref.testing.diagnosis import gather_evidence
    rng = np.random.default_rng(seed)
    Z = scale * rng.normal(size=(12, 3)) + np.repeat(scale * 4 * rng.normal(size=(3, 3)), 4, axis=0)
    y = np.repeat([5, -1, 9], 4)
    c = FeatureCase("random", Z, y)
    ref = gcref.neural_collapse(Z, y)
    ev = gather_evidence("nc", c, gcref.neural_collapse(_ulp_noise(Z, seed), y), ref, 1e-9,
                         conditioning=c.conditioning)
    assert ev.error <= ev.tol64


# ------------------------------------------------------------------------------------ GC precision

def _jac(f, X):
    return f.net.jacobian(f.params, X / f.in_scale) * f.out_scale / f.in_scale


def test_gc_in_float32_agrees_to_float32_precision():
    from gcref.testing import check_gc_implementation

    def gc32(f, X):                      # Jacobians rounded to float32, summed in float32
        J = _jac(f, X).astype(np.float32)
        return float(np.mean(np.sum(J * J, axis=(1, 2))))

    report = check_gc_implementation(gc32)
    assert not report.passed
    assert report.diagnosis.precision == "float32" and report.verdict == "agrees to float32 precision", \
        report.table()
    assert check_gc_implementation(gc32, precision="float32").passed

    def half32(f, X):                    # GC/2 in float32: named at float32 precision
        return 0.5 * gc32(f, X)

    report = check_gc_implementation(half32)
    assert named(report) == ["half"] and report.diagnosis.precision == "float32", report.table()


def test_gc_half_accepted():
    from gcref.testing import check_gc_implementation

    def half(f, X):
        return 0.5 * np.mean(np.sum(_jac(f, X) ** 2, axis=(1, 2)))

    report = check_gc_implementation(half, accept=("half",))
    assert report.passed and "accepted conventions: half" in report.verdict


def test_every_convention_key_is_documented():
    import pathlib
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "conventions.md").read_text()
    for quantity, convs in CONVENTIONS.items():
        for c in convs:
            assert f"`{c.key}`" in doc, (quantity, c.key)


def test_papyan_in_float32_agrees_to_float32_precision():
    def papyan32(Z, y, W, b):            # gcref's formulas on float32 inputs, float32 outputs
        f32 = lambda a: np.asarray(a, np.float32).astype(np.float64)   # noqa: E731
        return {k: np.float32(v) for k, v in gcref.papyan_nc(f32(Z), y, f32(W), f32(b)).items()}

    report = check_papyan_implementation(papyan32)
    assert report.verdict == "agrees to float32 precision", report.table()
    assert check_papyan_implementation(papyan32, precision="float32").passed


def test_a_constant_factor_is_not_mistaken_for_float32():
    report = check_nc_implementation(lambda Z, y: gcref.neural_collapse(Z, y) * (1 + 1e-7))
    d = report.diagnosis
    assert d.precision == "float64" and report.verdict == "not explained", report.table()
    assert d.factor == pytest.approx(1 + 1e-7, rel=1e-12)
    assert "same factor 1.0000001" in report.summary()


@settings(max_examples=10, deadline=None)
@given(c=st.floats(1.001, 1.9), which=st.sampled_from(["scale", "shift_var", "swap_labels"]))
def test_random_near_misses_are_never_credited(c, which):
    """A random slip (a factor, an added variance, two labels swapped) is never given a name."""
    def slipped(Z, y):
        y = np.asarray(y).copy()
        if which == "scale":
            return gcref.neural_collapse(Z, y) * c
        if which == "swap_labels":
            i, j = 0, int(np.flatnonzero(y != y[0])[0])
            y[i], y[j] = y[j], y[i]
            return gcref.neural_collapse(Z, y)
        st_ = gcref.class_stats(Z, y)
        return gcref.metrics.collapse.neural_collapse_from_stats(st_.means, st_.variances + (c - 1))

    report = check_nc_implementation(slipped)
    assert not report.passed
    assert not report.diagnosis.keys, report.table()
    assert report.verdict in ("not explained", "fails only where cancellation matters")


def test_float32_outputs_with_a_real_bug_are_not_said_to_agree():
    def pooled32(Z, y):
        return np.float32(nc_pooled(Z, y))

    report = check_nc_implementation(pooled32)
    assert report.diagnosis.precision == "float32" and report.verdict == "not explained"
    assert "agrees" not in report.summary() and "works in float32" in report.summary()
