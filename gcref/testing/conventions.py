"""Known conventions in which published code differs from gcref, each as one small transform.

Every entry says what another codebase computes *instead of* gcref's quantity, as a function of a
conformance case (:mod:`gcref.testing.conformance`) built from gcref's own functions: the reference
value changed by a factor, or the reference formula fed a changed ingredient. The list is written
once and used twice: by the diagnosis (which convention a disagreeing value matches) and by the
tests (an implementation written in each convention must fail and be named).

``docs/conventions.md`` has the same list with sources; the keys below are the names the reports
print.

Quantities
----------
``"gc"``: ``GC(f, D) = (1/|D|) sum_x ||J_f(x)||_F^2`` of the embedding ``f``.
``"cdnv"``: the ``(k, k)`` matrix ``V_ij = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``.
``"nc"``: NC, the mean of ``V_ij`` over ordered pairs ``i != j``.
``"papyan"``: Papyan et al.'s NC1-NC4 (a dict, see :func:`gcref.metrics.papyan_nc`).
``"ncc"``: nearest-class-mean labels (:func:`gcref.metrics.ncc.ncc_predict`); the few-shot check
uses them episode by episode.
``"few_shot_summary"``: mean and 95% half-width of episode accuracies
(:func:`gcref.metrics.ncc.summarize_episodes`).
``"ncc_bound"``: the variance-form NCC error bound (:func:`gcref.metrics.bounds.ncc_error_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..metrics.collapse import class_stats, off_diagonal_mean, pairwise_ratio


@dataclass(frozen=True, eq=False)
class FeatureCase:
    """Features ``Z`` (n, p), labels ``y`` (n,) and optionally a head ``W`` (K, p), ``b`` (K,).

    ``raises``: the right answer is an error (coinciding means). ``ill_conditioned``: the features
    carry a large offset (``1e8``) that cancels in a one-pass variance.
    """

    name: str
    Z: np.ndarray
    y: np.ndarray
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    raises: bool = False
    ill_conditioned: bool = False
    note: str = ""

    @property
    def conditioning(self) -> float:
        """``kappa``, see :func:`feature_conditioning` (1 for a case that must raise)."""
        return 1.0 if self.raises else feature_conditioning(self.Z, self.y)


def feature_conditioning(Z, y) -> float:
    """Condition number ``kappa = max |z| / min(min_c sqrt(Var_c), min_{i != j} ||mu_i - mu_j||)``
    of features ``Z`` with labels ``y`` (at least 1).

    Rounding the features at relative precision ``eps`` moves class means by about
    ``eps max|z|``, which is relative error ``eps kappa`` on the smallest spread or mean distance
    that CDNV, NC and Papyan's measures divide by; :mod:`gcref.testing.diagnosis` scales its
    tolerances by it.
    """
    st = class_stats(Z, y)
    diff = st.means[:, None, :] - st.means[None, :, :]
    d = np.sqrt(np.sum(diff * diff, axis=-1))[~np.eye(len(st.classes), dtype=bool)]
    spreads = np.sqrt(st.variances)
    small = min([x for x in (spreads.min(), d.min() if d.size else 0.0) if x > 0] or [1.0])
    return max(1.0, float(np.max(np.abs(Z))) / small)

__all__ = ["FeatureCase", "Convention", "CONVENTIONS", "conventions_for", "pairs_for", "convention",
           "implementation", "feature_conditioning", "NONFINITE_KEY", "nc4_points", "NCCCase",
           "BoundCase", "CDIST_MM_ROWS", "float32_labels"]


@dataclass(frozen=True)
class Convention:
    """One known way of computing a quantity differently from gcref.

    Attributes
    ----------
    key : str
        Short name, printed by the reports (e.g. ``"ddof1"``).
    quantity : str
        ``"gc"``, ``"cdnv"``, ``"nc"`` or ``"papyan"``.
    title : str
        What the convention computes, in words.
    source : str
        Where it is found in published code (empty when it is a common slip, not a codebase).
    transform : callable
        ``transform(case) -> value`` computed with gcref's own functions: a float (``gc``, ``nc``),
        a ``(k, k)`` matrix (``cdnv``) or a dict of the Papyan keys it changes (``papyan``).
        For ``"gc"`` it receives the case's reference ingredients (see :class:`GCIngredients`).
    unstable : bool
        The convention differs from gcref only by rounding (a cancellation), so its value cannot be
        matched digit for digit: it is diagnosed when an implementation fails exactly the cases
        this transform fails (the suite has cases where one cancellation shows and another does
        not; :mod:`gcref.testing.diagnosis`).
    """

    key: str
    quantity: str
    title: str
    source: str
    transform: Callable
    unstable: bool = False

    def value(self, case):
        return self.transform(case)

    def describe(self) -> str:
        return f"{self.key}: {self.title}" + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class GCIngredients:
    """What the GC conventions transform: per-example ``||J_f(x)||_F^2`` of the function the user
    was given, its output and input sizes ``p`` and ``d``, and (when the case has a head) the GC
    of the logits ``F = h o f``."""

    per_example: np.ndarray
    p: int
    d: int
    gc_logits: float | None = None


# ------------------------------------------------------------------------------------- GC

def _gc(reduce):
    return lambda ing: float(reduce(ing))


def _logits(ing):
    return None if ing.gc_logits is None else float(ing.gc_logits)


_GC = [
    Convention("half", "gc", "GC/2: (1/2) mean_x ||J(x)||_F^2",
               "facebookresearch/jacobian_regularizer JacobianReg",
               _gc(lambda g: g.per_example.mean() / 2.0)),
    Convention("sum_examples", "gc", "sum over examples instead of the mean",
               "", _gc(lambda g: g.per_example.sum())),
    Convention("norm_not_squared", "gc", "mean_x ||J(x)||_F, the norm not squared",
               "", _gc(lambda g: np.sqrt(g.per_example).mean())),
    Convention("mean_outputs", "gc", "||J||_F^2 / p: averaged over the p output features",
               "", _gc(lambda g: g.per_example.mean() / g.p)),
    Convention("mean_inputs", "gc", "||J||_F^2 / d: averaged over the d input coordinates (pixels)",
               "", _gc(lambda g: g.per_example.mean() / g.d)),
    Convention("mean_entries", "gc", "mean of J^2 over all p*d entries (torch.mean(J**2))",
               "", _gc(lambda g: g.per_example.mean() / (g.p * g.d))),
    Convention("logits", "gc", "GC of the logits h(f(x)) instead of the embedding f(x)",
               "Dherin et al. 2022 measure the logits", _logits),
]


# ----------------------------------------------------------------------------- CDNV and NC

def _sq_dists(means):
    diff = means[:, None, :] - means[None, :, :]
    return np.sum(diff * diff, axis=-1)


def _ratio(case, variances=None, distance=None):
    """gcref's pairwise ratio with a changed variance vector and/or distance transform.

    ``distance(R, d2, p, st)`` maps the reference ratio ``R = (v_i + v_j)/(2 d2)`` to the
    convention's (``d2`` the squared distances of the means, ``p`` the feature dimension, ``st``
    the class statistics); ``variances(stats, Z, y)`` changes the variances fed to
    :func:`gcref.metrics.collapse.pairwise_ratio`.
    """
    st = class_stats(case.Z, case.y)
    v = st.variances if variances is None else variances(st, case.Z, case.y)
    R = pairwise_ratio(st.means, v)
    if distance is not None:
        d2 = _sq_dists(st.means)
        off = ~np.eye(len(v), dtype=bool)
        R = np.where(off, distance(R, np.where(off, d2, 1.0), np.shape(case.Z)[1], st), 0.0)
    return R


def _one_pass_variances(st, Z, y):
    # E||z||^2 - ||mu||^2 with the class mean taken in the same (single) pass over the data
    out = np.empty(len(st.classes))
    for c, label in enumerate(st.classes):
        Zc = Z[np.asarray(y) == label]
        out[c] = np.sum(np.mean(Zc * Zc, axis=0) - np.mean(Zc, axis=0) ** 2)
    return out


def _gram_distance(R, d2, p, st):
    # ||mu_i||^2 + ||mu_j||^2 - 2 <mu_i, mu_j>: cancels when the means are close relative to their norm
    sq = np.sum(st.means * st.means, axis=1)
    gram = sq[:, None] + sq[None, :] - 2.0 * st.means @ st.means.T
    off = ~np.eye(len(sq), dtype=bool)
    if np.any(gram[off] <= 0.0):
        raise ArithmeticError("Gram-form distances are not positive")
    return R * d2 / np.where(off, gram, 1.0)


# (key, title, source, slot, function, unstable): a slot is what the convention changes
# ("variances" or "distance" of the pairwise ratio); two conventions in different slots compose.
_CDNV_TRANSFORMS = [
    ("ddof1", "variance divisor n_c - 1 instead of n_c (torch.var / unbiased=True)", "",
     "variances", lambda st, Z, y: st.variances * st.counts / (st.counts - 1.0), False),
    ("per_dim_variance", "per-dimension variance (mean over the p dims) with the total squared distance",
     "", "variances", lambda st, Z, y: st.variances / Z.shape[1], False),
    ("per_dim_distance", "squared distance averaged over the p dims with the total variance", "",
     "distance", lambda R, d2, p, st: R * p, False),
    ("std_not_variance", "class standard deviation sqrt(Var_c) instead of the variance", "",
     "variances", lambda st, Z, y: np.sqrt(st.variances), False),
    ("distance_not_squared", "distance ||mu_i - mu_j|| not squared in the denominator", "",
     "distance", lambda R, d2, p, st: R * np.sqrt(d2), False),
    ("no_half", "(Var_i + Var_j) / ||mu_i - mu_j||^2 without the factor 1/2", "",
     "distance", lambda R, d2, p, st: 2.0 * R, False),
    ("distance_4th_power", "distance to the 4th power: (Var_i + Var_j) / (2 ||mu_i - mu_j||^4)",
     "rhubarbwu/neural-collapse variability_cdnv(dist_exp=2)",
     "distance", lambda R, d2, p, st: R / d2, False),
    ("one_pass", "one-pass variance E||z||^2 - ||mu||^2 (cancels at large feature offsets)",
     "Galanti et al.'s NeuralCollapseDepth code", "variances", _one_pass_variances, True),
    ("gram_distances", "Gram-form distances ||mu_i||^2 + ||mu_j||^2 - 2 <mu_i, mu_j> (cancel for "
     "means close relative to their norm)", "", "distance", _gram_distance, True),
]


def _k(case):
    return len(np.unique(case.y))


def _reference_cdnv(case):
    return _ratio(case)


# NC aggregates of the CDNV matrix R (slot "aggregate"); gcref's is off_diagonal_mean.
_NC_AGGREGATES = [
    ("sum_pairs", "sum over ordered pairs i != j instead of the mean", "",
     lambda R, k: off_diagonal_mean(R) * k * (k - 1)),
    ("sum_unordered_pairs", "sum over unordered pairs i < j instead of the mean", "",
     lambda R, k: off_diagonal_mean(R) * k * (k - 1) / 2),
    ("mean_with_diagonal", "mean over all k^2 entries, the zero diagonal included "
     "(np.mean of the CDNV matrix)", "", lambda R, k: float(np.mean(R))),
    ("unordered_sum_ordered_count", "sum over unordered pairs i < j divided by the "
     "number of ordered pairs k(k-1)", "", lambda R, k: off_diagonal_mean(R) / 2.0),
]


def _composed(quantity, parts):
    """The transform of the conventions ``parts`` (``{slot: function}``) applied together."""
    kw = {s: f for s, f in parts.items() if s in ("variances", "distance")}
    agg = parts.get("aggregate")

    def transform(case):
        R = _ratio(case, **kw)
        if quantity == "cdnv":
            return R
        return off_diagonal_mean(R) if agg is None else agg(R, _k(case))
    return transform


def _feature_conventions(quantity):
    """The single conventions for ``"cdnv"`` or ``"nc"``, each with its ``(slot, function)``."""
    out = [(Convention(key, quantity, title, source, _composed(quantity, {slot: fn}), unstable), slot, fn)
           for key, title, source, slot, fn, unstable in _CDNV_TRANSFORMS]
    if quantity == "nc":
        out += [(Convention(key, "nc", title, source, _composed("nc", {"aggregate": fn})), "aggregate", fn)
                for key, title, source, fn in _NC_AGGREGATES]
    return out


def _feature_pairs(quantity):
    """Two exact conventions changing different slots, applied together (``"ddof1+no_half"``)."""
    singles = [t for t in _feature_conventions(quantity) if not t[0].unstable]
    pairs = []
    for i, (a, sa, fa) in enumerate(singles):
        for b, sb, fb in singles[i + 1:]:
            if sa == sb:
                continue
            pairs.append(Convention(f"{a.key}+{b.key}", quantity, f"{a.title}; and {b.title}",
                                    "", _composed(quantity, {sa: fa, sb: fb})))
    return pairs


def _nonfinite(quantity, reference):
    """inf where gcref raises (coinciding class means), gcref's value elsewhere."""
    def transform(case):
        try:
            return reference(case)
        except ValueError:
            if quantity == "papyan":
                return {k: math.inf for k in ("NC1", "NC2_equinorm", "NC2_equiangle",
                                              "NC2_maxangle", "NC3", "NC4")}
            if quantity == "cdnv":
                k = _k(case)
                return np.where(np.eye(k, dtype=bool), 0.0, math.inf)
            return math.inf
    return Convention(NONFINITE_KEY, quantity, "inf or nan returned where gcref raises "
                      "(coinciding class means); accept it with accept=('" + NONFINITE_KEY + "',)",
                      "", transform)


