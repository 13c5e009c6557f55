"""Values of class statistics, CDNV / NC, geometric collapse and Papyan's NC1-NC4."""

import numpy as np
import pytest

import gcref
from hypothesis import given, settings
from hypothesis import strategies as st

from gcref.metrics.collapse import (
    ClassStats, cdnv, cdnv_from_stats, class_stats, geometric_collapse_from_stats,
    geometric_collapse_pairs, neural_collapse, neural_collapse_from_stats, off_diagonal_mean,
    pairwise_ratio, papyan_nc,
)


def random_problem(seed, k, p, counts, spread=1.0):
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.normal(size=(k, p))
    y = np.repeat(np.arange(k), counts)
    Z = means[y] + spread * rng.normal(size=(y.size, p)) * rng.uniform(0.2, 2.0, size=k)[y, None]
    perm = rng.permutation(y.size)
    return Z[perm], y[perm]


problems = st.tuples(
    st.integers(0, 2**31 - 1),                 # seed
    st.integers(2, 6),                         # k
    st.integers(1, 7),                         # p
).flatmap(lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.just(t[2]),
                              st.lists(st.integers(2, 30), min_size=t[1], max_size=t[1])))


def naive_stats(Z, y):
    """Independent computation: per-dimension np.var summed, np.mean per class."""
    classes = sorted(set(y.tolist()))
    means = np.array([[np.mean(Z[y == c][:, d]) for d in range(Z.shape[1])] for c in classes])
    var = np.array([sum(np.var(Z[y == c][:, d]) for d in range(Z.shape[1])) for c in classes])
    return np.array(classes), means, var


def symmetric_cloud(mu, s):
    """Points mu +- s e_l: mean exactly mu, total variance exactly s^2."""
    p = mu.size
    E = s * np.eye(p)
    return np.concatenate([mu + E, mu - E])


def test_cdnv_two_classes_exact_design():
    mu1, mu2 = np.array([0.0, 0.0, 0.0]), np.array([3.0, 4.0, 0.0])
    Z = np.concatenate([symmetric_cloud(mu1, 0.5), symmetric_cloud(mu2, 2.0)])
    y = np.repeat([0, 1], 6)
    V = cdnv(Z, y)
    expected = (0.5 ** 2 + 2.0 ** 2) / (2 * 25.0)
    np.testing.assert_allclose(V, [[0, expected], [expected, 0]], rtol=1e-14, atol=0)
    assert neural_collapse(Z, y) == pytest.approx(expected, rel=1e-14)


def test_cdnv_two_gaussians_monte_carlo():
    rng = np.random.default_rng(1)
    p, n = 4, 200_000
    s1, s2, delta = 0.7, 1.3, np.array([2.0, -1.0, 0.5, 0.0])
    Z = np.concatenate([s1 * rng.normal(size=(n, p)), delta + s2 * rng.normal(size=(n, p))])
    y = np.repeat([0, 1], n)
    expected = (p * s1 ** 2 + p * s2 ** 2) / (2 * delta @ delta)
    # Var_c estimates have relative sd sqrt(2/(n p)); the means' error is O(1/sqrt(n)).
    assert cdnv(Z, y)[0, 1] == pytest.approx(expected, rel=5 * np.sqrt(2 / (n * p)) + 1e-3)


@given(problems)
def test_class_stats_matches_naive(problem):
    seed, k, p, counts = problem
    Z, y = random_problem(seed, k, p, counts)
    stats = class_stats(Z, y)
    classes, means, var = naive_stats(Z, y)
    np.testing.assert_array_equal(stats.classes, classes)
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_allclose(stats.means, means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.variances, var, rtol=1e-12)
    assert isinstance(stats, ClassStats) and stats.num_classes == k and stats.dim == p
    with pytest.raises(ValueError):
        stats.means[0, 0] = 1.0                          # frozen, read-only arrays


@given(problems)
def test_cdnv_matches_direct_formula_and_pair_averages(problem):
    seed, k, p, counts = problem
    Z, y = random_problem(seed, k, p, counts)
    _, means, var = naive_stats(Z, y)
    V = cdnv(Z, y)
    for i in range(k):
        assert V[i, i] == 0.0
        for j in range(k):
            if i != j:
                d = means[i] - means[j]
                assert V[i, j] == pytest.approx((var[i] + var[j]) / (2 * d @ d), rel=1e-10)
    ordered = np.mean([V[i, j] for i in range(k) for j in range(k) if i != j])
    unordered = np.mean([V[i, j] for i in range(k) for j in range(i + 1, k)])
    assert neural_collapse(Z, y) == pytest.approx(ordered, rel=1e-12)
    assert neural_collapse(Z, y) == pytest.approx(unordered, rel=1e-12)
    assert neural_collapse_from_stats(means, var) == pytest.approx(ordered, rel=1e-10)


