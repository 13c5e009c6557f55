"""NCC, few-shot, few-shot summary and NCC-bound conformance: gcref passes, each convention is
named, exact ties broken differently are ties (not failures), wrong rules are not credited."""

import numpy as np
import pytest

import gcref
from gcref.metrics.ncc import few_shot_accuracy_features, ncc_fit, ncc_predict
from gcref.testing import (CONVENTIONS, check_few_shot_implementation, check_few_shot_summary,
                           check_ncc_bound_implementation, check_ncc_implementation,
                           parametrize_conformance)
from gcref.testing.conformance import few_shot_cases, ncc_cases
from gcref.testing.conformance.ncc import tie_aware_labels
from gcref.testing.conventions import implementation


def gcref_ncc(Z_train, y_train, Z_test):
    return ncc_predict(*ncc_fit(Z_train, y_train), Z_test)


def ncc_last_on_ties(Z_train, y_train, Z_test):
    """Euclidean NCC whose argmin takes the *last* of exactly tied centres."""
    Ztr, ytr, Zte = map(np.asarray, (Z_train, y_train, Z_test))
    cl = np.unique(ytr)
    mu = np.stack([Ztr[ytr == c].mean(0) for c in cl])
    d2 = ((Zte[:, None] - mu[None]) ** 2).sum(-1)
    return cl[len(cl) - 1 - np.argmin(d2[:, ::-1], axis=1)]


def ncc_random_on_near_ties(Z_train, y_train, Z_test):
    """Breaks near-ties (distances within 0.5) at random: not exact ties, so it must fail."""
    Ztr, ytr, Zte = map(np.asarray, (Z_train, y_train, Z_test))
    cl = np.unique(ytr)
    mu = np.stack([Ztr[ytr == c].mean(0) for c in cl])
    d = np.sqrt(((Zte[:, None] - mu[None]) ** 2).sum(-1))
    near = d <= d.min(1, keepdims=True) + 0.5
    rng = np.random.default_rng(0)
    return np.array([cl[rng.choice(np.flatnonzero(row))] for row in near])


def ncc_labels_as_indices(Z_train, y_train, Z_test):
    """Returns class indices 0..k-1 instead of the labels."""
    cl = np.unique(np.asarray(y_train))
    return np.searchsorted(cl, gcref_ncc(Z_train, y_train, Z_test))


def ncc_first_support_point(Z_train, y_train, Z_test):
    """Prototype = the first support example, not the mean (a 1-shot habit)."""
    Ztr, ytr, Zte = map(np.asarray, (Z_train, y_train, Z_test))
    cl = np.unique(ytr)
    proto = np.stack([Ztr[ytr == c][0] for c in cl])
    return cl[np.argmin(((Zte[:, None] - proto[None]) ** 2).sum(-1), axis=1)]


def test_gcref_passes_every_new_battery():
    for report in (check_ncc_implementation(gcref_ncc), check_few_shot_implementation(gcref_ncc),
                   check_few_shot_summary(lambda a: (np.mean(a), 1.96 * np.std(a, ddof=1) / np.sqrt(len(a)))),
                   check_ncc_bound_implementation(lambda m, v, s: gcref.ncc_error_bound(m, v, s).value)):
        assert report.passed and report.verdict == "agrees", report.table()


def test_few_shot_reference_is_gcrefs_few_shot_accuracy():
    report = check_few_shot_implementation(gcref_ncc)
    for case, row in zip(few_shot_cases(), report.rows):
        res = few_shot_accuracy_features(case.Z, case.y, case.ways, case.shots, case.queries,
                                         case.episodes, case.seed)
        assert row.reference == pytest.approx(res.mean, abs=1e-15)


