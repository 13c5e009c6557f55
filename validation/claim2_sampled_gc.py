"""Claim 2 (Munn et al. 2024, Fig. 2): sampled GC tracks the exact GC over training.

Setting: train a network, and at checkpoints along training compute the exact embedding GC on
a fixed evaluation set and the four unbiased estimators of :func:`gcref.estimate_gc` at several
budgets, with several independent estimator draws:

- ``examples``: mean of ``||J(x)||_F^2`` over ``m`` of the ``n`` examples (budget ``m/n``);
- ``outputs``: ``s`` of the ``p`` embedding rows per example (budget ``s/p``);
- ``mask``: each Jacobian entry kept with probability ``q`` (budget ``q``);
- ``projection``: ``R`` Rademacher probes ``||J^T v||^2`` (budget ``R/p`` VJPs).

Statistic: the root-mean-square relative error ``|est - exact| / exact`` over checkpoints, seeds
and draws, per method and budget, and the coverage of the estimators' own ``+-2 stderr``
intervals. Verdict (fixed before running): reproduced if, at gcref's default budget of every
method, the RMS relative error is at most ``max_rel_err`` (15%) and the 2-stderr coverage at
least ``min_coverage`` (85%), in every setting. The figure shows the tracking and the error
against the budget (with the ``budget^-1/2`` reference slope).

Run: ``python validation/claim2_sampled_gc.py --scale small`` (see ``--help``).
"""

from __future__ import annotations

import math
import os
import time

import common  # validation/ is on sys.path when a script runs (python validation/...)
import reporting  # noqa: E402
import training  # noqa: E402
import verdicts  # noqa: E402

import numpy as np  # noqa: E402

CLAIM = 2
TITLE = "Sampled GC tracks the exact GC over training"
PAPER = "Fig. 2"
METHODS = ("examples", "outputs", "mask", "projection")

_SMALL_MLP = {"label": "digits / MLP 64-128-128-32",
              "data": {"name": "digits"},
              "net": {"arch": "mlp", "hidden": [128, 128, 32]},
              "train": {"lr": 0.05, "batch_size": 32, "steps": 2000},
              "checkpoints": 8, "eval_size": 256,
              "budgets": {"examples": [8, 16, 32, 64, 128], "outputs": [2, 4, 8, 16],
                          "mask": [0.05, 0.1, 0.25, 0.5], "projection": [1, 2, 4, 8, 16]}}
_SMALL_CNN = {"label": "Fashion-MNIST / CNN (8,16; 32)",
              "data": {"name": "fashion_mnist", "train_per_class": 300, "test_per_class": 50},
              "net": {"arch": "cnn", "channels": [8, 16], "hidden": 32},
              "train": {"lr": 0.05, "batch_size": 32, "steps": 600},
              "checkpoints": 5, "eval_size": 96, "draws": 3,
              # the mask estimator needs the whole Jacobian (no saving on a CPU): default budget only
              "budgets": {"examples": [12, 24, 48], "outputs": [2, 4, 8, 16],
                          "mask": [0.25], "projection": [1, 2, 4, 8]}}

CONFIGS = {
    "smoke": {"seeds": [0], "draws": 2, "max_rel_err": 0.15, "min_coverage": 0.85,
              "settings": [{"label": "digits / MLP (smoke)",
                            "data": {"name": "digits", "train_per_class": 20},
                            "net": {"arch": "mlp", "hidden": [16, 8]},
                            "train": {"lr": 0.05, "batch_size": 16, "steps": 6},
                            "checkpoints": 3, "eval_size": 24,
                            "budgets": {"examples": [6, 12], "outputs": [2, 4],
                                        "mask": [0.25, 0.5], "projection": [1, 4]}}]},
    "small": {"seeds": [0, 1], "draws": 5, "max_rel_err": 0.15, "min_coverage": 0.85,
              "settings": [_SMALL_MLP, _SMALL_CNN]},
    # The paper's setting: VGG-13 on CIFAR-10 (p = 512). Budgets up to a quarter of the rows.
    "paper": {"seeds": [0, 1, 2], "draws": 3, "max_rel_err": 0.15, "min_coverage": 0.85,
              "settings": [{"label": "CIFAR-10 / VGG-13",
                            "data": {"name": "cifar10"},
                            "net": {"arch": "vgg13", "width": 1.0},
                            "train": {"lr": 0.01, "batch_size": 128, "steps": 20000},
                            "checkpoints": 8, "eval_size": 512,
                            "budgets": {"examples": [16, 32, 64, 128, 256],
                                        "outputs": [4, 16, 64, 128], "mask": [0.01, 0.05, 0.25],
                                        "projection": [1, 4, 16, 64]}}]},
}


