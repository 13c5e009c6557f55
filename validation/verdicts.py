"""Statistics and verdicts of the validation scripts.

The statistics are gcref's (:mod:`gcref.lab.stats`: Spearman's rho within seed blocks, its
within-seed permutation p-value (exact for blocks of at most 9 runs) and a bootstrap interval);
:func:`correlate` counts each distinct run once (:func:`distinct_runs`: the base point shared by
several sweeps is one run) and blocks by seed. The verdict rule is fixed before any run: a
directional part is reproduced when the sign is the expected one with p < 0.05
(:func:`direction_verdict`, gcref's :func:`gcref.lab.stats.direction`), a claim when every part
is (:func:`combine_verdicts`). :func:`matched_fit` reads the metrics of each run at a common
training loss (the matched-fit analysis beside the final-value one), recording where each run
was read and marking a run read far below the level.
"""

from __future__ import annotations

import json
import math

import numpy as np

from gcref.lab.stats import CorrelationTest, bootstrap_ci, direction, spearman_test  # noqa: F401 - used by the claims
from gcref.lab.stats import spearman_rho as spearman  # noqa: F401

VERDICTS = ("reproduced", "not reproduced", "not run at this scale")


def direction_verdict(test: CorrelationTest, expected_sign: int, alpha: float = 0.05) -> dict:
    """Verdict of a directional claim from a Spearman test.

    ``reproduced``: the sign is the expected one and the permutation p-value is below ``alpha``.
    Otherwise ``not reproduced``, with ``direction`` saying whether the measured association is
    significantly the other way (``opposite``), not significant (``inconclusive``), or a Monte
    Carlo p-value within its error of ``alpha`` (``borderline``): :func:`gcref.lab.stats.direction`.
    """
    d = direction(test.rho, test.p_value, expected_sign, alpha=alpha, borderline=test.borderline)
    return {"verdict": "reproduced" if d == "expected" else "not reproduced", "direction": d}


def run_key(record) -> str:
    """A run's identity: its full settings (seed included), as sorted JSON (a record without
    settings is a run of its own)."""
    return json.dumps(record["hp"], sort_keys=True, default=str) if "hp" in record else f"record {id(record)}"


def distinct_runs(records) -> list:
    """``records`` with each run once (the first of records with equal :func:`run_key`): the base
    point of several one-dimensional sweeps is one run, not one per sweep."""
    seen, out = set(), []
    for r in records:
        k = run_key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def correlate(records, x, y, *, seed: int) -> CorrelationTest:
    """:func:`gcref.lab.stats.spearman_test` of ``x(record)`` and ``y(record)`` over the distinct
    runs of ``records`` (:func:`distinct_runs`), blocked by each run's seed."""
    rs = distinct_runs(records)
    return spearman_test([x(r) for r in rs], [y(r) for r in rs], blocks=[r.get("seed") for r in rs], seed=seed)


def epochs_to_criterion(records, value) -> dict:
    """Median epochs to the criterion by ``value(record)`` (formatted ``%g``), over the runs that
    met it (``converged``; runs at the cap are left out and counted): ``{value: {"median",
    "converged", "cap"}}``, ``median`` ``None`` when no run of that value converged."""
    by: dict = {}
    for r in distinct_runs(records):
        row = by.setdefault(value(r), {"epochs": [], "cap": 0})
        if r["status"] == "cap":
            row["cap"] += 1
        elif r["status"] == "converged" and r["final"].get("epoch") is not None:
            row["epochs"].append(r["final"]["epoch"])
    return {f"{v:g}": {"median": float(np.median(b["epochs"])) if b["epochs"] else None,
                       "converged": len(b["epochs"]), "cap": b["cap"]} for v, b in sorted(by.items())}


def combine_verdicts(parts: list[dict]) -> str:
    """``reproduced`` only if every part is; ``not run at this scale`` if none ran."""
    vs = [p["verdict"] for p in parts]
    if not vs or all(v == "not run at this scale" for v in vs):
        return "not run at this scale"
    return "reproduced" if all(v == "reproduced" for v in vs) else "not reproduced"


