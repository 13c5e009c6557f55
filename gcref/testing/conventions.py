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

__all__ = ["FeatureCase", "Convention", "CONVENTIONS", "conventions_for", "convention", "implementation"]


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
        marked ill-conditioned (a large feature offset) and this transform fails them too.
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

    ``distance(R, d2, p)`` maps the reference ratio ``R = (v_i + v_j)/(2 d2)`` to the
    convention's (``d2`` the squared distances of the means, ``p`` the feature dimension);
    ``variances(stats, Z, y)`` changes the variances fed to
    :func:`gcref.metrics.collapse.pairwise_ratio`.
    """
    st = class_stats(case.Z, case.y)
    v = st.variances if variances is None else variances(st, case.Z, case.y)
    R = pairwise_ratio(st.means, v)
    if distance is not None:
        d2 = _sq_dists(st.means)
        off = ~np.eye(len(v), dtype=bool)
        R = np.where(off, distance(R, np.where(off, d2, 1.0), np.shape(case.Z)[1]), 0.0)
    return R


def _one_pass_variances(st, Z, y):
    # E||z||^2 - ||mu||^2 with the class mean taken in the same (single) pass over the data
    out = np.empty(len(st.classes))
    for c, label in enumerate(st.classes):
        Zc = Z[np.asarray(y) == label]
        out[c] = np.sum(np.mean(Zc * Zc, axis=0) - np.mean(Zc, axis=0) ** 2)
    return out


_CDNV_TRANSFORMS = [
    ("ddof1", "variance divisor n_c - 1 instead of n_c (torch.var / unbiased=True)", "",
     dict(variances=lambda st, Z, y: st.variances * st.counts / (st.counts - 1.0)), False),
    ("per_dim_variance", "per-dimension variance (mean over the p dims) with the total squared distance",
     "", dict(variances=lambda st, Z, y: st.variances / Z.shape[1]), False),
    ("per_dim_distance", "squared distance averaged over the p dims with the total variance", "",
     dict(distance=lambda R, d2, p: R * p), False),
    ("std_not_variance", "class standard deviation sqrt(Var_c) instead of the variance", "",
     dict(variances=lambda st, Z, y: np.sqrt(st.variances)), False),
    ("distance_not_squared", "distance ||mu_i - mu_j|| not squared in the denominator", "",
     dict(distance=lambda R, d2, p: R * np.sqrt(d2)), False),
    ("no_half", "(Var_i + Var_j) / ||mu_i - mu_j||^2 without the factor 1/2", "",
     dict(distance=lambda R, d2, p: 2.0 * R), False),
    ("distance_4th_power", "distance to the 4th power: (Var_i + Var_j) / (2 ||mu_i - mu_j||^4)",
     "rhubarbwu/neural-collapse variability_cdnv(dist_exp=2)",
     dict(distance=lambda R, d2, p: R / d2), False),
    ("one_pass", "one-pass variance E||z||^2 - ||mu||^2 (cancels at large feature offsets)",
     "Galanti et al.'s NeuralCollapseDepth code", dict(variances=_one_pass_variances), True),
]


def _cdnv_convention(key, title, source, kw, unstable):
    return Convention(key, "cdnv", title, source, lambda case: _ratio(case, **kw), unstable)


_CDNV = [_cdnv_convention(*t) for t in _CDNV_TRANSFORMS]


def _k(case):
    return len(np.unique(case.y))


def _reference_cdnv(case):
    return _ratio(case)


_NC = [Convention(c.key, "nc", c.title, c.source,
                  (lambda case, c=c: off_diagonal_mean(c.transform(case))), c.unstable) for c in _CDNV]
_NC += [
    Convention("sum_pairs", "nc", "sum over ordered pairs i != j instead of the mean", "",
               lambda case: off_diagonal_mean(_reference_cdnv(case)) * _k(case) * (_k(case) - 1)),
    Convention("sum_unordered_pairs", "nc", "sum over unordered pairs i < j instead of the mean", "",
               lambda case: off_diagonal_mean(_reference_cdnv(case)) * _k(case) * (_k(case) - 1) / 2),
    Convention("mean_with_diagonal", "nc", "mean over all k^2 entries, the zero diagonal included "
               "(np.mean of the CDNV matrix)", "",
               lambda case: float(np.mean(_reference_cdnv(case)))),
    Convention("unordered_sum_ordered_count", "nc", "sum over unordered pairs i < j divided by the "
               "number of ordered pairs k(k-1)", "",
               lambda case: off_diagonal_mean(_reference_cdnv(case)) / 2.0),
]


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


def _nc4(case, bias: bool, agreement: bool):
    st = class_stats(case.Z, case.y)
    Z = np.asarray(case.Z, dtype=np.float64)
    logits = Z @ np.asarray(case.W, dtype=np.float64).T
    if bias and case.b is not None:
        logits = logits + case.b
    dist2 = np.stack([np.sum((Z - m) ** 2, axis=1) for m in st.means], axis=1)
    mismatch = float(np.mean(np.argmax(logits, axis=1) != st.classes[np.argmin(dist2, axis=1)]))
    return {"NC4": 1.0 - mismatch if agreement else mismatch}


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
]


CONVENTIONS: dict[str, tuple[Convention, ...]] = {
    "gc": tuple(_GC), "cdnv": tuple(_CDNV), "nc": tuple(_NC), "papyan": tuple(_PAPYAN),
}


def conventions_for(quantity: str) -> tuple[Convention, ...]:
    """The conventions known for ``quantity`` (``"gc"``, ``"cdnv"``, ``"nc"``, ``"papyan"``)."""
    if quantity not in CONVENTIONS:
        raise ValueError(f"quantity must be one of {sorted(CONVENTIONS)}, got {quantity!r}")
    return CONVENTIONS[quantity]


def convention(quantity: str, key: str) -> Convention:
    """The convention named ``key`` for ``quantity``."""
    for c in conventions_for(quantity):
        if c.key == key:
            return c
    keys = ", ".join(c.key for c in conventions_for(quantity))
    raise ValueError(f"key: no convention {key!r} for {quantity!r}; known: {keys}")


def implementation(quantity: str, key: str):
    """A deliberately different implementation of ``quantity`` in convention ``key``, with the
    signature the conformance suite expects: ``fn(Z, y)`` for cdnv and nc, ``fn(Z, y, W, b)`` for
    papyan (the keys the convention does not change are gcref's). For tests and demonstrations.

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
            return {**_papyan(case), **conv.transform(case)}
    else:
        def fn(Z, y):
            return conv.transform(FeatureCase("input", np.asarray(Z), np.asarray(y)))
    fn.__name__ = fn.__qualname__ = f"{quantity}_{key}"
    return fn
