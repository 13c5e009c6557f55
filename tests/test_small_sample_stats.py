"""Honest small-sample statistics (issue 19): the sweep and transfer summaries report the exact
Spearman p-value for small n (all n! pairings enumerated), never the asymptotic 0 of rho = +-1."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import permutation_test

from gcref import lab
from gcref.lab import stats


def _enumerated_p(x, y):
    """Independent reference: scipy's exact permutation test over all pairings."""
    def rho(yp):
        return stats.spearman_rho(x, yp)
    res = permutation_test((np.asarray(y, float),), rho, permutation_type="pairings",
                           n_resamples=np.inf, alternative="two-sided")
    return res.pvalue


@pytest.mark.parametrize("y", [[1, 2, 3], [3, 2, 1]])
def test_n3_perfect_rank_correlation_has_p_one_third(y):
    r = lab.spearman([0.1, 0.2, 0.3], y)
    assert abs(r["rho"]) == 1.0
    assert r["pvalue"] == pytest.approx(1 / 3, abs=1e-15) and r["pvalue_method"] == "exact"
    assert stats.spearman_asymptotic_p(1.0, 3) == 0.0          # what the tables used to say


def test_exact_p_by_hand_enumeration():
    # n = 4, rho = 1: only the identity and the reversal reach |rho| = 1 -> 2 / 24
    assert stats.spearman_exact_p([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1 / 12, abs=1e-15)
    # n = 4, y = (1, 3, 2, 4): rho = 0.8; count by hand over the 24 permutations
    x = np.arange(4.0)
    y = np.array([1.0, 3.0, 2.0, 4.0])
    rho = stats.spearman_rho(x, y)
    assert rho == pytest.approx(0.8)
    count = sum(abs(stats.spearman_rho(x, y[list(p)])) >= abs(rho) - 1e-12
                for p in itertools.permutations(range(4)))
    assert count == 8
    assert stats.spearman_exact_p(x, y) == pytest.approx(count / 24, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_exact_p_equals_scipys_exact_permutation_test(seed):
    rng = np.random.default_rng(seed)
    n = 5 + seed                                  # 5..8 pairs
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    if seed == 3:
        y[:3] = y[0]                              # ties: average ranks, still exact
    assert stats.spearman_exact_p(x, y) == pytest.approx(_enumerated_p(x, y), rel=1e-12)
    assert lab.spearman(list(x), list(y))["pvalue"] == stats.spearman_exact_p(x, y)


def test_beyond_the_exact_range_the_p_value_is_a_seeded_permutation_one_never_zero():
    n = stats.EXACT_MAX_N + 1
    r = lab.spearman(list(range(n)), list(range(n)))
    assert r["rho"] == 1.0 and r["pvalue_method"] == "permutation"
    # no draw of 20,000 reaches |rho| = 1 (each has probability 2 / 10!): p = 1 / (1 + B)
    assert r["n_permutations"] == 20000 and r["pvalue"] == 1 / 20001
    assert lab.spearman(list(range(n)), list(range(n))) == r              # seeded
    with pytest.raises(ValueError, match="at most 9"):
        stats.spearman_exact_p(range(n), range(n))


def test_sweep_summary_reports_the_exact_p(tmp_path):
    tiny = {"steps": 4, "eval_every": 2, "eval_size": 32, "hidden": [8], "batch_size": 8}
    s = lab.run_sweep(tiny, {"lr": [0.01, 0.05, 0.2]}, seeds=[0], out_dir=tmp_path / "s",
                      backend="sequential")
    for key, c in s["correlations"].items():
        if c["rho"] is not None:
            assert c["n"] == 3 and c["pvalue_method"] == "exact"
            assert c["pvalue"] == pytest.approx(1 / 3 if abs(c["rho"]) == 1 else 1.0, abs=1e-15), key
