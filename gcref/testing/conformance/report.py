"""Rows and reports of the conformance suite, and the helpers every quantity's check runs its cases with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..._validation import check_float
from ..conventions import NONFINITE_KEY
from ..diagnosis import Diagnosis

__all__ = ["CaseResult", "ConformanceReport", "DEFAULT_RTOL", "NONFINITE_KEY", "PRECISIONS", "scored_row",
           "result_text"]

DEFAULT_RTOL = 1e-9

PRECISIONS = ("float64", "float32")
#: words in an exception's message that name a framework's arrays (the likely cause when every
#: case raised: the code was given another framework's arrays)
_FRAMEWORK_WORDS = {"numpy": ("ndarray", "numpy"), "torch": ("tensor", "torch"),
                    "jax": ("jax", "jnp", "tracer")}
#: Quantities diagnosed with another quantity's conventions.
DIAGNOSED_AS = {"estimator": "gc", "few_shot": "ncc"}


@dataclass(frozen=True)
class CaseResult:
    """One row of a report.

    ``value`` and ``reference`` are floats for display (for a CDNV matrix, the ``(0, 1)`` entry);
    ``error`` is the relative error of the whole value (a number of standard errors, or a ratio,
    for the estimator rows, as ``detail`` says). ``matches``: conventions the value agrees with;
    ``applicable``: conventions that differ from gcref on this case (``None`` when the row failed
    for another reason, e.g. an exception). ``status``: ``"agrees"``, ``"agrees within
    conditioning"`` (above ``rtol`` but within float64 rounding of an ill-conditioned case),
    ``"float32"`` (within float32 rounding only), ``"tie"`` (differs only on exact ties),
    ``"accepted"`` (explained by a convention passed in ``accept``), ``"n/a"`` (not applicable,
    e.g. a standard error the estimator does not report) or ``"FAIL"``. ``evidence``: what the
    diagnosis reads (:class:`gcref.testing.diagnosis.Evidence`; ``None`` for rows without it).
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
    status: str = ""
    dtype: str = ""
    evidence: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not self.status:
            object.__setattr__(self, "status", "agrees" if self.passed else "FAIL")

    def as_dict(self) -> dict:
        d = {f: getattr(self, f) for f in ("case", "value", "reference", "error", "tolerance",
                                           "passed", "detail", "ill_conditioned", "status", "dtype")}
        d["matches"], d["applicable"] = list(self.matches), (None if self.applicable is None
                                                              else list(self.applicable))
        return d


def scored_row(name, value, reference, evidence, *, precision="float64", accept=(), detail="",
               ill_conditioned=False, dtype="") -> CaseResult:
    """A row from its :class:`~gcref.testing.diagnosis.Evidence`: passed when the error is within
    the row's tolerance at ``precision`` (float64: ``rtol`` scaled by the case's conditioning;
    float32: float32 rounding), or the value matches a convention in ``accept`` (a rounding
    convention in ``accept`` covers the cases where its cancellation shows)."""
    ev = evidence
    tol = ev.tol64 if precision == "float64" else ev.tol32
    applicable = tuple(ev.exact)
    matches = tuple(k for k, e in ev.exact.items() if e <= tol and k not in ev.undecided)
    if ev.error <= ev.rtol:
        status = "agrees"
    elif ev.error <= ev.tol64:
        status = "agrees within conditioning"
    elif ev.error <= ev.tol32 or (ev.tol32 >= 1.0 and not np.isfinite(ev.error)):
        status = "float32"          # (a case beyond float32 precision may give anything)
    else:
        status = "FAIL"
    passed = status in ("agrees", "agrees within conditioning") or (
        status == "float32" and precision == "float32")
    if not passed and any(k in accept for k in matches):
        passed, status = True, "accepted"
    elif not passed and any(k in accept for k in ev.rounding):
        # a declared rounding convention (one_pass, gram_distances): accepted on the cases where
        # that cancellation shows, and only there
        passed, status = True, "accepted"
        matches = tuple(k for k in ev.rounding if k in accept)
    return CaseResult(name, value, reference, ev.error, tol, passed, detail, matches, applicable,
                      ill_conditioned, status, dtype, ev)