def test_exact_ties_broken_differently_are_ties_not_failures():
    report = check_ncc_implementation(ncc_last_on_ties)
    assert report.passed, report.table()
    grid = next(r for r in report.rows if r.case == "integer grid (exact ties)")
    assert grid.status == "tie" and "exact ties broken differently" in grid.detail
    assert grid.value < 1.0                                   # labels do differ from gcref's ...
    few = check_few_shot_implementation(ncc_last_on_ties)
    assert few.passed, few.table()
    pool = next(r for r in few.rows if "ties" in r.case)
    assert pool.status == "tie" and pool.value != pool.reference   # ... and so does the accuracy


def test_tie_detection_is_exact():
    case = next(c for c in ncc_cases() if c.name == "integer grid (exact ties)")
    ref, ties, wrong = tie_aware_labels(ncc_last_on_ties(case.Z_train, case.y_train, case.Z_test), case)
    # centres (0,0), (4,0), (2,4): the point (2, 0) is equidistant (d^2 = 4) from the first two
    i = next(i for i, z in enumerate(case.Z_test) if tuple(z) == (2.0, 0.0))
    assert ties[i] and not wrong.any()
    shifted = case.Z_test + np.array([1e-9, 0.0])             # off the tie: no longer a tie
    from gcref.testing.conventions import NCCCase
    moved = NCCCase("moved", case.Z_train, case.y_train, shifted)
    _, ties2, wrong2 = tie_aware_labels(ncc_last_on_ties(moved.Z_train, moved.y_train, moved.Z_test), moved)
    assert not ties2[i]


@pytest.mark.parametrize("fn", [ncc_random_on_near_ties, ncc_labels_as_indices, ncc_first_support_point],
                         ids=lambda f: f.__name__)
def test_wrong_rules_fail_and_are_not_credited(fn):
    report = check_ncc_implementation(fn)
    assert not report.passed
    assert not report.diagnosis.keys, report.table()


@pytest.mark.parametrize("key", [c.key for c in CONVENTIONS["ncc"]])
def test_each_ncc_convention_is_named_on_few_shot_episodes(key):
    report = check_few_shot_implementation(implementation("ncc", key))
    assert not report.passed
    assert [c.key for c in report.diagnosis.conventions] == [key], report.table()


def test_pooled_accuracy_is_indistinguishable_on_gcrefs_episodes():
    def pooled(acc):            # correct / total with equal queries per episode
        q = 25
        correct = np.round(np.asarray(acc) * q)
        return correct.sum() / (q * len(acc)), 1.96 * np.std(acc, ddof=1) / np.sqrt(len(acc))

    assert check_few_shot_summary(implementation("few_shot_summary", "pooled_accuracy")).passed
    report = check_few_shot_summary(pooled)
    means = [r for r in report.rows if r.case.endswith("mean") and "25 queries" in r.case]
    assert means[0].passed


def test_accept_lets_a_known_convention_pass_and_the_entry_point_covers_ncc():
    report = check_ncc_bound_implementation(implementation("ncc_bound", "loose_constant"),
                                            accept=("loose_constant",))
    assert report.passed and all(r.status == "accepted" for r in report.rows)
    mark = parametrize_conformance("few_shot", gcref_ncc)
    assert len(mark.args[1]) == len(few_shot_cases())
    for check in mark.args[1]:
        check()


def test_ties_broken_by_rounding_noise_are_ties():
    """What the issue saw in a few-shot library: exact ties broken by rounding noise in the
    distances. Every disagreement is an exact tie, so the check passes and says so."""
    rng = np.random.default_rng(5)

    def noisy(Z_support, y_support, Z_query):
        cl = np.unique(y_support)
        proto = np.stack([Z_support[y_support == c].mean(0) for c in cl])
        d2 = ((Z_query[:, None] - proto[None]) ** 2).sum(-1)
        return cl[np.argmin(d2 * (1 + 1e-13 * rng.standard_normal(d2.shape)), axis=1)]

    report = check_few_shot_implementation(noisy)
    assert report.passed, report.table()
    grid = next(r for r in report.rows if "ties" in r.case)
    assert grid.status == "tie" and int(grid.detail.split()[0]) > 10
