"""Nearest-class-mean conformance: NCC classification, few-shot episodes, their summary, and the
NCC error bound.

=========================================  ======================================================
check                                      your function
=========================================  ======================================================
:func:`check_ncc_implementation`           ``fn(Z_train, y_train, Z_test) -> labels``
:func:`check_few_shot_implementation`      the same classifier, run on gcref's episodes
                                           (:func:`gcref.metrics.ncc.few_shot_episodes`)
:func:`check_few_shot_summary`             ``fn(accuracies) -> (mean, ci95)``
:func:`check_ncc_bound_implementation`     ``fn(means, variances, shots) -> float``
=========================================  ======================================================

Labels are compared point by point and **tie-aware**: where the user's label differs from gcref's
but its centre is exactly as near as gcref's (an exact tie, which gcref breaks towards the lowest
label), the point counts as a tie, not a failure. A tie is recognised with gcref's own rule: the
user's class is put first and :func:`gcref.metrics.ncc.ncc_predict` (first minimum wins) must
then choose it. The references are gcref's :func:`~gcref.metrics.ncc.ncc_fit` /
:func:`~gcref.metrics.ncc.ncc_predict`, :func:`~gcref.metrics.ncc.summarize_episodes` and
:func:`~gcref.metrics.bounds.ncc_error_bound`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...metrics.bounds import ncc_error_bound
from ...metrics.collapse import class_stats
from ...metrics.ncc import few_shot_episodes, ncc_fit, ncc_predict, summarize_episodes
from ..conventions import CDIST_MM_ROWS, BoundCase, NCCCase, conventions_for, float32_labels
from ..diagnosis import Evidence, gather_evidence
from ..frameworks import as_framework_input, check_framework
from .design import OFFSET, _design, _etf, _quantized
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_accept, _check_fn,
                     _check_rtol, _exception_row, _report, _to_numpy, scored_row)

__all__ = ["ncc_cases", "few_shot_cases", "summary_cases", "bound_cases", "FewShotCase",
           "tie_aware_labels", "check_ncc_implementation", "check_few_shot_implementation",
           "check_few_shot_summary", "check_ncc_bound_implementation", "run_ncc_case",
           "run_few_shot_case", "run_summary_case", "run_bound_case"]


# ------------------------------------------------------------------------------------- cases
#
# Size- and device-dependent kernels in the code users call (looked for in torch 2.13, JAX and
# NumPy; the cases are sized so that the switches that change the *formula* are on both sides):
#
# * torch.cdist (p = 2, default compute_mode "use_mm_for_euclid_dist_if_necessary") computes
#   ||x||^2 + ||y||^2 - 2 x.y with a matrix multiply when either side has more than 25 rows, and
#   differences below: easyfsl's PrototypicalNetworks runs the Gram form on a 5-way 15-query
#   episode (75 rows) only. Hence the offset cases with 30 queries / 75 queries beside those
#   with 24 and 12, and the convention cdist_mm (conventions.CDIST_MM_ROWS).
# * No other formula switch by size was found: NumPy's sum/mean (pairwise summation in blocks
#   of 128) and torch's CPU reductions (cascade sums) change only the rounding, with the size,
#   never the formula; scipy's cdist always takes differences, sklearn's euclidean_distances
#   always the Gram form (float32 upcast in blocks); jnp has no cdist.
# * Device switches, not size switches: float32 matrix multiplies and convolutions may run in
#   TF32 on NVIDIA GPUs (JAX's default matmul precision; torch.backends.cudnn.allow_tf32, on by
#   default for convolutions), about 1e-3 relative; the suite's inputs are float64 on the host,
#   so it sees them only if the user's code casts and moves them.

def _blobs(rng, labels, sizes, p, spread=1.0, scale=3.0):
    means = scale * rng.normal(size=(len(labels), p))
    Z = np.concatenate([m + spread * rng.normal(size=(n, p)) for m, n in zip(means, sizes)])
    return Z, np.repeat(np.asarray(labels), sizes)


def ncc_cases() -> list[NCCCase]:
    """Cases for NCC classification: Gaussian classes with arbitrary labels, an integer grid full
    of exact ties, classes of different norms (where cosine prototypes differ) and a ``1e8``
    offset (exact for difference-vector distances; Gram-form distances cancel)."""
    rng = np.random.default_rng(20245)
    cases = []
    Ztr, ytr = _blobs(rng, [40, -3, 4], [6, 9, 7], 4)
    perm = rng.permutation(len(ytr))
    Zte, _ = _blobs(np.random.default_rng(1), [0, 1, 2], [10, 10, 10], 4, spread=2.5)
    cases.append(NCCCase("gaussian, labels 40, -3, 4", Ztr[perm], ytr[perm], Zte,
                         note="arbitrary integer labels, shuffled"))
    Ztr = np.array([[-1.0, 0], [1, 0], [3, 0], [5, 0], [2, 3], [2, 5]])
    ytr = np.array([0, 0, 1, 1, 2, 2])                    # centres (0, 0), (4, 0), (2, 4)
    g = np.arange(-1.0, 6.0)
    Zte = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    cases.append(NCCCase("integer grid (exact ties)", Ztr, ytr, Zte,
                         note="centres (0, 0), (4, 0), (2, 4): points on x = 2 and elsewhere tie"))
    means = np.array([[0.5, 0.2, 0.0], [4.0, 1.0, 0.5], [-1.0, 3.0, 1.0]])
    Ztr = np.concatenate([m + 0.3 * rng.normal(size=(5, 3)) for m in means])
    ytr = np.repeat([1, 2, 3], 5)
    Zte = np.concatenate([m + 1.2 * rng.normal(size=(8, 3)) for m in means])
    cases.append(NCCCase("classes of different norms", Ztr, ytr, Zte,
                         note="cosine prototypes classify some points differently"))
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2]])
    Ztr, ytr = _design(mu, np.array([1.0, 0.5, 1.5]), [4, 4, 4], rng=rng, quantize=True)
    Zte = mu[rng.integers(0, 3, 24)] + 1.2 * _quantized(rng, (24, 3))
    cases.append(NCCCase("offset 1e8", Ztr + OFFSET, ytr, Zte + OFFSET, ill_conditioned=True,
                         note="exact for difference-vector distances; ||z||^2 - 2<z, mu> cancels"))
    # appended, so the cases above keep their random draws
    Ztr, ytr = _design(mu, np.array([1.0, 0.5, 1.5]), [10, 10, 10], rng=rng, quantize=True)
    Zte = mu[rng.integers(0, 3, 30)] + 1.2 * _quantized(rng, (30, 3))
    cases.append(NCCCase("offset 1e8, 30 supports and 30 queries", Ztr + OFFSET, ytr, Zte + OFFSET,
                         ill_conditioned=True, note=f"above torch.cdist's {CDIST_MM_ROWS}-row switch "
                                                    f"to its Gram-form path"))
    cases.append(_float32_grid_case())
    return cases


#: ``1e4`` and its float32 spacing ``2^-10``: the designed float32 cases sit on this grid
_GRID_BASE, _GRID_STEP = 1e4, 2.0 ** -10


def _float32_grid_case() -> NCCCase:
    """1-shot supports and queries at ``1e4`` whose labels float32 rounding alone flips (a
    support 0.3 grid steps off the float32 grid rounds onto it, and queries 0.1 steps on gcref's
    side of a bisector round to the other side), while float64 Gram-form distances keep every
    label (their rounding, ~1e-7, is below the smallest margin, 5e-7). Well-conditioned in
    float64: it tells float32 working precision from Gram-form distances."""
    support = np.array([[0.3, 0], [9, 0], [40, 3]])
    query = np.array([[4.6, 0], [4.62, 0.1], [4.58, -0.1], [0, 0], [1, 0], [8, 0], [12, 1],
                      [30, 2], [41, 3], [38.2, -1], [25, 1.4], [2, 0.2]])
    return NCCCase("float32 grid at 1e4 (1-shot)", _GRID_BASE + _GRID_STEP * support,
                   np.array([0, 1, 2]), _GRID_BASE + _GRID_STEP * query,
                   note="float32 rounding flips 3 labels; Gram-form float64 none")


@dataclass(frozen=True, eq=False)
class FewShotCase:
    """A pool of features and labels and the episode protocol drawn from it."""

    name: str
    Z: np.ndarray
    y: np.ndarray
    ways: int
    shots: int
    queries: int
    episodes: int
    seed: int = 0
    ill_conditioned: bool = False
    note: str = ""

    def episode_cases(self):
        """``(episode, NCCCase)`` for each episode of gcref's sampler on this pool."""
        out = []
        for i, e in enumerate(few_shot_episodes(self.y, self.ways, self.shots, self.queries,
                                                self.episodes, self.seed)):
            support, query = e.support_idx.reshape(-1), e.query_idx.reshape(-1)
            out.append((e, NCCCase(f"{self.name} #{i}", self.Z[support], self.y[support],
                                   self.Z[query], self.ill_conditioned)))
        return out


