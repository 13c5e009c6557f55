"""Arguments and configuration of the validation scripts (one script per claim of Munn, Dherin &
Gonzalvo 2024).

The validation code is in four rooms, by role:

- ``common.py`` (this file): the command line every claim script shares (``--scale``,
  ``--protocol``, ``--data-root``, ``--out``, ``--seeds``, ``--backend``, ``--jobs``, ``--set``
  overrides, ``--tiny``), where each scale and protocol writes, and the configuration it selects
  (:func:`parse_args`, :func:`resolve_config`);
- ``training.py``: training runs: data, networks, single runs evaluated at checkpoints
  (:func:`training.train_checkpoints`, :func:`gcref.train.fit` resumed between them) and sweeps through
  :mod:`gcref.lab` (:func:`training.sweep`), parallel processes, and :func:`training.script_main`;
- ``verdicts.py``: statistics and verdicts (Spearman tests and bootstrap intervals from
  :mod:`gcref.lab.stats`, the directional verdict rule, the matched-fit analysis);
- ``reporting.py``: the JSON summary (atomically written), figures (matplotlib's Agg backend)
  and number formatting.

Every ``claimN_*.py`` script reads as the protocol it runs: its configuration (``CONFIGS``: the
converged protocol, the primary verdict; ``FIXED_BUDGET``: the fixed-budget ablation), its runs,
its statistic, its verdict and its report.

BLAS threads are limited to one per process (:func:`training.limit_threads`, gcref's limiter): the
networks here are small, and on a 2-core machine a multi-threaded BLAS is slower by an order of
magnitude than one thread per process with the runs spread over processes. Importing these
modules changes neither ``sys.path`` nor the environment: run the scripts as
``python validation/claimN_*.py`` (Python puts their folder on the path).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCALES = ("smoke", "small", "medium", "paper")
#: The two training protocols: "converged" (the paper's: weight decay at the base, every run
#: trained to a criterion; the primary verdict) and "fixed-budget" (a fixed number of steps
#: without weight decay at the base: the ablation, under-trained networks).
PROTOCOLS = ("converged", "fixed-budget")
#: The claims whose runs depend on the training protocol (2 and 6 train nothing protocol-dependent).
PROTOCOL_CLAIMS = (1, 3, 4, 5)


# ----------------------------------------------------------------------------------- arguments
def parse_args(argv=None, *, claim: int, description: str) -> argparse.Namespace:
    """The command line every claim script shares."""
    ap = argparse.ArgumentParser(prog=f"claim{claim}", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="small",
                    help="smoke: seconds (tests); small: CPU minutes (digits, Fashion-MNIST, "
                         "glyphs, synthetic); medium: about an hour on 2 CPU cores (VGG-11 on "
                         "Fashion-MNIST at reduced width); paper: the paper's architecture and "
                         "dataset (GPU)")
    ap.add_argument("--data-root", default=None,
                    help="folder holding the original dataset files (paper scale: "
                         "cifar-10-batches-bin/, cifar-100-binary/, MNIST IDX files)")
    ap.add_argument("--out", default=None,
                    help="folder for claimN.json and claimN.png (default: each scale its own, see "
                         "default_out: small validation/results, medium validation/results/medium, "
                         "paper validation/results/paper, smoke and --tiny a temporary folder)")
    ap.add_argument("--seeds", default=None,
                    help="number of seeds (e.g. 5 -> 0..4) or a comma list (e.g. 0,3,7); "
                         "default: the scale's configuration")
    ap.add_argument("--backend", choices=("reference", "cuda"), default="reference",
                    help="reference: gcref (NumPy float64); cuda: gcref_cuda metrics "
                         "(CuPy on a GPU, NumPy otherwise)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="parallel processes for independent runs (default: min(2, CPUs))")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a configuration entry (dots for nesting), e.g. "
                         "--set steps=10 --set net.width=0.05; VALUE is a Python literal")
    ap.add_argument("--work", default=None,
                    help="folder for per-run training folders (checkpoints, histories); "
                         "default: a temporary folder, removed at the end")
    ap.add_argument("--tiny", action="store_true",
                    help="shrink steps, widths, batch and evaluation sizes and sweeps to run the "
                         "scale's code path (data files, architectures) in seconds: for tests")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="converged",
                    help="converged (the primary verdict): base weight decay 5e-4, every run trained "
                         "to the claim's criterion (e.g. >= 99%% training accuracy) with a cap; "
                         "fixed-budget (the ablation): the earlier fixed number of steps without "
                         "weight decay at the base, results in fixed_budget/ (claims 1, 3, 4, 5)")
    ap.add_argument("--reanalyse", action="store_true",
                    help="train nothing: recompute the statistics and verdicts from the per-run final "
                         "values stored in --out's claimN.json (its figure and its matched fit, which "
                         "need the histories, are kept as they were and said to be)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    args.claim = claim
    if args.out is None:
        args.out = str(default_out(args.scale, args.tiny, args.protocol))
    elif (args.scale == "smoke" or args.tiny) and _inside(Path(args.out), RESULTS):
        ap.error(f"--out {args.out}: --scale smoke and --tiny never write into the committed results "
                 f"({RESULTS}); give another folder")
    if args.jobs is None:
        args.jobs = max(1, min(2, os.cpu_count() or 1))
    return args


def default_out(scale: str, tiny: bool = False, protocol: str = "converged") -> Path:
    """Where a scale's results go when ``--out`` is not given: each scale (and protocol) its own
    folder, so no run overwrites another's committed results.

    ``small`` -> ``validation/results`` (the committed table), ``medium`` ->
    ``validation/results/medium``, ``paper`` -> ``validation/results/paper``; the fixed-budget
    ablation -> a ``fixed_budget/`` folder inside the scale's; ``smoke`` and any ``--tiny`` run
    -> ``<tmp>/gcref-validation-<scale>[-tiny]`` (never the committed results).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    fixed = protocol == "fixed-budget"
    if scale == "smoke" or tiny:
        return Path(tempfile.gettempdir()) / (f"gcref-validation-{scale}{'-tiny' if tiny else ''}"
                                              + ("-fixed-budget" if fixed else ""))
    out = RESULTS if scale == "small" else RESULTS / scale
    return out / "fixed_budget" if fixed else out


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (after resolving links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def parse_seeds(text, default) -> list[int]:
    """``"5"`` -> ``[0..4]``; ``"0,3,7"`` -> ``[0, 3, 7]``; ``None`` -> ``default``."""
    if text is None:
        return list(default)
    text = str(text).strip()
    if "," in text:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    else:
        n = int(text)
        if n < 1:
            raise ValueError(f"--seeds must be >= 1 or a comma list, got {text!r}")
        seeds = list(range(n))
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct non-negative ints, got {text!r}")
    return seeds


def _set_nested(cfg: dict, key: str, value):
    """``cfg[a][b]... = value`` for ``key = "a.b..."``; integer parts index lists
    (``settings.0.config.steps``)."""
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise KeyError(f"--set {key}: {p!r} is not an index of a list of {len(node)} entries")
            node = node[int(p)]
        elif isinstance(node, dict) and p in node and isinstance(node[p], (dict, list)):
            node = node[p]
        else:
            raise KeyError(f"--set {key}: {p!r} is not a section of the configuration "
                           f"(sections: {sorted(k for k, v in node.items() if isinstance(v, (dict, list)))})")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise KeyError(f"--set {key}: {last!r} is not an index of a list of {len(node)} entries")
        node[int(last)] = value
        return
    if last not in node:
        raise KeyError(f"--set {key}: unknown key {last!r}; valid keys here: {sorted(node)}")
    node[last] = value


#: What ``--tiny`` does to each configuration entry: the paper-scale code paths (datasets,
#: file formats, architectures) in seconds, for tests. Sweeps keep two values.
_TINY = {
    "steps": lambda v: 1, "eval_every": lambda v: 1, "checkpoints": lambda v: 2, "draws": lambda v: 1,
    "width": lambda v: min(float(v), 1 / 64), "eval_size": lambda v: min(int(v), 16),
    "batch_size": lambda v: min(int(v), 4), "episodes": lambda v: 2, "shots": lambda v: 1,
    "queries": lambda v: 1, "ways": lambda v: 2, "gc_size": lambda v: v if v is None else min(v, 2),
    "gc_rows": lambda v: v if v is None else min(int(v), 2),
    "hidden": lambda v: [min(int(h), 8) for h in v] if isinstance(v, list) else min(int(v), 8),
    "channels": lambda v: [min(int(c), 4) for c in v],
    "fresh_per_class": lambda v: min(int(v), 20), "train_per_class": lambda v: min(int(v), 20),
    "flatness_examples": lambda v: min(int(v), 4),
    "budgets": lambda v: {"examples": [4], "outputs": [2], "mask": [0.25], "projection": [1]},
    "seeds": lambda v: list(v)[:2],
    "n_per_class": lambda v: min(int(v), 10), "test_per_class": lambda v: min(int(v), 4),
    "num_source": lambda v: list(v)[:1] if isinstance(v, list) else v,
}
_TINY_SWEEP = {"batch_size": [2, 4]}


def apply_tiny(cfg):
    """Shrink a configuration (see :data:`_TINY`) without changing its data or architecture."""
    if isinstance(cfg, list):
        return [apply_tiny(v) for v in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = {}
    for k, v in cfg.items():
        if k in ("sweeps",) and isinstance(v, dict):
            out[k] = {hp: _TINY_SWEEP.get(hp, list(vals)[:2]) for hp, vals in v.items()}
        elif k == "gc_reg" and isinstance(v, list):
            out[k] = list(v)[:2]
        elif k == "epochs":                     # a budget in epochs: one step, as "steps" gets
            out["steps"] = 1
        elif k in _TINY:
            out[k] = _TINY[k](v)
        else:
            out[k] = apply_tiny(v)
    return out


def apply_overrides(cfg: dict, overrides) -> dict:
    """Apply ``KEY=VALUE`` strings (VALUE a Python literal, else a string) to a copy of ``cfg``."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        _set_nested(cfg, key.strip(), value)
    return cfg


def resolve_config(configs: dict, args, fixed_budget: dict | None = None) -> dict:
    """The scale's configuration with ``--set`` overrides and ``--seeds`` applied.

    ``configs`` are the claim's settings under the converged protocol (the primary verdict),
    ``fixed_budget`` those of the fixed-budget ablation (``--protocol fixed-budget``; ``None``
    for claims whose runs do not depend on the protocol)."""
    if getattr(args, "protocol", "converged") == "fixed-budget":
        if fixed_budget is None:
            raise SystemExit(f"claim{args.claim} has one protocol (it trains nothing that "
                             "--protocol changes); run it without --protocol fixed-budget")
        configs = fixed_budget
    if args.scale not in configs:
        raise SystemExit(f"claim{args.claim} has no configuration at --scale {args.scale} "
                         f"(scales: {', '.join(configs)})")
    cfg = configs[args.scale]
    if getattr(args, "tiny", False):
        cfg = apply_tiny(cfg)
    cfg = apply_overrides(cfg, args.overrides)
    cfg["seeds"] = parse_seeds(args.seeds, cfg.get("seeds", [0]))
    return cfg


def log(args, *msg):
    if not getattr(args, "quiet", False):
        print(f"[claim{args.claim} {time.strftime('%H:%M:%S')}]", *msg, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("common.py is a library for the claim scripts; run e.g. validation/run_all.py")
