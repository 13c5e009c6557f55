"""Poincaré constants and the GC -> NC inequality chain, from closed forms."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcref.metrics.collapse import cdnv_from_stats, geometric_collapse_from_stats
from gcref.metrics.poincare import (
    PoincareLowerBound, empirical_poincare_lower_bound, gaussian_poincare_constant,
    poincare_inequality_from_stats, product_poincare_constant, uniform_box_poincare_constant,
)


def random_cov(rng, d, scale=1.0):
    A = rng.normal(size=(d, d))
    return scale * A @ A.T / d


def test_gaussian_constant_closed_forms():
    assert gaussian_poincare_constant(np.diag([0.5, 3.0, 2.0])) == 3.0
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    cov = Q @ np.diag([1.0, 2.0, 7.5, 0.0]) @ Q.T
    assert gaussian_poincare_constant(cov) == pytest.approx(7.5, rel=1e-12)
    assert gaussian_poincare_constant(np.zeros((2, 2))) == 0.0
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_poincare_constant([[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_poincare_constant([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        gaussian_poincare_constant(np.ones((2, 3)))


def test_box_and_product_constants():
    assert uniform_box_poincare_constant([0, -1, 2], [1, 2, 2.5]) == pytest.approx(9 / np.pi ** 2)
    assert uniform_box_poincare_constant(0.0, 2.0) == pytest.approx(4 / np.pi ** 2)
    with pytest.raises(ValueError, match="high must be >= low"):
        uniform_box_poincare_constant([0, 1], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        uniform_box_poincare_constant([0, 1], [1, 2, 3])
    assert product_poincare_constant([0.3, 2.0, 1.0]) == 2.0
    box = uniform_box_poincare_constant([0, 0], [1, 3])
    assert product_poincare_constant([uniform_box_poincare_constant(0, 1),
                                      uniform_box_poincare_constant(0, 3)]) == box
    with pytest.raises(ValueError, match="non-negative"):
        product_poincare_constant([1.0, -1.0])


def test_interval_constant_attained_by_cosine():
    """u(x) = cos(pi x / L) on [0, L]: Var(u) / E u'^2 = L^2 / pi^2 exactly (the optimum)."""
    L = 2.5
    x = (np.arange(200_000) + 0.5) / 200_000 * L          # midpoint rule
    u, du = np.cos(np.pi * x / L), -np.pi / L * np.sin(np.pi * x / L)
    ratio = np.var(u) / np.mean(du ** 2)
    assert ratio == pytest.approx(uniform_box_poincare_constant(0, L), rel=1e-8)
    # A linear function is strictly below: L^2/12 < L^2/pi^2.
    assert np.var(x) / 1.0 == pytest.approx(L ** 2 / 12, rel=1e-8)


