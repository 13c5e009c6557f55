"""Figures of runs and sweeps in the style of the paper (matplotlib, Agg backend, PNG).

- ``curves.png``: GC, NC, geometric collapse and the training loss over the steps, one curve per
  setting (seeds of a setting share its colour), log scale.
- ``final.png`` (sweeps over a numeric setting): final GC and NC against the swept setting, and
  NC against GC across all runs (legend: the settings' colours), with Spearman's rho.
- ``transfer.png`` (runs with target classes): source GC against target NC and against the
  few-shot NCC accuracy (95% CI error bars), with Spearman's rho.
- ``fig4.png`` (transfer sweeps over a numeric setting): the paper's Fig. 4 layout, one row per
  swept setting: final source GC, target NC and few-shot accuracy against the setting's values
  (mean over seeds, error bars one standard deviation over seeds, the seeds as dots).

The final-value panels draw finished runs only, as the sweep summary correlates them: those
whose files check out (:func:`gcref.lab.run.verify_finished`, against the settings of the
sweep's plan) and that were trained as asked (completed, or converged to their criterion).
Diverged runs are drawn in the curves up to their divergence (marked with an x) and left out of
the final values; runs that reached the cap of a criterion without meeting it (``done.json``
status ``cap``) and unfinished runs (no ``done.json`` that checks out) are left out too and drawn
in ``fig4.png`` and ``transfer.png`` as open markers (red: the cap; grey: unfinished, their last
record). Every figure says in a red note what was left out and why, ``nothing to draw`` when no
run finished as asked; :func:`plot_run_or_sweep` returns the same notes.
"""

from __future__ import annotations

import io
import os

from ..nn.params_io import atomic_write, read_json
from ..train.fit import CONFIG_FILE, HISTORY_FILE, load_history
from .config import as_config
from .run import TRAINED, verify_finished
from .sweep import SWEEP_FILE, load_sweep, spearman, sweep_histories

__all__ = ["plot_run_or_sweep", "FIGURES", "Figures"]

FIGURES = ("curves.png", "final.png", "transfer.png", "fig4.png")

_LABELS = {"gc": "embedding GC", "nc": "NC (CDNV)", "geometric_collapse": "geometric collapse",
           "loss": "training loss", "target_nc": "target NC (CDNV)",
           "few_shot_accuracy": "few-shot NCC accuracy", "lr": "learning rate",
           "batch_size": "batch size", "l2": "L2 strength", "gc_reg": "GC regularization"}
#: How the final-value panels mark runs left out of them, by status (``None``: unfinished).
_OPEN_MARKERS = {"cap": ("tab:red", "reached the cap"), None: ("tab:grey", "unfinished (last record)")}


class Figures(list):
    """The PNG paths :func:`plot_run_or_sweep` wrote, with ``notes``: what the figures left
    out and why (the red notes on them), ``[]`` when nothing was."""

    def __init__(self, paths=(), notes=()):
        super().__init__(paths)
        self.notes = list(notes)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(data))