def _budget_fraction(method, size, n, p):
    return {"examples": size / n, "outputs": size / p, "mask": float(size),
            "projection": size / p}[method]


def _default_size(method, n, p):
    """gcref's default budget of each estimator (``estimate_gc(size=None)``)."""
    return {"examples": min(n, 32), "outputs": max(2, math.ceil(p / 4)), "mask": 0.25,
            "projection": 4}[method]


def run_setting(setting: dict, seed: int, draws: int, work: str, backend: str, data_root):
    """Train one run; at each checkpoint, exact GC and every estimator at every budget."""
    B = training.load_backend(backend)
    train, _, info = training.load_classification(setting["data"], data_root)
    net = training.build_net(setting["net"], train.input_shape, train.num_classes)
    rng = np.random.default_rng([seed, 99])
    n_eval = min(setting["eval_size"], train.n)
    idx = np.sort(rng.choice(train.n, size=n_eval, replace=False))
    X = train.X[idx]
    p = net.embedding_dim
    steps = setting["train"]["steps"]
    records, curve = [], []
    for step, params, _ in training.train_checkpoints(
            net, train, training.checkpoint_steps(steps, setting["checkpoints"]), seed=seed, backend=backend,
            work_dir=os.path.join(work, f"seed{seed}"), **setting["train"]):
        t0 = time.perf_counter()
        exact = float(np.mean(B.metrics.per_example_gc(net, params, X)))
        t_exact = time.perf_counter() - t0
        curve.append({"step": step, "exact": exact})
        for method in METHODS:
            sizes = list(setting["budgets"][method])
            default = _default_size(method, n_eval, p)
            if default not in sizes:
                sizes.append(default)
            for size in sizes:
                if method == "examples" and size > n_eval or method == "outputs" and size > p:
                    continue
                for draw in range(draws):
                    t0 = time.perf_counter()
                    est = B.metrics.estimate_gc(net, params, X, method=method, size=size,
                                                seed=[seed, step, draw, 17])
                    records.append({"seed": seed, "step": step, "method": method, "size": size,
                                    "budget": _budget_fraction(method, size, n_eval, p),
                                    "default": size == default, "draw": draw,
                                    "value": est.value, "stderr": est.stderr, "exact": exact,
                                    "seconds": time.perf_counter() - t0, "exact_seconds": t_exact})
    return {"label": setting["label"], "seed": seed, "records": records, "curve": curve, "draws": draws,
            "data": info.describe(), "p": p, "n_eval": n_eval, "network": net.name}


