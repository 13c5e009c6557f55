"""Claim 6 (Munn et al. 2024, theory): the inequalities hold on data with known Poincaré constants.

Setting: class-conditional input laws whose Poincaré constants ``rho_c`` are known exactly
(Gaussian ``N(m_c, Sigma_c)``: ``lambda_max(Sigma_c)``; uniform on a box: ``max side^2 / pi^2``)
are pushed through MLPs (ReLU and tanh) trained on a sample of them. At checkpoints along
training, on a large FRESH sample of each class law (population quantities up to sampling error):

- Poincaré, per class: ``Var_c <= rho_c GC_c``, hence per pair
  ``CDNV_ij <= (rho_i GC_i + rho_j GC_j) / (2 ||mu_i - mu_j||^2)`` and the chain
  ``NC <= mean rhs <= rho_max * geometric collapse`` (:func:`gcref.poincare_inequality`);
- flatness, per example: ``||J_f(x)||_F^2 <= ||W_1||_2^2 ||grad_(W1,b1) f(x)||_F^2 / (1 + ||x||^2)``
  (:func:`gcref.flatness_bound`), an exact (deterministic) inequality.

Statistic: the largest ratio ``Var_c / (rho_c GC_c)`` over every class, checkpoint, seed and
law, with the sampling standard error of ``Var_c - rho_c GC_c`` (per-example terms), and the
largest flatness ratio ``lhs / rhs``. Verdict (fixed before running): reproduced if no class has
``Var_c - rho_c GC_c > 3 s.e.`` (no statistically significant violation), the pairwise chain
holds on the point estimates up to the same tolerance, and the flatness inequality holds for
every example. A digits row (unknown law, ``rho`` replaced by the LOWER bound ``lambda_max(Cov)``)
is shown for contrast and is not part of the verdict.

Run: ``python validation/claim6_inequalities.py --scale small``.
"""

from __future__ import annotations

import os
import time

import common  # validation/ is on sys.path when a script runs (python validation/...)
import reporting  # noqa: E402
import training  # noqa: E402
import verdicts  # noqa: E402

import numpy as np  # noqa: E402

CLAIM = 6
TITLE = "NC <= rho * geometric collapse and the flatness bound hold on laws with known rho"
PAPER = "Theory (Poincaré inequality, flatness link)"

_LAWS_SMALL = [
    {"law": "gaussian", "num_classes": 5, "dim": 16, "separation": 3.0, "anisotropy": 1.0},
    {"law": "gaussian", "num_classes": 5, "dim": 16, "separation": 3.0, "anisotropy": 4.0},
    {"law": "uniform", "num_classes": 5, "dim": 16, "separation": 3.0, "anisotropy": 1.0},
]

CONFIGS = {
    "smoke": {"seeds": [0], "laws": _LAWS_SMALL[:1] + _LAWS_SMALL[2:], "activations": ["relu"],
              "hidden": [8, 8], "train_per_class": 20, "fresh_per_class": 40, "flatness_examples": 10,
              "train": {"lr": 0.05, "batch_size": 16, "steps": 6}, "checkpoints": 2,
              "digits_contrast": True, "z": 3.0},
    "small": {"seeds": [0, 1, 2], "laws": _LAWS_SMALL, "activations": ["relu", "tanh"],
              "hidden": [64, 64, 16], "train_per_class": 200, "fresh_per_class": 1000,
              "flatness_examples": 100, "train": {"lr": 0.05, "batch_size": 32, "steps": 1500},
              "checkpoints": 5, "digits_contrast": True, "z": 3.0},
    # The theory is scale-free; "paper" runs the same check with wider networks, more classes
    # and higher dimension (the paper states it as a theorem; there is no paper-scale figure).
    "paper": {"seeds": [0, 1, 2, 3, 4],
              "laws": [{"law": "gaussian", "num_classes": 10, "dim": 64, "separation": 3.0, "anisotropy": 1.0},
                       {"law": "gaussian", "num_classes": 10, "dim": 64, "separation": 3.0, "anisotropy": 4.0},
                       {"law": "uniform", "num_classes": 10, "dim": 64, "separation": 3.0, "anisotropy": 2.0}],
              "activations": ["relu", "tanh"], "hidden": [512, 512, 128], "train_per_class": 1000,
              "fresh_per_class": 5000, "flatness_examples": 200,
              "train": {"lr": 0.05, "batch_size": 128, "steps": 10000}, "checkpoints": 6,
              "digits_contrast": True, "z": 3.0},
}