def _series(history, key):
    pts = [(r["step"], r[key]) for r in history
           if not r.get("diverged") and isinstance(r.get(key), (int, float)) and r[key] is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _setting_label(settings, swept):
    parts = [f"{k}={v}" for k, v in settings.items() if k in swept]
    return ", ".join(parts) if parts else "run"


def _colours(n):
    plt = _pyplot()
    cmap = plt.get_cmap("viridis")
    return [cmap(0.9 * i / max(1, n - 1)) for i in range(n)]


def _load(run_or_sweep):
    """``(kind, runs, swept)``: runs as ``[(name, settings, history)]``."""
    d = os.fspath(run_or_sweep)
    if os.path.exists(os.path.join(d, SWEEP_FILE)):
        plan = load_sweep(d)
        runs = sweep_histories(d)
        if not runs:
            raise ValueError(f"{d}: the sweep has no run with a history yet ({HISTORY_FILE})")
        swept = [k for k in plan["grid"] if k != "seed"]
        return "sweep", runs, swept
    if os.path.exists(os.path.join(d, HISTORY_FILE)):
        settings = {}
        if os.path.exists(os.path.join(d, CONFIG_FILE)):
            cfg = read_json(os.path.join(d, CONFIG_FILE))
            settings = {k: cfg.get(k) for k in ("lr", "batch_size", "l2", "gc_reg", "seed")}
        return "run", [(os.path.basename(os.path.normpath(d)), settings, load_history(d))], []
    raise FileNotFoundError(f"{d} holds neither a run ({HISTORY_FILE}) nor a sweep ({SWEEP_FILE}); "
                            "give a folder written by gcref train, sweep or transfer")


def plot_run_or_sweep(run_or_sweep_dir, out_dir=None) -> list:
    """Draw the figures of a run folder or a sweep folder; return the PNG paths written.

    Parameters
    ----------
    run_or_sweep_dir : path
        A folder written by :func:`gcref.lab.run_training` (``history.jsonl``) or by
        :func:`gcref.lab.run_sweep` / :func:`gcref.lab.run_transfer` (``sweep.json``).
    out_dir : path, optional
        Where the PNGs go (default ``<run_or_sweep_dir>/figures``).

    Returns
    -------
    Figures
        The files written (``curves.png`` always; ``final.png`` for a sweep over a numeric
        setting; ``transfer.png`` when the runs measured target classes, and ``fig4.png`` for
        a transfer sweep over a numeric setting, also when no run finished as asked), a list
        with ``notes``: what the final values left out and why (module docstring).
    """
    kind, runs, swept = _load(run_or_sweep_dir)
    status = _statuses(run_or_sweep_dir, kind, [name for name, _, _ in runs])
    out_dir = os.path.join(os.fspath(run_or_sweep_dir), "figures") if out_dir is None else os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    plt = _pyplot()
    written = []

    # one colour per setting (seeds share it)
    labels = list(dict.fromkeys(_setting_label(s, swept) for _, s, _ in runs))
    colour = dict(zip(labels, _colours(len(labels))))

    # ---- curves
    keys = ["gc", "nc", "geometric_collapse", "loss"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), layout="constrained")
    seen = set()
    for name, settings, history in runs:
        label = _setting_label(settings, swept)
        for ax, key in zip(axes, keys):
            x, y = _series(history, key)
            if x:
                ax.plot(x, y, color=colour[label], lw=1.6, alpha=0.9,
                        label=None if label in seen else label)
        seen.add(label)
    for name, settings, history in runs:
        if any(r.get("diverged") for r in history):
            for ax, key in zip(axes, keys):
                x, y = _series(history, key)
                if x:
                    ax.plot(x[-1:], y[-1:], marker="x", ms=9, mew=2, color="tab:red", ls="")
    diverged = [name for name, _, history in runs if any(r.get("diverged") for r in history)]
    capped = [name for name, _, _ in runs if status[name] == "cap"]
    unfinished = [name for name, _, _ in runs if status[name] is None and name not in diverged]
    finals = [(name, settings, _last(history)) for name, settings, history in runs
              if status[name] in TRAINED and name not in diverged]
    notes = [f"{why}: {', '.join(names)}" for why, names in (
        ("diverged (x: last record; left out of final values)", diverged),
        ("reached the cap without meeting the criterion (left out of final values)", capped),
        ("unfinished (no done.json that checks out; left out of final values, open grey markers)",
         unfinished)) if names]
    if not finals:
        notes.append("nothing to draw: no run finished as asked (completed or converged)")
    note = "; ".join(notes) or None
    for ax, key in zip(axes, keys):
        ax.set_title(_LABELS[key])
        ax.set_xlabel("step")
        if ax.lines and all(v > 0 for line in ax.lines for v in line.get_ydata()):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    if swept or kind == "run":
        axes[0].legend(fontsize=8, title=", ".join(swept) or None)
    fig.suptitle(f"{os.path.basename(os.path.normpath(os.path.abspath(run_or_sweep_dir)))}: training curves")
    _note(fig, note)
    path = os.path.join(out_dir, "curves.png")
    _save(fig, path)
    plt.close(fig)
    written.append(path)

    # the final-value panels: finished runs only (module docstring); the others are open markers
    left_out = [(name, settings, _last(history)) for name, settings, history in runs
                if name in capped or name in unfinished]
    finals = [(settings, last) for _, settings, last in finals]

    # ---- finals against the swept setting
    numeric = [k for k in swept if all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool)
                                       for s, _ in finals)]
    if kind == "sweep" and numeric:
        k = numeric[0]
        fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6), layout="constrained")
        for ax, key in zip(axes[:2], ("gc", "nc")):
            xs = [s[k] for s, f in finals if f.get(key) is not None]
            ys = [f[key] for s, f in finals if f.get(key) is not None]
            ax.scatter(xs, ys, color="tab:blue", alpha=0.8)
            means = {}
            for x, y in zip(xs, ys):
                means.setdefault(x, []).append(y)
            mx = sorted(means)
            ax.plot(mx, [sum(means[v]) / len(means[v]) for v in mx], color="tab:blue", lw=1.2)
            r = spearman(xs, ys)
            ax.set_title(f"final {_LABELS[key]}\n{_rho(r)}", fontsize=10)
            ax.set_xlabel(_LABELS.get(k, k))
            if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
        ax = axes[2]
        for settings, f in finals:
            if f.get("gc") is not None and f.get("nc") is not None:
                ax.scatter(f["gc"], f["nc"], color=colour[_setting_label(settings, swept)], alpha=0.9)
        r = spearman([f.get("gc") for _, f in finals], [f.get("nc") for _, f in finals])
        ax.set_title(f"NC vs GC, all runs\n{_rho(r)}", fontsize=10)
        ax.set_xlabel(_LABELS["gc"])
        ax.set_ylabel(_LABELS["nc"])
        ax.grid(True, alpha=0.3)
        shown = list(dict.fromkeys(_setting_label(s, swept) for s, _ in finals))
        ax.legend(handles=[plt.Line2D([], [], marker="o", ls="", color=colour[lab], label=lab)
                           for lab in shown],
                  fontsize=8, title=", ".join(swept) + (" (seeds share a colour)" if len(finals) > len(shown) else ""),
                  title_fontsize=8)
        _note(fig, note)
        path = os.path.join(out_dir, "final.png")
        _save(fig, path)
        plt.close(fig)
        written.append(path)

    # ---- transfer
    if any(_last(history).get("few_shot_accuracy") is not None for _, _, history in runs):
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
        for settings, f in finals:
            c = colour[_setting_label(settings, swept)]
            if f.get("target_nc") is not None and f.get("gc") is not None:
                axes[0].scatter(f["gc"], f["target_nc"], color=c)
            if f.get("few_shot_accuracy") is not None and f.get("gc") is not None:
                axes[1].errorbar(f["gc"], f["few_shot_accuracy"], yerr=f.get("few_shot_ci95") or 0,
                                 fmt="o", color=c, capsize=3)
        for ax, key in zip(axes, ("target_nc", "few_shot_accuracy")):
            _open_markers(ax, [(status[name], last.get("gc"), last.get(key)) for name, _, last in left_out])
        gcs = [f.get("gc") for _, f in finals]
        axes[0].set_title("target NC vs source GC\n"
                          f"{_rho(spearman(gcs, [f.get('target_nc') for _, f in finals]))}", fontsize=10)
        axes[0].set_ylabel(_LABELS["target_nc"])
        axes[1].set_title("few-shot accuracy vs source GC\n"
                          f"{_rho(spearman(gcs, [f.get('few_shot_accuracy') for _, f in finals]))}", fontsize=10)
        axes[1].set_ylabel(_LABELS["few_shot_accuracy"] + " (95% CI)")
        for ax in axes:
            ax.set_xlabel("source " + _LABELS["gc"])
            ax.grid(True, alpha=0.3)
        handles = [plt.Line2D([], [], marker="o", ls="", color=colour[lab], label=lab) for lab in labels]
        if swept:
            axes[1].legend(handles=handles, fontsize=8, title=", ".join(swept))
        _note(fig, note)
        path = os.path.join(out_dir, "transfer.png")
        _save(fig, path)
        plt.close(fig)
        written.append(path)
        if kind == "sweep" and numeric:
            path = os.path.join(out_dir, "fig4.png")
            _plot_fig4(plt, runs, status, numeric, note, path)
            written.append(path)
    return Figures(written, notes)


