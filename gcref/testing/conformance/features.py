"""CDNV and NC conformance: ``fn(Z, y) -> (k, k)`` CDNV matrix, or ``fn(Z, y) -> float`` NC.

The reference is :func:`gcref.metrics.collapse.cdnv` / :func:`~gcref.metrics.collapse.neural_collapse`
(the pairwise ratio ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` written once in
:func:`~gcref.metrics.collapse.pairwise_ratio`).
"""

from __future__ import annotations

import numpy as np

from ...metrics.collapse import cdnv, neural_collapse
from ..conventions import FeatureCase
from ..diagnosis import gather_evidence
from ..frameworks import as_framework_input, check_framework
from .design import OFFSET, _design, _etf
from .report import (DEFAULT_RTOL, CaseResult, ConformanceReport, _check_accept, _check_fn,
                     _check_precision, _check_rtol, _dtype, _exception_row, _must_raise_row,
                     _report, _to_numpy, scored_row)

__all__ = ["feature_cases", "cancellation_cases", "relabelled", "run_feature_case",
           "check_cdnv_implementation", "check_nc_implementation", "LABELS", "ORDERS"]

LABELS = ("as_is", "contiguous")
ORDERS = ("sorted", "appearance")


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
    cases += cancellation_cases(np.random.default_rng(20244))
    # coinciding means: must raise
    Z, y = _design(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]), np.array([1.0, 0.5, 1.0]), [4, 4, 4])
    cases.append(FeatureCase("coinciding means (must raise)", Z, y, raises=True))
    return cases



def cancellation_cases(rng) -> list[FeatureCase]:
    """Two cases that tell the cancellations apart (both ill-conditioned, both exact in float64
    for gcref's two-pass statistics and difference-vector distances):

    * "close means at 1e3 (Gram distances cancel)": means ``1e3 + O(1e-2)`` apart by ``~1e-2``,
      spread ``sigma = 10``: ``||mu||^2 ~ 3e6`` against ``d^2 ~ 1e-4`` loses ~1e-5 in the Gram
      form, while ``E||z||^2 - ||mu||^2`` against ``Var ~ 300`` loses only ~1e-12 (one-pass passes);
    * "tight classes at 1e3 (one-pass variance cancels)": means ``~10`` apart, spread
      ``sigma = 1e-3``: one-pass loses ~1e-4 of ``Var ~ 3e-6``, Gram ~1e-12 of ``d^2 ~ 100``.

    Float32 features fail both (their rounding is ~6e-5 at 1e3), as they fail the well-conditioned
    cases where the two float64 cancellations do not.
    """
    base = np.array([1e3, -1e3, 1e3])
    close = base + 1e-2 * rng.normal(size=(3, 3))            # full-mantissa means: mu @ mu rounds
    Z, y = _design(close, np.array([10.0, 8.0, 12.0]), [6, 8, 10], rng=rng, quantize=True)
    a = FeatureCase("close means at 1e3 (Gram distances cancel)", Z, y, ill_conditioned=True,
                    note="||mu_i - mu_j|| ~ 1e-2 at ||mu|| ~ 2e3 with sigma ~ 10")
    far = base + np.array([[0.0, 0, 0], [8, 4, -2], [-4, 6, 6]])
    Z, y = _design(far, np.array([1.0, 2.0, 1.5]) * 2.0 ** -10, [6, 8, 10], rng=rng, quantize=True)
    b = FeatureCase("tight classes at 1e3 (one-pass variance cancels)", Z, y, ill_conditioned=True,
                    note="sigma ~ 1e-3 at ||mu|| ~ 2e3 with ||mu_i - mu_j|| ~ 10")
    return [a, b]


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


def relabelled(case: FeatureCase, labels: str) -> FeatureCase:
    """``case`` as the user's code receives it: ``labels="as_is"`` unchanged; ``"contiguous"``:
    labels replaced by their rank ``0..k-1`` (and a head's rows cut to the present classes, in
    label order), for code that indexes arrays by label."""
    if labels == "as_is":
        return case
    classes, y = np.unique(case.y, return_inverse=True)
    W = None if case.W is None else np.asarray(case.W)[classes]
    b = None if case.b is None else np.asarray(case.b)[classes]
    return FeatureCase(case.name, case.Z, y.astype(np.int64), W, b, case.raises,
                       case.ill_conditioned, case.note)


def _order_permutation(y, order: str):
    """Index ``s`` with ``user[i] <-> sorted[s[i]]``: the user's class order against the sorted
    labels (``"sorted"``: identity; ``"appearance"``: order of first appearance in ``y``)."""
    classes = np.unique(y)
    if order == "sorted":
        return np.arange(len(classes))
    _, first = np.unique(np.asarray(y), return_index=True)
    appearance = classes[np.argsort(first)]
    return np.searchsorted(classes, appearance)