def _make_law(spec, seed, n_per_class):
    from gcref.data import gaussian_mixture, uniform_boxes
    kw = {k: spec[k] for k in ("num_classes", "dim", "separation", "anisotropy")}
    if spec["law"] == "gaussian":
        return gaussian_mixture(n_per_class, seed=seed, **kw)
    return uniform_boxes(n_per_class, seed=seed, **kw)


def _poincare_terms(net, params, X, y, rho, B):
    """Per-class Var_c, rho_c GC_c and the s.e. of their difference; the pairwise chain."""
    from gcref.metrics import poincare_inequality_from_stats
    Z = net.embed(params, X)
    pe = np.asarray(B.metrics.per_example_gc(net, params, X))
    classes = np.unique(y)
    var, gcc, se, means = [], [], [], []
    for c in classes:
        Zc = Z[y == c]
        mu = Zc.mean(axis=0)
        a = np.sum((Zc - mu) ** 2, axis=1)
        b = rho[c] * pe[y == c]
        var.append(a.mean())
        gcc.append(pe[y == c].mean())
        se.append(np.std(a - b, ddof=1) / np.sqrt(a.size))
        means.append(mu)
    var, gcc, se, means = map(np.asarray, (var, gcc, se, means))
    rep = poincare_inequality_from_stats(var, gcc, rho[classes], means)
    return var, rho[classes] * gcc, se, rep


def run_one(law: dict, activation: str, seed: int, cfg: dict, work: str, backend: str):
    import gcref
    B = training.load_backend(backend)
    mix = _make_law(law, seed, cfg["train_per_class"])
    fresh = mix.sample(cfg["fresh_per_class"], np.random.default_rng([seed, 555]))
    rho = np.asarray(mix.poincare, dtype=float)
    d = law["dim"]
    net = gcref.zoo.mlp([d, *cfg["hidden"]], num_classes=law["num_classes"], activation=activation)
    label = f"{law['law']} (k={law['num_classes']}, d={d}, aniso={law['anisotropy']:g}) / {activation}"
    rows = []
    flat_idx = np.random.default_rng([seed, 556]).choice(fresh.n, size=min(cfg["flatness_examples"], fresh.n),
                                                         replace=False)
    for step, params, _ in training.train_checkpoints(
            net, mix.dataset, training.checkpoint_steps(cfg["train"]["steps"], cfg["checkpoints"]),
            seed=seed, backend=backend, work_dir=os.path.join(work, f"{law['law']}-{law['anisotropy']}-{activation}-{seed}"),
            **cfg["train"]):
        var, rhs, se, rep = _poincare_terms(net, params, fresh.X, fresh.y, rho, B)
        fl = gcref.flatness_bound(net, params, fresh.X[flat_idx])
        rows.append({"step": step, "var": var, "rho_gc": rhs, "se": se,
                     "ratio": var / rhs, "z": (var - rhs) / np.maximum(se, 1e-300),
                     "pairs_hold": rep.holds, "chain_holds": rep.chain_holds,
                     "nc": rep.neural_collapse, "rhs_mean": rep.rhs_mean,
                     "rho_max_gcol": rep.rho_max * rep.geometric_collapse,
                     "pair_ratio_max": float(np.max(np.where(rep.rhs > 0, rep.lhs / np.where(rep.rhs > 0, rep.rhs, 1), 0))),
                     "flat_holds": fl.holds, "flat_ratio_max": float(np.max(fl.lhs / fl.rhs)),
                     "flat_gc": fl.gc, "flat_bound": fl.gc_bound})
    return {"label": label, "law": law, "activation": activation, "seed": seed, "rows": rows,
            "rho": rho}