def result_text(r, precision: str = "float64") -> str:
    """The result column: pass / FAIL with the matching conventions and the detail (a row within
    float32 rounding reads ``float32`` where the diagnosis found float32 working precision)."""
    if r.passed:
        text = {"agrees": "pass", "agrees within conditioning": "pass (within conditioning)",
                "accepted": "pass (accepted: " + ", ".join(r.matches) + ")"}.get(r.status, f"pass ({r.status})")
        return text + (f" ({r.detail})" if r.detail and r.status in ("tie", "n/a") else "")
    text = "float32" if r.status == "float32" and precision == "float32" else "FAIL"
    if r.matches:
        text += " ~ " + ", ".join(r.matches)
    return text + (f" ({r.detail})" if r.detail else "")


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

    @property
    def verdict(self) -> str:
        """One line: ``"agrees"``, ``"agrees to float32 precision"``, ``"matches a known mistake /
        convention: K, ..."``, ``"partly explained: ..."``, ``"fails only where cancellation
        matters"``, ``"every case raised ..."`` or ``"not explained"``."""
        d = self.diagnosis
        if self.passed and not any(r.status == "float32" for r in self.rows):
            conditioned = [r.case for r in self.rows if r.status == "agrees within conditioning"]
            accepted = sorted({k for r in self.rows if r.status == "accepted" for k in r.matches})
            return ("agrees" + (f" (within float64 rounding on the ill-conditioned {', '.join(conditioned)})"
                                if conditioned else "")
                    + (f"; accepted conventions: {', '.join(accepted)}" if accepted else ""))
        raised = self._raised()
        if raised:
            return f"every case raised ({', '.join(raised)}): no value to compare"
        if d is None:
            return "fails"
        at = f" (at {d.precision} precision)" if d.precision != "float64" else ""
        if d.precision != "float64" and not d.keys and not d.unexplained:
            return f"agrees to {d.precision} precision"
        named = "matches a known mistake / convention: " + ", ".join(d.keys)
        if d.keys and not d.unexplained:
            return named + at
        if d.keys:
            n = len(d.unexplained)
            return f"partly explained: {named}{at}; {n} case{'s' if n > 1 else ''} not explained"
        if d.cancellation:
            return "fails only where cancellation matters"
        return "not explained"

    def _raised(self) -> list[str]:
        """The exception types, when every case raised (a must-raise case passing by raising
        included) and the report failed; else ``[]``."""
        if self.passed or not self.rows or not all(
                r.value is None and r.detail.startswith("raised ") for r in self.rows):
            return []
        return sorted({r.detail[len("raised "):].split(":")[0] for r in self.rows})

    def _raise_cause(self) -> str:
        """The likely cause of every case raising, read from the messages: arrays of another
        framework than the code expects."""
        text = " ".join(r.detail for r in self.rows).lower()
        mentioned = [f for f, words in _FRAMEWORK_WORDS.items() if any(w in text for w in words)]
        wants = [f for f in mentioned if f != self.framework] or (
            [f for f in _FRAMEWORK_WORDS if f != self.framework] if self.framework in mentioned else [])
        if not wants:
            return ("every case raised: check your function's signature and what it returns "
                    "(each row shows its message)")
        given = {"numpy": "NumPy arrays", "torch": "torch tensors", "jax": "JAX arrays"}
        options = " or ".join(f"framework='{w}' (`--framework {w}`)" for w in wants)
        return (f"your function was given {given.get(self.framework, 'inputs')} "
                f"(framework='{self.framework}'): did you mean {options}?")

    def summary(self) -> str:
        n_fail = len(self.failures)
        n_32 = sum(r.status == "float32" for r in self.rows) if (
            self.diagnosis and self.diagnosis.precision == "float32") else 0
        head = (f"{self.implementation} ({self.quantity}, {self.framework}): "
                f"{len(self.rows) - n_fail} passed, {n_fail} failed"
                + (f" ({n_32} only to float32 precision)" if n_32 else "") + f": {self.verdict}")
        if self._raised():
            return "\n".join([head, self._raise_cause()])
        errors = {r.case: r.error for r in self.rows}
        lines = [head] + (self.diagnosis.lines(errors) if self.diagnosis and (n_fail or n_32) else [])
        return "\n".join(lines)

    def table(self, failures_only: bool = False) -> str:
        """Plain-text table: case, value, reference, error, tolerance, result (and matches)."""
        rows = [r for r in self.rows if not failures_only or not r.passed]
        header = ("case", "value", "reference", "error", "tol", "result")
        body = [(r.case, _fmt(r.value), _fmt(r.reference), f"{r.error:.2e}", f"{r.tolerance:.0e}",
                 result_text(r, self.diagnosis.precision if self.diagnosis else "float64"))
                for r in rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)   # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
        return "\n".join(lines + ["", self.summary()])

    def __str__(self) -> str:
        return self.table()

    def as_dict(self) -> dict:
        d = self.diagnosis
        return {"quantity": self.quantity, "implementation": self.implementation,
                "framework": self.framework, "passed": self.passed, "verdict": self.verdict,
                "precision": d.precision if d else "float64",
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


#: reduced working precisions read from an output's dtype, lowest first
_REDUCED = ("bfloat16", "float16", "float32")


def _lowest(dtypes) -> str:
    """The lowest reduced precision among ``dtypes`` (``""`` when none is reduced)."""
    return next((t for t in _REDUCED if t in dtypes), "")


def _dtype(value) -> str:
    """``"float32"``, ``"float16"`` or ``"bfloat16"`` when the user's output is in that reduced
    precision (a dict: its lowest), else ``""``."""
    if isinstance(value, dict):
        return _lowest({_dtype(v) for v in value.values()})
    try:
        name = str(getattr(value, "dtype", "") or "")
    except Exception:  # noqa: BLE001 - an odd object: no dtype to read
        return ""
    return next((t for t in _REDUCED if name.endswith(t)), "")


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


def _exception_row(case, err, rtol, reference=None, evidence=None, ill_conditioned=False,
                   precision="float64"):
    """The row of a case where the implementation raised; ``evidence`` (from
    ``gather_evidence(..., value=None)``) lets the diagnosis weigh it: a float32 implementation
    may raise on a case beyond float32 precision (``tol32 >= 1``), which passes, as status
    ``float32``, with ``precision="float32"``."""
    beyond = evidence is not None and evidence.tol32 >= 1.0
    ok = beyond and precision == "float32"
    return CaseResult(case, None, reference, float("inf"), rtol, ok,
                      _raised(err) + ("; the case is beyond float32 precision" if beyond else ""), (),
                      None if evidence is None else (), ill_conditioned,
                      "float32" if beyond else "FAIL", evidence=evidence)


def _must_raise_row(name, fn_call, rtol, accept=()):
    """The row of a case whose right answer is an error. Returning inf or nan instead is the
    documented convention ``NONFINITE_KEY`` (passes when it is in ``accept``)."""
    try:
        out = fn_call()
    except Exception as err:  # noqa: BLE001 - any exception is the expected outcome
        return CaseResult(name, None, None, 0.0, rtol, True, f"raised {type(err).__name__}")
    try:
        # a dict of values (Papyan's) is a Mapping; a tensor is not, though torch.Tensor has a
        # callable .values (for sparse layouts)
        arr = (np.concatenate([np.ravel(_to_numpy(v)) for v in out.values()])
               if isinstance(out, Mapping) else _to_numpy(out))
        shown = float(np.ravel(arr)[0]) if arr.size else None
        if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 1:
            arr = arr[~np.eye(arr.shape[0], dtype=bool)]     # a CDNV matrix: its pairs
        nonfinite = bool(arr.size) and not np.all(np.isfinite(arr))
    except Exception as err:  # noqa: BLE001 - a result that cannot be read is a row, not a crash
        return CaseResult(name, None, None, float("inf"), rtol, False,
                          f"returned a {type(out).__name__} that cannot be read as numbers "
                          f"({_raised(err)}); coinciding class means must raise", (), None)
    if nonfinite:
        ok = NONFINITE_KEY in accept
        return CaseResult(name, shown, None, float("inf"), rtol, ok,
                          "returned inf/nan where gcref raises", (NONFINITE_KEY,), (NONFINITE_KEY,),
                          status="accepted" if ok else "FAIL")
    return CaseResult(name, shown, None, float("inf"), rtol, False,
                      "returned a value; coinciding class means must raise (e.g. ValueError)", (), None)


def _report(quantity, fn, framework, rows, label=None):
    diag_q = DIAGNOSED_AS.get(quantity, quantity)
    dtype = _lowest({r.dtype for r in rows}) or None
    return ConformanceReport(quantity, label or _name(fn), framework, tuple(rows),
                             Diagnosis(diag_q, rows, dtype=dtype))


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _check_accept(accept):
    if isinstance(accept, str):
        accept = (accept,)
    accept = tuple(accept)
    if any(not isinstance(k, str) for k in accept):
        raise TypeError(f"accept must be a sequence of convention keys, got {accept!r}")
    return accept