@given(problems, st.floats(-100, 100), st.floats(0.01, 100))
def test_cdnv_invariant_to_shift_scale_rotation(problem, shift, scale):
    seed, k, p, counts = problem
    Z, y = random_problem(seed, k, p, counts)
    rng = np.random.default_rng(seed + 1)
    Q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    b = shift * rng.normal(size=p)
    V = cdnv(Z, y)
    np.testing.assert_allclose(cdnv(scale * Z @ Q.T + b, y), V, rtol=1e-8, atol=0)


def test_label_order_and_values_do_not_matter():
    Z, y = random_problem(3, 3, 2, [5, 6, 7])
    relabel = np.array([10, -4, 7])[y]                   # sorted order: -4, 7, 10 -> 1, 2, 0
    V = cdnv(Z, y)
    V2 = cdnv(Z, relabel)
    perm = [1, 2, 0]
    np.testing.assert_allclose(V2, V[np.ix_(perm, perm)], rtol=1e-14)
    np.testing.assert_array_equal(class_stats(Z, relabel).classes, [-4, 7, 10])


def test_two_pass_with_huge_offset():
    rng = np.random.default_rng(5)
    Z, y = random_problem(5, 3, 4, [50, 60, 70])
    big = Z + 1e8
    s0, s1 = class_stats(Z, y), class_stats(big, y)
    # Quantisation of 1e8 + z in float64 is 7.5e-9; variances are O(1).
    np.testing.assert_allclose(s1.variances, s0.variances, rtol=1e-6)
    np.testing.assert_allclose(cdnv(big, y), cdnv(Z, y), rtol=1e-6)
    # The one-pass formula E||f||^2 - ||mu||^2 is hopeless here (documents why two-pass).
    one_pass = np.mean(np.sum(big[y == 0] ** 2, axis=1)) - np.sum(big[y == 0].mean(0) ** 2)
    assert abs(one_pass - s0.variances[0]) > 1e-3 * s0.variances[0]
    del rng


def test_geometric_collapse_formula():
    means = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    gc = np.array([1.0, 2.0, 3.0])
    G = geometric_collapse_pairs(means, gc)
    assert G[0, 1] == pytest.approx(3.0 / 50.0, rel=1e-15)
    assert G[0, 2] == pytest.approx(4.0 / 2.0, rel=1e-15)
    assert G[1, 2] == pytest.approx(5.0 / (2 * 18.0), rel=1e-15)
    assert geometric_collapse_from_stats(means, gc) == pytest.approx(
        (3 / 50 + 2 + 5 / 36) / 3, rel=1e-14)
    np.testing.assert_array_equal(pairwise_ratio(means, gc), G)
    np.testing.assert_array_equal(cdnv_from_stats(means, gc), G)


def test_off_diagonal_mean():
    R = np.arange(9.0).reshape(3, 3)
    assert off_diagonal_mean(R) == pytest.approx((1 + 2 + 3 + 5 + 6 + 7) / 6)
    with pytest.raises(ValueError, match="square"):
        off_diagonal_mean(np.ones((2, 3)))


# ---------------------------------------------------------------------------- errors

def test_errors_one_class():
    Z = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        cdnv(Z, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="at least 2 classes"):
        neural_collapse(Z, np.zeros(5, dtype=int))


def test_errors_singleton_class():
    Z = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="class 7 has 1 example"):
        cdnv(Z, [0, 0, 0, 0, 7])


def test_errors_coinciding_means():
    Z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    with pytest.raises(ValueError, match="coincide"):
        cdnv(Z, [0, 0, 1, 1])
    # Separated by 1e-13 of their size: below float64's meaningful resolution.
    means = np.array([[1e3, 0.0], [1e3 + 1e-10, 0.0]])
    with pytest.raises(ValueError, match="coincide"):
        pairwise_ratio(means, [1.0, 1.0])
    # ... while a 1e8 offset with unit separation is fine.
    assert np.isfinite(pairwise_ratio(means + np.array([1e8, 0]) + [[0, 0], [1, 0]],
                                      [1.0, 1.0])).all()


