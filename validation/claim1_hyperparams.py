"""Claim 1 (Munn et al. 2024, Fig. 1; appendix VGG-11 / MNIST): lr, batch size and L2 steer GC and NC.

The claim: raising the learning rate, lowering the batch size and raising L2 each LOWER the
embedding GC during training, and lower the neural collapse (CDNV) with it; the geometric
collapse moves the same way.

Setting: one-dimensional sweeps around a base configuration (the other hyperparameters fixed),
several seeds per value, run by :func:`gcref.lab.run_sweep`: in the converged protocol
(``CONFIGS``, the primary verdict) each run is trained with base weight decay until its
training accuracy reaches the criterion (runs that reach the cap are left out of the
correlations); in the ablation (``FIXED_BUDGET``, ``--protocol fixed-budget``) for a fixed
number of plain-SGD steps without weight decay. GC (exact, on a fixed class-balanced subset of
the training set), NC and geometric collapse are recorded along training
(:func:`gcref.train.fit`) and taken at the last record; the matched-fit analysis takes them at
the first record below a training-loss level that every run reaches.

Statistic: for each swept hyperparameter and each metric, Spearman's rho between the value and
the final metric over all runs, with a two-sided permutation p-value and a bootstrap 95%
interval (runs resampled). Expected signs: lr -, batch size +, L2 -.
Verdict (fixed before running): a part is reproduced if the sign is the expected one with
p < 0.05; the claim is reproduced if all nine parts (3 hyperparameters x GC, NC, geometric
collapse) are. Spearman(GC, NC) over all runs is reported too.

Run: ``python validation/claim1_hyperparams.py --scale small``.
"""

from __future__ import annotations

import os
import time

import common  # validation/ is on sys.path when a script runs (python validation/...)
import reporting  # noqa: E402
import training  # noqa: E402
import verdicts  # noqa: E402

import numpy as np  # noqa: E402

CLAIM = 1
TITLE = "Higher lr, smaller batch, more L2 lower GC, NC and geometric collapse"
PAPER = "Fig. 1 (VGG-13 / CIFAR-10); appendix (VGG-11 / MNIST)"
METRICS = ("gc", "nc", "geometric_collapse")
EXPECTED = {"lr": -1, "batch_size": +1, "l2": -1}
LABELS = {"gc": "embedding GC", "nc": "NC (CDNV)", "geometric_collapse": "geometric collapse"}

