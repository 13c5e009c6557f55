"""Rank-correlation statistics shared by the lab's sweep summaries and the validation scripts.

One definition of each:

- Spearman's rho (:func:`spearman_rho`): the Pearson correlation of the ranks (average ranks for
  ties), ``rho = <r_x - mean, r_y - mean> / (|r_x - mean| |r_y - mean|)``; ``nan`` when a side is
  constant.
- Its within-block form (:func:`block_spearman`), for runs made in blocks (the seeds of a sweep:
  runs of one seed share the initialization and the batch order). With ``c_b(v) = 2 rank_b(v) -
  (n_b + 1)`` the doubly-counted centred ranks of ``v`` WITHIN block ``b`` (integers, also for
  average ranks of ties),

      T = sum_b <c_b(x), c_b(y)>,   rho_w = T / sqrt(sum_b |c_b(x)|^2 * sum_b |c_b(y)|^2).

  One block: ``rho_w`` is Spearman's rho. Blocks of equal size without ties: the mean of the
  blocks' rhos. A seed effect (every run of one seed higher in both) cancels.
- Its two-sided p-value from permutations of ``y`` WITHIN each block (H0: within a block, the
  pairing of ``y`` with ``x`` is exchangeable), ``p = P0(|T*| >= |T|)``
  (:func:`block_permutation_test`):
  exact when every block has at most :data:`EXACT_MAX_N` pairs (each block's null distribution
  of ``<c_b(x), c_b(y_pi)>`` by enumerating its ``n_b!`` permutations, the blocks' integer-valued
  distributions convolved: no Monte Carlo error); otherwise Monte Carlo,
  ``p = (1 + #{|T*| >= |T|}) / (1 + B)`` over ``B`` permutations drawn from a seeded
  ``numpy.random.Generator``, ``B`` doubled (up to ``max_permutations``) while ``alpha`` lies
  within ``Z_BORDERLINE`` Monte Carlo standard errors ``sqrt(p (1 - p) / B)`` of ``p``; a test
  still there is ``borderline`` (its verdict could flip by Monte Carlo error).
  ``n = 3`` pairs in one block, ``rho = +-1``: ``p = 2/6 = 1/3`` (:func:`spearman_exact_p`).
- The detectable ``|rho|`` of a design (``detectable_rho``): the smallest ``|rho_w|`` whose
  p-value is below ``alpha``, read from the same null distribution (``None`` when no value
  reaches it: ``n = 3`` in one block has ``p >= 1/3``).
- The direction rule (:func:`direction`), the validation's verdict rule and the sweep's verdict
  lines: a direction is stated only with ``p < alpha``.
- Its asymptotic two-sided p-value (:func:`spearman_asymptotic_p`, one block): ``t = rho
  sqrt((n - 2) / (1 - rho^2))`` against Student's t with ``n - 2`` degrees of freedom (what
  ``scipy.stats.spearmanr`` reports), kept for comparison; nothing decides by it.
- A bootstrap interval (:func:`spearman_test`, :func:`bootstrap_ci`): runs resampled with
  replacement within each block, ``rho_w`` of each resample, the 2.5% and 97.5% percentiles.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from .._validation import as_generator, check_int, check_probability

__all__ = ["spearman_rho", "rowwise_spearman", "spearman_exact_p", "spearman_asymptotic_p", "spearman",
           "block_spearman", "block_permutation_test", "PermutationResult", "direction", "describe_association",
           "CorrelationTest", "spearman_test", "bootstrap_ci", "EXACT_MAX_N", "ALPHA", "Z_BORDERLINE"]

#: Largest block whose null distribution is enumerated exactly (9! = 362,880 rank vectors, a
#: fraction of a second); blocks up to this size give an exact p-value.
EXACT_MAX_N = 9
#: The verdict threshold: a direction is stated (reproduced, opposite) only with p below it.
ALPHA = 0.05
#: A Monte Carlo p-value within this many standard errors of ``alpha`` draws more permutations,
#: and is ``borderline`` if it still is at ``max_permutations``.
Z_BORDERLINE = 3.0


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
    return _rowwise_block_rho(np.asarray(X, dtype=float), np.asarray(Y, dtype=float), [np.arange(np.shape(X)[1])])


def _rowwise_block_rho(X, Y, blocks) -> np.ndarray:
    """``rho_w`` (the module's formula) of each row pair of ``X``, ``Y`` (``(B, n)``), the columns
    split into ``blocks`` (index arrays); nan where a side is constant within every block."""
    from scipy.stats import rankdata
    num = sx = sy = 0.0
    for idx in blocks:
        rx = rankdata(X[:, idx], axis=1)
        ry = rankdata(Y[:, idx], axis=1)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        num = num + np.sum(rx * ry, axis=1)
        sx = sx + np.sum(rx * rx, axis=1)
        sy = sy + np.sum(ry * ry, axis=1)
    den = np.sqrt(sx * sy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@functools.lru_cache(maxsize=EXACT_MAX_N)
def _all_permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int8).reshape(-1, n)


def _centred_ranks2(a) -> np.ndarray:
    """``2 rank(a) - (n + 1)``: twice the centred average ranks, integers."""
    return np.rint(2 * _rank(a) - (len(a) + 1)).astype(np.int64)


def _block_indices(blocks, n: int) -> list:
    if blocks is None:
        return [np.arange(n)]
    blocks = np.asarray(blocks)
    if blocks.shape != (n,):
        raise ValueError(f"blocks must give one label per pair ({n}), got shape {blocks.shape}")
    _, inverse = np.unique(blocks, return_inverse=True)
    return [np.flatnonzero(inverse == b) for b in range(inverse.max() + 1)] if n else []


@dataclass(frozen=True)
class PermutationResult:
    """:func:`block_permutation_test`'s answer (see the module docstring for the formulas)."""

    rho: float                 # rho_w (Spearman's rho for one block)
    p_value: float
    method: str                # "exact" or "permutation" (Monte Carlo)
    n: int
    blocks: int
    n_permutations: int        # 0 when exact
    mc_error: float            # sqrt(p (1 - p) / B); 0 when exact
    borderline: bool           # alpha within Z_BORDERLINE Monte Carlo errors of p
    detectable_rho: float | None


def block_spearman(x, y, blocks=None) -> float:
    """``rho_w`` of the module docstring: Spearman's rho within ``blocks`` (one label per pair;
    ``None``: one block, plain Spearman). nan when a side is constant within every block."""
    return _prepared(x, y, blocks)[0]


def _prepared(x, y, blocks):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    idx = _block_indices(blocks, x.shape[0])
    cx = [_centred_ranks2(x[i]) for i in idx]
    cy = [_centred_ranks2(y[i]) for i in idx]
    t_obs = int(sum(int(a @ b) for a, b in zip(cx, cy)))
    den = math.sqrt(float(sum(int(a @ a) for a in cx)) * float(sum(int(b @ b) for b in cy)))
    rho = t_obs / den if den > 0 else float("nan")
    return rho, t_obs, den, cx, cy, idx


def _exact_null(cx, cy):
    """The exact null distribution of ``T``: support (ints) and probabilities, the blocks'
    enumerated distributions convolved."""
    support, prob = np.zeros(1, dtype=np.int64), np.ones(1)
    for a, b in zip(cx, cy):
        vals = b[_all_permutations(a.size)] @ a if a.size > 1 else np.array([int(a @ b)], dtype=np.int64)
        u, counts = np.unique(vals, return_counts=True)
        lo = int(support[0] + u[0])
        dense = np.zeros(int(support[-1] + u[-1]) - lo + 1)
        for v, c in zip(u, counts / counts.sum()):        # few distinct values per block
            dense[support - support[0] + (v - u[0])] += prob * c
        keep = np.flatnonzero(dense)
        support, prob = keep.astype(np.int64) + lo, dense[keep]
    return support, prob


def _draw_null(cx, cy, size: int, rng) -> np.ndarray:
    """``|T*|`` of ``size`` within-block permutations of ``y`` (``rng`` draws)."""
    out = np.zeros(size, dtype=np.int64)
    for a, b in zip(cx, cy):
        if a.size > 1:
            perms = np.argsort(rng.random((size, a.size)), axis=1)
            out += b[perms] @ a
        else:
            out += int(a @ b)
    return np.abs(out)


def block_permutation_test(x, y, blocks=None, *, alpha: float = ALPHA, seed=0, n_permutations: int = 20000,
                           max_permutations: int = 1_000_000, exact_max_n: int = EXACT_MAX_N) -> PermutationResult:
    """``rho_w`` of ``(x, y)`` within ``blocks`` and its two-sided within-block permutation p-value.

    Exact when every block has at most :data:`EXACT_MAX_N` pairs; otherwise Monte Carlo with
    ``n_permutations`` draws from ``as_generator(seed)``, doubled up to ``max_permutations``
    while ``|p - alpha| < Z_BORDERLINE * sqrt(p (1 - p) / B)`` (see the module docstring).
    Values must be finite (callers drop missing pairs). ``p`` is nan when ``rho_w`` is.
    ``exact_max_n`` (at most :data:`EXACT_MAX_N`) lowers the largest block enumerated exactly
    (tests compare the Monte Carlo p-value with the exact one).
    """
    exact_max_n = check_int(exact_max_n, "exact_max_n", minimum=1, maximum=EXACT_MAX_N)
    alpha = check_probability(alpha, "alpha")
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1)
    max_permutations = check_int(max_permutations, "max_permutations", minimum=n_permutations)
    rng = as_generator(seed)
    rho, t_obs, den, cx, cy, idx = _prepared(x, y, blocks)
    n, nb = sum(i.size for i in idx), len(idx)
    if not math.isfinite(rho) or not np.all(np.isfinite(np.asarray(x, float))) \
            or not np.all(np.isfinite(np.asarray(y, float))):
        return PermutationResult(rho, float("nan"), "exact", n, nb, 0, 0.0, False, None)
    t = abs(t_obs)
    if max(i.size for i in idx) <= exact_max_n:
        support, prob = _exact_null(cx, cy)
        a = np.abs(support)
        levels = np.unique(a)                              # P0(|T*| >= v) for each attainable v
        tails = np.array([prob[a >= v].sum() for v in levels])
        p = min(1.0, float(prob[a >= t].sum()))
        ok = levels[tails < alpha]
        detect = float(ok.min()) / den if ok.size else None
        return PermutationResult(rho, float(p), "exact", n, nb, 0, 0.0, False, detect)
    null = _draw_null(cx, cy, n_permutations, rng)
    while True:
        B = null.size
        p = (1 + np.count_nonzero(null >= t)) / (1 + B)
        se = math.sqrt(p * (1 - p) / B)
        if abs(p - alpha) >= Z_BORDERLINE * se or B >= max_permutations:
            break
        null = np.concatenate([null, _draw_null(cx, cy, min(B, max_permutations - B), rng)])
    srt = np.sort(null)[::-1]
    # P-hat(v) = (1 + #{|T*| >= v}) / (1 + B) < alpha  <=>  #{|T*| >= v} < alpha (1 + B) - 1
    k = math.ceil(alpha * (1 + B) - 1) - 1          # the largest allowed count is k
    detect = None
    if k >= 1:
        v = srt[k - 1]                               # the k-th largest |T*|
        if np.count_nonzero(null >= v) > k:          # ties at v: the next value up
            above = srt[srt > v]
            v = above[-1] if above.size else None
        detect = None if v is None else float(v) / den
    return PermutationResult(rho, float(p), "permutation", n, nb, int(B), float(se),
                             bool(abs(p - alpha) < Z_BORDERLINE * se), detect)


