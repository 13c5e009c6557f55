"""Rows and reports of the conformance suite, and the helpers every quantity's check runs its cases with."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..._validation import check_float
from ..diagnosis import Diagnosis

__all__ = ["CaseResult", "ConformanceReport", "DEFAULT_RTOL"]

DEFAULT_RTOL = 1e-9

@dataclass(frozen=True)
class CaseResult:
    """One row of a report.

    ``value`` and ``reference`` are floats for display (for a CDNV matrix, the ``(0, 1)`` entry);
    ``error`` is the relative error of the whole value (a number of standard errors, or a ratio,
    for the estimator rows, as ``detail`` says). ``matches``: conventions the value agrees with;
    ``applicable``: conventions that differ from gcref on this case (``None`` when the row failed
    for another reason, e.g. an exception).
    """

    case: str
    value: float | None
    reference: float | None
    error: float
    tolerance: float
    passed: bool
    detail: str = ""
    matches: tuple = ()
    applicable: tuple | None = ()
    ill_conditioned: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["matches"], d["applicable"] = list(self.matches), (None if self.applicable is None
                                                              else list(self.applicable))
        return d


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.6g}"


@dataclass(frozen=True)
class ConformanceReport:
    """The outcome of a conformance check: ``rows``, ``passed`` and a ``diagnosis``."""

    quantity: str
    implementation: str
    framework: str
    rows: tuple
    diagnosis: Diagnosis = field(repr=False, compare=False, default=None)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.rows if not r.passed]

    def summary(self) -> str:
        n_fail = len(self.failures)
        head = (f"{self.implementation} ({self.quantity}, {self.framework}): "
                f"{len(self.rows) - n_fail} passed, {n_fail} failed")
        lines = [head] + (self.diagnosis.lines() if self.diagnosis and n_fail else [])
        return "\n".join(lines)

    def table(self, failures_only: bool = False) -> str:
        """Plain-text table: case, value, reference, error, tolerance, result (and matches)."""
        rows = [r for r in self.rows if not failures_only or not r.passed]
        header = ("case", "value", "reference", "error", "tol", "result")
        body = [(r.case, _fmt(r.value), _fmt(r.reference), f"{r.error:.2e}", f"{r.tolerance:.0e}",
                 "pass" if r.passed else "FAIL" + (f" ~ {', '.join(r.matches)}" if r.matches else "")
                 + (f" ({r.detail})" if r.detail and not r.passed else "")) for r in rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)   # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
        return "\n".join(lines + ["", self.summary()])

    def __str__(self) -> str:
        return self.table()

    def as_dict(self) -> dict:
        return {"quantity": self.quantity, "implementation": self.implementation,
                "framework": self.framework, "passed": self.passed,
                "diagnosis": [c.key for c in self.diagnosis.conventions] if self.diagnosis else [],
                "diagnosis_text": self.diagnosis.lines() if self.diagnosis and not self.passed else [],
                "rows": [r.as_dict() for r in self.rows]}

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the failing rows and the diagnosis unless all passed."""
        if not self.passed:
            raise AssertionError(self.table(failures_only=True))


# ------------------------------------------------------------------------------- running cases

def _to_numpy(value):
    if hasattr(value, "detach"):                          # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _raised(err) -> str:
    return f"raised {type(err).__name__}: {err}"[:200]


def _check_fn(fn):
    if not callable(fn):
        raise TypeError(f"fn must be a callable (your implementation), got {type(fn).__name__}")
    return fn


def _check_rtol(rtol):
    return check_float(rtol, "rtol", minimum=0.0)


def _exception_row(case, err, rtol, reference=None):
    return CaseResult(case, None, reference, float("inf"), rtol, False, _raised(err), (), None)


def _must_raise_row(name, fn_call, rtol):
    try:
        out = fn_call()
    except Exception as err:  # noqa: BLE001 - any exception is the expected outcome
        return CaseResult(name, None, None, 0.0, rtol, True, f"raised {type(err).__name__}")
    try:
        shown = float(np.ravel(_to_numpy(out))[0]) if np.size(_to_numpy(out)) else None
    except (TypeError, ValueError):
        shown = None
    return CaseResult(name, shown, None, float("inf"), rtol, False,
                      "returned a value; coinciding class means must raise (e.g. ValueError)", (), None)


def _report(quantity, fn, framework, rows):
    diag_q = "gc" if quantity == "estimator" else quantity
    return ConformanceReport(quantity, _name(fn), framework, tuple(rows), Diagnosis(diag_q, rows))