def few_shot_cases() -> list[FewShotCase]:
    """Pools for the few-shot check: Gaussian classes with arbitrary labels (5-way 5-shot), an
    integer grid where 1-shot centres tie exactly, and a ``1e8`` offset."""
    rng = np.random.default_rng(20246)
    labels = [70, 10, 30, 50, 20, 60, 40, 80]
    Z, y = _blobs(rng, labels, [12] * 8, 6, spread=1.5, scale=2.0)
    cases = [FewShotCase("gaussian pool, 5-way 5-shot", Z, y, 5, 5, 5, 20, seed=1,
                         note="8 classes, arbitrary labels; episodes from few_shot_episodes")]
    centres = np.array([[0, 0], [2, 0], [0, 2], [2, 2]])
    Z = np.concatenate([c + rng.integers(-1, 2, size=(10, 2)) for c in centres]).astype(np.float64)
    cases.append(FewShotCase("integer grid pool, 3-way 1-shot (ties)", Z, np.repeat(np.arange(4), 10),
                             3, 1, 4, 30, seed=2, note="integer features: exact distance ties"))
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2], [-2, 0, 1]])
    Z = np.concatenate([m + _quantized(rng, (10, 3)) for m in mu]) + OFFSET
    cases.append(FewShotCase("offset 1e8 pool, 3-way 2-shot", Z, np.repeat(np.arange(4), 10),
                             3, 2, 4, 10, seed=3, ill_conditioned=True))
    # appended, so the pools above keep their random draws
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2], [-2, 0, 1], [2, 3, 1], [-1, -2, -1]])
    Z = np.concatenate([m + _quantized(rng, (24, 3)) for m in mu]) + OFFSET
    cases.append(FewShotCase("offset 1e8 pool, 5-way 5-shot 15-query", Z, np.repeat(np.arange(6), 24),
                             5, 5, 15, 4, seed=4, ill_conditioned=True,
                             note=f"the standard episode: 75 queries, above torch.cdist's "
                                  f"{CDIST_MM_ROWS}-row switch to its Gram-form path"))
    pts = [[[0.3, 0]] * 10, [[9, 0]] * 10, [[40, 3]] * 10, [[4.6, 0]] * 5 + [[60, 1]] * 5]
    Z = _GRID_BASE + _GRID_STEP * np.concatenate([np.array(p) for p in pts])
    cases.append(FewShotCase("float32 grid pool at 1e4, 3-way 1-shot", Z, np.repeat(np.arange(4), 10),
                             3, 1, 4, 30, seed=4,
                             note="as the NCC case 'float32 grid at 1e4': float32 rounding flips "
                                  "labels in some episodes, Gram-form float64 in none"))
    return cases


