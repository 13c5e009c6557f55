"""GC estimator conformance: ``fn(f, X, seed) -> (value, stderr)``, a Monte Carlo check that the
estimator is unbiased and its standard error calibrated."""

from __future__ import annotations

import math

import numpy as np

from ..._validation import check_float, check_int
from ..conventions import conventions_for
from ..diagnosis import Diagnosis, scalar_error
from ..frameworks import as_framework_input, check_framework, embedding_function
from .gc import NetworkCase
from .report import CaseResult, ConformanceReport, _check_fn, _exception_row, _name, _to_numpy

__all__ = ["estimator_cases", "run_estimator_case", "check_gc_estimator"]

_EXACT_RTOL = 1e-12      # estimator: a spread below this fraction of the value is rounding


def estimator_cases() -> list[NetworkCase]:
    """Two small networks with 16 and 20 examples for the estimator's Monte Carlo check."""
    from ...nn import zoo
    rng = np.random.default_rng(20243)
    a = zoo.cnn((1, 6, 6), num_classes=3, channels=(3,), hidden=8)
    b = zoo.mlp([6, 12, 10, 7], num_classes=3, activation="tanh")
    return [NetworkCase("cnn, 20 examples", a, a.init(11), rng.normal(size=(20, 1, 6, 6))),
            NetworkCase("tanh mlp, 16 examples", b, b.init(12), rng.normal(size=(16, 6)))]



def _estimate(out):
    """``(value, stderr)`` of one estimate: a pair, an object with ``.value`` and ``.stderr``, or a
    value alone (``stderr`` ``None``: the estimator reports none)."""
    if hasattr(out, "value") and hasattr(out, "stderr"):
        return float(_to_numpy(out.value)), float(_to_numpy(out.stderr))
    if isinstance(out, (tuple, list)):
        value, stderr = out
        return float(_to_numpy(value)), float(_to_numpy(stderr))
    return float(_to_numpy(out).reshape(())), None


def run_estimator_case(case: NetworkCase, fn, framework: str, *, method=None, draws: int = 100,
                       z: float = 4.0, se_rtol: float = 0.35, seed: int = 0) -> list[CaseResult]:
    """The two Monte Carlo rows (unbiased, calibrated) of one estimator case."""
    kwargs = {} if method is None else {"method": method}
    exact = case.reference
    f = embedding_function(framework, case.net, case.params)
    X = as_framework_input(framework, case.X)
    try:
        est = [_estimate(fn(f, X, seed=seed * draws + r, **kwargs)) for r in range(draws)]
    except Exception as err:  # noqa: BLE001
        return [_exception_row(f"{case.name}: unbiased", err, z, exact)]
    values = np.array([e[0] for e in est])
    no_stderr = all(e[1] is None for e in est)
    ses = np.array([np.nan if e[1] is None else e[1] for e in est])
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    # spread below 1e-12 of the value is rounding: such an estimator is exact (or wrong), not random
    floor = _EXACT_RTOL * abs(exact)
    mc_se = max(sd / math.sqrt(draws), floor)
    bias_z = abs(mean - exact) / mc_se if mc_se > 0 else (0.0 if mean == exact else float("inf"))
    applicable, matches = (), ()
    if bias_z > z:   # whose expectation does the Monte Carlo mean sit at?
        app, hit = [], []
        for conv in conventions_for("gc"):
            cv = conv.transform(case.ingredients)
            if cv is None or scalar_error(cv, exact) <= 1e-12:
                continue
            app.append(conv.key)
            if abs(mean - cv) <= z * max(mc_se, _EXACT_RTOL * abs(cv)):
                hit.append(conv.key)
        applicable, matches = tuple(app), tuple(hit)
    rows = [CaseResult(f"{case.name}: unbiased", mean, exact, bias_z, z, bias_z <= z,
                       f"|MC mean - exact| in standard errors ({draws} draws)", matches, applicable)]
    if no_stderr:       # unbiasedness alone: the calibration row does not apply
        rows.append(CaseResult(f"{case.name}: stderr calibrated", None, sd, 0.0, se_rtol, True,
                               "no standard error reported", (), None, status="n/a"))
        return rows
    rms_se = float(np.sqrt(np.mean(ses ** 2)))
    detail = "RMS reported stderr vs SD of the values"
    bad = int(np.sum(~np.isfinite(ses) | (ses < 0)))
    if bad:
        ratio_err = float("inf")
        detail = (f"a reported standard error is not finite or negative ({bad} of {draws} draws, "
                  f"e.g. {float(ses[~np.isfinite(ses) | (ses < 0)][0])})")
    elif sd <= floor and rms_se <= floor:
        ratio_err = 0.0
    elif sd <= floor or rms_se <= floor:
        ratio_err = float("inf")
    else:
        r = rms_se / sd
        ratio_err = max(r, 1.0 / r) - 1.0
    rows.append(CaseResult(f"{case.name}: stderr calibrated", rms_se, sd, ratio_err, se_rtol,
                           ratio_err <= se_rtol, detail, (), None))
    return rows


def _estimator_options(method, draws, z, se_rtol, seed):
    return dict(method=method, draws=check_int(draws, "draws", minimum=3),
                z=check_float(z, "z", minimum=0.0, strict_min=True),
                se_rtol=check_float(se_rtol, "se_rtol", minimum=0.0),
                seed=check_int(seed, "seed", minimum=0))


def check_gc_estimator(fn, method: str | None = None, framework: str = "numpy", *, draws: int = 100,
                       z: float = 4.0, se_rtol: float = 0.35, seed: int = 0) -> ConformanceReport:
    """Monte Carlo check of a GC estimator ``fn(f, X, seed) -> (value, stderr)`` (or the value
    alone: then unbiasedness is checked and the calibration rows are marked not applicable,
    status ``"n/a"``).

    ``fn`` is called ``draws`` times per case (:func:`estimator_cases`) with
    ``seed = seed * draws + r``, and with ``method=method`` as a keyword when ``method`` is given
    (one function, several estimators). It may return a pair or an object with ``.value`` and
    ``.stderr`` (like gcref's ``Estimate``). ``f`` and ``X`` are as in
    :func:`check_gc_implementation`.

    Two rows per case:

    * unbiased: ``|mean of the values - exact GC| / (SD / sqrt(draws))`` must be ``<= z``
      (value: the Monte Carlo mean; reference: gcref's exact GC). When it is not, the report
      names a GC convention whose value the mean sits at (GC/2, a sum over examples, ...).
    * calibrated: the root mean square of the reported standard errors (value) against the
      standard deviation of the values (reference); their ratio ``r`` must have
      ``max(r, 1/r) - 1 <= se_rtol``.

    A deterministic, exact estimator (``stderr = 0``, no spread beyond ``1e-12`` of the value,
    i.e. rounding) passes both.
    """
    fn, framework = _check_fn(fn), check_framework(framework)
    opts = _estimator_options(method, draws, z, se_rtol, seed)
    rows = []
    for case in estimator_cases():
        rows.extend(run_estimator_case(case, fn, framework, **opts))
    label = _name(fn) + (f"(method={method!r})" if method is not None else "")
    return ConformanceReport("estimator", label, framework, tuple(rows), Diagnosis("gc", rows))