_FIG4 = (("gc", "source GC"), ("target_nc", "target NC (CDNV)"), ("few_shot_accuracy", "few-shot NCC accuracy"))


def _plot_fig4(plt, runs, status, numeric, note, path):
    """The paper's Fig. 4 layout: for each swept setting (a row), final source GC, target NC and
    few-shot accuracy against its values; mean over the seeds' runs trained as asked, error bars
    one sample standard deviation, the seeds as dots; runs at the cap and unfinished runs as
    open markers (:data:`_OPEN_MARKERS`)."""
    import numpy as np
    fig, axes = plt.subplots(len(numeric), 3, figsize=(12.5, 3.2 * len(numeric)), squeeze=False,
                             layout="constrained")
    finals = [(name, settings, _last(history)) for name, settings, history in runs
              if not any(r.get("diverged") for r in history)]
    for i, k in enumerate(numeric):
        for j, (key, label) in enumerate(_FIG4):
            ax = axes[i, j]
            groups, open_pts = {}, []
            for name, settings, last in finals:
                if last.get(key) is None:
                    continue
                x, y = settings[k], last[key]
                if status[name] in TRAINED:
                    groups.setdefault(x, []).append(y)
                elif status[name] in _OPEN_MARKERS:
                    open_pts.append((status[name], x, y))
            xs = sorted(groups)
            means = [float(np.mean(groups[x])) for x in xs]
            sds = [float(np.std(groups[x], ddof=1)) if len(groups[x]) > 1 else 0.0 for x in xs]
            ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, color="tab:blue",
                        label="mean ± s.d. over seeds")
            for x in xs:
                ax.scatter([x] * len(groups[x]), groups[x], s=10, color="k", alpha=0.45, zorder=3)
            _open_markers(ax, open_pts)
            allx = xs + [p[1] for p in open_pts]
            if allx and min(allx) > 0 and max(allx) / min(allx) >= 10:
                ax.set_xscale("log")
            ax.set_xlabel(_LABELS.get(k, k))
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.suptitle("final values against each swept setting (the paper's Fig. 4 layout)")
    _note(fig, note)
    _save(fig, path)
    plt.close(fig)


