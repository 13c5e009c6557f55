"""Papyan's NC1-NC4 conformance: ``fn(Z, y, W, b) -> dict`` with ``"NC1"``, ... ``"NC4"``.

The reference is :func:`gcref.metrics.collapse.papyan_nc`.
"""

from __future__ import annotations

import numpy as np

from ...metrics.collapse import papyan_nc
from ..conventions import FeatureCase, nc4_points
from ..diagnosis import gather_evidence
from ..frameworks import check_framework
from .design import OFFSET, _design, _etf
from .features import LABELS, _feature_inputs, relabelled
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_accept, _check_fn,
                     _check_precision, _check_rtol, _dtype, _exception_row, _must_raise_row,
                     _report, _to_numpy, scored_row)

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



def _papyan_row(name, case, key, value, reference, rtol, precision, accept, dtype):
    discrete = key.startswith("NC4")
    ev = gather_evidence("papyan", case, value, reference, rtol, key=key, floor=1.0,
                         conditioning=case.conditioning, precision_free=discrete)
    shown = float(np.mean(value)) if key == "NC4_points" else value
    ref_shown = float(np.mean(reference)) if key == "NC4_points" else reference
    detail = ""
    if key == "NC4_points":
        differ = int(np.sum(np.asarray(value) != np.asarray(reference)))
        detail = f"{differ} of {np.size(reference)} points differ from gcref"
    return scored_row(name, shown, ref_shown, ev, precision=precision, accept=accept,
                      ill_conditioned=case.ill_conditioned, dtype=dtype,
                      detail=detail)


def run_papyan_case(case: FeatureCase, fn, framework: str, rtol: float, keys, *,
                    precision: str = "float64", accept=(), labels: str = "as_is") -> list[CaseResult]:
    """Run ``fn(Z, y, W, b)`` on one Papyan case: one row per key (``keys="returned"``: the
    Papyan keys the function returns); an ``NC4`` given per point adds a per-point row."""
    case = relabelled(case, labels)
    args = _feature_inputs(framework, case, True)
    if case.raises:
        return [_must_raise_row(case.name, lambda: fn(*args), rtol, accept)]
    ref = papyan_nc(case.Z, case.y, case.W, case.b)
    try:
        out = fn(*args)
        if not hasattr(out, "keys"):
            raise TypeError(f"returned {type(out).__name__}, expected a dict with keys "
                            f"{list(PAPYAN_KEYS) if keys == 'returned' else list(keys)}")
        out = {k: out[k] for k in out.keys()}         # a plain dict from here on
    except Exception as err:  # noqa: BLE001
        shown = PAPYAN_KEYS if keys == "returned" else keys
        return [_exception_row(f"{case.name}: {k}", err, rtol, ref.get(k)) for k in shown]
    if keys == "returned":
        keys = tuple(k for k in ref if k in out)
        if not keys:
            return [CaseResult(f"{case.name}: keys", None, None, float("inf"), rtol, False,
                               f"returned none of the keys {list(ref)}", (), None)]
    rows = []
    for k in keys:
        name = f"{case.name}: {k}"
        if k not in out:
            rows.append(CaseResult(name, None, ref.get(k), float("inf"), rtol, False,
                                   "key missing (keys='returned' checks only the keys your "
                                   "function returns)", (), None))
            continue
        try:
            arr = _to_numpy(out[k])
            if k == "NC4" and arr.shape == (np.shape(case.Z)[0],):   # NC4 per point
                points = nc4_points(case)
                rows.append(_papyan_row(f"{name} per point", case, "NC4_points", arr, points, rtol,
                                        precision, accept, _dtype(out[k])))
                arr = np.mean(arr)
            value = float(arr.reshape(()))
        except Exception as err:  # noqa: BLE001 - an unreadable value is a row, not a crash
            rows.append(_exception_row(name, err, rtol, ref.get(k)))
            continue
        if k not in ref:
            rows.append(CaseResult(name, value, None, float("inf"), rtol, False,
                                   f"gcref's papyan_nc has no key {k!r}", (), None))
            continue
        rows.append(_papyan_row(name, case, k, value, ref[k], rtol, precision, accept, _dtype(out[k])))
    return rows


def check_papyan_implementation(fn, framework: str = "numpy", *, keys=PAPYAN_KEYS,
                                rtol: float = DEFAULT_RTOL, precision: str = "float64",
                                accept=(), labels: str = "as_is") -> ConformanceReport:
    """Check ``fn(Z, y, W, b) -> dict``, your Papyan NC1-NC4 (gcref's conventions: see
    :func:`gcref.metrics.papyan_nc`; ``W`` is ``(K, p)``, row ``c`` scores label ``c``).

    ``keys`` selects which entries are compared (default ``PAPYAN_KEYS``; add ``"NC2_W_equinorm"``
    etc. to check those too; ``"returned"``: whichever of gcref's keys your function returns).
    Measures below 1 are compared absolutely, larger ones relatively. ``NC4`` may be the rate or
    the per-point mismatch flags (an array of length ``n``): then each point's flag is compared
    too, so two wrong labels cannot hide behind a coinciding count. ``precision``, ``accept`` and
    ``labels`` as in :func:`~gcref.testing.conformance.features.check_cdnv_implementation`.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    precision, accept = _check_precision(precision), _check_accept(accept)
    keys = _check_keys(keys)
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    rows = []
    for c in papyan_cases():
        rows.extend(run_papyan_case(c, fn, framework, rtol, keys, precision=precision,
                                    accept=accept, labels=labels))
    return _report("papyan", fn, framework, rows)


def _check_keys(keys):
    if keys == "returned":
        return keys
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys or any(not isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be 'returned' or a non-empty sequence of papyan_nc key "
                         f"names, got {keys!r}")
    return keys