def summarize(label, runs, cfg):
    recs = [r for run in runs for r in run["records"]]
    out = {"label": label, "p": runs[0]["p"], "n_eval": runs[0]["n_eval"], "network": runs[0]["network"],
           "methods": {}}
    for method in METHODS:
        rows = [r for r in recs if r["method"] == method]
        by_size = {}
        for size in sorted({r["size"] for r in rows}):
            rs = [r for r in rows if r["size"] == size]
            rel = np.array([(r["value"] - r["exact"]) / r["exact"] for r in rs if r["exact"] > 0])
            # coverage of the reported +-2 stderr, over the estimates that report one: a single
            # draw per example has no standard error (stderr inf in memory, null in JSON), and a
            # full budget is exact (stderr 0)
            se_ok = [abs(r["value"] - r["exact"]) <= 2 * r["stderr"] for r in rs
                     if r["stderr"] is not None and 0 < r["stderr"] < math.inf]
            cost = np.median([r["seconds"] / r["exact_seconds"] for r in rs if r["exact_seconds"] > 0])
            by_size[str(size)] = {
                "size": size, "budget": rs[0]["budget"], "default": rs[0]["default"],
                "rms_rel_err": float(np.sqrt(np.mean(rel ** 2))),
                "mean_rel_err": float(np.mean(rel)),
                "max_abs_rel_err": float(np.max(np.abs(rel))),
                "coverage_2se": float(np.mean(se_ok)) if se_ok else None,
                "rel_err_ci95": verdicts.bootstrap_ci(np.abs(rel), lambda v: float(np.sqrt(np.mean(v ** 2)))),
                "n": int(rel.size), "time_vs_exact": float(cost)}
        budgets = np.array([v["budget"] for v in by_size.values()])
        errs = np.array([v["rms_rel_err"] for v in by_size.values()])
        keep = (budgets < 1) & (errs > 0)
        slope = float(np.polyfit(np.log(budgets[keep]), np.log(errs[keep]), 1)[0]) if keep.sum() >= 2 else None
        d = next(v for v in by_size.values() if v["default"])
        # tracking: correlation of the default-budget estimate with the exact curve across steps
        tracks = []
        for run in runs:
            for draw in range(run["draws"]):
                rs = sorted((r for r in run["records"] if r["method"] == method and r["default"]
                             and r["draw"] == draw), key=lambda r: r["step"])
                if len(rs) >= 3:
                    a = np.array([r["value"] for r in rs])
                    b = np.array([r["exact"] for r in rs])
                    if np.std(b) > 0 and np.std(a) > 0:
                        tracks.append(float(np.corrcoef(a, b)[0, 1]))
        ok = (d["rms_rel_err"] <= cfg["max_rel_err"]
              and (d["coverage_2se"] is None or d["coverage_2se"] >= cfg["min_coverage"]))
        out["methods"][method] = {"by_size": by_size, "loglog_slope": slope, "default": d,
                                  "trajectory_pearson_median": float(np.median(tracks)) if tracks else None,
                                  "verdict": "reproduced" if ok else "not reproduced"}
    return out