# The converged protocol (the primary verdict), fixed before its runs. Each setting's "config"
# is a gcref.lab TrainConfig: base weight decay l2 = 5e-4 (the lr and batch sweeps run at that
# base; the L2 sweep spans 0..5e-3 around it); every run is trained until its accuracy on the
# fixed training evaluation subset (eval_size class-balanced training examples) is >= 99%
# (until_train_acc), with a cap in epochs of several times the median epochs needed (measured
# on two base-point runs before the sweep: digits MLP 15 epochs at lr 0.05, 52 at lr 0.01, 46 at
# batch 128); a run that reaches the cap is reported as such and left out of the correlations.
# A record every eval_every steps resolves the matched-fit level (verdicts.matched_fit).
CONFIGS = {
    "smoke": {"seeds": [0, 1], "settings": [{
        "label": "digits / MLP (smoke)",
        "config": {"dataset": "digits", "max_per_class": 20, "arch": "mlp", "hidden": [16, 8], "lr": 0.05,
                   "batch_size": 16, "l2": 5e-4, "steps": 6, "until_train_acc": 0.15, "eval_every": 2,
                   "eval_size": 40},
        "sweeps": {"lr": [0.02, 0.1], "batch_size": [8, 16], "l2": [0.0, 5e-3]}}]},
    "small": {"seeds": [0, 1, 2, 3, 4], "settings": [{
        "label": "digits / MLP 64-128-128-32",
        "config": {"dataset": "digits", "arch": "mlp", "hidden": [128, 128, 32], "lr": 0.05, "batch_size": 32,
                   "l2": 5e-4, "until_train_acc": 0.99, "epochs": 200, "eval_every": 10, "eval_size": 300},
        "sweeps": {"lr": [0.01, 0.02, 0.05, 0.1, 0.2], "batch_size": [8, 16, 32, 64, 128],
                   "l2": [0.0, 1e-4, 5e-4, 1e-3, 2e-3, 5e-3]}}]},
    # VGG-11 (width 1/8, no batch norm) on Fashion-MNIST (200 training images per class) to >= 99%
    # training accuracy, SGD with momentum 0.9 (as the paper's VGG training), trained with
    # --backend cuda (gcref_cuda; NumPy without a GPU). Sized before the sweep from one pilot
    # at the base point (seed 0): lr 0.01 reached 99% at epoch 51 (1632 steps, 334 s with two
    # runs sharing the 2 cores, ~0.17 s per step); lr 0.005 was at 98.5% after 66 epochs when
    # stopped, so the cap is 150 epochs (about 3x the median). Plain SGD at 1000 images per
    # class needed more than 100 epochs at lr 0.02 (several CPU hours for the grid). Grid: lr
    # and L2 sweeps (batch size not swept at this scale), 3 seeds, 15 distinct runs, estimated
    # 50-80 min on the 2-core machine.
    "medium": {"seeds": [0, 1, 2], "settings": [{
        "label": "Fashion-MNIST / VGG-11 (width 1/8)",
        "config": {"dataset": "fashion_mnist", "max_per_class": 200, "arch": "vgg11", "width": 0.125,
                   "lr": 0.01, "momentum": 0.9, "batch_size": 64, "l2": 5e-4, "until_train_acc": 0.99,
                   "epochs": 150, "eval_every": 32, "eval_size": 128},
        "sweeps": {"lr": [0.005, 0.01, 0.02], "l2": [0.0, 5e-4, 5e-3]}}]},
    "paper": {"seeds": [0, 1, 2], "settings": [
        {"label": "CIFAR-10 / VGG-13",
         "config": {"dataset": "cifar10", "arch": "vgg13", "width": 1.0, "lr": 0.01, "batch_size": 128,
                    "l2": 5e-4, "until_train_acc": 0.99, "steps": 60000, "eval_every": 500, "eval_size": 512},
         "sweeps": {"lr": [0.005, 0.01, 0.02, 0.05, 0.1], "batch_size": [32, 64, 128, 256, 512],
                    "l2": [0.0, 1e-4, 5e-4, 1e-3, 5e-3]}},
        {"label": "MNIST / VGG-11",
         "config": {"dataset": "mnist", "arch": "vgg11", "width": 1.0, "lr": 0.01, "batch_size": 128,
                    "l2": 5e-4, "until_train_acc": 0.99, "steps": 30000, "eval_every": 250, "eval_size": 512},
         "sweeps": {"lr": [0.005, 0.01, 0.02, 0.05, 0.1], "batch_size": [32, 64, 128, 256, 512],
                    "l2": [0.0, 1e-4, 5e-4, 1e-3, 5e-3]}}]},
}

