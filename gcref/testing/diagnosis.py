"""Convention diagnosis: which known convention, rounding pattern or working precision explains a
disagreeing implementation, and "I don't know" when none does.

Evidence per row (:func:`gather_evidence`)
------------------------------------------
For each case the suite evaluates every convention of :mod:`gcref.testing.conventions` (and the
meaningful pairs of them) on the same inputs and keeps

* for an *exact* convention (a formula change: ddof 1, GC/2, ...) that differs from the reference
  on this case: the error of the user's value against the convention's value;
* for a *rounding* convention (one-pass variance, Gram-form distances: the same formula computed in
  a way that cancels): whether it fails this case, i.e. the case is one where that cancellation
  is visible.

Tolerances scale with the case's conditioning ``kappa`` (largest feature magnitude over the
smallest class spread or mean distance; :func:`precision_tolerance`): an honest float64
implementation is within ``16 eps64 kappa`` of the reference, a float32 one within
``16 eps32 kappa``. On a well-conditioned case both are far below the formula changes, which move
values by constant factors.

Verdict over a report (:class:`Diagnosis`)
------------------------------------------
1. At float64 precision: an exact convention is *named* when the value equals it (within the
   row's float64 tolerance) on **every** case where it differs from gcref, passing rows included,
   so a convention is named only on the cases that separate it from the reference and from the
   others. Pairs are tried when no single convention explains every failing row.
2. Failing rows left over are compared with the rounding conventions: one is named when it fails
   exactly those cases (the suite has cases where one-pass variance cancels and Gram distances do
   not, and the reverse). When the rows are all ill-conditioned but no rounding pattern is exact,
   the verdict lists the causes the evidence fits ("fails only where cancellation matters").
3. If float64 leaves rows unexplained, the same is tried at float32 tolerances; when that explains
   everything and a well-conditioned case shows errors above float64 rounding, the verdict is
   "agrees to float32 precision" (the working precision is float32; also taken from the outputs'
   dtype when they are float32, and likewise float16 or bfloat16 outputs are compared at their
   own tolerances). Errors within float16 rounding only get a hint, not a verdict: tolerances
   that wide would forgive formula slips.
4. What is still unexplained is reported as "not explained", each case on its own line with its
   error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .conventions import Convention, conventions_for, pairs_for

__all__ = ["scalar_error", "precision_tolerance", "Evidence", "gather_evidence",
           "matching_conventions", "diagnose", "Diagnosis", "EPS32", "EPS64", "PRECISION_EPS",
           "CONDITIONING_FACTOR",
           "CANCELLATION_CAUSES"]

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
#: Machine epsilon of each working precision the diagnosis can name (bfloat16: 8 significand bits).
PRECISION_EPS = {"float64": EPS64, "float32": EPS32, "float16": float(np.finfo(np.float16).eps),
                 "bfloat16": 2.0 ** -7}
#: Rounding error of an honest implementation, in units of ``eps * kappa`` (summation orders and a
#: handful of operations per value; measured float32 errors on the suite's cases stay below 4).
CONDITIONING_FACTOR = 16.0
#: What can make a correct formula fail only where values cancel.
CANCELLATION_CAUSES = ("one-pass variance", "Gram-form distances", "reduced precision")


def scalar_error(value, reference, floor: float = 0.0) -> float:
    """``|value - reference| / max(|value|, |reference|, floor)`` for arrays or scalars (0 if both
    are 0): relative for large values, absolute below ``floor``."""
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return float("inf")
    if not np.all(np.isfinite(b)):
        return 0.0 if np.array_equal(a, b) else float("inf")
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)), floor)
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def precision_tolerance(rtol: float, conditioning: float, eps: float) -> float:
    """``max(rtol, CONDITIONING_FACTOR * eps * kappa)``: what rounding at machine epsilon ``eps``
    can do to a value whose case has condition number ``kappa``."""
    return max(float(rtol), CONDITIONING_FACTOR * eps * float(conditioning))


@dataclass(frozen=True)
class Evidence:
    """What one row says about the conventions (see the module docstring).

    ``rtol``: the check's tolerance; ``exact``: ``{key: error of the value against that convention}`` for the exact conventions
    (and pairs) that differ from the reference on this case by more than ``tol64``;
    ``rounding``: the rounding conventions that fail this case; ``tol64`` / ``tol32``: the
    conditioning-scaled tolerances at float64 / float32; ``undecided``: exact conventions whose
    value rounding decides on this case (cosine labels at a large offset), entered in ``exact``
    with error 0 so that they neither count against nor are credited to a row.
    """

    error: float
    rtol: float
    tol64: float
    tol32: float
    exact: dict = field(default_factory=dict)
    rounding: tuple = ()
    undecided: tuple = ()


def _conv_value(conv: Convention, case, key, project):
    try:
        v = conv.transform(case)
    except (ValueError, ArithmeticError, FloatingPointError):
        return None
    if isinstance(v, dict):
        v = v.get(key) if key is not None else None
    elif key is not None:
        v = None
    if v is not None and project is not None:
        v = project(v)
    return v


def gather_evidence(quantity: str, case, value, reference, rtol: float, *, key=None,
                    floor: float = 0.0, project=None, conditioning: float = 1.0,
                    precision_free: bool = False) -> Evidence:
    """The :class:`Evidence` of one row: ``value`` (the user's) against ``reference`` and against
    every convention for ``quantity`` evaluated on ``case``.

    ``key`` selects one entry of a dict-valued quantity (Papyan's ``"NC1"``, ...); ``project``
    maps a convention's value to what is compared (the off-diagonal CDNV entries);
    ``precision_free``: the value is discrete (NC4's rate), so float64 rounding cannot move it:
    its float64 tolerance is ``rtol`` (the float32 one still allows the rate's own rounding and,
    on a case beyond float32 precision, flipped labels). ``value=None``: the implementation gave no value (it raised), so it
    matches nothing, but the case's tolerances and rounding patterns are still recorded.
    """
    tol64 = rtol if precision_free else precision_tolerance(rtol, conditioning, EPS64)
    tol32 = precision_tolerance(rtol, conditioning, EPS32)    # (a float32 rate is itself rounded)
    exact, rounding = {}, []
    for conv in conventions_for(quantity) + pairs_for(quantity):
        v = _conv_value(conv, case, key, project)
        if conv.unstable:
            # a rounding convention fails where its value is off (or it cannot compute one)
            if v is None or scalar_error(v, reference, floor) > tol64:
                rounding.append(conv.key)
            continue
        if v is None or scalar_error(v, reference, floor) <= tol64:
            continue
        exact[conv.key] = np.inf if value is None else scalar_error(value, v, floor)
    error = np.inf if value is None else scalar_error(value, reference, floor)
    return Evidence(error, rtol, tol64, tol32, exact, tuple(rounding))


def matching_conventions(quantity: str, case, value, reference, rtol: float, *, key=None,
                         floor: float = 0.0, ill_conditioned: bool = False, project=None,
                         conditioning: float = 1.0):
    """``(applicable, matches)``: keys of the exact conventions whose value on ``case`` differs
    from the reference, and of those equal to ``value`` within the row's float64 tolerance
    (``ill_conditioned`` is accepted for compatibility; the tolerance comes from
    ``conditioning``)."""
    ev = gather_evidence(quantity, case, value, reference, rtol, key=key, floor=floor,
                         project=project, conditioning=conditioning)
    return tuple(ev.exact), tuple(k for k, e in ev.exact.items() if e <= ev.tol64)


def _off64(row) -> bool:
    """The row is off at float64: it failed, or it passed only as float32 rounding (with
    ``precision="float32"``), which the diagnosis must still explain."""
    return not row.passed or row.status == "float32"


def _tol(row, precision):
    """The row's tolerance at ``precision``: ``tol64``, ``tol32``, or for a half precision
    ``tol32`` scaled by its epsilon (``16 eps kappa`` as the others)."""
    ev = row.evidence
    if precision == "float64":
        return ev.tol64
    return ev.tol32 * PRECISION_EPS[precision] / EPS32


def _within(row, error, precision) -> bool:
    """``error`` is rounding at ``precision``: within the tolerance, or any value at all (even
    inf or nan) on a case beyond that precision (tolerance ``>= 1``)."""
    tol = _tol(row, precision)
    return error <= tol or (precision != "float64" and tol >= 1.0)


class Diagnosis:
    """The verdict on a report's rows (see the module docstring).

    Attributes
    ----------
    keys : tuple of str
        Named conventions (exact ones and, where the pattern is exact, a rounding one; a pair
        reads ``"a+b"``).
    precision : str
        ``"float64"`` or ``"float32"``: the working precision the values are consistent with.
    precision_source : str
        ``"dtype"`` (the outputs were float32), ``"errors"`` (their error pattern) or ``""``.
    cancellation : tuple of str
        Where failures are confined to ill-conditioned cases and no single rounding pattern fits:
        the causes the evidence fits.
    unexplained : tuple of str
        Failing cases no named convention explains.
    worst : tuple of (case, error)
        The worst unexplained rows, largest error first (at most 3).
    factor : float or None
        When every failing value is gcref's times one factor (a constant slip, e.g. ``1 + 1e-7``,
        which must not pass for float32 rounding): that factor.
    """

    def __init__(self, quantity: str, rows, *, dtype: str | None = None):
        self.quantity = quantity
        rows = list(rows)
        self.precision, self.precision_source = "float64", ""
        self.cancellation = ()
        self.hint = ""
        if dtype in PRECISION_EPS and dtype != "float64":
            self.precision, self.precision_source = dtype, "dtype"
        keys, unexplained = self._explain(rows, self.precision)
        if unexplained and self.precision == "float64":
            keys32, unexplained32 = self._explain(rows, "float32")
            shows = any(r.evidence is not None and not r.ill_conditioned
                        and self._residual(r, keys32) > r.evidence.tol64 for r in rows)
            if not unexplained32 and shows and self._constant_factor(rows) is None:
                self.precision, self.precision_source = "float32", "errors"
                keys, unexplained = keys32, unexplained32
            elif unexplained32 and not self._explain(rows, "float16")[1] \
                    and self._constant_factor(rows) is None:
                # only a hint: float16 tolerances are wide enough to forgive formula slips
                self.hint = ("every failing value is within float16 rounding of its case: if your "
                             "code computes in float16 or bfloat16 (autocast, .half()), that alone "
                             "can explain it; gcref's cases are given in float64")
        self.keys = tuple(keys)
        by_name = {r.case: r for r in rows}
        if unexplained and all(by_name[c].ill_conditioned for c in unexplained):
            self.cancellation = self._cancellation_causes(rows, unexplained)
        self.unexplained = tuple(unexplained)
        self.factor = self._constant_factor(rows) if unexplained else None
        worst = sorted(((c, by_name[c].error) for c in unexplained), key=lambda t: -t[1])
        self.worst = tuple(worst[:3])

    # --------------------------------------------------------------------------- internals

    @staticmethod
    def _constant_factor(rows):
        """``value / reference``, when it is one and the same factor (to 1e-12) on every failing
        row with a value: a formula off by a constant, which float32 rounding never is (its
        errors vary from case to case)."""
        ratios = [r.value / r.reference for r in rows if _off64(r) and r.evidence is not None
                  and isinstance(r.value, float) and isinstance(r.reference, float)
                  and r.reference != 0.0 and np.isfinite(r.value)]
        if len(ratios) < 2 or ratios[0] == 0.0 or not all(abs(q / ratios[0] - 1.0) <= 1e-12
                                                          for q in ratios):
            return None
        return ratios[0]

    @staticmethod
    def _residual(row, keys):
        """The row's error against gcref or against the named convention that applies to it."""
        ev = row.evidence
        errs = [ev.error] + [ev.exact[k] for k in keys if k in ev.exact]
        return min(errs)

    def _explain(self, rows, precision):
        """Named keys and unexplained failing cases at precision ``precision`` (a key of
        :data:`PRECISION_EPS`)."""
        scored = [r for r in rows if r.evidence is not None]
        failing = [r for r in rows if _off64(r)]
        catalogue = conventions_for(self.quantity)
        exact_keys = [c.key for c in catalogue if not c.unstable]

        def consistent(key):
            seen = [r for r in scored if key in r.evidence.exact]
            return bool(seen) and any(_off64(r) for r in seen) and all(
                _within(r, r.evidence.exact[key], precision) for r in seen)

        def left(keys):
            out = []
            for r in failing:
                if r.evidence is None:
                    if not any(k in r.matches for k in keys) or r.applicable is None:
                        out.append(r)
                    continue
                if _within(r, r.evidence.error, precision):
                    continue
                if any(_within(r, r.evidence.exact.get(k, np.inf), precision) for k in keys):
                    continue
                out.append(r)
            return out

        # rows without evidence (the estimator's Monte Carlo rows) carry their own matches
        legacy = [r for r in failing if r.evidence is None and r.applicable is not None]
        keys = [k for k in exact_keys if consistent(k)]
        for c in catalogue:
            if legacy and not c.unstable and c.key not in keys:
                applies = [r for r in legacy if c.key in r.applicable]
                if applies and all(c.key in r.matches for r in applies):
                    keys.append(c.key)
        rest = left(keys)
        if rest and any(r.evidence is not None for r in rest):
            pairs = [c.key for c in pairs_for(self.quantity) if consistent(c.key)]
            if pairs:
                keys = keys + pairs
                rest = left(keys)
        if rest and all(r.evidence is not None for r in rest):
            names = {r.case for r in rest}
            rounding = [c.key for c in catalogue if c.unstable]
            predicted = {k: {r.case for r in scored if k in r.evidence.rounding} for k in rounding}
            # one rounding pattern that fails exactly these cases, else two that do together
            found = [(k,) for k in rounding if predicted[k] == names] or [
                (a, b) for i, a in enumerate(rounding) for b in rounding[i + 1:]
                if predicted[a] | predicted[b] == names and predicted[a] != predicted[b]
                and not predicted[a] <= predicted[b] and not predicted[b] <= predicted[a]]
            if len(found) == 1:
                keys.extend(found[0])
                rest = []
        return keys, [r.case for r in rest]

    def _cancellation_causes(self, rows, unexplained):
        """Causes whose failure pattern covers the unexplained (ill-conditioned) cases."""
        names = set(unexplained)
        causes = []
        by_key = {c.key: c for c in conventions_for(self.quantity) if c.unstable}
        labels = {"one_pass": CANCELLATION_CAUSES[0], "gram_distances": CANCELLATION_CAUSES[1]}
        for key, conv in by_key.items():
            predicted = {r.case for r in rows if r.evidence is not None and key in r.evidence.rounding}
            if names <= predicted:
                causes.append(labels.get(key, conv.title))
        if not by_key:          # no designed cases to tell them apart for this quantity
            causes = list(CANCELLATION_CAUSES[:2])
        # on the label cases tol32 >= 1 marks a case where float32 rounding flips labels (the
        # NCC evidence computes it): one that agrees rules reduced precision out (a value case
        # beyond float32 cannot: one key may be computed in float64 and another not)
        if not any(self.quantity == "ncc" and r.evidence is not None and r.evidence.tol32 >= 1.0
                   and r.status == "agrees" for r in rows):
            causes.append(CANCELLATION_CAUSES[2])
        return tuple(causes)

    # ------------------------------------------------------------------------------ output

    @property
    def conventions(self) -> tuple[Convention, ...]:
        by_key = {c.key: c for c in conventions_for(self.quantity) + pairs_for(self.quantity)}
        return tuple(by_key[k] for k in self.keys)

    def lines(self, errors: dict | None = None) -> list[str]:
        """The diagnosis in words, one finding a line; ``errors`` (``{case: error}``, the
        report's) puts each unexplained case's error beside it."""
        out = []
        p = self.precision
        if p != "float64":
            how = f"its outputs are {p}" if self.precision_source == "dtype" else \
                f"its errors are {p} rounding"
            if self.unexplained:
                out.append(f"works in {p} ({how}); compared at {p} tolerances")
            else:
                out.append(f"agrees to {p} precision ({how}), not to float64"
                           + (" once the conventions below are accounted for" if self.keys else ""))
        out += [f"matches a known mistake / convention: {c.describe()}" for c in self.conventions]
        if self.cancellation:
            causes = list(self.cancellation)
            text = causes[0] if len(causes) == 1 else ", ".join(causes[:-1]) + " or " + causes[-1]
            out.append(f"fails only where cancellation matters ({', '.join(self.unexplained)}): "
                       f"{text}; these cases cannot tell them apart")
        elif self.unexplained:
            errors = errors or dict(self.worst)
            n = len(self.unexplained)
            out.append(f"not explained by a known convention ({n} case{'s' if n > 1 else ''}):")
            out += [f"  - {c}" + (f" (error {errors[c]:.2g})" if c in errors else "")
                    for c in self.unexplained]
            if self.factor is not None:
                out.append(f"every failing value is gcref's times the same factor {self.factor:.15g}")
        if self.hint:
            out.append(self.hint)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def diagnose(quantity: str, rows, *, dtype: str | None = None) -> Diagnosis:
    """The :class:`Diagnosis` of a report's rows."""
    return Diagnosis(quantity, rows, dtype=dtype)