NONFINITE_KEY = "nonfinite_instead_of_raise"
_CDNV = [t[0] for t in _feature_conventions("cdnv")] + [_nonfinite("cdnv", lambda c: _ratio(c))]
_NC = [t[0] for t in _feature_conventions("nc")] + [
    _nonfinite("nc", lambda c: off_diagonal_mean(_ratio(c)))]


# ------------------------------------------------------------------------------------- Papyan

def _papyan(case):
    from ..metrics.collapse import papyan_nc
    return papyan_nc(case.Z, case.y, case.W, case.b)


def _trace_ratio(case):
    st = class_stats(case.Z, case.y)
    n = np.shape(case.Z)[0]
    tr_w = float(np.sum(st.variances * st.counts) / n)          # tr(Sigma_W), sample-weighted
    M = st.means - st.means.mean(axis=0)
    tr_b = float(np.sum(M * M) / len(st.classes))                # tr(Sigma_B)
    return {"NC1": tr_w / tr_b}


def _ddof1_nc2(case):
    ref = _papyan(case)
    k = _k(case)
    pairs = k * (k - 1) // 2
    out = {"NC2_equinorm": ref["NC2_equinorm"] * math.sqrt(k / (k - 1))}
    if pairs > 1:
        out["NC2_equiangle"] = ref["NC2_equiangle"] * math.sqrt(pairs / (pairs - 1))
    return out