MATCH_KEY = "train_loss"
#: A run read at a loss below this fraction of the matched level is marked ``far_below`` and left
#: out of the matched-fit tests: its records are too sparse to read it at the level.
FAR_BELOW = 0.5


def matched_fit(records, metrics, key: str = MATCH_KEY) -> dict:
    """The metrics of each run at a common training loss: the matched-fit view.

    ``level`` is the largest, over the runs, of each run's lowest recorded ``key`` (the training
    cross-entropy on the fixed evaluation subset): the lowest level every run reaches. For each
    run, the first history record with ``key <= level`` gives its ``step``, ``epoch``, the loss
    read there (``key``), ``ratio = loss / level`` and ``metrics``; a run with ``ratio <
    FAR_BELOW`` is ``far_below`` (its records skip past the level: it is read at a better fit
    than the others). Runs without a finite ``key`` in their history are left out (``missing``).
    This separates "this hyperparameter leaves a smoother network" from "this run trained
    further": every run is read at the same fit.

    Returns ``{"level", "rows": [{"index", "name", "seed", "step", "epoch", key, "ratio",
    "far_below", <metrics>}], "missing"}``, ``rows`` in the order of ``records`` (``index``).
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
        ratio = rec[key] / level if level > 0 else 1.0
        rows.append({"index": i, "name": records[i].get("name"), "seed": records[i].get("seed"),
                     "step": rec.get("step"), "epoch": rec.get("epoch"), key: rec[key], "ratio": ratio,
                     "far_below": bool(ratio < FAR_BELOW), **{m: rec.get(m) for m in metrics}})
    return {"level": level, "rows": rows, "missing": missing}


def matched_fit_tests(records, x, metrics, expected, label: str, seed: int = 100, also=()) -> dict:
    """Spearman tests at matched fit: ``x(record, row)`` against each metric of the rows of
    :func:`matched_fit` (each distinct run read at the common training-loss level), within seed
    blocks; runs read ``far_below`` the level are left out (counted, and listed in ``rows``).

    ``expected``: the expected sign, one for every metric or a dict metric -> sign. Returns
    ``{"label", "level", "n", "missing", "far_below", "epochs_range", "rows", "tests": [...]}``,
    each test as in the final-value parts (``spearman_rho``, ``p_value_permutation``,
    ``ci95_bootstrap``, ``verdict``, ``direction``), reported beside the verdict, not in it.
    ``rows``: each run's ``name``, ``seed``, read ``step``, ``epoch``, loss and ``ratio`` to the
    level (the audit). ``also``: further metrics read at the matched record (for ``x``).
    """
    records = distinct_runs(records)
    mf = matched_fit(records, tuple(metrics) + tuple(also))
    used = [r for r in mf["rows"] if not r["far_below"]]
    xs = [x(records[r["index"]], r) for r in used]
    epochs = [r["epoch"] for r in used if r.get("epoch") is not None]
    tests = []
    for i, metric in enumerate(metrics):
        sign = expected[metric] if isinstance(expected, dict) else expected
        ys = [np.nan if r.get(metric) is None else float(r[metric]) for r in used]
        t = spearman_test(xs, ys, blocks=[r["seed"] for r in used], seed=seed + i)
        tests.append({"name": f"{label} -> {metric} at matched fit", "metric": metric, "expected_sign": sign,
                      **t.describe(), **direction_verdict(t, sign)})
    audit = [{k: r[k] for k in ("name", "seed", "step", "epoch", MATCH_KEY, "ratio", "far_below")} for r in mf["rows"]]
    return {"label": label, "level": mf["level"], "n": len(used), "missing": len(mf["missing"]),
            "far_below": len(mf["rows"]) - len(used), "far_below_fraction": FAR_BELOW,
            "epochs_range": [min(epochs), max(epochs)] if epochs else None, "rows": audit, "tests": tests}
