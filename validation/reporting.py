"""The report of a claim: its JSON summary (atomically written, strict JSON), its figures
(matplotlib's Agg backend, PNG written atomically) and number formatting.

Each claim writes ``<out>/claimN.json`` (:class:`Summary`: setting, statistic, uncertainty,
verdict, every part, configuration, versions) and ``<out>/claimN.png`` (:func:`finish`).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gcref.nn import atomic_write

import common
from verdicts import VERDICTS

#: Fields every claim summary carries (tests check them).
SUMMARY_FIELDS = ("claim", "title", "paper", "scale", "setting", "statistic", "uncertainty",
                  "verdict", "reason", "parts", "backend", "data", "config", "runtime_s",
                  "figure", "versions")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_text(path, text: str):
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`gcref.nn.atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (non-finite floats become ``null``)."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")
    return Path(path)


def plt():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot
    return pyplot


def log_scale(ax, which: str = "y"):
    """Log scale on ``which`` axis ("x", "y" or "xy") when the plotted points allow it (some
    point with both coordinates finite and the scaled ones positive); else linear (e.g. a tiny
    test run whose GC is 0 or whose NC is undefined)."""
    pts = [np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
           for line in ax.get_lines()]
    for coll in ax.collections:
        off = np.ma.filled(np.ma.asarray(coll.get_offsets(), dtype=float), np.nan)
        if off.ndim == 2 and off.shape[0]:
            pts.append(off)
    P = np.concatenate(pts) if pts else np.zeros((0, 2))
    ok = np.all(np.isfinite(P), axis=1)
    for axis in which:
        ok &= P[:, 0 if axis == "x" else 1] > 0
    if np.any(ok):
        for axis in which:
            (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def plot_curves(ax, records, metric: str, color, label: str):
    """The history of ``metric`` over the steps for a group of runs (one setting, its seeds).

    Runs of equal length (a fixed budget): their mean, and a band from their minimum to their
    maximum. Runs of unequal length (trained to a criterion): one line per run, ended by a dot
    where it converged or a red x where it reached the cap.
    """
    series = [([h["step"] for h in r["history"] if h.get(metric) is not None],
               [h[metric] for h in r["history"] if h.get(metric) is not None], r.get("status")) for r in records]
    series = [s for s in series if s[0]]
    if not series:
        return
    if all(s[0] == series[0][0] for s in series):
        ys = np.array([s[1] for s in series], dtype=float)
        ax.plot(series[0][0], ys.mean(axis=0), color=color, label=label)
        if ys.shape[0] > 1:
            ax.fill_between(series[0][0], ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.15)
        return
    for i, (x, y, status) in enumerate(series):
        ax.plot(x, y, color=color, lw=0.9, alpha=0.7, label=label if i == 0 else None)
        if status == "cap":
            ax.plot(x[-1:], y[-1:], marker="x", color="tab:red", ms=6, ls="")
        else:
            ax.plot(x[-1:], y[-1:], marker="o", color=color, ms=3, ls="")


def save_figure(fig, path) -> Path:
    """Save a figure as PNG atomically (:func:`gcref.nn.atomic_write`) and close it."""
    path = Path(path)
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt().close(fig)
    return path


def versions() -> dict:
    import gcref
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "gcref": getattr(gcref, "__version__", "?"), "platform": platform.platform()}
    try:
        import subprocess
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.HERE, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode == 0:
            out["git"] = rev.stdout.strip()
    except Exception:  # pragma: no cover - git is optional
        pass
    return out


@dataclass
class Summary:
    """The machine-readable result of one claim (``results/claimN.json``)."""

    claim: int
    title: str
    paper: str
    scale: str
    setting: str
    statistic: dict
    uncertainty: dict
    verdict: str
    reason: str
    parts: list = field(default_factory=list)
    backend: dict = field(default_factory=dict)
    data: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    runtime_s: float = 0.0
    figure: str = ""
    versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        d = {k: getattr(self, k) for k in SUMMARY_FIELDS}
        d.update(self.extra)
        return d


def finish(args, summary: Summary, fig=None) -> dict:
    """Save the figure and the JSON of a claim; return the summary dict."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"claim{summary.claim}.png"
    if fig is not None:
        save_figure(fig, png)
    summary.figure = png.name
    summary.versions = versions()
    if getattr(args, "t0", None) is not None:
        summary.runtime_s = time.time() - args.t0
    d = summary.as_dict()
    write_json(out / f"claim{summary.claim}.json", d)
    common.log(args, f"verdict: {summary.verdict} ({summary.runtime_s:.1f} s) -> {out / f'claim{summary.claim}.json'}")
    return d


def not_run_summary(args, claim: int, title: str, paper: str, reason: str) -> dict:
    """A summary for a claim that could not run at this scale (e.g. missing data)."""
    s = Summary(claim, title, paper, args.scale, "", {}, {}, "not run at this scale", reason,
                backend={"name": args.backend})
    fig = plt().figure(figsize=(5, 2))
    fig.text(0.5, 0.5, f"claim {claim}: not run at scale {args.scale}\n{reason[:80]}",
             ha="center", va="center", wrap=True)
    return finish(args, s, fig)


def fmt(x, digits=3) -> str:
    """Compact number formatting for reasons and tables."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e4):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def describe_epochs(epochs: dict) -> str:
    """``"0.01: 52 (1 at the cap), 0.05: 15"``: :func:`verdicts.epochs_to_criterion` in words
    (medians over the runs that met the criterion)."""
    return ", ".join(f"{k}: {fmt(e['median'])}" + (f" ({e['cap']} at the cap)" if e["cap"] else "")
                     for k, e in epochs.items())


def far_below_note(m: dict) -> str:
    """`` (2 run(s) read below 0.5x the level: left out)`` for a matched-fit result with runs
    marked ``far_below`` (:func:`verdicts.matched_fit`), else ``""``."""
    k = m.get("far_below") or 0
    return f" ({k} run(s) read below {m['far_below_fraction']:g}x the level: left out)" if k else ""
