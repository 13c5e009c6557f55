"""Rank-correlation statistics shared by the lab's sweep summaries and the validation scripts.

One definition of each:

- Spearman's rho (:func:`spearman_rho`): the Pearson correlation of the ranks (average ranks for
  ties), ``rho = <r_x - mean, r_y - mean> / (|r_x - mean| |r_y - mean|)``; ``nan`` when a side is
  constant.
- Its exact two-sided p-value for small samples (:func:`spearman_exact_p`, ``n <=``
  :data:`EXACT_MAX_N`): the fraction of all ``n!`` pairings of the ``y`` ranks with the ``x``
  ranks whose ``|rho|`` is at least the observed one (``n = 3``, ``rho = +-1``: ``2/6 = 1/3``).
- Its asymptotic two-sided p-value (:func:`spearman_asymptotic_p`): ``t = rho sqrt((n - 2) /
  (1 - rho^2))`` against Student's t with ``n - 2`` degrees of freedom (what
  ``scipy.stats.spearmanr`` reports). The lab's summaries (:func:`spearman`) report the exact
  p-value up to ``EXACT_MAX_N`` pairs and the asymptotic one beyond, never below ``2 / n!``
  (the smallest exact p-value of ``n`` pairs), so ``rho = +-1`` never reads as ``p = 0``.
- A permutation p-value and a bootstrap interval (:func:`spearman_test`, :func:`bootstrap_ci`),
  used where a verdict is decided (``validation/``).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["spearman_rho", "rowwise_spearman", "spearman_exact_p", "spearman_asymptotic_p", "spearman",
           "CorrelationTest", "spearman_test", "bootstrap_ci", "EXACT_MAX_N"]

#: Largest number of pairs whose Spearman p-value is computed exactly, by enumerating all
#: ``n!`` pairings (9! = 362,880 rank vectors, a fraction of a second).
EXACT_MAX_N = 9


def _rank(a):
    from scipy.stats import rankdata
    return rankdata(np.asarray(a, dtype=float))


def spearman_rho(x, y) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (average ranks for ties); nan if either side
    is constant."""
    rx, ry = _rank(x), _rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / den) if den > 0 else float("nan")