def spearman_exact_p(x, y) -> float:
    """Exact two-sided p-value of Spearman's rho of ``n <= EXACT_MAX_N`` pairs under H0 (every
    pairing of ``y`` with ``x`` equally likely): ``#{pi : |rho(x, y_pi)| >= |rho(x, y)|} / n!``
    over all ``n!`` permutations ``pi`` (ties keep their average ranks): the one-block case of
    :func:`block_permutation_test`. ``nan`` when a side is constant or ``n < 3``."""
    rx, ry = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = rx.shape[0]
    if rx.shape != ry.shape or rx.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {rx.shape} and {ry.shape}")
    if n > EXACT_MAX_N:
        raise ValueError(f"the exact p-value enumerates n! pairings: n must be at most {EXACT_MAX_N}, got {n}")
    if n < 3:
        return float("nan")
    return block_permutation_test(rx, ry).p_value


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


def direction(rho, p, expected_sign: int, *, alpha: float = ALPHA, borderline: bool = False) -> str:
    """The direction rule: ``"expected"`` (sign ``expected_sign`` with ``p < alpha``),
    ``"opposite"`` (the other sign with ``p < alpha``), ``"borderline"`` (a Monte Carlo p-value
    within its error of ``alpha``), ``"inconclusive"`` (``p >= alpha``) or ``"undefined"`` (no
    rho). Only the first two state a direction."""
    if expected_sign not in (-1, 1):
        raise ValueError(f"expected_sign must be -1 or +1, got {expected_sign!r}")
    if rho is None or p is None or not (math.isfinite(rho) and math.isfinite(p)):
        return "undefined"
    if borderline:
        return "borderline"
    if p >= alpha or rho == 0:
        return "inconclusive"
    return "expected" if np.sign(rho) == expected_sign else "opposite"