# The fixed-budget ablation (--protocol fixed-budget; the earlier primary): a fixed number of
# plain-SGD steps and no weight decay at the base (the lab's default l2 = 0.005 is overridden
# to 0 so that only the swept hyperparameter regularizes): under-trained networks.
FIXED_BUDGET = {
    "smoke": {"seeds": [0, 1], "settings": [{
        "label": "digits / MLP (smoke)",
        "config": {"dataset": "digits", "max_per_class": 20, "arch": "mlp", "hidden": [16, 8], "lr": 0.05,
                   "batch_size": 16, "l2": 0.0, "steps": 6, "eval_every": 3, "eval_size": 40},
        "sweeps": {"lr": [0.02, 0.1], "batch_size": [8, 16], "l2": [0.0, 1e-2]},
        "diagnostics": [{"label": "lr sweep with base L2 = 1e-3", "override": {"l2": 1e-3},
                         "sweeps": {"lr": [0.02, 0.1]}}]}]},
    "small": {"seeds": [0, 1, 2], "settings": [{
        "label": "digits / MLP 64-128-128-32",
        "config": {"dataset": "digits", "arch": "mlp", "hidden": [128, 128, 32], "lr": 0.05, "batch_size": 32,
                   "l2": 0.0, "steps": 2000, "eval_every": 200, "eval_size": 300},
        "sweeps": {"lr": [0.01, 0.02, 0.05, 0.1, 0.2], "batch_size": [8, 16, 32, 64, 128],
                   "l2": [0.0, 1e-4, 1e-3, 3e-3, 1e-2]},
        # Not part of the verdict: without L2 the feature scale (hence the raw, scale-dependent
        # GC) keeps growing during training, faster for larger lr; the same lr sweep with a
        # base L2 shows whether the lr -> GC direction depends on that.
        "diagnostics": [{"label": "lr sweep with base L2 = 1e-3", "override": {"l2": 1e-3},
                         "sweeps": {"lr": [0.01, 0.02, 0.05, 0.1, 0.2]}}]}]},
    # The paper's appendix setting on real data, at CPU scale: VGG-11 (no batch norm, width 1/8:
    # channels 8..64, embedding 64) on Fashion-MNIST (1000 training images per class), lr and L2
    # sweeps, trained with --backend cuda (gcref_cuda; NumPy without a GPU). About 30 min on one
    # idle core, 45-60 min on a shared 2-core machine.
    "medium": {"seeds": [0, 1, 2], "settings": [{
        "label": "Fashion-MNIST / VGG-11 (width 1/8)",
        "config": {"dataset": "fashion_mnist", "max_per_class": 1000, "arch": "vgg11", "width": 0.125,
                   "lr": 0.02, "batch_size": 64, "l2": 0.0, "steps": 1000, "eval_every": 250,
                   "eval_size": 128},
        "sweeps": {"lr": [0.01, 0.02, 0.04], "l2": [0.0, 3e-3, 3e-2]}}]},
    # The paper's Fig. 1 (VGG-13, CIFAR-10) and its appendix (VGG-11, MNIST). GC exact on 512
    # training examples (matrix-free on gcref_cuda with --backend cuda).
    "paper": {"seeds": [0, 1, 2], "settings": [
        {"label": "CIFAR-10 / VGG-13",
         "config": {"dataset": "cifar10", "arch": "vgg13", "width": 1.0, "lr": 0.01, "batch_size": 128,
                    "l2": 0.0, "steps": 20000, "eval_every": 1000, "eval_size": 512},
         "sweeps": {"lr": [0.005, 0.01, 0.02, 0.05, 0.1], "batch_size": [32, 64, 128, 256, 512],
                    "l2": [0.0, 1e-5, 1e-4, 5e-4, 1e-3]}},
        {"label": "MNIST / VGG-11",
         "config": {"dataset": "mnist", "arch": "vgg11", "width": 1.0, "lr": 0.01, "batch_size": 128,
                    "l2": 0.0, "steps": 10000, "eval_every": 500, "eval_size": 512},
         "sweeps": {"lr": [0.005, 0.01, 0.02, 0.05, 0.1], "batch_size": [32, 64, 128, 256, 512],
                    "l2": [0.0, 1e-5, 1e-4, 5e-4, 1e-3]}}]},
}


def _num(v):
    return np.nan if v is None else float(v)


def analyse(label, records, sweeps):
    parts = []
    for hp, values in sweeps.items():
        rs = [r for r in records if r["swept"] == hp and r["status"] in training.TRAINED]
        for metric in METRICS:
            t = verdicts.correlate(rs, lambda r, hp=hp: r["hp"][hp], lambda r, m=metric: _num(r["final"].get(m)),
                                   seed=len(parts))
            v = verdicts.direction_verdict(t, EXPECTED[hp])
            parts.append({"name": f"{label}: {hp} -> {metric}", "setting": label, "hyperparameter": hp,
                          "metric": metric, "expected_sign": EXPECTED[hp], **t.describe(), **v,
                          "statistic": "Spearman rho (value, final metric)", "value": t.rho,
                          **training.excluded_runs([r for r in records if r["swept"] == hp])})
    ok = [r for r in records if r["status"] in training.TRAINED]
    gcnc = verdicts.correlate(ok, lambda r: _num(r["final"].get("gc")), lambda r: _num(r["final"].get("nc")), seed=0)
    return parts, gcnc


