"""Claim 4 (Munn et al. 2024, Fig. 4; ResNet-18 / CIFAR-FS): lower source GC gives lower target
NC and higher 5-shot NCC accuracy on new classes.

Setting: pre-train on the source classes with the hyperparameters swept as in claim 1 (lr,
batch size, L2; several seeds per value; :func:`gcref.lab.run_transfer`), freeze the embedding and measure on the held-out
TARGET classes (never trained on): target NC (CDNV of the embedded target examples) and the
5-way 5-shot nearest-class-mean accuracy (episodes, with a 95% interval).

Statistic: Spearman's rho over all runs between the final source GC and (a) the target NC
(expected +) and (b) the 5-shot accuracy (expected -), with permutation p-values and bootstrap
intervals; also per hyperparameter, rho between the value and target NC / 5-shot accuracy
(the paper's rows: lr up, batch down, L2 up should each lower target NC and raise accuracy).
Verdict (fixed before running): reproduced if (a) and (b) have the expected signs with
p < 0.05 in every setting; the per-hyperparameter rows are reported, not part of the verdict.

Run: ``python validation/claim4_transfer.py --scale small``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402

CLAIM = 4
TITLE = "Lower source GC gives lower target NC and higher 5-shot accuracy on new classes"
PAPER = "Fig. 4 (ResNet-18 / CIFAR-FS)"
HP_EXPECTED = {"lr": -1, "batch_size": +1, "l2": -1}   # sign of rho(value, target NC)

# Each setting's "config" is a gcref.lab TrainConfig with a source/target class split
# (num_source random classes with split_seed; cifar_fs: its own 64/20 split); the sweeps run
# through gcref.lab.run_transfer. ways/shots/queries/episodes: the few-shot protocol.
CONFIGS = {
    "smoke": {"seeds": [0, 1], "settings": [{
        "label": "digits 5/5 classes / MLP (smoke)",
        "config": {"dataset": "digits", "max_per_class": 20, "num_source": 5, "split_seed": 0, "arch": "mlp",
                   "hidden": [16, 8], "lr": 0.05, "batch_size": 16, "l2": 0.0, "steps": 6, "eval_every": 3,
                   "eval_size": 40, "ways": 3, "shots": 2, "queries": 3, "episodes": 10},
        "sweeps": {"lr": [0.02, 0.1], "batch_size": [8, 16]}}]},
    "small": {"seeds": [0, 1, 2], "settings": [
        {"label": "digits 5 source / 5 target classes / MLP 64-128-128-32",
         "config": {"dataset": "digits", "num_source": 5, "split_seed": 0, "arch": "mlp", "hidden": [128, 128, 32],
                    "lr": 0.05, "batch_size": 32, "l2": 0.0, "steps": 2000, "eval_every": 400, "eval_size": 300,
                    "ways": 5, "shots": 5, "queries": 15, "episodes": 200},
         "sweeps": {"lr": [0.01, 0.02, 0.05, 0.1, 0.2], "batch_size": [8, 16, 32, 64, 128],
                    "l2": [0.0, 1e-4, 1e-3, 3e-3, 1e-2]}},
        {"label": "Fashion-MNIST 5 source / 5 target classes / MLP 784-128-64-32",
         "config": {"dataset": "fashion_mnist", "max_per_class": 300, "num_source": 5, "split_seed": 0,
                    "arch": "mlp", "hidden": [128, 64, 32], "lr": 0.05, "batch_size": 32, "l2": 0.0,
                    "steps": 1000, "eval_every": 250, "eval_size": 300,
                    "ways": 5, "shots": 5, "queries": 15, "episodes": 200},
         "sweeps": {"lr": [0.01, 0.05, 0.2], "batch_size": [8, 32, 128], "l2": [0.0, 1e-3, 1e-2]}}]},
    # The paper's Fig. 4: ResNet-18 pre-trained on the 64 CIFAR-FS source classes, 5-way 5-shot
    # on the 20 target classes.
    "paper": {"seeds": [0, 1, 2], "settings": [{
        "label": "CIFAR-FS / ResNet-18",
        "config": {"dataset": "cifar_fs", "arch": "resnet18", "width": 1.0, "lr": 0.01, "batch_size": 128,
                   "l2": 0.0, "steps": 30000, "eval_every": 2000, "eval_size": 640, "ways": 5, "shots": 5, "queries": 15, "episodes": 600},
        "sweeps": {"lr": [0.005, 0.01, 0.02, 0.05, 0.1], "batch_size": [32, 64, 128, 256, 512],
                   "l2": [0.0, 1e-5, 1e-4, 5e-4, 1e-3]}}]},
}


def _final(r, key):
    v = r["final"].get(key)
    return np.nan if v is None else float(v)


def analyse(label, records, sweeps):
    ok = [r for r in records if r["status"] == "completed"]
    gc = [_final(r, "gc") for r in ok]
    t_nc = common.spearman_test(gc, [_final(r, "target_nc") for r in ok], seed=1)
    t_fs = common.spearman_test(gc, [_final(r, "few_shot_accuracy") for r in ok], seed=2)
    parts = [{"name": f"{label}: source GC -> target NC", "setting": label, "statistic": "Spearman rho",
              "value": t_nc.rho, **t_nc.describe(), **common.direction_verdict(t_nc, +1)},
             {"name": f"{label}: source GC -> 5-shot accuracy", "setting": label, "statistic": "Spearman rho",
              "value": t_fs.rho, **t_fs.describe(), **common.direction_verdict(t_fs, -1)}]
    rows = []
    for hp, values in sweeps.items():
        rs = [r for r in ok if r["swept"] == hp]
        x = [r["hp"][hp] for r in rs]
        for metric, sign in (("gc", HP_EXPECTED[hp]), ("target_nc", HP_EXPECTED[hp]),
                             ("few_shot_accuracy", -HP_EXPECTED[hp])):
            t = common.spearman_test(x, [_final(r, metric) for r in rs], seed=len(rows) + 3)
            rows.append({"name": f"{label}: {hp} -> {metric}", "hyperparameter": hp, "metric": metric,
                         "expected_sign": sign, **t.describe(), **common.direction_verdict(t, sign)})
    return parts, rows


def plot(setting_runs):
    plt = common.plt()
    fig, axes = plt.subplots(len(setting_runs), 2, figsize=(11, 4 * len(setting_runs)), squeeze=False)
    markers = {"lr": "o", "batch_size": "s", "l2": "^"}
    for i, (lab, sweeps, recs) in enumerate(setting_runs):
        ok = [r for r in recs if r["status"] == "completed"]
        for hp in sweeps:
            rs = [r for r in ok if r["swept"] == hp]
            vals = sorted(set(r["hp"][hp] for r in rs))
            c = [vals.index(r["hp"][hp]) / max(1, len(vals) - 1) for r in rs]
            for j, key in enumerate(("target_nc", "few_shot_accuracy")):
                ax = axes[i, j]
                ax.scatter([_final(r, "gc") for r in rs], [_final(r, key) for r in rs], c=c, cmap="viridis",
                                marker=markers[hp], s=30, label=f"{hp} sweep (colour: value rank)", edgecolors="k",
                                linewidths=0.3)
        for j, key in enumerate(("target_nc", "few_shot_accuracy")):
            ax = axes[i, j]
            common.log_scale(ax, "xy" if key == "target_nc" else "x")
            ax.set_xlabel("source GC (final)")
            ax.set_ylabel("target NC" if key == "target_nc" else "5-way 5-shot NCC accuracy (targets)")
            ax.set_title(lab, fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def run(args, t0):
    cfg = common.resolve_config(CONFIGS, args)
    B = common.load_backend(args.backend)
    parts, hp_rows, setting_runs, infos = [], [], [], []
    with common.work_dir(args, "claim4") as work:
        for si, st in enumerate(cfg["settings"]):
            lab = common.lab_config(st["config"], args)
            infos.append(common.lab_data_info(lab["config"], lab["note"]))
            records = []
            for hp, values in st["sweeps"].items():
                common.log(args, f"{st['label']}: sweep {hp} over {values} x {len(cfg['seeds'])} seeds "
                                 "(gcref.lab.run_transfer)")
                recs = common.sweep(lab["config"], {hp: values}, cfg["seeds"],
                                    os.path.join(str(work), f"s{si}-{hp}"), jobs=args.jobs, transfer=True)
                for r in recs:
                    r["swept"] = hp
                records += recs
            p, rows = analyse(st["label"], records, st["sweeps"])
            parts += p
            hp_rows += rows
            setting_runs.append((st["label"], st["sweeps"], records))
    verdict = common.combine_verdicts(parts)
    reason = "; ".join(f"{p['name']}: rho={common.fmt(p['spearman_rho'], 2)} (p={common.fmt(p['p_value_permutation'], 2)}, "
                       f"{p['direction']})" for p in parts)
    reason += ". Per hyperparameter (value -> metric: rho, expected sign) -- " + "; ".join(
        f"{r['name'].split(' ')[0]} {r['name'].split(': ', 1)[1]}: {common.fmt(r['spearman_rho'], 2)} "
        f"({r['expected_sign']:+d}, p={common.fmt(r['p_value_permutation'], 2)})" for r in hp_rows)
    head = parts[0]
    setting = " | ".join(f"{s['label']}: {common.describe_lab(s['config'], s['sweeps'], cfg['seeds'])}"
                         for s in cfg["settings"])
    summary = common.Summary(
        CLAIM, TITLE, PAPER, args.scale, setting,
        statistic={"name": f"Spearman rho (source GC, target NC), {head['setting']}", "value": head["spearman_rho"],
                   "rho_source_gc_vs_5shot_accuracy": parts[1]["spearman_rho"]},
        uncertainty={"p_value_permutation": head["p_value_permutation"], "ci95_bootstrap": head["ci95_bootstrap"]},
        verdict=verdict, reason=reason, parts=parts, backend=B.describe(), data=infos, config=cfg,
        runtime_s=time.time() - t0,
        extra={"per_hyperparameter": hp_rows,
               "runs": [{"setting": lab, "swept": r["swept"], "hp": r["hp"], "seed": r["seed"], "status": r["status"],
                         "final": r["final"]} for lab, _, recs in setting_runs for r in recs]})
    fig = plot(setting_runs)
    return common.finish(args, summary, fig)


def main(argv=None):
    return common.script_main(run, argv, claim=CLAIM, description=__doc__)


if __name__ == "__main__":
    main()