def nc4_points(case, bias: bool = True) -> np.ndarray:
    """Per point, ``argmax_c (W z + b)_c != argmin_c ||z - mu_c||`` (NCC of
    :func:`gcref.metrics.ncc.ncc_predict`, lowest index on ties), as floats 0/1; the mean is
    gcref's NC4 (:func:`gcref.metrics.collapse.papyan_nc`). ``bias=False`` ignores the head's bias."""
    from ..metrics.ncc import ncc_predict
    st = class_stats(case.Z, case.y)
    Z = np.asarray(case.Z, dtype=np.float64)
    logits = Z @ np.asarray(case.W, dtype=np.float64).T
    if bias and case.b is not None:
        logits = logits + case.b
    return (np.argmax(logits, axis=1) != ncc_predict(st.means, st.classes, Z)).astype(np.float64)


def _nc4(case, bias: bool, agreement: bool):
    flags = nc4_points(case, bias)
    flags = 1.0 - flags if agreement else flags
    return {"NC4": float(np.mean(flags)), "NC4_points": flags}


_PAPYAN = [
    Convention("nc1_without_1_over_k", "papyan", "NC1 as tr(Sigma_W Sigma_B^+) without the 1/k",
               "Papyan et al.'s public code (the plotted Sw_invSb)",
               lambda case: {"NC1": _papyan(case)["NC1"] * _k(case)}),
    Convention("nc1_trace_ratio", "papyan", "NC1 as tr(Sigma_W) / tr(Sigma_B)",
               "rhubarbwu/neural-collapse (Hui et al. 2022, Tirer et al. 2023)", _trace_ratio),
    Convention("nc2_ddof1", "papyan", "NC2 standard deviations with ddof = 1 (torch.std)",
               "Papyan et al.'s public code", _ddof1_nc2),
    Convention("nc3_not_squared", "papyan", "NC3 as the Frobenius distance, not squared", "",
               lambda case: {"NC3": math.sqrt(_papyan(case)["NC3"])}),
    Convention("nc4_agreement_no_bias", "papyan", "NC4 as the agreement rate 1 - mismatch, with "
               "argmax(W z) ignoring the head's bias", "rhubarbwu/neural-collapse",
               lambda case: _nc4(case, bias=False, agreement=True)),
    Convention("nc4_no_bias", "papyan", "NC4 mismatch with argmax(W z), the head's bias ignored", "",
               lambda case: _nc4(case, bias=False, agreement=False)),
    Convention("nc4_agreement", "papyan", "NC4 as the agreement rate 1 - mismatch", "",
               lambda case: _nc4(case, bias=True, agreement=True)),
    _nonfinite("papyan", lambda case: {} if _papyan(case) else {}),
]