def _open_markers(ax, points):
    """Runs left out of the final values, ``[(status, x, y)]``, as open markers of their status's
    colour (:data:`_OPEN_MARKERS`), one legend entry per status."""
    for status, (colour, label) in _OPEN_MARKERS.items():
        pts = [(x, y) for s, x, y in points if s == status and x is not None and y is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=40, facecolors="none",
                       edgecolors=colour, linewidths=1.5, zorder=4, label=label)


def _statuses(root, kind, names) -> dict:
    """How each run ended (``done.json``, as :func:`gcref.lab.run.verify_finished` accepts it,
    a sweep's runs against the settings of its plan: the same judgement as the sweep summary's),
    ``None`` for a run that has not finished."""
    root = os.fspath(root)
    if kind == "sweep":
        configs = {r["name"]: r["config"] for r in load_sweep(root)["runs"]}
        done = {n: verify_finished(os.path.join(root, n), as_config(configs[n]))[0] for n in names}
    else:
        done = {n: verify_finished(root)[0] for n in names}
    return {n: None if d is None else d.get("status") for n, d in done.items()}


def _note(fig, note):
    """A red note under the figure (kept by ``bbox_inches="tight"``)."""
    if note:
        fig.text(0.0, -0.02, note, fontsize=8, color="tab:red", ha="left", va="top")


def _last(history):
    for rec in reversed(history):
        if not rec.get("diverged"):
            return rec
    return {}


def _rho(r):
    return "Spearman rho n/a" if r["rho"] is None else f"Spearman \u03c1 = {r['rho']:+.2f} (n = {r['n']})"