def describe_association(result: dict, words: str, expected_sign: int, *, alpha: float = ALPHA) -> str:
    """A verdict line for a :func:`spearman` result on ``words`` (e.g. "GC and NC"): it states a
    direction only under :func:`direction`'s rule (``p < alpha``), saying whether it is the
    expected one; otherwise "no clear association at n = 6 (p = 0.92)" with the smallest
    ``|rho|`` that design could detect (``detectable_rho``)."""
    rho, p, n = result.get("rho"), result.get("pvalue"), result.get("n")
    d = direction(rho, p, expected_sign, alpha=alpha, borderline=bool(result.get("borderline")))
    if d == "undefined":
        return f"measured: {words}: no correlation ({result.get('note', 'undefined')}, n = {n})"
    within = " within seeds" if (result.get("blocks") or 1) > 1 else ""
    stat = f"Spearman rho{within} = {rho:+.2f}, p = {p:.2g}, n = {n}"
    if d in ("expected", "opposite"):
        move = "move together" if rho > 0 else "move oppositely"
        how = "as the paper expects" if d == "expected" else "against the paper's direction"
        return f"measured: {words} {move}, {how} ({stat})"
    if d == "borderline":
        return (f"measured: {words}: borderline, p = {p:.3f} +- {result.get('pvalue_mc_error', 0):.4f} "
                f"(Monte Carlo) against the threshold {alpha:g} ({stat})")
    det = result.get("detectable_rho")
    reach = (f"the smallest |rho| detectable at n = {n}: {det:.2f}" if det is not None
             else f"no |rho| reaches p < {alpha:g} at n = {n}")
    return f"measured: no clear association between {words} at n = {n} (rho = {rho:+.2f}, p = {p:.2g}; {reach})"