# --------------------------------------------------------------------- NCC, few-shot, bound

@dataclass(frozen=True, eq=False)
class NCCCase:
    """Support (training) features and labels, and the features to classify."""

    name: str
    Z_train: np.ndarray
    y_train: np.ndarray
    Z_test: np.ndarray
    ill_conditioned: bool = False
    note: str = ""


#: ``torch.cdist`` (p = 2, default ``compute_mode="use_mm_for_euclid_dist_if_necessary"``) takes
#: its matrix-multiply (Gram-form) path when either side has more than this many rows.
CDIST_MM_ROWS = 25


def _ncc_labels(case, normalise=False, gram=False, raw_means=False, rounded=None, strict=True):
    """Nearest-centre labels of ``case.Z_test`` (gcref's :func:`gcref.metrics.ncc.ncc_fit` centres);
    ``normalise``: features and centres L2-normalised first (cosine prototypes), or with
    ``raw_means`` the centres are the means of the raw features, normalised afterwards
    (SimpleShot); ``gram``: squared distances in the Gram form ``||z||^2 + ||mu||^2 - 2 <z, mu>``
    (argmin, first on ties), or ``"cdist"`` for that form only where ``torch.cdist`` uses it
    (:data:`CDIST_MM_ROWS`); ``rounded``: the features rounded to that dtype first (a correct
    difference-form rule computed in reduced precision, exact after the rounding on designed
    cases). Cosine labels that rounding decides raise ``ArithmeticError`` unless not ``strict``."""
    from ..metrics.ncc import ncc_fit, ncc_predict
    Ztr, Zte = np.asarray(case.Z_train, dtype=np.float64), np.asarray(case.Z_test, dtype=np.float64)
    if rounded is not None:
        Ztr, Zte = Ztr.astype(rounded).astype(np.float64), Zte.astype(rounded).astype(np.float64)
    unit = (lambda A: A / np.where((n := np.linalg.norm(A, axis=1, keepdims=True)) == 0.0, 1.0, n))
    if normalise:                                 # (a zero vector stays zero)
        Zte = unit(Zte)
        if not raw_means:
            Ztr = unit(Ztr)
    centres, classes = ncc_fit(Ztr, case.y_train)
    if normalise:
        centres = unit(centres)
    if gram == "cdist":
        gram = max(len(Zte), len(centres)) > CDIST_MM_ROWS
    if gram:
        d2 = (np.sum(Zte * Zte, axis=1)[:, None] + np.sum(centres * centres, axis=1)[None, :]
              - 2.0 * Zte @ centres.T)
        return classes[np.argmin(d2, axis=1)]
    labels = ncc_predict(centres, classes, Zte)
    if strict and normalise and np.any(classes[np.argmax(Zte @ centres.T, axis=1)] != labels):
        # the nearest unit centre and the largest cosine (how published code writes it) differ:
        # rounding decides these labels, so no implementation can be matched label for label
        raise ArithmeticError("cosine labels are decided by rounding on this case")
    return labels