def rowwise_spearman(X, Y) -> np.ndarray:
    """Spearman's rho of each row pair of ``X`` and ``Y`` (shape ``(B, n)``); nan where constant."""
    from scipy.stats import rankdata
    rx = rankdata(X, axis=1)
    ry = rankdata(Y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt(np.sum(rx * rx, axis=1) * np.sum(ry * ry, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(rx * ry, axis=1) / np.where(den > 0, den, 1.0), np.nan)


@functools.lru_cache(maxsize=EXACT_MAX_N)
def _all_permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int8)


def _unit_centred_ranks(a) -> np.ndarray:
    r = _rank(a)
    r = r - r.mean()
    return r / np.linalg.norm(r)


def spearman_exact_p(x, y) -> float:
    """Exact two-sided p-value of Spearman's rho of ``n <= EXACT_MAX_N`` pairs under H0 (every
    pairing of ``y`` with ``x`` equally likely): ``#{pi : |rho(x, y_pi)| >= |rho(x, y)|} / n!``
    over all ``n!`` permutations ``pi`` (ties keep their average ranks). ``nan`` when a side is
    constant or ``n < 3``."""
    rx, ry = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = rx.shape[0]
    if rx.shape != ry.shape or rx.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {rx.shape} and {ry.shape}")
    if n > EXACT_MAX_N:
        raise ValueError(f"the exact p-value enumerates n! pairings: n must be at most {EXACT_MAX_N}, got {n}")
    rho = spearman_rho(rx, ry) if n >= 3 else float("nan")
    if not math.isfinite(rho):
        return float("nan")
    ux, uy = _unit_centred_ranks(rx), _unit_centred_ranks(ry)
    null = uy[_all_permutations(n)] @ ux
    return float(np.count_nonzero(np.abs(null) >= abs(rho) - 1e-12) / null.shape[0])


def spearman_asymptotic_p(rho: float, n: int) -> float:
    """Two-sided p-value of ``rho`` over ``n`` pairs from ``t = rho sqrt((n-2)/(1-rho^2))``,
    Student's t with ``n - 2`` degrees of freedom (0 when ``|rho| = 1``)."""
    from scipy.stats import t as student_t
    if n < 3 or not math.isfinite(rho):
        return float("nan")
    dof = n - 2
    with np.errstate(divide="ignore"):
        tstat = rho * math.sqrt(dof / ((rho + 1.0) * (1.0 - rho))) if abs(rho) < 1 else math.inf
    return float(2 * student_t.sf(abs(tstat), dof))


def _finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def spearman(x, y) -> dict:
    """Spearman's rank correlation of paired values, ignoring pairs with a missing value.

    Returns ``{"rho", "pvalue", "pvalue_method", "n"}``: :func:`spearman_rho` and, for at most
    :data:`EXACT_MAX_N` pairs, the exact p-value (:func:`spearman_exact_p`, method ``"exact"``),
    beyond it the asymptotic one (:func:`spearman_asymptotic_p`, method ``"asymptotic"``) but
    never below ``2 / n!``, the smallest p-value ``n`` pairs can have. ``rho`` is ``None`` (with
    a ``note``) when fewer than three pairs remain or one side is constant.
    """
    pairs = [(a, b) for a, b in zip(x, y) if _finite_number(a) and _finite_number(b)]
    out = {"rho": None, "pvalue": None, "n": len(pairs)}
    if len(pairs) < 3:
        out["note"] = f"needs at least 3 runs with both values, has {len(pairs)}"
        return out
    xs, ys = zip(*pairs)
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        out["note"] = "constant input"
        return out
    rho = spearman_rho(xs, ys)
    n = len(pairs)
    if n <= EXACT_MAX_N:
        p, out["pvalue_method"] = spearman_exact_p(xs, ys), "exact"
    else:
        p = max(spearman_asymptotic_p(rho, n), 2.0 / math.factorial(n))
        out["pvalue_method"] = "asymptotic"
    out["rho"] = rho if math.isfinite(rho) else None
    out["pvalue"] = p if math.isfinite(p) else None
    return out


@dataclass
class CorrelationTest:
    """Spearman correlation with a permutation p-value and a bootstrap 95% interval."""

    rho: float
    p_value: float
    ci95: tuple
    n: int
    n_permutations: int
    n_bootstrap: int

    def describe(self) -> dict:
        return {"spearman_rho": self.rho, "p_value_permutation": self.p_value,
                "ci95_bootstrap": list(self.ci95), "n": self.n,
                "n_permutations": self.n_permutations, "n_bootstrap": self.n_bootstrap}


def spearman_test(x, y, *, groups=None, n_permutations: int = 4000, n_bootstrap: int = 2000,
                  seed: int = 0) -> CorrelationTest:
    """Spearman's rho of ``(x, y)``, a two-sided permutation p-value and a bootstrap CI.

    Pairs with a non-finite value are dropped. The permutation test shuffles ``y`` against ``x``
    (H0: no monotone association); the p-value is ``(1 + #{|rho*| >= |rho|}) / (1 + B)``, so it
    is never 0. The bootstrap resamples the pairs, within each of ``groups`` when given (e.g.
    the seeds of each swept value, so every resample keeps the design), and reports the 2.5% and
    97.5% percentiles. Every random draw comes from ``numpy.random.default_rng(seed)``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    groups = None if groups is None else np.asarray(groups)[ok]
    n = x.shape[0]
    rho = spearman_rho(x, y) if n >= 3 else float("nan")
    if not np.isfinite(rho):
        return CorrelationTest(rho, float("nan"), (float("nan"), float("nan")), n, 0, 0)
    rng = np.random.default_rng(seed)
    rx, ry = _rank(x), _rank(y)
    rx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())
    ryc = ry - ry.mean()
    ryc = ryc / np.linalg.norm(ryc)
    perms = np.argsort(rng.random((n_permutations, n)), axis=1)
    null = ryc[perms] @ rx
    p = float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_permutations))
    if groups is None:
        idx_sets = [np.arange(n)]
    else:
        idx_sets = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    idx = np.concatenate([s[rng.integers(0, s.size, size=(n_bootstrap, s.size))] for s in idx_sets], axis=1)
    boots = rowwise_spearman(x[idx], y[idx])
    boots = boots[np.isfinite(boots)]
    ci = ((float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if boots.size
          else (float("nan"), float("nan")))
    return CorrelationTest(rho, p, ci, n, n_permutations, n_bootstrap)


def bootstrap_ci(values, stat=np.mean, n_bootstrap: int = 2000, seed: int = 0) -> tuple:
    """Percentile bootstrap 95% interval of ``stat(values)`` (``default_rng(seed)`` draws)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    reps = [stat(values[rng.integers(0, values.size, values.size)]) for _ in range(n_bootstrap)]
    return float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))