def _finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def spearman(x, y, blocks=None, *, seed=0) -> dict:
    """Spearman's rank correlation of paired values within ``blocks`` (e.g. each run's seed;
    ``None``: one block), ignoring pairs with a missing value.

    Returns ``{"rho", "pvalue", "pvalue_method", "n", "blocks", "detectable_rho"}`` from
    :func:`block_permutation_test` (``rho`` is ``rho_w``; with one block Spearman's rho and its
    exact p-value up to :data:`EXACT_MAX_N` pairs), plus ``pvalue_mc_error`` and ``borderline``
    for a Monte Carlo p-value. ``rho`` is ``None`` (with a ``note``) when fewer than three pairs
    remain or one side is constant.
    """
    labels = [None] * len(x) if blocks is None else list(blocks)
    if len(labels) != len(x) or len(x) != len(y):
        raise ValueError(f"x, y and blocks must have the same length, got {len(x)}, {len(y)}, {len(labels)}")
    triples = [(a, b, g) for a, b, g in zip(x, y, labels) if _finite_number(a) and _finite_number(b)]
    out = {"rho": None, "pvalue": None, "n": len(triples)}
    if len(triples) < 3:
        out["note"] = f"needs at least 3 runs with both values, has {len(triples)}"
        return out
    xs, ys, gs = zip(*triples)
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        out["note"] = "constant input"
        return out
    res = block_permutation_test(xs, ys, None if blocks is None else [str(g) for g in gs], seed=seed)
    if not math.isfinite(res.rho):
        out["note"] = "constant within every seed"
        return out
    out.update(rho=res.rho, pvalue=res.p_value, pvalue_method=res.method, blocks=res.blocks,
               detectable_rho=res.detectable_rho)
    if res.method == "permutation":
        out.update(pvalue_mc_error=res.mc_error, n_permutations=res.n_permutations, borderline=res.borderline)
    return out