def matched(label, records, sweeps):
    """The matched-fit view (not in the verdict): per sweep, each run read at the training loss
    every run of that sweep reaches; and the epochs each setting needed (median over seeds)."""
    out = []
    for hp in sweeps:
        rs = [r for r in records if r["swept"] == hp and r["status"] in training.TRAINED]
        mf = verdicts.matched_fit_tests(rs, lambda r, _row, hp=hp: r["hp"][hp], METRICS, EXPECTED[hp],
                                        f"{label}: {hp}")
        mf.update(hyperparameter=hp, setting=label, epochs_to_criterion=verdicts.epochs_to_criterion(
            [r for r in records if r["swept"] == hp], lambda r, hp=hp: r["hp"][hp]))
        out.append(mf)
    return out


def describe_matched(matched_rows) -> str:
    return "; ".join(
        f"{m['hyperparameter']} (train loss level {reporting.fmt(m['level'])}, reached at epochs "
        f"{reporting.fmt((m['epochs_range'] or [None])[0])}-{reporting.fmt((m['epochs_range'] or [None, None])[1])}): "
        + ", ".join(f"{t['metric']} rho={reporting.fmt(t['spearman_rho'], 2)} (p={reporting.fmt(t['p_value_permutation'], 2)}, "
                    f"{t['direction']})" for t in m["tests"])
        + reporting.far_below_note(m) + "; epochs to the criterion (median of the converged runs) "
        + reporting.describe_epochs(m["epochs_to_criterion"])
        for m in matched_rows)