def plot(summaries, runs_by_label, path_fig_args):
    plt = reporting.plt()
    n = len(summaries)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.8 * n), squeeze=False)
    colors = dict(zip(METHODS, ("C0", "C1", "C2", "C3")))
    for row, s in enumerate(summaries):
        ax = axes[row, 0]
        run = runs_by_label[s["label"]][0]
        steps = [c["step"] for c in run["curve"]]
        ax.plot(steps, [c["exact"] for c in run["curve"]], "k-", lw=2, label="exact")
        for j, method in enumerate(METHODS):
            rs = sorted((r for r in run["records"] if r["method"] == method and r["default"]
                         and r["draw"] == 0), key=lambda r: r["step"])
            off = 1 + 0.03 * (j - 1.5)
            ax.errorbar([max(r["step"], 0.5) * off for r in rs], [r["value"] for r in rs],
                        yerr=[2 * r["stderr"] for r in rs], fmt="o", ms=4, capsize=2,
                        color=colors[method], label=f"{method} (default budget)")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("training step")
        ax.set_ylabel("embedding GC")
        ax.set_title(f"{s['label']}: exact vs sampled GC (seed {run['seed']}, +-2 s.e.)", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[row, 1]
        for method in METHODS:
            bs = sorted(s["methods"][method]["by_size"].values(), key=lambda v: v["budget"])
            ax.loglog([v["budget"] for v in bs], [v["rms_rel_err"] for v in bs], "o-",
                      color=colors[method], label=method)
            d = s["methods"][method]["default"]
            ax.plot(d["budget"], d["rms_rel_err"], "*", ms=12, color=colors[method])
        xs = np.geomspace(min(v["budget"] for m in s["methods"].values() for v in m["by_size"].values()), 1, 20)
        ax.loglog(xs, 0.05 * xs ** -0.5, "k:", lw=1, label="budget$^{-1/2}$")
        ax.axhline(path_fig_args["max_rel_err"], color="grey", ls="--", lw=1, label="verdict threshold")
        ax.set_xlabel("budget (fraction of examples / rows / entries / VJPs)")
        ax.set_ylabel("RMS relative error")
        ax.set_title(f"{s['label']}: error vs budget (stars: gcref defaults)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(args, t0):
    cfg = common.resolve_config(CONFIGS, args)
    B = training.load_backend(args.backend)
    tasks = []
    with training.work_dir(args, "claim2") as work:
        for i, setting in enumerate(cfg["settings"]):
            for seed in cfg["seeds"]:
                tasks.append({"setting": setting, "seed": seed, "draws": setting.get("draws", cfg["draws"]),
                              "work": os.path.join(str(work), f"setting{i}"), "backend": args.backend,
                              "data_root": args.data_root})
        common.log(args, f"{len(tasks)} runs ({len(cfg['settings'])} settings x {len(cfg['seeds'])} seeds), "
                         f"{args.jobs} processes")
        results = training.run_parallel(run_setting, tasks, args.jobs)
    runs_by_label = {}
    for r in results:
        runs_by_label.setdefault(r["label"], []).append(r)
    summaries = [summarize(label, runs, cfg) for label, runs in runs_by_label.items()]
    parts = []
    for s in summaries:
        for method, m in s["methods"].items():
            d = m["default"]
            parts.append({"name": f"{s['label']}: {method} at default budget {d['size']} "
                                  f"({d['budget']:.3g})",
                          "statistic": "RMS relative error", "value": d["rms_rel_err"],
                          "ci95": d["rel_err_ci95"], "coverage_2se": d["coverage_2se"],
                          "trajectory_pearson_median": m["trajectory_pearson_median"],
                          "loglog_slope": m["loglog_slope"], "verdict": m["verdict"]})
    verdict = verdicts.combine_verdicts(parts)
    worst = max(parts, key=lambda p: p["value"])
    covs = [p["coverage_2se"] for p in parts if p["coverage_2se"] is not None]
    reason = (f"at gcref's default budgets the RMS relative error is {reporting.fmt(min(p['value'] for p in parts))}"
              f"-{reporting.fmt(worst['value'])} (worst: {worst['name']}), 2-s.e. coverage "
              f"{reporting.fmt(min(covs))}-{reporting.fmt(max(covs))}; thresholds: error <= {cfg['max_rel_err']}, "
              f"coverage >= {cfg['min_coverage']}")
    setting = "; ".join(f"{s['label']} (p={s['p']}, {s['n_eval']} eval examples)" for s in summaries) + \
        f"; {len(cfg['seeds'])} training seeds; " + ", ".join(
            f"{s.get('draws', cfg['draws'])} estimator draws per checkpoint and budget ({s['label'].split(' / ')[1]})"
            for s in cfg["settings"])
    summary = reporting.Summary(
        CLAIM, TITLE, PAPER, args.scale, setting,
        statistic={"name": "max over methods of the RMS relative error at the default budget",
                   "value": worst["value"]},
        uncertainty={"ci95_bootstrap": worst["ci95"], "coverage_2se_range": [min(covs), max(covs)]},
        verdict=verdict, reason=reason, parts=parts, backend=B.describe(),
        data=[runs_by_label[s["label"]][0]["data"] for s in summaries],
        config=cfg, runtime_s=time.time() - t0, extra={"settings": summaries})
    fig = plot(summaries, runs_by_label, cfg)
    return reporting.finish(args, summary, fig)


def main(argv=None):
    return training.script_main(run, argv, claim=CLAIM, description=__doc__)


if __name__ == "__main__":
    main()