def summary_cases() -> list[tuple[str, np.ndarray]]:
    """Episode accuracies for the summary check: 20 continuous values, 100 on a 1/25 grid, and
    two episodes."""
    rng = np.random.default_rng(20247)
    return [("20 episodes", rng.uniform(0.4, 0.9, 20)),
            ("100 episodes of 25 queries", rng.integers(10, 26, 100) / 25.0),
            ("2 episodes", np.array([0.6, 0.8]))]


def bound_cases() -> list[BoundCase]:
    """Cases for the NCC bound: Gaussian statistics (k = 4, m = 5), a simplex ETF (k = 5, 1 shot),
    two classes (m = 10) and an anisotropic 6-class case (m = 3)."""
    rng = np.random.default_rng(20248)
    cases = []
    Z, y = _blobs(rng, [0, 1, 2, 3], [8, 8, 8, 8], 5)
    st = class_stats(Z, y)
    cases.append(BoundCase("gaussian statistics, 4 classes, 5 shots", st.means, st.variances, 5))
    cases.append(BoundCase("simplex ETF, 5 classes, 1 shot", _etf(5, 6, radius=2.0), np.full(5, 0.05), 1,
                           note="closed form 2 C (k - 1)(1 + 1/m) NC"))
    cases.append(BoundCase("two classes, 10 shots", np.array([[0.0, 0], [3, 4]]), np.array([1.0, 2.0]), 10))
    cases.append(BoundCase("6 classes, unequal variances, 3 shots", 4 * rng.normal(size=(6, 3)),
                           rng.uniform(0.1, 3.0, 6), 3))
    return cases


