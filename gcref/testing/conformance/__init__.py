"""Conformance suite: check *your* implementation of GC, CDNV, NC, NC1-NC4, a GC estimator, an NCC
classifier (alone and on few-shot episodes), a few-shot summary or the NCC error bound.

In the spirit of scikit-learn's ``check_estimator``: you pass your function; gcref runs it over a
battery of cases whose answers it knows (computed with gcref's own functions, several also in
closed form) and returns a :class:`ConformanceReport`, one row per case (case, value, reference,
error, status), ``report.passed``, ``report.verdict`` and ``report.table()``. Where your value
disagrees, the report names the known convention it matches (divisor ``n_c - 1``, GC/2, distance
not squared, ...; the list is :mod:`gcref.testing.conventions`), the rounding pattern (one-pass
variance, Gram-form distances), or float32 working precision, and says so when the cases cannot
tell (:mod:`gcref.testing.diagnosis`).

One module per quantity: :mod:`.gc`, :mod:`.features` (CDNV and NC), :mod:`.papyan`,
:mod:`.estimator`, :mod:`.ncc` (NCC, few-shot, summary, bound); :mod:`.report` (rows and
reports), :mod:`.design` (designed feature sets), :mod:`.battery` (dispatch by name, one check
per case). Every reference is gcref's own function; no formula is repeated here.

=========================================  =======================================================
check                                      your function
=========================================  =======================================================
:func:`check_gc_implementation`            ``fn(f, X) -> float``: GC of the embedding ``f`` on ``X``
:func:`check_cdnv_implementation`          ``fn(Z, y) -> (k, k)`` CDNV matrix (classes sorted, or
                                           ``order="appearance"``)
:func:`check_nc_implementation`            ``fn(Z, y) -> float``: NC, the mean pairwise CDNV
:func:`check_papyan_implementation`        ``fn(Z, y, W, b) -> dict`` with ``"NC1"``, ... ``"NC4"``
                                           (``keys="returned"``: the ones you return; NC4 may be
                                           per point)
:func:`check_gc_estimator`                 ``fn(f, X, seed) -> (value, stderr)`` (or ``.value``,
                                           ``.stderr``, or the value alone): unbiased? standard
                                           error calibrated?
:func:`check_ncc_implementation`           ``fn(Z_train, y_train, Z_test) -> labels``
:func:`check_few_shot_implementation`      the same classifier on gcref's episodes
:func:`check_few_shot_summary`             ``fn(accuracies) -> (mean, ci95)``
:func:`check_ncc_bound_implementation`     ``fn(means, variances, shots) -> float``
=========================================  =======================================================

``framework`` (``"numpy"``, ``"torch"``, ``"jax"``) says what your function receives: for GC, the
embedding as a NumPy callable, a float64 ``torch.nn.Module`` (``gcref.interop.torch.to_torch``) or
a JAX function, and ``X`` as that framework's float64 array; for the feature quantities, ``Z``,
``y``, ``W`` and ``b`` as that framework's arrays. Results may be Python floats, NumPy, torch or
JAX values (a float32 result tells the diagnosis the working precision).

Every value is compared with the reference at relative tolerance ``rtol`` (default ``1e-9``: a
float64 implementation agrees to about ``1e-14``; Papyan's measures, which can be 0, are compared
absolutely below 1), raised on an ill-conditioned case to what float64 rounding can do there
(``16 eps kappa``). ``precision="float32"`` lets rows that agree to float32 rounding pass;
``accept=(keys...)`` lets rows explained by a declared convention pass (``"accepted"``). A case
whose right answer is an error (coinciding class means) passes when your function raises
(returning inf/nan is the convention ``nonfinite_instead_of_raise``). Labels are compared point by
point; an exact tie broken differently is a ``tie``, not a failure.
"""

from __future__ import annotations

from .battery import QUANTITIES, ConformanceCheck, check_implementation, conformance_checks
from .design import OFFSET
from .estimator import check_gc_estimator, estimator_cases, run_estimator_case
from .features import check_cdnv_implementation, check_nc_implementation, feature_cases, run_feature_case
from .gc import NetworkCase, check_gc_implementation, gc_cases, run_gc_case
from .ncc import (check_few_shot_implementation, check_few_shot_summary,
                  check_ncc_bound_implementation, check_ncc_implementation, few_shot_cases,
                  ncc_cases, summary_cases, bound_cases)
from .papyan import PAPYAN_KEYS, check_papyan_implementation, papyan_cases, run_papyan_case
from .report import DEFAULT_RTOL, CaseResult, ConformanceReport
from ..conventions import FeatureCase

__all__ = [
    "FeatureCase", "NetworkCase", "CaseResult", "ConformanceReport", "QUANTITIES", "PAPYAN_KEYS",
    "DEFAULT_RTOL", "OFFSET", "gc_cases", "feature_cases", "papyan_cases", "estimator_cases",
    "check_gc_implementation", "check_cdnv_implementation", "check_nc_implementation",
    "check_papyan_implementation", "check_gc_estimator", "check_implementation",
    "conformance_checks", "ConformanceCheck", "run_gc_case", "run_feature_case", "run_papyan_case",
    "run_estimator_case", "check_ncc_implementation", "check_few_shot_implementation",
    "check_few_shot_summary", "check_ncc_bound_implementation", "ncc_cases", "few_shot_cases",
    "summary_cases", "bound_cases",
]