def plot(setting_runs):
    plt = reporting.plt()
    rows = [(lab, hp, vals, recs) for lab, sweeps, recs in setting_runs for hp, vals in sweeps.items()]
    fig, axes = plt.subplots(len(rows), 3, figsize=(14, 3.2 * len(rows)), squeeze=False)
    for i, (lab, hp, vals, recs) in enumerate(rows):
        cmap = plt.get_cmap("viridis")
        for j, metric in enumerate(METRICS):
            ax = axes[i, j]
            for vi, v in enumerate(vals):
                rs = [r for r in recs if r["swept"] == hp and r["hp"][hp] == v
                      and r["status"] in training.TRAINED + ("cap",)]
                reporting.plot_curves(ax, rs, metric, cmap(vi / max(1, len(vals) - 1)), f"{hp}={v:g}")
            reporting.log_scale(ax, "y")
            ax.set_xlabel("step")
            ax.set_title(f"{lab}:\n{LABELS[metric]} vs {hp}", fontsize=8)
            if j == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def run(args, t0):
    cfg = common.resolve_config(CONFIGS, args, FIXED_BUDGET)
    B = training.load_backend(args.backend)
    all_parts, setting_runs, gcnc_all, data_infos, diagnostics, diag_runs = [], [], [], [], [], []
    matched_all = []
    with training.work_dir(args, "claim1") as work:
        for si, st in enumerate(cfg["settings"]):
            lab = training.lab_config(st["config"], args)
            data_infos.append(training.lab_data_info(lab["config"], lab["note"]))
            records = training.one_dimensional_sweeps(args, st["label"], lab["config"], st["sweeps"], cfg["seeds"],
                                                      os.path.join(str(work), f"s{si}"))
            parts, gcnc = analyse(st["label"], records, st["sweeps"])
            matched_all += matched(st["label"], records, st["sweeps"])
            all_parts += parts
            gcnc_all.append({"setting": st["label"], **gcnc.describe()})
            setting_runs.append((st["label"], st["sweeps"], records))
            for di, diag in enumerate(st.get("diagnostics", [])):
                drecs = training.one_dimensional_sweeps(args, f"{st['label']} [{diag['label']}]",
                                                        {**lab["config"], **diag["override"]}, diag["sweeps"],
                                                        cfg["seeds"], os.path.join(str(work), f"s{si}-diag{di}"))
                dparts, _ = analyse(f"{st['label']} [{diag['label']}]", drecs, diag["sweeps"])
                diagnostics.append({"setting": st["label"], "label": diag["label"], "override": diag["override"],
                                    "parts": dparts})
                diag_runs.append((f"{st['label']} [diagnostic: {diag['label']}]", diag["sweeps"], drecs))
    verdict = verdicts.combine_verdicts(all_parts)
    n_ok = sum(p["verdict"] == "reproduced" for p in all_parts)
    by = {}
    for p in all_parts:
        by.setdefault(p["hyperparameter"], []).append(f"{p['metric']} rho={reporting.fmt(p['spearman_rho'], 2)} "
                                                      f"(p={reporting.fmt(p['p_value_permutation'], 2)}, {p['direction']})")
    reason = (f"{n_ok}/{len(all_parts)} parts reproduced. " +
              "; ".join(f"{hp} (expected sign {EXPECTED[hp]:+d}): " + ", ".join(v) for hp, v in by.items()) +
              ". Spearman(GC, NC) over all runs: " +
              ", ".join(f"{g['setting']}: {reporting.fmt(g['spearman_rho'], 2)} (p={reporting.fmt(g['p_value_permutation'], 2)})"
                        for g in gcnc_all))
    for d in diagnostics:
        reason += (f". Diagnostic (not in the verdict), {d['label']}: " +
                   ", ".join(f"{p['hyperparameter']} -> {p['metric']} rho={reporting.fmt(p['spearman_rho'], 2)} "
                             f"(p={reporting.fmt(p['p_value_permutation'], 2)})" for p in d["parts"]))
    if any(m["level"] is not None for m in matched_all):
        reason += ". Matched fit (not in the verdict; each run read at the first record where its training " \
                  "cross-entropy reaches the level every run of the sweep reaches): " + describe_matched(matched_all)
    cap = sum(p["cap_runs"] for p in all_parts if p["metric"] == "gc")
    if cap:
        reason += f". {cap} run(s) reached the cap without meeting the criterion: left out of the correlations"
    head = next((p for p in all_parts if p["hyperparameter"] == "lr" and p["metric"] == "gc"), all_parts[0])
    st0 = cfg["settings"][0]
    setting = " | ".join(f"{s['label']}: {training.describe_lab(s['config'], s['sweeps'], cfg['seeds'])}"
                         for s in cfg["settings"])
    summary = reporting.Summary(
        CLAIM, TITLE, PAPER, args.scale, setting,
        statistic={"name": f"Spearman rho (lr, final GC), {st0['label']}", "value": head["spearman_rho"],
                   "parts_reproduced": f"{n_ok}/{len(all_parts)}"},
        uncertainty={"p_value_permutation": head["p_value_permutation"], "ci95_bootstrap": head["ci95_bootstrap"]},
        verdict=verdict, reason=reason, parts=all_parts, backend=B.describe(), data=data_infos,
        config=cfg, runtime_s=time.time() - t0, extra={"gc_vs_nc": gcnc_all, "diagnostics": diagnostics, "matched_fit": matched_all,
                                                       "runs": [{"setting": lab, "swept": r["swept"], "hp": r["hp"],
                                                                 "seed": r["seed"], "status": r["status"], "final": r["final"],
                                                                 "converged_step": next((h["step"] for h in r["history"] if h.get("converged")), None)}
                                                                for lab, _, recs in setting_runs for r in recs]})
    fig = plot(setting_runs + diag_runs)
    return reporting.finish(args, summary, fig)


def main(argv=None):
    return training.script_main(run, argv, claim=CLAIM, description=__doc__)


if __name__ == "__main__":
    main()