# ---------------------------------------------------------------------------- tie-aware labels

def tie_aware_labels(labels, case: NCCCase):
    """Compare ``labels`` with gcref's NCC labels on ``case``, point by point.

    Returns
    -------
    reference : ndarray
        gcref's labels (lowest label among exactly tied centres).
    ties : ndarray of bool
        Points where ``labels`` differs from gcref's but names a centre exactly as near.
    wrong : ndarray of bool
        Points where ``labels`` differs and is not such a tie (a label that is no class of the
        support counts as wrong).
    """
    centres, classes = ncc_fit(case.Z_train, case.y_train)
    Z = np.asarray(case.Z_test, dtype=np.float64)
    reference = ncc_predict(centres, classes, Z)
    labels = np.asarray(labels)
    differ = labels != reference
    ties = np.zeros(len(reference), dtype=bool)
    for i in np.flatnonzero(differ):
        hit = np.flatnonzero(classes == labels[i])
        if hit.size:
            order = np.concatenate([hit, np.flatnonzero(classes != labels[i])])
            ties[i] = ncc_predict(centres[order], classes[order], Z[i:i + 1])[0] == labels[i]
    return reference, ties, differ & ~ties


def _labels_of(raw, n):
    labels = _to_numpy(raw)
    if labels.shape != (n,):
        raise ValueError(f"returned shape {labels.shape}, expected ({n},) labels")
    if not np.all(labels == np.round(labels)):
        raise ValueError("returned non-integer labels")
    return labels.astype(np.int64)


def _label_evidence(cases_and_labels, rtol):
    """Evidence over one or more NCC cases: the fraction of points wrong (ties excluded) against
    gcref, against each exact convention, and which rounding conventions fail here."""
    total = wrong = ties = 0
    conv_wrong, applies, rounding, undecided, decided = {}, set(), set(), set(), set()
    flips32 = False             # float32 rounding alone flips a label here: any label may differ
    for case, labels in cases_and_labels:
        reference, t, w = tie_aware_labels(labels, case)
        total += len(reference)
        wrong += int(w.sum())
        ties += int(t.sum())
        flips32 = flips32 or bool(tie_aware_labels(float32_labels(case), case)[2].any())
        for conv in conventions_for("ncc"):
            try:
                cl = conv.transform(case)
            except ArithmeticError:
                # rounding decides the convention's labels here: any labels are consistent with
                # it (it is named from the cases where it is decided)
                applies.add(conv.key)
                undecided.add(conv.key)
                conv_wrong.setdefault(conv.key, 0)
                continue
            decided.add(conv.key)
            _, _, off = tie_aware_labels(cl, case)
            if conv.unstable:
                if off.any():
                    rounding.add(conv.key)
                continue
            if off.any():
                applies.add(conv.key)
            conv_wrong[conv.key] = conv_wrong.get(conv.key, 0) + int(np.sum(labels != cl))
    exact = {k: conv_wrong[k] / total for k in applies}
    tol32 = 1.0 if flips32 else rtol
    undecided = tuple(sorted(undecided - decided))   # (over episodes: credited where decided)
    return Evidence(wrong / total, rtol, rtol, tol32, exact, tuple(sorted(rounding)),
                    undecided), ties, wrong, total


