"""Statistics and verdicts of the validation scripts.

The statistics are gcref's (:mod:`gcref.lab.stats`: Spearman's rho with a permutation p-value
and a bootstrap interval); the verdict rule is fixed before any run: a directional part is
reproduced when the sign is the expected one with p < 0.05 (:func:`direction_verdict`), a claim
when every part is (:func:`combine_verdicts`). :func:`matched_fit` reads the metrics of each run
at a common training loss (the matched-fit analysis beside the final-value one).
"""

from __future__ import annotations

import math

import numpy as np

from gcref.lab.stats import CorrelationTest, bootstrap_ci, spearman_test  # noqa: F401 - used by the claims
from gcref.lab.stats import spearman_rho as spearman  # noqa: F401

VERDICTS = ("reproduced", "not reproduced", "not run at this scale")


def direction_verdict(test: CorrelationTest, expected_sign: int, alpha: float = 0.05) -> dict:
    """Verdict of a directional claim from a Spearman test.

    ``reproduced``: the sign is the expected one and the permutation p-value is below ``alpha``.
    Otherwise ``not reproduced``, with ``direction`` saying whether the measured association is
    significantly the other way (``opposite``) or not significant (``inconclusive``).
    """
    rho, p = test.rho, test.p_value
    if not np.isfinite(rho):
        return {"verdict": "not reproduced", "direction": "undefined"}
    significant = p < alpha
    if significant and np.sign(rho) == expected_sign:
        return {"verdict": "reproduced", "direction": "expected"}
    if significant:
        return {"verdict": "not reproduced", "direction": "opposite"}
    return {"verdict": "not reproduced", "direction": "inconclusive"}


def combine_verdicts(parts: list[dict]) -> str:
    """``reproduced`` only if every part is; ``not run at this scale`` if none ran."""
    vs = [p["verdict"] for p in parts]
    if not vs or all(v == "not run at this scale" for v in vs):
        return "not run at this scale"
    return "reproduced" if all(v == "reproduced" for v in vs) else "not reproduced"


MATCH_KEY = "train_loss"


def matched_fit(records, metrics, key: str = MATCH_KEY) -> dict:
    """The metrics of each run at a common training loss: the matched-fit view.

    ``level`` is the largest, over the runs, of each run's lowest recorded ``key`` (the training
    cross-entropy on the fixed evaluation subset): the lowest level every run reaches. For each
    run, the first history record with ``key <= level`` gives its ``step``, ``epoch`` and
    ``metrics``. Runs without a finite ``key`` in their history are left out (``missing``).
    This separates "this hyperparameter leaves a smoother network" from "this run trained
    further": every run is read at the same fit.

    Returns ``{"level", "rows": [{"index", "step", "epoch", <metrics>}], "missing"}``, ``rows``
    in the order of ``records`` (``index`` into it).
    """
    def finite(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    lows, missing = {}, []
    for i, r in enumerate(records):
        vals = [h[key] for h in r.get("history", []) if finite(h.get(key))]
        if vals:
            lows[i] = min(vals)
        else:
            missing.append(i)
    if not lows:
        return {"level": None, "rows": [], "missing": missing}
    level = max(lows.values())
    rows = []
    for i in lows:
        rec = next(h for h in records[i]["history"] if finite(h.get(key)) and h[key] <= level)
        rows.append({"index": i, "step": rec.get("step"), "epoch": rec.get("epoch"),
                     key: rec[key], **{m: rec.get(m) for m in metrics}})
    return {"level": level, "rows": rows, "missing": missing}


def matched_fit_tests(records, x, metrics, expected, label: str, seed: int = 100, also=()) -> dict:
    """Spearman tests at matched fit: ``x(record, row)`` against each metric of the rows of
    :func:`matched_fit` (each run read at the common training-loss level).

    ``expected``: the expected sign, one for every metric or a dict metric -> sign. Returns
    ``{"label", "level", "n", "missing", "epochs_range", "tests": [...]}``, each test as in the
    final-value parts (``spearman_rho``, ``p_value_permutation``, ``ci95_bootstrap``,
    ``verdict``, ``direction``), reported beside the verdict, not in it. ``also``: further
    metrics read at the matched record (for ``x``).
    """
    mf = matched_fit(records, tuple(metrics) + tuple(also))
    rows = mf["rows"]
    xs = [x(records[r["index"]], r) for r in rows]
    epochs = [r["epoch"] for r in rows if r.get("epoch") is not None]
    tests = []
    for i, metric in enumerate(metrics):
        sign = expected[metric] if isinstance(expected, dict) else expected
        ys = [np.nan if r.get(metric) is None else float(r[metric]) for r in rows]
        t = spearman_test(xs, ys, seed=seed + i)
        tests.append({"name": f"{label} -> {metric} at matched fit", "metric": metric, "expected_sign": sign,
                      **t.describe(), **direction_verdict(t, sign)})
    return {"label": label, "level": mf["level"], "n": len(rows), "missing": len(mf["missing"]),
            "epochs_range": [min(epochs), max(epochs)] if epochs else None, "tests": tests}