def float32_labels(case) -> np.ndarray:
    """What a correct NCC computed in float32 gives on ``case`` (its features rounded to float32):
    where these differ from gcref's labels, float32 rounding alone flips labels."""
    return _ncc_labels(case, rounded=np.float32)


_NCC = [
    Convention("cosine", "ncc", "cosine prototypes: features and class means L2-normalised before "
               "the nearest-centre rule", "common few-shot code (e.g. cosine classifiers)",
               lambda case: _ncc_labels(case, normalise=True)),
    Convention("gram_distances", "ncc", "Gram-form distances ||z||^2 + ||mu||^2 - 2 <z, mu> "
               "(cancels at large feature offsets)", "sklearn euclidean_distances",
               lambda case: _ncc_labels(case, gram=True), unstable=True),
    Convention("cosine_raw_means", "ncc", "cosine prototypes from the raw features: class means "
               "of the unnormalised features, then normalised, against normalised queries",
               "easyfsl SimpleShot", lambda case: _ncc_labels(case, normalise=True, raw_means=True)),
    Convention("cdist_mm", "ncc", f"torch.cdist's default compute mode: Gram-form distances (a "
               f"matrix multiply) when the queries or centres number more than {CDIST_MM_ROWS}, "
               f"differences otherwise; cancels at large feature offsets",
               "easyfsl PrototypicalNetworks", lambda case: _ncc_labels(case, gram="cdist"),
               unstable=True),
]


