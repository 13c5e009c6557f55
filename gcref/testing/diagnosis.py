"""Convention diagnosis: which known convention a disagreeing value matches.

For a failing case, every convention of :mod:`gcref.testing.conventions` for the quantity is
evaluated on the same case; the convention's value is compared with the user's value at the
check's tolerance. Over a whole report, a convention is named when it matches every failing case
it applies to (at least one): an implementation in that convention fails exactly where the
convention differs from gcref, by exactly that amount.
"""

from __future__ import annotations

import numpy as np

from .conventions import Convention, conventions_for

__all__ = ["scalar_error", "matching_conventions", "diagnose", "Diagnosis"]


def scalar_error(value, reference, floor: float = 0.0) -> float:
    """``|value - reference| / max(|value|, |reference|, floor)`` for arrays or scalars (0 if both
    are 0): relative for large values, absolute below ``floor``."""
    a = np.asarray(value, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return float("inf")
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)), floor)
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def _conv_value(conv: Convention, case, key):
    try:
        v = conv.transform(case)
    except (ValueError, ArithmeticError):
        return None
    if isinstance(v, dict):
        return v.get(key) if key is not None else None
    return None if key is not None else v


def matching_conventions(quantity: str, case, value, reference, rtol: float, *, key=None,
                         floor: float = 0.0, ill_conditioned: bool = False, project=None):
    """``(applicable, matches)``: keys of the conventions whose value on ``case`` differs from the
    reference (they could explain a failure there), and of those equal to ``value`` within ``rtol``.

    ``key`` selects one entry of a dict-valued quantity (Papyan's ``"NC1"``, ...); ``project``
    maps a convention's value to what is compared (the off-diagonal CDNV entries). A convention
    marked ``unstable`` applies only to an ill-conditioned case, where it matches when both it
    and ``value`` are off the reference by more than ``rtol``.
    """
    applicable, matches, unstable = [], [], []
    value_off = scalar_error(value, reference, floor) > rtol
    for conv in conventions_for(quantity):
        v = _conv_value(conv, case, key)
        if v is not None and project is not None:
            v = project(v)
        if v is None or scalar_error(v, reference, floor) <= rtol:
            continue
        if conv.unstable:
            if ill_conditioned:
                applicable.append(conv.key)
                unstable.append(conv.key)
            continue
        applicable.append(conv.key)
        if scalar_error(value, v, floor) <= rtol:
            matches.append(conv.key)
    if value_off and not matches:   # off, and no exact convention explains it: rounding may
        matches = unstable
    return tuple(applicable), tuple(matches)


class Diagnosis:
    """The conventions consistent with every failing row of a report (see the module docstring)."""

    def __init__(self, quantity: str, rows):
        self.quantity = quantity
        failing = [r for r in rows if not r.passed and r.applicable is not None]
        keys = []
        for conv in conventions_for(quantity):
            applies = [r for r in failing if conv.key in r.applicable]
            if not applies or not all(conv.key in r.matches for r in applies):
                continue
            if conv.unstable and not all(r.ill_conditioned for r in failing):
                continue        # a rounding convention explains failures on ill-conditioned cases only
            keys.append(conv.key)
        self.keys = tuple(keys)
        self.unexplained = tuple(r.case for r in rows if not r.passed
                                 and not any(k in r.matches for k in self.keys))

    @property
    def conventions(self) -> tuple[Convention, ...]:
        by_key = {c.key: c for c in conventions_for(self.quantity)}
        return tuple(by_key[k] for k in self.keys)

    def lines(self) -> list[str]:
        out = [f"matches convention {c.describe()}" for c in self.conventions]
        if self.unexplained:
            out.append("not explained by a known convention: " + ", ".join(self.unexplained))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def diagnose(quantity: str, rows) -> Diagnosis:
    """The :class:`Diagnosis` of a report's rows."""
    return Diagnosis(quantity, rows)