@dataclass
class CorrelationTest:
    """Spearman's rho within blocks with its permutation p-value and a bootstrap 95% interval."""

    rho: float
    p_value: float
    ci95: tuple
    n: int
    n_permutations: int
    n_bootstrap: int
    method: str = "exact"
    blocks: int = 1
    mc_error: float = 0.0
    borderline: bool = False
    detectable_rho: float | None = None
    pooled_rho: float = float("nan")

    def describe(self) -> dict:
        return {"spearman_rho": self.rho, "p_value_permutation": self.p_value, "p_value_method": self.method,
                "p_value_mc_error": self.mc_error, "borderline": self.borderline,
                "ci95_bootstrap": list(self.ci95), "n": self.n, "seed_blocks": self.blocks,
                "detectable_rho": self.detectable_rho, "pooled_spearman_rho": self.pooled_rho,
                "n_permutations": self.n_permutations, "n_bootstrap": self.n_bootstrap}


def spearman_test(x, y, *, blocks=None, n_permutations: int = 20000, max_permutations: int = 1_000_000,
                  n_bootstrap: int = 2000, alpha: float = ALPHA, seed=0) -> CorrelationTest:
    """``rho_w`` of ``(x, y)`` within ``blocks`` (:func:`block_permutation_test`: exact or Monte
    Carlo p-value, ``borderline``, ``detectable_rho``), a bootstrap 95% interval and, beside them,
    the pooled Spearman rho of all pairs (``pooled_rho``, descriptive).

    Pairs with a non-finite value are dropped. The bootstrap resamples the pairs with replacement
    within each block and takes the 2.5% and 97.5% percentiles of ``rho_w``. Every random draw
    comes from ``as_generator(seed)`` (the permutations first, then the bootstrap).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    blocks = None if blocks is None else np.asarray([str(b) for b in np.asarray(blocks, dtype=object)])
    if blocks is not None and blocks.shape != ok.shape:
        raise ValueError(f"blocks must give one label per pair ({ok.size}), got {blocks.shape[0]}")
    blocks = None if blocks is None else blocks[ok]
    n = x.shape[0]
    nan2 = (float("nan"), float("nan"))
    if n < 3:
        return CorrelationTest(float("nan"), float("nan"), nan2, n, 0, 0)
    rng = as_generator(seed)
    res = block_permutation_test(x, y, blocks, alpha=alpha, seed=rng, n_permutations=n_permutations,
                                 max_permutations=max_permutations)
    if not math.isfinite(res.rho):
        return CorrelationTest(res.rho, float("nan"), nan2, n, 0, 0, blocks=res.blocks)
    idx_sets = _block_indices(blocks, n)
    cols = [s[rng.integers(0, s.size, size=(n_bootstrap, s.size))] for s in idx_sets]
    offsets = np.cumsum([0] + [c.shape[1] for c in cols])
    idx = np.concatenate(cols, axis=1)
    boots = _rowwise_block_rho(x[idx], y[idx], [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:])])
    boots = boots[np.isfinite(boots)]
    ci = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if boots.size else nan2
    return CorrelationTest(res.rho, res.p_value, ci, n, res.n_permutations, n_bootstrap, res.method, res.blocks,
                           res.mc_error, res.borderline, res.detectable_rho, spearman_rho(x, y))


def bootstrap_ci(values, stat=np.mean, n_bootstrap: int = 2000, seed=0) -> tuple:
    """Percentile bootstrap 95% interval of ``stat(values)`` (``as_generator(seed)`` draws)."""
    values = np.asarray(values, dtype=float)
    rng = as_generator(seed)
    reps = [stat(values[rng.integers(0, values.size, values.size)]) for _ in range(n_bootstrap)]
    return float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))