def _summary(case, ddof=1, per_sqrt=True):
    acc = np.asarray(case, dtype=np.float64)
    s = np.std(acc, ddof=ddof)
    return {"mean": float(np.mean(acc)), "ci95": float(1.96 * s / (np.sqrt(acc.size) if per_sqrt else 1.0))}


_FEW_SHOT_SUMMARY = [
    Convention("ci_ddof0", "few_shot_summary", "confidence half-width with np.std (ddof = 0), "
               "smaller by sqrt((E - 1)/E)", "much few-shot code", lambda acc: _summary(acc, ddof=0)),
    Convention("ci_std_not_sem", "few_shot_summary", "1.96 times the standard deviation of the "
               "episode accuracies, not of their mean (no 1/sqrt(E))", "",
               lambda acc: _summary(acc, per_sqrt=False)),
    Convention("pooled_accuracy", "few_shot_summary", "accuracy pooled over all queries (correct / "
               "total); identical to the mean of episode accuracies on gcref's episodes (equal "
               "queries per episode), so it can never be told apart", "easyfsl",
               lambda acc: _summary(acc)),
]


@dataclass(frozen=True, eq=False)
class BoundCase:
    """Class means ``(k, p)``, total variances ``(k,)`` and the shots ``m`` of an NCC bound case."""

    name: str
    means: np.ndarray
    variances: np.ndarray
    shots: int
    note: str = ""


def _bound(case, **kw):
    from ..metrics.bounds import ncc_error_bound
    return ncc_error_bound(case.means, case.variances, case.shots, **kw)


_NCC_BOUND = [
    Convention("loose_constant", "ncc_bound", "pairwise constant C = 4 (the norm-based argument) "
               "instead of 2", "gcref.metrics.bounds.LOOSE_CONSTANT",
               lambda case: _bound(case, constant=4.0).value),
    Convention("no_shot_term", "ncc_bound", "without the centres' error: 2 C (k - 1) NC, the factor "
               "(1 + 1/m) left out", "", lambda case: _bound(case).value / (1.0 + 1.0 / case.shots)),
    Convention("capped", "ncc_bound", "the capped form mean_i min(1, sum_j min(1, b_ij))", "",
               lambda case: _bound(case, form="capped").value),
]


CONVENTIONS: dict[str, tuple[Convention, ...]] = {
    "gc": tuple(_GC), "cdnv": tuple(_CDNV), "nc": tuple(_NC), "papyan": tuple(_PAPYAN),
    "ncc": tuple(_NCC), "few_shot_summary": tuple(_FEW_SHOT_SUMMARY), "ncc_bound": tuple(_NCC_BOUND),
}
_PAIRS: dict[str, tuple[Convention, ...]] = {}


def _distinct_pairs(quantity):
    """The pairs whose values differ from gcref's and from every single convention's on a probe
    case (unequal classes, k = 4): pairs that collapse algebraically (per-dim variance with
    per-dim distance is gcref's ratio; no_half with sum_unordered_pairs is sum_pairs) are left
    out, so a pair is named only when it is the simplest explanation."""
    rng = np.random.default_rng(0)
    sizes = np.array([3, 5, 4, 6])
    probe = FeatureCase("probe", np.concatenate([rng.normal(3 * rng.normal(size=3), s, (m, 3))
                                                 for m, s in zip(sizes, (0.5, 1.0, 1.5, 2.0))]),
                        np.repeat(np.arange(4), sizes))
    seen = [np.asarray(_composed(quantity, {})(probe))] + [
        np.asarray(c.transform(probe)) for c in CONVENTIONS[quantity] if not c.unstable]
    out = []
    for pair in _feature_pairs(quantity):
        v = np.asarray(pair.transform(probe))
        if not any(np.allclose(v, w, rtol=1e-12, atol=0.0) for w in seen):
            out.append(pair)
    return tuple(out)