def run_digits_contrast(seed: int, cfg: dict, work: str, backend: str):
    """Digits (law unknown): rho_c replaced by the lower bound lambda_max(Cov_c); informative."""
    from gcref.metrics import empirical_poincare_lower_bound
    B = training.load_backend(backend)
    train, test, _ = training.load_classification({"name": "digits"}, None)
    net = training.build_net({"arch": "mlp", "hidden": [128, 128, 32]}, train.input_shape, 10)
    flat = test.X.reshape(test.n, -1)
    rho = np.array([empirical_poincare_lower_bound(flat[test.y == c]).value for c in range(10)])
    rows = []
    steps = cfg["train"]["steps"]
    for step, params, _ in training.train_checkpoints(net, train, [0, steps], seed=seed, backend=backend,
                                                     work_dir=os.path.join(work, f"digits-{seed}"),
                                                     **{**cfg["train"], "batch_size": min(32, cfg["train"]["batch_size"])}):
        var, rhs, se, rep = _poincare_terms(net, params, test.X, test.y, rho, B)
        rows.append({"step": step, "ratio": var / rhs, "z": (var - rhs) / se, "chain_holds": rep.chain_holds})
    return {"label": "digits / MLP (rho = lambda_max(Cov), a lower bound)", "seed": seed, "rows": rows}