def _label_row(name, evidence, ties, wrong, total, accept, ill_conditioned, value, reference):
    detail = (f"{wrong} of {total} labels differ" if wrong else "") + (
        (", " if wrong else "") + f"{ties} exact ties broken differently" if ties else "")
    row = scored_row(name, value, reference, evidence, accept=accept, detail=detail,
                     ill_conditioned=ill_conditioned)
    if row.passed and ties and row.status == "agrees":
        row = CaseResult(row.case, row.value, row.reference, row.error, row.tolerance, True, detail,
                         row.matches, row.applicable, ill_conditioned, "tie", "", evidence)
    return row


# ------------------------------------------------------------------------------------ runners

def _ncc_inputs(framework, case: NCCCase):
    y = np.asarray(case.y_train, dtype=np.int64)
    if framework == "torch":
        import torch
        y = torch.tensor(y)
    elif framework == "jax":
        import jax.numpy as jnp
        y = jnp.asarray(y)
    return (as_framework_input(framework, case.Z_train), y, as_framework_input(framework, case.Z_test))


def run_ncc_case(case: NCCCase, fn, framework: str = "numpy", rtol: float = 0.0, *,
                 accept=()) -> CaseResult:
    """One NCC case: labels compared point by point, ties recognised (value: the fraction of
    labels equal to gcref's; error: the fraction wrong, ties excluded)."""
    try:
        labels = _labels_of(fn(*_ncc_inputs(framework, case)), len(case.Z_test))
    except Exception as err:  # noqa: BLE001
        return _exception_row(case.name, err, rtol, 1.0)
    ev, ties, wrong, total = _label_evidence([(case, labels)], rtol)
    reference = ncc_predict(*ncc_fit(case.Z_train, case.y_train), case.Z_test)
    return _label_row(case.name, ev, ties, wrong, total, accept, case.ill_conditioned,
                      float(np.mean(labels == reference)), 1.0)


def run_few_shot_case(case: FewShotCase, fn, framework: str = "numpy", rtol: float = 0.0, *,
                      accept=()) -> CaseResult:
    """All episodes of one pool: value and reference are the mean episode accuracies (yours and
    gcref's); the error is the fraction of query labels wrong, exact ties excluded."""
    pairs, acc, ref_acc = [], [], []
    try:
        for episode, ncase in case.episode_cases():
            labels = _labels_of(fn(*_ncc_inputs(framework, ncase)), len(ncase.Z_test))
            truth = np.repeat(episode.classes, episode.query_idx.shape[1])
            reference = ncc_predict(*ncc_fit(ncase.Z_train, ncase.y_train), ncase.Z_test)
            pairs.append((ncase, labels))
            acc.append(np.mean(labels == truth))
            ref_acc.append(np.mean(reference == truth))
    except Exception as err:  # noqa: BLE001
        return _exception_row(case.name, err, rtol)
    ev, ties, wrong, total = _label_evidence(pairs, rtol)
    row = _label_row(f"{case.name} ({case.episodes} episodes)", ev, ties, wrong, total, accept,
                     case.ill_conditioned, float(np.mean(acc)), float(np.mean(ref_acc)))
    return row


def _summary_of(out):
    if hasattr(out, "mean") and hasattr(out, "ci95") and not isinstance(out, np.ndarray):
        return float(_to_numpy(out.mean)), float(_to_numpy(out.ci95))
    mean, ci95 = out
    return float(_to_numpy(mean)), float(_to_numpy(ci95))


def run_summary_case(name, accuracies, fn, rtol: float, *, framework: str = "numpy",
                     accept=()) -> list[CaseResult]:
    """Rows ``mean`` and ``ci95`` of one accuracy vector against
    :func:`gcref.metrics.ncc.summarize_episodes`."""
    ref = summarize_episodes(accuracies, 0, 0, 0, len(accuracies))
    reference = {"mean": ref.mean, "ci95": ref.ci95}
    try:
        mean, ci95 = _summary_of(fn(as_framework_input(framework, np.array(accuracies))))
    except Exception as err:  # noqa: BLE001
        return [_exception_row(f"{name}: {k}", err, rtol, v) for k, v in reference.items()]
    rows = []
    for key, value in (("mean", mean), ("ci95", ci95)):
        ev = gather_evidence("few_shot_summary", accuracies, value, reference[key], rtol, key=key)
        rows.append(scored_row(f"{name}: {key}", value, reference[key], ev, accept=accept))
    return rows