def pairs_for(quantity: str) -> tuple[Convention, ...]:
    """Pairs of exact conventions for ``quantity`` applied together, key ``"a+b"``: for CDNV and
    NC two that change different parts of the formula (variances, distance, aggregate); for GC,
    GC/2 with each other normalisation. Empty for Papyan (a Papyan convention changes its own
    keys, so two are named apart) and the NCC quantities."""
    conventions_for(quantity)
    if quantity not in ("cdnv", "nc", "gc"):
        return ()
    if quantity not in _PAIRS:
        _PAIRS[quantity] = _gc_pairs() if quantity == "gc" else _distinct_pairs(quantity)
    return _PAIRS[quantity]


def _gc_pairs():
    """GC/2 (JacobianReg's normalisation) together with each other GC convention."""
    half = next(c for c in _GC if c.key == "half")

    def halved(conv):
        def transform(ing):
            v = conv.transform(ing)
            return None if v is None else 0.5 * v
        return transform
    return tuple(Convention(f"half+{c.key}", "gc", f"{half.title}; and {c.title}", "", halved(c))
                 for c in _GC if c.key != "half")


def conventions_for(quantity: str) -> tuple[Convention, ...]:
    """The conventions known for ``quantity`` (``"gc"``, ``"cdnv"``, ``"nc"``, ``"papyan"``)."""
    if quantity not in CONVENTIONS:
        raise ValueError(f"quantity must be one of {sorted(CONVENTIONS)}, got {quantity!r}")
    return CONVENTIONS[quantity]


def convention(quantity: str, key: str) -> Convention:
    """The convention named ``key`` for ``quantity`` (a pair as ``"a+b"``)."""
    for c in conventions_for(quantity) + pairs_for(quantity):
        if c.key == key:
            return c
    keys = ", ".join(c.key for c in conventions_for(quantity))
    raise ValueError(f"key: no convention {key!r} for {quantity!r}; known: {keys}")


def implementation(quantity: str, key: str):
    """A deliberately different implementation of ``quantity`` in convention ``key``, with the
    signature the conformance suite expects: ``fn(Z, y)`` for cdnv and nc, ``fn(Z, y, W, b)`` for
    papyan (the keys the convention does not change are gcref's), ``fn(Z_train, y_train, Z_test)``
    for ncc (and the few-shot check), ``fn(accuracies) -> (mean, ci95)`` for few_shot_summary,
    ``fn(means, variances, shots)`` for ncc_bound. For tests and demonstrations.

    GC conventions are transforms of Jacobians, which a user's implementation computes in its own
    framework; see ``tests/test_conformance.py`` for implementations written that way.
    """
    conv = convention(quantity, key)
    if quantity == "gc":
        raise ValueError("quantity: GC conventions transform Jacobians; write the implementation in "
                         "your framework and apply the convention's transform to GCIngredients")
    if quantity == "papyan":
        def fn(Z, y, W=None, b=None):
            case = FeatureCase("input", np.asarray(Z), np.asarray(y), W, b)
            changed = conv.transform(case)          # raises where gcref does, unless it is the
            if key == NONFINITE_KEY:               # convention that returns inf instead
                try:
                    return {**_papyan(case), **changed}
                except ValueError:
                    return changed
            return {**_papyan(case), **changed}
    elif quantity == "ncc":
        def fn(Z_train, y_train, Z_test):
            case = NCCCase("input", Z_train, y_train, Z_test)
            try:
                return conv.transform(case)
            except ArithmeticError:          # cosine labels decided by rounding: any will do
                return _ncc_labels(case, normalise=True, raw_means=key == "cosine_raw_means",
                                   strict=False)
    elif quantity == "few_shot_summary":
        def fn(accuracies):
            out = conv.transform(accuracies)
            return out["mean"], out["ci95"]
    elif quantity == "ncc_bound":
        def fn(means, variances, shots):
            return conv.transform(BoundCase("input", np.asarray(means), np.asarray(variances), shots))
    else:
        def fn(Z, y):
            return conv.transform(FeatureCase("input", np.asarray(Z), np.asarray(y)))
    fn.__name__ = fn.__qualname__ = f"{quantity}_{key}"
    return fn