@given(st.integers(0, 10_000), st.integers(1, 5), st.integers(1, 5), st.integers(2, 5))
def test_linear_map_gaussian_classes(seed, d, p, k):
    """f(x) = A x, class c ~ N(m_c, S_c): GC_c = ||A||_F^2, Var_c = tr(A S_c A^T) <= rho_c GC_c."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, d))
    covs = [random_cov(rng, d, scale=rng.uniform(0.1, 3)) for _ in range(k)]
    means_in = 5 * rng.normal(size=(k, d))
    means = means_in @ A.T
    if np.min([np.linalg.norm(means[i] - means[j]) for i in range(k) for j in range(i)]) < 1e-6:
        return                                           # A maps two input means together
    gc = np.full(k, np.sum(A * A))
    var = np.array([np.trace(A @ S @ A.T) for S in covs])
    rho = np.array([gaussian_poincare_constant(S) for S in covs])
    rep = poincare_inequality_from_stats(var, gc, rho, means)
    assert rep.class_holds and rep.holds and rep.chain_holds
    np.testing.assert_allclose(rep.class_rhs, rho * gc, rtol=1e-14)
    np.testing.assert_allclose(rep.lhs, cdnv_from_stats(means, var), rtol=1e-14)
    np.testing.assert_allclose(rep.slack, rep.rhs - rep.lhs, rtol=1e-14)
    assert np.all(rep.slack >= -1e-12 * rep.rhs)
    assert rep.neural_collapse <= rep.rhs_mean * (1 + 1e-12)
    assert rep.rhs_mean <= rep.rho_max * rep.geometric_collapse * (1 + 1e-12)
    assert rep.geometric_collapse == pytest.approx(geometric_collapse_from_stats(means, gc))


def test_equality_for_isotropic_gaussians_and_detection_of_violation():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 4))
    sig2 = np.array([0.5, 2.0, 1.0])
    means = rng.normal(size=(3, 4)) @ A.T * 4
    gc = np.full(3, np.sum(A * A))
    var = sig2 * gc                                      # tr(A sig2 I A^T) = sig2 ||A||_F^2
    rep = poincare_inequality_from_stats(var, gc, sig2, means)
    assert rep.holds and rep.class_holds and rep.chain_holds
    np.testing.assert_allclose(rep.slack, 0.0, atol=1e-12 * rep.rhs.max())
    np.testing.assert_allclose(rep.class_slack, 0.0, atol=1e-12 * var.max())
    # A too-small rho is caught per class and per pair.
    bad = poincare_inequality_from_stats(var, gc, 0.5 * sig2, means)
    assert not bad.class_holds and not bad.holds and not bad.chain_holds
    # Scalar rho broadcasts.
    rep2 = poincare_inequality_from_stats(var, gc, 2.0, means)
    assert rep2.rho_max == 2.0 and rep2.class_holds


def test_report_errors():
    means = np.array([[0.0], [1.0]])
    with pytest.raises(ValueError, match="rho_per_class must be a scalar"):
        poincare_inequality_from_stats([1, 1], [1, 1], [1, 1, 1], means)
    with pytest.raises(ValueError, match="gc_per_class must be non-negative"):
        poincare_inequality_from_stats([1, 1], [1, -1], 1.0, means)
    with pytest.raises(ValueError, match="coincide"):
        poincare_inequality_from_stats([1, 1], [1, 1], 1.0, [[1.0], [1.0]])
    with pytest.raises(ValueError, match="variances"):
        poincare_inequality_from_stats([1, 1, 1], [1, 1], 1.0, means)


def test_empirical_lower_bound_uniform_box_is_below_constant():
    """Uniform on [0,L1]x[0,L2]: lambda_max(Cov) = L^2/12 < rho = L^2/pi^2."""
    rng = np.random.default_rng(7)
    L = np.array([1.0, 3.0])
    rho = uniform_box_poincare_constant([0, 0], L)
    values = []
    for _ in range(20):
        lb = empirical_poincare_lower_bound(rng.uniform(0, L, size=(5_000, 2)))
        assert isinstance(lb, PoincareLowerBound) and lb.n == 5_000
        assert "lower bound" in lb.note
        values.append(lb.value)
    values = np.array(values)
    assert np.all(values <= rho)
    # ... and it estimates L_max^2 / 12: sd of a variance of a uniform is ~ sqrt(0.8/n) * var.
    se = np.sqrt(0.8 / 5_000) * 9 / 12 / np.sqrt(20)
    assert abs(values.mean() - 9 / 12) < 4 * se
    assert abs(abs(lb.direction[1]) - 1) < 0.05


def test_empirical_lower_bound_gaussian_is_close_to_constant():
    rng = np.random.default_rng(8)
    cov = np.diag([1.0, 4.0, 0.5])
    rho = gaussian_poincare_constant(cov)
    vals = np.array([empirical_poincare_lower_bound(
        rng.multivariate_normal(np.zeros(3), cov, size=4_000)).value for _ in range(20)])
    se = rho * np.sqrt(2 / 4_000) / np.sqrt(20)          # sd of the top eigenvalue ~ rho sqrt(2/n)
    assert abs(vals.mean() - rho) < 4 * se + rho * 1e-3


def test_lower_bound_is_not_a_float():
    lb = empirical_poincare_lower_bound(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(TypeError):
        float(lb)
    with pytest.raises(ValueError, match="at least 2 samples"):
        empirical_poincare_lower_bound(np.ones((1, 2)))


def _linear_gaussian_report(seed, level=0.05, k=3, n=300):
    """f(x) = A x on isotropic Gaussian classes N(m_c, s^2 I), rho_c = s^2: population equality
    ``Var_c = s^2 ||A||_F^2 = rho_c GC_c`` for every class."""
    from gcref.metrics.poincare import poincare_inequality
    from gcref.nn import Network
    from gcref.nn.layers import Linear
    rng = np.random.default_rng([seed, 11])
    d, p, s2 = 4, 3, 0.7
    net = Network([("f.0", Linear(d, p))], ("head", Linear(p, k)), (d,), name="linear")
    params = net.init(0)
    params["f.0.weight"] = rng.normal(size=(p, d))
    centres = 5.0 * rng.normal(size=(k, d))
    y = np.repeat(np.arange(k), n)
    X = centres[y] + np.sqrt(s2) * rng.normal(size=(k * n, d))
    return poincare_inequality(net, params, X, y, rho=s2, level=level), params["f.0.weight"], s2


def test_per_class_verdict_at_population_equality_is_a_test_at_its_level():
    # Point comparisons of two estimates flag a violation in most samples at equality (the
    # defect this replaces); the z-test flags at most ``level`` of them (Bonferroni, one-sided).
    reports = [_linear_gaussian_report(seed)[0] for seed in range(100)]
    point_violations = sum(not bool(np.all(r.class_lhs <= r.class_rhs * (1 + r.rtol))) for r in reports)
    test_violations = sum(not r.class_holds for r in reports)
    assert point_violations > 40                       # noise alone breaks the point comparison
    assert test_violations <= 12                       # level 0.05 over 100 samples (sd ~2.2)
    rep, A, s2 = _linear_gaussian_report(0)
    # the statistic is (Var_c - rho_c GC_c) / stderr_c with GC_c = ||A||_F^2 exactly
    np.testing.assert_allclose(rep.class_rhs, s2 * np.sum(A * A), rtol=1e-12)
    np.testing.assert_allclose(rep.class_z, (rep.class_lhs - rep.class_rhs) / rep.class_stderr, rtol=1e-12)
    from scipy.stats import norm
    assert rep.z_critical == pytest.approx(norm.ppf(1 - 0.05 / 3), rel=1e-12)
    assert rep.level == 0.05 and np.all(rep.class_stderr > 0)


def test_per_class_test_detects_a_real_violation():
    # rho too small by 20 %: Var_c = 1.25 rho_c GC_c in the population, found in every class
    rep, A, s2 = _linear_gaussian_report(1)
    from gcref.metrics.poincare import poincare_inequality_from_stats
    bad = poincare_inequality_from_stats(rep.class_lhs, rep.class_rhs / s2, 0.8 * s2,
                                         np.eye(3), class_stderr=rep.class_stderr)
    assert not bad.class_holds and np.all(bad.class_z > bad.z_critical)
    # without standard errors the verdict is the point comparison; zero spread decides exactly
    exact = poincare_inequality_from_stats([1.0, 2.0], [1.0, 1.0], 2.0, np.eye(2), class_stderr=[0.0, 0.0])
    assert exact.class_holds and np.array_equal(exact.class_z, [0.0, 0.0])
    worse = poincare_inequality_from_stats([3.0, 2.0], [1.0, 1.0], 2.0, np.eye(2), class_stderr=[0.0, 0.0])
    assert not worse.class_holds and worse.class_z[0] == np.inf
    with pytest.raises(ValueError, match="level"):
        poincare_inequality_from_stats([1.0, 2.0], [1.0, 1.0], 2.0, np.eye(2), level=1.0)
    with pytest.raises(ValueError, match="class_stderr must be non-negative"):
        poincare_inequality_from_stats([1.0, 2.0], [1.0, 1.0], 2.0, np.eye(2), class_stderr=[-1.0, 0.0])


def test_empirical_lower_bound_small_sample_bias_is_downward_in_one_dimension():
    # the mean of the divisor-n sample variance is (n - 1)/n sigma^2: 0.8 sigma^2 at n = 5
    rng = np.random.default_rng(0)
    values = [empirical_poincare_lower_bound(rng.normal(size=(5, 1))).value for _ in range(20000)]
    assert np.mean(values) == pytest.approx(0.8, abs=0.02)
    assert "biased upward" not in empirical_poincare_lower_bound(rng.normal(size=(5, 1))).note
