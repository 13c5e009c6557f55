"""The batteries by name: ``check_implementation(quantity, fn)`` and one runnable check per case
(``conformance_checks``, behind :func:`gcref.testing.parametrize_conformance`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnosis import Diagnosis
from ..frameworks import check_framework
from .estimator import _estimator_options, check_gc_estimator, estimator_cases, run_estimator_case
from .features import check_cdnv_implementation, check_nc_implementation, feature_cases, run_feature_case
from .gc import check_gc_implementation, gc_cases, run_gc_case
from .ncc import (bound_cases, check_few_shot_implementation, check_few_shot_summary,
                  check_ncc_bound_implementation, check_ncc_implementation, few_shot_cases,
                  ncc_cases, run_bound_case, run_few_shot_case, run_ncc_case, run_summary_case,
                  summary_cases)
from .papyan import (PAPYAN_KEYS, _check_keys, check_papyan_implementation, papyan_cases,
                     run_papyan_case)
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_accept, _check_fn,
                     _check_precision, _check_rtol)

__all__ = ["QUANTITIES", "check_implementation", "ConformanceCheck", "conformance_checks"]

QUANTITIES = ("gc", "cdnv", "nc", "papyan", "estimator", "ncc", "few_shot", "few_shot_summary",
              "ncc_bound")

_CHECKS = {
    "gc": check_gc_implementation, "cdnv": check_cdnv_implementation,
    "nc": check_nc_implementation, "papyan": check_papyan_implementation,
    "estimator": check_gc_estimator, "ncc": check_ncc_implementation,
    "few_shot": check_few_shot_implementation, "few_shot_summary": check_few_shot_summary,
    "ncc_bound": check_ncc_bound_implementation,
}


def check_implementation(quantity: str, fn, framework: str = "numpy", **kwargs) -> ConformanceReport:
    """Dispatch to the check for ``quantity`` (one of ``QUANTITIES``)."""
    if quantity not in _CHECKS:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    return _CHECKS[quantity](fn, framework=framework, **kwargs)


# ------------------------------------------------------------------------- one check per case

@dataclass(frozen=True)
class ConformanceCheck:
    """One case of a battery, runnable alone (for :func:`gcref.testing.parametrize_conformance`).

    Calling it runs the case and raises ``AssertionError`` (with the diagnosis) if it fails.
    """

    quantity: str
    case: str
    run: object = field(repr=False)

    def __call__(self) -> list[CaseResult]:
        rows = self.run()
        if not all(r.passed for r in rows):
            report = ConformanceReport(self.quantity, self.case, "", tuple(rows),
                                       Diagnosis("gc" if self.quantity == "estimator" else self.quantity, rows))
            raise AssertionError(report.table(failures_only=True))
        return rows

    def __str__(self) -> str:
        return self.case


def conformance_checks(quantity: str, fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                       **kwargs) -> list[ConformanceCheck]:
    """The battery for ``quantity`` as a list of :class:`ConformanceCheck`, one per case.

    Nothing runs (and no reference is computed) until a check is called. For the estimator the
    whole Monte Carlo check is one entry per case as well; for few-shot, all episodes of a pool.
    """
    if quantity not in _CHECKS:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    common = {"precision", "accept"}
    allowed = common | {"papyan": {"keys", "labels"}, "cdnv": {"labels", "order"}, "nc": {"labels"},
                        "estimator": {"method", "draws", "z", "se_rtol", "seed"}}.get(quantity, set())
    if quantity == "estimator":
        allowed -= common
    elif quantity in ("ncc", "few_shot", "few_shot_summary", "ncc_bound"):
        allowed = {"accept"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"options {unknown} do not apply to quantity {quantity!r}"
                        + (f"; it takes {sorted(allowed)}" if allowed else ""))
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    opts = {k: v for k, v in kwargs.items() if k in common | {"labels", "order"}}
    if "precision" in opts:
        opts["precision"] = _check_precision(opts["precision"])
    if "accept" in opts:
        opts["accept"] = _check_accept(opts["accept"])
    if quantity == "gc":
        return [ConformanceCheck("gc", c.name, lambda c=c: [run_gc_case(c, fn, framework, rtol, **opts)])
                for c in gc_cases()]
    if quantity in ("cdnv", "nc"):
        return [ConformanceCheck(quantity, c.name,
                                 lambda c=c: [run_feature_case(quantity, c, fn, framework, rtol, **opts)])
                for c in feature_cases()]
    if quantity == "papyan":
        keys = _check_keys(kwargs.get("keys", PAPYAN_KEYS))
        return [ConformanceCheck("papyan", c.name,
                                 lambda c=c: run_papyan_case(c, fn, framework, rtol, keys, **opts))
                for c in papyan_cases()]
    if quantity == "ncc":
        return [ConformanceCheck("ncc", c.name, lambda c=c: [run_ncc_case(c, fn, framework, 0.0, **opts)])
                for c in ncc_cases()]
    if quantity == "few_shot":
        return [ConformanceCheck("few_shot", c.name,
                                 lambda c=c: [run_few_shot_case(c, fn, framework, 0.0, **opts)])
                for c in few_shot_cases()]
    if quantity == "few_shot_summary":
        return [ConformanceCheck("few_shot_summary", name,
                                 lambda n=name, a=acc: run_summary_case(n, a, fn, rtol, framework=framework, **opts))
                for name, acc in summary_cases()]
    if quantity == "ncc_bound":
        return [ConformanceCheck("ncc_bound", c.name,
                                 lambda c=c: [run_bound_case(c, fn, rtol, framework=framework, **opts)])
                for c in bound_cases()]
    # estimator: the Monte Carlo rows per case
    est = _estimator_options(kwargs.get("method"), kwargs.get("draws", 100), kwargs.get("z", 4.0),
                             kwargs.get("se_rtol", 0.35), kwargs.get("seed", 0))
    return [ConformanceCheck("estimator", c.name,
                             lambda c=c: run_estimator_case(c, fn, framework, **est))
            for c in estimator_cases()]