def run_feature_case(quantity: str, case: FeatureCase, fn, framework: str, rtol: float, *,
                     precision: str = "float64", accept=(), labels: str = "as_is",
                     order: str = "sorted") -> CaseResult:
    """Run ``fn(Z, y)`` on one CDNV or NC case (options as in :func:`check_cdnv_implementation`)."""
    case = relabelled(case, labels)
    args = _feature_inputs(framework, case, False)
    if case.raises:
        return _must_raise_row(case.name, lambda: fn(*args), rtol, accept)
    ref = cdnv(case.Z, case.y) if quantity == "cdnv" else neural_collapse(case.Z, case.y)
    ref_shown = float(ref[0, 1]) if quantity == "cdnv" else float(ref)
    try:
        raw = fn(*args)
        value = _to_numpy(raw)
    except Exception as err:  # noqa: BLE001
        pick = (lambda V: np.asarray(V)[~np.eye(len(V), dtype=bool)]) if quantity == "cdnv" else None
        ev = gather_evidence(quantity, case, None, ref if pick is None else pick(ref), rtol,
                             project=pick, conditioning=case.conditioning)
        return _exception_row(case.name, err, rtol, ref_shown, ev, case.ill_conditioned, precision)
    if value.shape != np.shape(ref) and not (quantity == "nc" and value.size == 1):
        return CaseResult(case.name, None, ref_shown, float("inf"), rtol, False,
                          f"returned shape {value.shape}, expected {np.shape(ref)}", (), None)
    value = value.reshape(np.shape(ref))
    if quantity == "cdnv" and order != "sorted":
        s = _order_permutation(case.y, order)
        back = np.empty_like(value)
        back[np.ix_(s, s)] = value
        value = back
    # CDNV: the pairs i != j are compared (the diagonal, 0 in gcref, is often left nan or inf)
    pick = (lambda V: np.asarray(V)[~np.eye(len(V), dtype=bool)]) if quantity == "cdnv" else None
    ev = gather_evidence(quantity, case, value if pick is None else pick(value),
                         ref if pick is None else pick(ref), rtol, project=pick,
                         conditioning=case.conditioning)
    shown = float(value[0, 1]) if quantity == "cdnv" else float(value)
    return scored_row(case.name, shown, ref_shown, ev, precision=precision, accept=accept,
                      ill_conditioned=case.ill_conditioned, dtype=_dtype(raw))


_OPTIONS_DOC = """
    Options (every feature check):

    rtol : float
        Relative tolerance (default ``1e-9``), raised on an ill-conditioned case to what float64
        rounding can do there (``16 eps kappa``, :mod:`gcref.testing.diagnosis`).
    precision : {"float64", "float32"}
        ``"float32"`` lets rows that agree to float32 precision pass (they are reported as
        ``float32`` either way, and the verdict says "agrees to float32 precision").
    accept : sequence of str
        Convention keys accepted as correct (e.g. ``("nonfinite_instead_of_raise",)`` for code
        that returns inf/nan where gcref raises): rows explained by them pass, marked ``accepted``.
    labels : {"as_is", "contiguous"}
        What labels your code receives: the cases' own (non-contiguous, shuffled) or their ranks
        ``0..k-1``.
"""


def _feature_check(quantity, fn, framework, rtol, precision, accept, labels, order):
    fn, framework, rtol = _check_fn(fn), check_framework(framework), _check_rtol(rtol)
    precision, accept = _check_precision(precision), _check_accept(accept)
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    rows = [run_feature_case(quantity, c, fn, framework, rtol, precision=precision, accept=accept,
                             labels=labels, order=order) for c in feature_cases()]
    return _report(quantity, fn, framework, rows)


def check_cdnv_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                              precision: str = "float64", accept=(), labels: str = "as_is",
                              order: str = "sorted") -> ConformanceReport:
    """Check ``fn(Z, y) -> (k, k)``, your CDNV matrix ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``
    (the entries ``i != j`` are compared; the diagonal, 0 in gcref, may be anything).

    Cases: Gaussian classes of unequal sizes, a closed-form design, a simplex ETF, two classes in
    one dimension, non-contiguous shuffled labels, a tiny scale, a ``1e8`` offset, the two
    cancellation cases of :func:`cancellation_cases`, and coinciding means (your function must
    raise).

    ``order``: the order of your matrix's rows and columns, ``"sorted"`` labels (gcref's) or
    ``"appearance"`` (first appearance in ``y``, as ``pandas.unique``/dict insertion give).
    """
    return _feature_check("cdnv", fn, framework, rtol, precision, accept, labels, order)


def check_nc_implementation(fn, framework: str = "numpy", *, rtol: float = DEFAULT_RTOL,
                            precision: str = "float64", accept=(), labels: str = "as_is") -> ConformanceReport:
    """Check ``fn(Z, y) -> float``, your NC: the mean CDNV over pairs of classes ``i != j``.

    Same cases and options as :func:`check_cdnv_implementation`.
    """
    return _feature_check("nc", fn, framework, rtol, precision, accept, labels, "sorted")


check_cdnv_implementation.__doc__ += _OPTIONS_DOC