def test_errors_labels_and_features():
    Z = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(TypeError, match="y"):
        cdnv(Z, [0, 0, 1.5, 1.5])
    bad = Z.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="Z contains"):
        cdnv(bad, [0, 0, 1, 1])
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="Z contains"):
        neural_collapse(bad, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="y has 3 labels"):
        cdnv(Z, [0, 0, 1])
    with pytest.raises(ValueError, match="variances must be non-negative"):
        cdnv_from_stats([[0.0], [1.0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="variances"):
        cdnv_from_stats([[0.0], [1.0]], [1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------- Papyan

def simplex_etf(k):
    """Columns: the k vertices of a simplex ETF in R^k (unit norm, cos = -1/(k-1))."""
    return np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_papyan_on_simplex_etf(k):
    M = simplex_etf(k)                                   # (p=k, k)
    rng = np.random.default_rng(k)
    counts = rng.integers(2, 6, size=k)
    y = np.repeat(np.arange(k), counts)
    Z = 5.0 * M.T[y]                                     # perfectly collapsed on the ETF
    out = papyan_nc(Z, y, W=M.T, b=np.zeros(k))
    for key in ("NC1", "NC2_equinorm", "NC2_equiangle", "NC2_maxangle", "NC3", "NC4",
                "NC2_W_equinorm", "NC2_W_equiangle", "NC2_W_maxangle"):
        assert abs(out[key]) < 1e-12, (key, out[key])
    # Offset features (global mean not at 0) and a scaled W change nothing.
    out2 = papyan_nc(Z + 7.0, y, W=3.0 * M.T, b=-3.0 * M.T @ np.full(k, 7.0))
    assert out2["NC3"] < 1e-12 and out2["NC4"] == 0.0 and out2["NC1"] < 1e-12


def test_papyan_nc1_direct_formula():
    Z, y = random_problem(11, 4, 6, [10, 20, 30, 15])
    stats = class_stats(Z, y)
    N, k = Z.shape[0], 4
    muG = stats.means.mean(axis=0)
    Sw = sum(np.outer(z - stats.means[np.searchsorted(stats.classes, c)],
                      z - stats.means[np.searchsorted(stats.classes, c)])
             for z, c in zip(Z, y)) / N
    Sb = sum(np.outer(mu - muG, mu - muG) for mu in stats.means) / k
    expected = np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10)) / k
    out = papyan_nc(Z, y)
    assert out["NC1"] == pytest.approx(expected, rel=1e-9)
    assert "NC3" not in out and "NC4" not in out
    # NC2 direct
    Mc = stats.means - muG
    norms = np.linalg.norm(Mc, axis=1)
    assert out["NC2_equinorm"] == pytest.approx(np.std(norms) / np.mean(norms), rel=1e-12)
    cos = [Mc[i] @ Mc[j] / (norms[i] * norms[j]) for i in range(k) for j in range(i + 1, k)]
    assert out["NC2_equiangle"] == pytest.approx(np.std(cos), rel=1e-10)
    assert out["NC2_maxangle"] == pytest.approx(np.mean(np.abs(np.array(cos) + 1 / (k - 1))),
                                                rel=1e-10)


def test_papyan_nc1_zero_when_collapsed_and_sigma_w_weighting():
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    y = np.repeat([0, 1, 2], [3, 5, 2])
    assert papyan_nc(means[y], y)["NC1"] == 0.0
    # Sample-weighted Sigma_W: only class 1 spreads, along x; NC1 = (n_1/N) s^2 * (e_x^T Sb^+ e_x)/k
    Z = means[y].copy()
    Z[3:8, 0] += np.array([1.0, -1.0, 1.0, -1.0, 0.0])   # class 1: Var along x = 4/5
    Sw = np.zeros((2, 2))
    Sw[0, 0] = (5 / 10) * (4 / 5)
    muG = means.mean(axis=0)
    Sb = (means - muG).T @ (means - muG) / 3
    assert papyan_nc(Z, y)["NC1"] == pytest.approx(np.trace(Sw @ np.linalg.inv(Sb)) / 3, rel=1e-12)


def test_papyan_nc4_counts_bias():
    means = np.array([[-1.0, 0.0], [1.0, 0.0]])
    y = np.repeat([0, 1], 4)
    Z = means[y] + np.array([[0, 0.1], [0, -0.1], [0.1, 0], [-0.1, 0]] * 2)
    W = np.array([[-1.0, 0.0], [1.0, 0.0]])
    assert papyan_nc(Z, y, W=W)["NC4"] == 0.0
    # A bias of +5 on class 1 makes the network predict 1 everywhere: half disagree.
    assert papyan_nc(Z, y, W=W, b=[0.0, 5.0])["NC4"] == 0.5


def test_papyan_errors():
    Z, y = random_problem(2, 3, 4, [5, 5, 5])
    with pytest.raises(ValueError, match="W must have shape"):
        papyan_nc(Z, y, W=np.ones((3, 5)))
    with pytest.raises(ValueError, match="rows of W"):
        papyan_nc(Z, y, W=np.ones((2, 4)))
    with pytest.raises(ValueError, match="b was given without W"):
        papyan_nc(Z, y, b=np.zeros(3))
    with pytest.raises(ValueError, match="b must have shape"):
        papyan_nc(Z, y, W=np.ones((3, 4)), b=np.zeros(2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        papyan_nc(Z, np.zeros(15, dtype=int))


@settings(max_examples=10)
@given(problems)
def test_papyan_nc3_nc4_ranges(problem):
    seed, k, p, counts = problem
    Z, y = random_problem(seed, k, p, counts)
    rng = np.random.default_rng(seed)
    out = papyan_nc(Z, y, W=rng.normal(size=(k + 1, p)), b=rng.normal(size=k + 1))
    assert 0.0 <= out["NC3"] <= 4.0 + 1e-12            # ||a - b||^2 with ||a|| = ||b|| = 1
    assert 0.0 <= out["NC4"] <= 1.0
    assert out["NC1"] >= 0.0


@pytest.mark.parametrize("offset,gap", [(1e8, 1e-2), (1e12, 0.1)])
def test_large_common_offset_costs_no_digits(offset, gap):
    # Features on a grid that survives adding the offset exactly (multiples of 2^-10 below
    # 2^-10 * 2^12): NC, CDNV, geometric collapse and Papyan's NC1-NC3 are shift invariant, so
    # they must equal their values on the small features to rounding. On raw class means an
    # offset of 1e8 cost 1e-6 relative and 1e12 made the means "coincide".
    rng = np.random.default_rng(0)
    k, n_c, p = 3, 10, 4
    centres = gap * np.arange(k)[:, None] * np.ones((1, p))
    Z = np.repeat(centres, n_c, axis=0) + 0.1 * gap * rng.normal(size=(k * n_c, p))
    Z = np.round(Z * 1024) / 1024 if offset > 1e10 else np.round(Z * 2 ** 20) / 2 ** 20
    y = np.repeat(np.arange(k), n_c)
    Zo = Z + offset
    np.testing.assert_array_equal(Zo - offset, Z)        # the offset is exact on this grid
    assert gcref.neural_collapse(Zo, y) == pytest.approx(gcref.neural_collapse(Z, y), rel=1e-12)
    np.testing.assert_allclose(gcref.cdnv(Zo, y), gcref.cdnv(Z, y), rtol=1e-12)
    a, b = papyan_nc(Zo, y), papyan_nc(Z, y)
    for key in ("NC1", "NC2_equinorm", "NC2_equiangle", "NC2_maxangle"):
        assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-12), key
    from gcref.metrics.collapse import centred, geometric_collapse_from_stats
    gc = np.array([1.0, 2.0, 3.0])
    sa, sb = gcref.class_stats(centred(Zo), y), gcref.class_stats(centred(Z), y)
    assert geometric_collapse_from_stats(sa.means, gc) == pytest.approx(
        geometric_collapse_from_stats(sb.means, gc), rel=1e-12)


def test_centred_is_exact_and_keeps_raw_class_means():
    from gcref.metrics.collapse import centred
    Z = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    np.testing.assert_array_equal(centred(Z), [[-2.0, -4.0], [0.0, 0.0], [2.0, 4.0]])
    # class_stats itself is unchanged: raw means
    np.testing.assert_array_equal(gcref.class_stats(Z[[0, 1, 1, 2]], [0, 0, 1, 1]).means, [[2.0, 4.0], [4.0, 8.0]])