def run_bound_case(case: BoundCase, fn, rtol: float, *, framework: str = "numpy",
                   accept=()) -> CaseResult:
    """The variance-form bound (C = 2, all classes per episode) against
    :func:`gcref.metrics.bounds.ncc_error_bound`."""
    ref = ncc_error_bound(case.means, case.variances, case.shots).value
    try:
        value = float(_to_numpy(fn(as_framework_input(framework, case.means),
                                   as_framework_input(framework, case.variances), case.shots)).reshape(()))
    except Exception as err:  # noqa: BLE001
        return _exception_row(case.name, err, rtol, ref)
    ev = gather_evidence("ncc_bound", case, value, ref, rtol)
    return scored_row(case.name, value, ref, ev, accept=accept)


# ------------------------------------------------------------------------------ public checks

def check_ncc_implementation(fn, framework: str = "numpy", *, accept=()) -> ConformanceReport:
    """Check ``fn(Z_train, y_train, Z_test) -> labels``, your nearest-class-mean classifier.

    Labels are compared point by point (any integer labels; ties tie-aware, see the module
    docstring): a case passes when every label equals gcref's or names an exactly tied centre.
    Conventions: ``cosine`` prototypes; ``gram_distances`` (a rounding pattern: fails only at the
    ``1e8`` offset).
    """
    fn, framework, accept = _check_fn(fn), check_framework(framework), _check_accept(accept)
    return _report("ncc", fn, framework, [run_ncc_case(c, fn, framework, 0.0, accept=accept)
                                         for c in ncc_cases()])


def check_few_shot_implementation(fn, framework: str = "numpy", *, accept=()) -> ConformanceReport:
    """Check your few-shot classifier ``fn(Z_support, y_support, Z_query) -> labels`` on gcref's
    episodes (:func:`gcref.metrics.ncc.few_shot_episodes`, seeded), one row per pool.

    value / reference: mean episode accuracy (yours / gcref's, the reference equal to
    :func:`gcref.metrics.ncc.few_shot_accuracy_features`); the row passes when every query label
    equals gcref's or is an exact tie broken differently (status ``tie``, with the count).
    """
    fn, framework, accept = _check_fn(fn), check_framework(framework), _check_accept(accept)
    return _report("few_shot", fn, framework, [run_few_shot_case(c, fn, framework, 0.0, accept=accept)
                                              for c in few_shot_cases()])


def check_few_shot_summary(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                           accept=()) -> ConformanceReport:
    """Check ``fn(accuracies) -> (mean, ci95)`` (or an object with ``.mean`` and ``.ci95``), your
    summary of episode accuracies, against :func:`gcref.metrics.ncc.summarize_episodes`
    (``ci95 = 1.96 std(ddof=1) / sqrt(E)``). Conventions: ``ci_ddof0``, ``ci_std_not_sem``;
    ``pooled_accuracy`` equals the mean on gcref's equal-query episodes and is never told apart.
    """
    fn, rtol, accept = _check_fn(fn), _check_rtol(rtol), _check_accept(accept)
    framework = check_framework(framework)
    rows = []
    for name, acc in summary_cases():
        rows.extend(run_summary_case(name, acc, fn, rtol, framework=framework, accept=accept))
    return _report("few_shot_summary", fn, framework, rows)


def check_ncc_bound_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                                   accept=()) -> ConformanceReport:
    """Check ``fn(means, variances, shots) -> float``, your NCC error bound in the variance form
    ``(1/k) sum_i sum_{j != i} C (2 Var_i + (Var_i + Var_j)/m) / ||mu_i - mu_j||^2`` with
    ``C = 2`` (``= 4 (k - 1)(1 + 1/m) NC``; :func:`gcref.metrics.bounds.ncc_error_bound`).
    Conventions: ``loose_constant`` (C = 4), ``no_shot_term``, ``capped``.
    """
    fn, rtol, accept = _check_fn(fn), _check_rtol(rtol), _check_accept(accept)
    framework = check_framework(framework)
    return _report("ncc_bound", fn, framework, [run_bound_case(c, fn, rtol, framework=framework,
                                                               accept=accept) for c in bound_cases()])
