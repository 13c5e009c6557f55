"""The NCC few-shot error bound: closed forms, orderings, Monte Carlo validity and tightness."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from gcref.metrics.bounds import (
    LOOSE_CONSTANT, TIGHT_CONSTANT, NCCErrorBound, ncc_error_bound, ncc_error_bound_from_stats,
    ncc_pairwise_terms,
)
from gcref.metrics.collapse import class_stats, neural_collapse_from_stats
from gcref.metrics.ncc import ncc_predict

stats_strategy = st.tuples(st.integers(0, 10_000), st.integers(2, 7), st.integers(1, 6),
                           st.integers(1, 20))


def random_stats(seed, k, p):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(k, p)) * rng.uniform(0.5, 5), rng.uniform(0, 3, size=k)


@given(stats_strategy, st.sampled_from([LOOSE_CONSTANT, TIGHT_CONSTANT, 1.0, 3.3]))
def test_variance_form_equals_closed_form(params, C):
    seed, k, p, m = params
    means, var = random_stats(seed, k, p)
    res = ncc_error_bound(means, var, m, constant=C)
    nc = neural_collapse_from_stats(means, var)
    assert res.value == pytest.approx(2 * C * (k - 1) * (1 + 1 / m) * nc, rel=1e-12)
    assert res.closed_form == pytest.approx(res.value, rel=1e-12)
    if C == LOOSE_CONSTANT:                              # the loose constant: 8 (k-1)(1+1/m) NC
        assert res.value == pytest.approx(8 * (k - 1) * (1 + 1 / m) * nc, rel=1e-12)
    if C == TIGHT_CONSTANT:
        assert res.value == pytest.approx(4 * (k - 1) * (1 + 1 / m) * nc, rel=1e-12)
    assert res.proven == (C >= 2)
    # Pairwise terms, entry by entry.
    for i in range(k):
        for j in range(k):
            d2 = np.sum((means[i] - means[j]) ** 2)
            want = 0.0 if i == j else C * (2 * var[i] + (var[i] + var[j]) / m) / d2
            assert res.pairwise[i, j] == pytest.approx(want, rel=1e-12)


@given(stats_strategy)
def test_capped_below_variance_form_and_one(params):
    seed, k, p, m = params
    means, var = random_stats(seed, k, p)
    for w in range(2, k + 1):
        v = ncc_error_bound(means, var, m, ways=w)
        c = ncc_error_bound(means, var, m, form="capped", ways=w)
        assert c.value <= min(1.0, v.value) + 1e-15
        assert c.closed_form is None and 0 <= c.value
        assert np.all(c.per_class <= 1.0)
        assert v.value == pytest.approx(
            2 * TIGHT_CONSTANT * (w - 1) * (1 + 1 / m) * neural_collapse_from_stats(means, var), rel=1e-12)


@given(stats_strategy)
def test_gc_form(params):
    seed, k, p, m = params
    means, var = random_stats(seed, k, p)
    rng = np.random.default_rng(seed)
    gc = rng.uniform(0.1, 2, size=k)
    rho = var / gc * rng.uniform(1.0, 3.0, size=k)       # any rho with Var_c <= rho_c GC_c
    g = ncc_error_bound(means, None, m, form="gc", gc_per_class=gc, rho=rho)
    v = ncc_error_bound(means, var, m)
    assert g.value >= v.value * (1 - 1e-12)              # Var <= rho GC makes it larger
    assert g.value == pytest.approx(
        2 * TIGHT_CONSTANT * (k - 1) * (1 + 1 / m) * neural_collapse_from_stats(means, rho * gc), rel=1e-12)
    cg = ncc_error_bound(means, None, m, form="capped_gc", gc_per_class=gc, rho=rho)
    assert cg.value <= min(1.0, g.value) + 1e-15
    # Scalar rho and the rho_max * G relaxation.
    gs = ncc_error_bound(means, None, m, form="gc", gc_per_class=gc, rho=float(rho.max()))
    assert gs.value >= g.value * (1 - 1e-12)


def test_from_stats_and_errors():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    Z = rng.normal(size=(30, 2)) + np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[y]
    s = class_stats(Z, y)
    a = ncc_error_bound_from_stats(s, 5, form="capped")
    b = ncc_error_bound(s.means, s.variances, 5, form="capped")
    assert isinstance(a, NCCErrorBound) and a.value == b.value
    with pytest.raises(TypeError, match="ClassStats"):
        ncc_error_bound_from_stats((s.means, s.variances), 5)
    with pytest.raises(ValueError, match="form"):
        ncc_error_bound(s.means, s.variances, 5, form="nope")
    with pytest.raises(ValueError, match="needs gc_per_class and rho"):
        ncc_error_bound(s.means, s.variances, 5, form="gc")
    with pytest.raises(ValueError, match="needs variances"):
        ncc_error_bound(s.means, None, 5)
    with pytest.raises(ValueError, match="shots"):
        ncc_error_bound(s.means, s.variances, 0)
    with pytest.raises(ValueError, match="ways"):
        ncc_error_bound(s.means, s.variances, 5, ways=4)
    with pytest.raises(ValueError, match="coincide"):
        ncc_error_bound([[1.0, 0], [1.0, 0]], [1, 1], 5)
    with pytest.raises(ValueError, match="constant"):
        ncc_pairwise_terms(s.means, s.variances, 5, constant=0.0)


# ---------------------------------------------------------------------------- Monte Carlo

def simulate_gaussian_ncc(rng, means, sigmas, shots, queries, episodes, ways=None):
    """Episode errors of the NCC with fresh N(mu_c, sigma_c^2 I) shots and queries."""
    k, p = means.shape
    ways = k if ways is None else ways
    errors = np.empty(episodes)
    for e in range(episodes):
        cls = np.sort(rng.choice(k, ways, replace=False))
        mu, sg = means[cls], sigmas[cls]
        support = mu[:, None, :] + sg[:, None, None] * rng.normal(size=(ways, shots, p))
        query = mu[:, None, :] + sg[:, None, None] * rng.normal(size=(ways, queries, p))
        pred = ncc_predict(support.mean(axis=1), np.arange(ways), query.reshape(-1, p))
        errors[e] = np.mean(pred != np.repeat(np.arange(ways), queries))
    return errors


@pytest.mark.parametrize("separation", [1.5, 2.5, 4.0])
@pytest.mark.parametrize("shots", [1, 5])
def test_monte_carlo_gaussian_error_below_all_forms(separation, shots):
    rng = np.random.default_rng(int(10 * separation) + shots)
    k, p = 4, 6
    means = separation * rng.normal(size=(k, p))
    sigmas = rng.uniform(0.5, 1.0, size=k)
    var = p * sigmas ** 2
    errors = simulate_gaussian_ncc(rng, means, sigmas, shots, 10, 1500)
    measured, se = errors.mean(), errors.std(ddof=1) / np.sqrt(errors.size)
    rho = sigmas ** 2                                     # Gaussian inputs, f = identity
    gc = np.full(k, float(p))                             # ||I_p||_F^2
    for form, kw in [("variance", {}), ("capped", {}),
                     ("gc", dict(gc_per_class=gc, rho=rho)),
                     ("capped_gc", dict(gc_per_class=gc, rho=rho))]:
        for C in (TIGHT_CONSTANT, LOOSE_CONSTANT):
            bound = ncc_error_bound(means, var, shots, form=form, constant=C, **kw).value
            assert measured - 3 * se <= bound, (form, C, measured, bound)


def test_monte_carlo_random_ways_subsets():
    rng = np.random.default_rng(21)
    k, p, ways, shots = 8, 5, 3, 2
    means = 2.5 * rng.normal(size=(k, p))
    sigmas = rng.uniform(0.4, 1.2, size=k)
    errors = simulate_gaussian_ncc(rng, means, sigmas, shots, 8, 3000, ways=ways)
    measured, se = errors.mean(), errors.std(ddof=1) / np.sqrt(errors.size)
    var = p * sigmas ** 2
    for form in ("variance", "capped"):
        bound = ncc_error_bound(means, var, shots, form=form, constant=TIGHT_CONSTANT,
                                ways=ways).value
        assert measured - 3 * se <= bound, (form, measured, bound)


# ---------------------------------------------------------------------------- tightness

def two_point_example(eps, delta, m):
    """Docs/theory.md Prop. 3: class 0 two-point on the line, class 1 a point mass at 1.

    Returns the exact expected error (binomial sum), the means and variances.
    """
    a = 0.5 + delta
    var0 = eps * a * a / (1 - eps)
    B = np.arange(m + 1)
    centre0 = a * (B - m * eps) / (m * (1 - eps))
    err = 0.5 * eps * binom.pmf(B, m, eps)[a - centre0 > 1 - a].sum()
    return err, np.array([[0.0], [1.0]]), np.array([var0, 0.0])


@pytest.mark.parametrize("eps,delta,m", [(0.01, 0.01, 5000), (0.01, 0.001, 1000),
                                         (0.05, 0.05, 20), (0.1, 0.01, 5), (0.3, 0.1, 3),
                                         (0.2, 0.0, 1)])
def test_constant_two_holds_on_near_extremal_laws(eps, delta, m):
    err, means, var = two_point_example(eps, delta, m)
    assert err <= ncc_error_bound(means, var, m, constant=TIGHT_CONSTANT).value
    assert err <= ncc_error_bound(means, var, m, form="capped", constant=TIGHT_CONSTANT).value


def test_constant_two_is_nearly_attained_and_cannot_be_lowered():
    err, means, var = two_point_example(0.01, 0.01, 5000)
    tight = ncc_error_bound(means, var, 5000, constant=TIGHT_CONSTANT)
    assert err / tight.value > 0.95
    assert err > ncc_error_bound(means, var, 5000, constant=1.8).value   # C = 1.8 is violated


def test_two_point_exact_error_matches_simulation():
    """Cross-check the binomial formula with the library's NCC on sampled episodes."""
    eps, delta, m = 0.2, 0.05, 4
    err, _, _ = two_point_example(eps, delta, m)
    rng = np.random.default_rng(0)
    a, h = 0.5 + delta, -eps * (0.5 + delta) / (1 - eps)
    E, q = 20_000, 1
    shots0 = np.where(rng.random((E, m)) < eps, a, h).mean(axis=1)
    queries0 = np.where(rng.random(E) < eps, a, h)
    centres = np.stack([shots0, np.ones(E)], axis=1)
    wrong0 = np.array([ncc_predict(centres[e][:, None], [0, 1], [[queries0[e]]])[0] != 0
                       for e in range(E)])
    wrong1 = np.zeros(E)                                  # class-1 queries are always right
    errors = (wrong0 + wrong1) / 2
    se = errors.std(ddof=1) / np.sqrt(E * q)
    assert abs(errors.mean() - err) < 4 * se


