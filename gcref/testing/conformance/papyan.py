"""Papyan's NC1-NC4 conformance: ``fn(Z, y, W, b) -> dict`` with ``"NC1"``, ... ``"NC4"``.

The reference is :func:`gcref.metrics.collapse.papyan_nc`.
"""

from __future__ import annotations

import numpy as np

from ...metrics.collapse import papyan_nc
from ..conventions import FeatureCase
from ..diagnosis import matching_conventions, scalar_error
from ..frameworks import check_framework
from .design import OFFSET, _design, _etf
from .features import _feature_inputs
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_fn, _check_rtol,
                     _exception_row, _must_raise_row, _report, _to_numpy)

__all__ = ["PAPYAN_KEYS", "papyan_cases", "run_papyan_case", "check_papyan_implementation"]

PAPYAN_KEYS = ("NC1", "NC2_equinorm", "NC2_equiangle", "NC2_maxangle", "NC3", "NC4")


def papyan_cases() -> list[FeatureCase]:
    """Cases for NC1-NC4: features with a linear head ``(W, b)``."""
    rng = np.random.default_rng(20241)
    cases = []
    k, p = 4, 5
    M = _etf(k, p, radius=3.0)
    Z, y = _design(M, np.full(k, 0.1), [6] * k, rng=rng)
    cases.append(FeatureCase("simplex ETF, self-dual head", Z, y, W=M.copy(), b=np.zeros(k),
                             note="NC2 and NC3 are 0 up to rounding; NC4 = 0"))
    sizes = [6, 10, 4, 8]
    means = 2.0 * rng.normal(size=(4, 6))
    Z = np.concatenate([means[c] + rng.normal(size=(m, 6)) for c, m in enumerate(sizes)])
    y = np.repeat(np.arange(4), sizes)
    cases.append(FeatureCase("gaussian, head with bias", Z, y, W=rng.normal(size=(4, 6)),
                             b=4.0 * rng.normal(size=4), note="unequal classes; the bias moves argmax"))
    means = 2.0 * rng.normal(size=(5, 2))
    Z = np.concatenate([means[c] + 0.8 * rng.normal(size=(6, 2)) for c in range(5)])
    cases.append(FeatureCase("rank-deficient Sigma_B (p = 2 < k - 1)", Z, np.repeat(np.arange(5), 6),
                             W=rng.normal(size=(5, 2)), b=rng.normal(size=5)))
    Z = np.concatenate([rng.normal(c, 1.0, (5, 3)) for c in (0.0, 2.0, -2.0)])
    y = np.repeat([0, 2, 3], 5)
    cases.append(FeatureCase("labels 0, 2, 3 of a 5-row head", Z, y, W=rng.normal(size=(5, 3)),
                             b=rng.normal(size=5), note="rows 1 and 4 of W belong to absent classes"))
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2]])
    Z, y = _design(mu, np.array([1.0, 0.5, 1.5]), [4, 8, 16], rng=rng, quantize=True)
    cases.append(FeatureCase("offset 1e8", Z + OFFSET, y, W=rng.normal(size=(3, 3)), b=np.zeros(3),
                             ill_conditioned=True))
    Z, y = _design(np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]), np.ones(3), [4, 4, 4])
    cases.append(FeatureCase("all class means coincide (must raise)", Z, y, W=np.eye(3, 2),
                             b=np.zeros(3), raises=True))
    return cases



def run_papyan_case(case: FeatureCase, fn, framework: str, rtol: float, keys) -> list[CaseResult]:
    """Run ``fn(Z, y, W, b)`` on one Papyan case: one row per key."""
    args = _feature_inputs(framework, case, True)
    if case.raises:
        return [_must_raise_row(case.name, lambda: fn(*args), rtol)]
    ref = papyan_nc(case.Z, case.y, case.W, case.b)
    try:
        out = fn(*args)
        if not hasattr(out, "keys"):
            raise TypeError(f"returned {type(out).__name__}, expected a dict with keys {list(keys)}")
    except Exception as err:  # noqa: BLE001
        return [_exception_row(f"{case.name}: {k}", err, rtol, ref[k]) for k in keys]
    rows = []
    for k in keys:
        name = f"{case.name}: {k}"
        if k not in out:
            rows.append(CaseResult(name, None, ref[k], float("inf"), rtol, False, "key missing", (), None))
            continue
        try:
            value = float(_to_numpy(out[k]).reshape(()))
        except (TypeError, ValueError) as err:
            rows.append(_exception_row(name, err, rtol, ref[k]))
            continue
        err = scalar_error(value, ref[k], floor=1.0)
        applicable, matches = matching_conventions("papyan", case, value, ref[k], rtol, key=k,
                                                   floor=1.0, ill_conditioned=case.ill_conditioned)
        rows.append(CaseResult(name, value, ref[k], err, rtol, err <= rtol, "", matches, applicable,
                               case.ill_conditioned))
    return rows



def check_papyan_implementation(fn, framework: str = "numpy", *, keys=PAPYAN_KEYS,
                                rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y, W, b) -> dict``, your Papyan NC1-NC4 (gcref's conventions: see
    :func:`gcref.metrics.papyan_nc`; ``W`` is ``(K, p)``, row ``c`` scores label ``c``).

    ``keys`` selects which entries are compared (default ``PAPYAN_KEYS``; add ``"NC2_W_equinorm"``
    etc. to check those too). Measures below 1 are compared absolutely, larger ones relatively.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    keys = tuple(keys)
    if not keys or any(not isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a non-empty sequence of papyan_nc key names, got {keys!r}")
    rows = []
    for c in papyan_cases():
        rows.extend(run_papyan_case(c, fn, framework, rtol, keys))
    return _report("papyan", fn, framework, rows)