def plot(runs, contrast):
    plt = reporting.plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    labels = sorted({r["label"] for r in runs})
    colors = {lab: f"C{i}" for i, lab in enumerate(labels)}
    ax = axes[0]
    for r in runs:
        for row in r["rows"]:
            ax.scatter(row["var"], row["rho_gc"], s=8, color=colors[r["label"]], alpha=0.6)
    for lab in labels:
        ax.scatter([], [], color=colors[lab], label=lab)
    lo = min(min(row["var"].min(), row["rho_gc"].min()) for r in runs for row in r["rows"])
    hi = max(max(row["var"].max(), row["rho_gc"].max()) for r in runs for row in r["rows"])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="equality")
    reporting.log_scale(ax, "xy")
    ax.set_xlabel(r"$\mathrm{Var}_c$ (fresh sample)")
    ax.set_ylabel(r"$\rho_c\,\mathrm{GC}_c$")
    ax.set_title("Poincaré per class: points must lie above the line", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    for r in runs:
        ax.scatter([row["nc"] for row in r["rows"]], [row["rho_max_gcol"] for row in r["rows"]], s=12,
                   color=colors[r["label"]], alpha=0.7)
    v = [x for r in runs for row in r["rows"] for x in (row["nc"], row["rho_max_gcol"])]
    ax.plot([min(v), max(v)], [min(v), max(v)], "k--", lw=1)
    reporting.log_scale(ax, "xy")
    ax.set_xlabel("NC (CDNV, fresh sample)")
    ax.set_ylabel(r"$\rho_{max}\,\cdot$ geometric collapse")
    ax.set_title("GC controls NC: NC <= rho_max G", fontsize=9)
    ax = axes[2]
    for r in runs:
        ax.scatter([row["flat_gc"] for row in r["rows"]], [row["flat_bound"] for row in r["rows"]], s=12,
                   color=colors[r["label"]], alpha=0.7)
    v = [x for r in runs for row in r["rows"] for x in (row["flat_gc"], row["flat_bound"])]
    ax.plot([min(v), max(v)], [min(v), max(v)], "k--", lw=1)
    reporting.log_scale(ax, "xy")
    ax.set_xlabel("GC (mean ||J_f(x)||^2)")
    ax.set_ylabel("flatness bound (mean rhs)")
    title = "Flatness bound on GC (first dense layer)"
    if contrast:
        worst = max(float(np.max(row["ratio"])) for c in contrast for row in c["rows"])
        title += f"\ncontrast, digits with rho=lambda_max(Cov): max Var/(rho GC) = {worst:.3g}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def run(args, t0):
    cfg = common.resolve_config(CONFIGS, args)
    B = training.load_backend(args.backend)
    with training.work_dir(args, "claim6") as work:
        tasks = [{"law": law, "activation": act, "seed": s, "cfg": cfg, "work": str(work), "backend": args.backend}
                 for law in cfg["laws"] for act in cfg["activations"] for s in cfg["seeds"]]
        common.log(args, f"{len(tasks)} runs, {args.jobs} processes")
        runs = training.run_parallel(run_one, tasks, args.jobs)
        contrast = []
        if cfg.get("digits_contrast"):
            contrast = training.run_parallel(run_digits_contrast,
                                           [{"seed": s, "cfg": cfg, "work": str(work), "backend": args.backend}
                                            for s in cfg["seeds"][:2]], args.jobs)
    z_thr = cfg["z"]
    parts = []
    for lab in sorted({r["label"] for r in runs}):
        rs = [r for r in runs if r["label"] == lab]
        ratios = np.concatenate([row["ratio"] for r in rs for row in r["rows"]])
        zs = np.concatenate([row["z"] for r in rs for row in r["rows"]])
        strict_viol = int(np.sum(ratios > 1 + 1e-9))
        sig_viol = int(np.sum(zs > z_thr))
        chain = all(row["chain_holds"] for r in rs for row in r["rows"])
        flat_ok = all(row["flat_holds"] for r in rs for row in r["rows"])
        flat_max = max(row["flat_ratio_max"] for r in rs for row in r["rows"])
        pair_max = max(row["pair_ratio_max"] for r in rs for row in r["rows"])
        # the chain follows from the per-class inequality on the same point estimates: it may
        # only fail where a class fails by sampling error (then judged by the z-test above)
        ok = sig_viol == 0 and flat_ok and (chain or strict_viol > 0)
        parts.append({"name": lab, "statistic": "max Var_c / (rho_c GC_c)", "value": float(ratios.max()),
                      "max_z": float(zs.max()), "n_class_checks": int(ratios.size),
                      "strict_violations": strict_viol, "significant_violations": sig_viol,
                      "max_pair_ratio": pair_max, "chain_holds_all": bool(chain),
                      "flatness_max_ratio": flat_max, "flatness_holds_all": bool(flat_ok),
                      "verdict": "reproduced" if ok else "not reproduced"})
    verdict = verdicts.combine_verdicts(parts)
    worst = max(parts, key=lambda p: p["value"])
    n_checks = sum(p["n_class_checks"] for p in parts)
    reason = (f"{n_checks} class checks (laws x activations x seeds x checkpoints x classes): max Var/(rho GC) = "
              f"{reporting.fmt(worst['value'])} ({worst['name']}), "
              f"{sum(p['strict_violations'] for p in parts)} point-estimate and "
              f"{sum(p['significant_violations'] for p in parts)} significant (> {z_thr:g} s.e.) violations; "
              f"flatness: max lhs/rhs = {reporting.fmt(max(p['flatness_max_ratio'] for p in parts))} "
              f"over {sum(len(r['rows']) for r in runs)} checkpoints")
    contrast_info = None
    if contrast:
        cr = np.concatenate([row["ratio"] for c in contrast for row in c["rows"]])
        contrast_info = {"label": contrast[0]["label"], "max_ratio": float(cr.max()),
                         "violations": int(np.sum(cr > 1)), "n": int(cr.size)}
        reason += (f". Contrast (digits, rho replaced by the lower bound lambda_max(Cov)): max ratio "
                   f"{reporting.fmt(contrast_info['max_ratio'])}, {contrast_info['violations']}/{contrast_info['n']} above 1")
    setting = (f"{len(cfg['laws'])} laws ({', '.join(l['law'] + ' aniso ' + str(l['anisotropy']) for l in cfg['laws'])}) "
               f"x MLP {cfg['hidden']} ({', '.join(cfg['activations'])}) x {len(cfg['seeds'])} seeds, "
               f"{cfg['checkpoints']} checkpoints over {cfg['train']['steps']} SGD steps, "
               f"fresh sample {cfg['fresh_per_class']}/class")
    summary = reporting.Summary(
        CLAIM, TITLE, PAPER, args.scale, setting,
        statistic={"name": "max over all checks of Var_c / (rho_c GC_c)", "value": worst["value"]},
        uncertainty={"max_z_of_violation": max(p["max_z"] for p in parts), "z_threshold": z_thr,
                     "note": "z = (Var_c - rho_c GC_c) / s.e., s.e. from the per-example terms"},
        verdict=verdict, reason=reason, parts=parts, backend=B.describe(),
        data=[{"name": "synthetic laws with known Poincaré constants", "laws": cfg["laws"]}],
        config=cfg, runtime_s=time.time() - t0, extra={"contrast": contrast_info})
    fig = plot(runs, contrast)
    return reporting.finish(args, summary, fig)


def main(argv=None):
    return training.script_main(run, argv, claim=CLAIM, description=__doc__)


if __name__ == "__main__":
    main()