def sample_contaminated(rng, means, i, size, eps, R, sigma):
    """Class i: N(mu_i, sigma^2 I) w.p. 1-eps, else mu_i +- R u_ij towards a random other j."""
    k, p = means.shape
    out = means[i] + sigma * rng.normal(size=(size, p))
    outlier = rng.random(size) < eps
    others = np.array([j for j in range(k) if j != i])
    u = means[others[rng.integers(0, k - 1, size)]] - means[i]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sign = rng.choice([-1.0, 1.0], size)
    out[outlier] = (means[i] + sign[:, None] * R * u)[outlier]
    return out


def test_monte_carlo_contaminated_classes_bound_is_informative():
    """Outliers past the midpoint make real errors; the bound must hold and not be vacuous."""
    rng = np.random.default_rng(13)
    eps, R, sigma, m, q, E = 0.05, 0.55, 0.02, 10, 10, 2000
    means = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0.5, np.sqrt(3) / 2, 0, 0]], float)
    k, p = means.shape
    var = np.full(k, (1 - eps) * sigma ** 2 * p + eps * R ** 2)     # exact class variances
    errors = np.empty(E)
    for e in range(E):
        centres = np.stack([sample_contaminated(rng, means, c, m, eps, R, sigma).mean(axis=0)
                            for c in range(k)])
        queries = np.concatenate([sample_contaminated(rng, means, c, q, eps, R, sigma)
                                  for c in range(k)])
        pred = ncc_predict(centres, np.arange(k), queries)
        errors[e] = np.mean(pred != np.repeat(np.arange(k), q))
    measured, se = errors.mean(), errors.std(ddof=1) / np.sqrt(E)
    for form in ("variance", "capped"):
        bound = ncc_error_bound(means, var, m, form=form, constant=TIGHT_CONSTANT).value
        assert measured - 3 * se <= bound < 1.0
        assert measured >= 0.1 * bound                   # within a factor 10 (about 6 here)
