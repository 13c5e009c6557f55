"""CDNV and NC conformance: ``fn(Z, y) -> (k, k)`` CDNV matrix, or ``fn(Z, y) -> float`` NC.

The reference is :func:`gcref.metrics.collapse.cdnv` / :func:`~gcref.metrics.collapse.neural_collapse`
(the pairwise ratio ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` written once in
:func:`~gcref.metrics.collapse.pairwise_ratio`).
"""

from __future__ import annotations

import numpy as np

from ...metrics.collapse import cdnv, neural_collapse
from ..conventions import FeatureCase
from ..diagnosis import matching_conventions, scalar_error
from ..frameworks import as_framework_input, check_framework
from .design import OFFSET, _design, _etf
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_fn, _check_rtol,
                     _exception_row, _must_raise_row, _report, _to_numpy)

__all__ = ["feature_cases", "run_feature_case", "check_cdnv_implementation", "check_nc_implementation"]


def feature_cases() -> list[FeatureCase]:
    """Cases for CDNV and NC. Seeded; every case also has closed-form or exact-arithmetic answers
    where its note says so."""
    rng = np.random.default_rng(20240)
    cases = []
    # Gaussian classes of unequal sizes and anisotropic covariances
    sizes = [5, 9, 3, 7]
    means = 3.0 * rng.normal(size=(4, 5))
    scales = rng.uniform(0.3, 2.0, size=(4, 5))
    Z = np.concatenate([means[c] + scales[c] * rng.normal(size=(m, 5)) for c, m in enumerate(sizes)])
    y = np.repeat(np.arange(4), sizes)
    cases.append(FeatureCase("gaussian, unequal class sizes", Z, y,
                             note="4 anisotropic Gaussian classes, n_c = 5, 9, 3, 7, p = 5"))
    # closed form: Var_c = sigma_c^2 and integer means exactly
    mu = np.array([[0.0, 0, 0, 0], [3, 1, 0, 2], [-1, 4, 2, 0]])
    sig = np.array([1.0, 0.5, 2.0])
    Z, y = _design(mu, sig, [8, 8, 8])
    cases.append(FeatureCase("closed form (Var_c = sigma_c^2)", Z, y,
                             note="points mu_c ± sigma_c e_l: V_ij = (s_i^2 + s_j^2) / (2 ||mu_i - mu_j||^2)"))
    # simplex ETF means
    M = _etf(5, 6, radius=2.0)
    Z, y = _design(M, np.full(5, 0.25), [12] * 5)
    cases.append(FeatureCase("simplex ETF means", Z, y,
                             note="||mu_i - mu_j||^2 = 2 k r^2 / (k - 1), Var_c = 1/16"))
    # two classes, one feature
    Z = np.concatenate([rng.normal(0.0, 1.0, (6, 1)), rng.normal(2.5, 0.5, (4, 1))])
    cases.append(FeatureCase("two classes, p = 1", Z, np.repeat([0, 1], [6, 4])))
    # non-contiguous labels in shuffled order
    Z = np.concatenate([rng.normal(c, 0.7, (m, 3)) for c, m in zip((0.0, 2.0, -3.0), (4, 6, 5))])
    y = np.repeat([11, 3, 7], [4, 6, 5])
    perm = rng.permutation(len(y))
    cases.append(FeatureCase("labels 3, 7, 11, shuffled", Z[perm], y[perm],
                             note="the CDNV matrix is indexed by the sorted labels"))
    # tiny scale
    Zs, ys = cases[0].Z * 1e-6, cases[0].y
    cases.append(FeatureCase("scaled by 1e-6", Zs, ys, note="CDNV is scale invariant"))
    # large offset: exact arithmetic for any two-pass implementation
    mu = np.array([[0.0, 1, 2], [3, -1, 0], [1, 2, -2]])
    Z, y = _design(mu, np.array([1.0, 0.5, 1.5]), [4, 8, 16], rng=rng, quantize=True)
    cases.append(FeatureCase("offset 1e8", Z + OFFSET, y, ill_conditioned=True,
                             note="features + 1e8, exact in float64 for a two-pass variance; "
                                  "E||z||^2 - ||mu||^2 cancels"))
    # coinciding means: must raise
    Z, y = _design(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]), np.array([1.0, 0.5, 1.0]), [4, 4, 4])
    cases.append(FeatureCase("coinciding means (must raise)", Z, y, raises=True))
    return cases



def _feature_inputs(framework, case: FeatureCase, with_head: bool):
    Z = as_framework_input(framework, case.Z)
    y = np.asarray(case.y, dtype=np.int64)
    if framework == "torch":
        import torch
        y = torch.tensor(y)
    elif framework == "jax":
        import jax.numpy as jnp
        y = jnp.asarray(y)
    args = [Z, y]
    if with_head:
        args += [as_framework_input(framework, case.W), as_framework_input(framework, case.b)]
    return args


def run_feature_case(quantity: str, case: FeatureCase, fn, framework: str, rtol: float) -> CaseResult:
    """Run ``fn(Z, y)`` on one CDNV or NC case."""
    args = _feature_inputs(framework, case, False)
    if case.raises:
        return _must_raise_row(case.name, lambda: fn(*args), rtol)
    ref = cdnv(case.Z, case.y) if quantity == "cdnv" else neural_collapse(case.Z, case.y)
    ref_shown = float(ref[0, 1]) if quantity == "cdnv" else float(ref)
    try:
        value = _to_numpy(fn(*args))
    except Exception as err:  # noqa: BLE001
        return _exception_row(case.name, err, rtol, ref_shown)
    if value.shape != np.shape(ref) and not (quantity == "nc" and value.size == 1):
        return CaseResult(case.name, None, ref_shown, float("inf"), rtol, False,
                          f"returned shape {value.shape}, expected {np.shape(ref)}", (), None)
    value = value.reshape(np.shape(ref))
    # CDNV: the pairs i != j are compared (the diagonal, 0 in gcref, is often left nan or inf)
    pick = (lambda V: np.asarray(V)[~np.eye(len(V), dtype=bool)]) if quantity == "cdnv" else None
    err = scalar_error(pick(value), pick(ref)) if pick else scalar_error(value, ref)
    applicable, matches = matching_conventions(quantity, case, value if pick is None else pick(value),
                                               ref if pick is None else pick(ref), rtol,
                                               ill_conditioned=case.ill_conditioned, project=pick)
    shown = float(value[0, 1]) if quantity == "cdnv" else float(value)
    return CaseResult(case.name, shown, ref_shown, err, rtol, err <= rtol, "", matches, applicable,
                      case.ill_conditioned)



def check_cdnv_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y) -> (k, k)``, your CDNV matrix ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``
    with rows and columns in sorted-label order (the entries ``i != j`` are compared; the diagonal,
    0 in gcref, may be anything).

    Cases: Gaussian classes of unequal sizes, a closed-form design, a simplex ETF, two classes in
    one dimension, non-contiguous shuffled labels, a tiny scale, a ``1e8`` offset, and coinciding
    means (your function must raise).
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    return _report("cdnv", fn, framework,
                   [run_feature_case("cdnv", c, fn, framework, rtol) for c in feature_cases()])


def check_nc_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL) -> ConformanceReport:
    """Check ``fn(Z, y) -> float``, your NC: the mean CDNV over pairs of classes ``i != j``.

    Same cases as :func:`check_cdnv_implementation`.
    """
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    return _report("nc", fn, framework,
                   [run_feature_case("nc", c, fn, framework, rtol) for c in feature_cases()])

