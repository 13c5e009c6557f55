"""Shared machinery of the validation scripts (one script per claim of Munn, Dherin & Gonzalvo 2024).

Every ``claimN_*.py`` script does the same five things, with the helpers below:

1. parse ``--scale smoke|small|paper``, ``--data-root``, ``--out``, ``--seeds``, ``--backend``,
   ``--jobs`` and ``--set key=value`` overrides (:func:`parse_args`, :func:`resolve_config`);
2. load its data (:func:`load_classification`), build networks (:func:`build_net`) and train
   them: sweeps over hyperparameters and seeds through :mod:`gcref.lab` (:func:`sweep`, which
   calls :func:`gcref.lab.run_sweep` / :func:`gcref.lab.run_transfer`), single runs evaluated at
   checkpoints with :func:`train_checkpoints` (:func:`gcref.train.fit`, resumed between them);
3. compute a statistic with its uncertainty (:func:`spearman_test`, :func:`bootstrap_ci`);
4. decide a verdict ("reproduced", "not reproduced", "not run at this scale": :data:`VERDICTS`);
5. write ``results/claimN.json`` atomically (:func:`write_json`) and ``results/claimN.png``
   (:func:`save_figure`, matplotlib's Agg backend).

BLAS threads are limited to one per process (:func:`limit_threads`, gcref's limiter): the
networks here are small, and on a 2-core machine a multi-threaded BLAS is slower by an order of
magnitude than one thread per process with the runs spread over processes. The statistics are
gcref's (:mod:`gcref.lab.stats`), the files are written with :func:`gcref.nn.atomic_write`.
Importing this module changes neither ``sys.path`` nor the environment: run the scripts as
``python validation/claimN_*.py`` (Python puts their folder on the path).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gcref.lab.run import TRAINED, blas_threads, engine_for  # noqa: F401 - TRAINED used by the claims
from gcref.lab.stats import CorrelationTest, bootstrap_ci, spearman_test  # noqa: F401 - used by the claims
from gcref.lab.stats import spearman_rho as spearman  # noqa: F401
from gcref.nn import atomic_write

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCALES = ("smoke", "small", "medium", "paper")
#: The two training protocols: "converged" (the paper's: weight decay at the base, every run
#: trained to a criterion; the primary verdict) and "fixed-budget" (a fixed number of steps
#: without weight decay at the base: the ablation, under-trained networks).
PROTOCOLS = ("converged", "fixed-budget")
#: The claims whose runs depend on the training protocol (2 and 6 train nothing protocol-dependent).
PROTOCOL_CLAIMS = (1, 3, 4, 5)
VERDICTS = ("reproduced", "not reproduced", "not run at this scale")

#: Fields every claim summary carries (tests check them).
SUMMARY_FIELDS = ("claim", "title", "paper", "scale", "setting", "statistic", "uncertainty",
                  "verdict", "reason", "parts", "backend", "data", "config", "runtime_s",
                  "figure", "versions")


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


# -------------------------------------------------------------------------------------- threads
def limit_threads(n: int = 1):
    """One BLAS thread in this process for the duration of a ``with`` block (gcref's limiter)."""
    return blas_threads(n)


# -------------------------------------------------------------------------------------- backend
@dataclass
class Backend:
    """Which code computes the metrics (and trains, once a fast trainer exists).

    ``metrics`` offers ``per_example_gc``, ``per_class_gc``, ``estimate_gc``, ``class_stats``,
    ``neural_collapse``, ``ncc_error_bound``, ``few_shot_accuracy_features`` with gcref's
    signatures. Functions only gcref has (Poincaré and flatness reports) always come from gcref.
    """

    name: str
    metrics: object
    note: str = ""
    device: str = "cpu"

    def describe(self) -> dict:
        return {"name": self.name, "metrics": getattr(self.metrics, "__name__", str(self.metrics)),
                "device": self.device, "note": self.note}


def load_backend(name: str) -> Backend:
    import gcref
    if name == "reference":
        return Backend("reference", gcref, "gcref (NumPy float64)")
    if name != "cuda":
        raise ValueError(f"backend must be 'reference' or 'cuda', got {name!r}")
    try:
        import gcref_cuda
    except ImportError as err:
        raise SystemExit(f"--backend cuda needs gcref_cuda ({err}); install with "
                         "`pip install -e .[cuda]` or use --backend reference") from None
    missing = [f for f in ("per_example_gc", "estimate_gc", "class_stats", "neural_collapse")
               if not hasattr(gcref_cuda, f)]
    if missing:
        raise SystemExit(f"--backend cuda: this gcref_cuda lacks {missing}; use --backend reference")
    gpu = bool(getattr(gcref_cuda, "gpu_available", lambda: False)())
    kind = getattr(gcref_cuda, "backend_name", lambda: "?")()
    return Backend("cuda", gcref_cuda, f"gcref_cuda on {kind}" + ("" if gpu else " (no GPU found)"),
                   device="gpu" if gpu else "cpu")


# ----------------------------------------------------------------------------------------- data
@dataclass
class DataInfo:
    """What a claim actually ran on (recorded in the JSON)."""

    name: str
    requested: str
    n_train: int
    n_test: int
    input_shape: tuple
    num_classes: int
    note: str = ""

    def describe(self) -> dict:
        return {"name": self.name, "requested": self.requested, "n_train": self.n_train,
                "n_test": self.n_test, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "note": self.note}


def fashion_root(data_root):
    """A folder with Fashion-MNIST IDX files: ``data_root`` (or its ``fashion-mnist/``) when it
    holds them, else Debian's ``/usr/share/datasets/fashion-mnist``, else ``None``."""
    from gcref.data import default_fashion_mnist_root
    for cand in ([Path(data_root), Path(data_root) / "fashion-mnist", Path(data_root) / "fashion_mnist"]
                 if data_root else []):
        if any((cand / f).is_file() for f in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")):
            return cand
    return default_fashion_mnist_root()


def _cap(ds, per_class, seed=0):
    """At most ``per_class`` examples of each class (stratified, fixed seed)."""
    if per_class is None:
        return ds
    rng = np.random.default_rng([seed, 31337])
    idx = np.concatenate([rng.permutation(np.flatnonzero(ds.y == c))[:per_class]
                          for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


def load_classification(spec: dict, data_root=None):
    """Train and test :class:`gcref.data.Dataset` for a claim, with a :class:`DataInfo`.

    ``spec``: ``name`` (``digits``, ``fashion_mnist``, ``mnist``, ``cifar10``,
    ``gaussian_mixture``), ``train_per_class`` / ``test_per_class`` caps, and for
    ``fashion_mnist`` the rule: Debian's files (or ``--data-root``) if present, else digits,
    said in the note. Paper datasets need ``--data-root``.
    """
    from gcref.data import load_dataset
    name = spec["name"]
    note = ""
    requested = name
    if name == "fashion_mnist":
        root = fashion_root(data_root)
        if root is None:
            note = ("Fashion-MNIST not found (no --data-root and no Debian dataset-fashion-mnist "
                    "in /usr/share/datasets/fashion-mnist): used digits instead")
            name = "digits"
        else:
            train = load_dataset("fashion_mnist", root, "train", max_per_class=spec.get("train_per_class"))
            test = load_dataset("fashion_mnist", root, "test", max_per_class=spec.get("test_per_class"))
            note = f"Fashion-MNIST IDX files from {root}"
    if name == "digits":
        train = _cap(load_dataset("digits", split="train"), spec.get("train_per_class"))
        test = _cap(load_dataset("digits", split="test"), spec.get("test_per_class"))
        note = note or "scikit-learn digits (8x8), gcref's fixed 75/25 split"
    elif name in ("mnist", "cifar10"):
        if data_root is None:
            raise SystemExit(f"{name} needs --data-root (the folder with the original files; "
                             "gcref downloads nothing)")
        train = load_dataset(name, data_root, "train", max_per_class=spec.get("train_per_class"))
        test = load_dataset(name, data_root, "test", max_per_class=spec.get("test_per_class"))
        note = f"{name} original files from {data_root}"
    elif name == "gaussian_mixture":
        opts = {k: spec[k] for k in ("num_classes", "dim", "separation", "anisotropy") if k in spec}
        train = load_dataset("gaussian_mixture", split="train", n_per_class=spec.get("train_per_class", 200),
                             seed=spec.get("data_seed", 0), **opts)
        test = load_dataset("gaussian_mixture", split="test", n_per_class=spec.get("test_per_class", 200),
                            seed=spec.get("data_seed", 0), **opts)
        note = "Gaussian mixture (known Poincaré constants)"
    elif name != "fashion_mnist" or train is None:  # pragma: no cover - guarded above
        raise ValueError(f"unknown dataset {name!r}")
    info = DataInfo(name, requested, train.n, test.n, train.input_shape, train.num_classes, note)
    return train, test, info


# ------------------------------------------------------------------------------------- networks
def build_net(spec: dict, input_shape, num_classes: int):
    """A zoo network from ``{"arch": ..., "width": ..., **kwargs}``."""
    import gcref
    spec = dict(spec)
    arch = spec.pop("arch")
    width = spec.pop("width", 1.0)
    if "hidden" in spec and isinstance(spec["hidden"], list):
        spec["hidden"] = tuple(spec["hidden"])
    if "channels" in spec and isinstance(spec["channels"], list):
        spec["channels"] = tuple(spec["channels"])
    return gcref.zoo.build(arch, tuple(input_shape), num_classes, width=width, **spec)


# ------------------------------------------------------------------------------------- training
TRAIN_KEYS = ("lr", "batch_size", "steps", "l2", "gc_reg", "momentum", "eval_every", "eval_size",
              "gc_method", "gc_size", "gc_rows", "few_shot", "until")


def train_checkpoints(net, data, checkpoints, *, seed: int, work_dir, backend: str = "reference", **kw):
    """Train one run and yield ``(step, params, history)`` at each step in ``checkpoints``.

    Training resumes from :func:`gcref.train.fit`'s checkpoint between the yields, so the
    parameters at each step are bitwise those of one uninterrupted run (the mini-batch of step
    ``t`` depends only on ``(seed, t)``). History records are only written at the checkpoints.
    With ``until`` (:func:`gcref.train.fit`'s criterion) the run stops at the first checkpoint
    where the criterion holds (the last history record then has ``"converged": true``); if it
    never holds, the last checkpoint is the cap.
    """
    from gcref.train import fit
    engine = engine_for(backend)          # --backend cuda: gcref_cuda's FastEngine
    params = net.init(seed=seed)
    steps = sorted(set(int(s) for s in checkpoints))
    fit_kw = {k: v for k, v in kw.items() if k in TRAIN_KEYS and k not in ("steps", "eval_every")}
    history = []
    if steps and steps[0] == 0:
        yield 0, params, history
        steps = steps[1:]
    for s in steps:
        res = fit(net, params, data, steps=s, seed=seed, out_dir=work_dir, resume=True,
                  eval_every=max(s, 1), engine=engine, **fit_kw)
        history = res.history
        if res.status not in ("completed", "converged", "cap"):
            raise RuntimeError(f"run seed={seed} stopped at step {res.steps}: {res.message}")
        yield s, res.params, history
        if res.status == "converged":
            return


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` roughly log-spaced steps in ``0..steps`` (0 and ``steps`` included)."""
    if count <= 2 or steps <= 2:
        return sorted({0, steps})
    pts = np.unique(np.round(np.geomspace(1, steps, count - 1)).astype(int))
    return sorted({0, *pts.tolist(), steps})


def run_parallel(fn, tasks, jobs: int):
    """``[fn(**t) for t in tasks]``, in ``jobs`` processes (joblib's loky) when ``jobs > 1``."""
    tasks = list(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        with limit_threads(1):
            return [fn(**t) for t in tasks]
    from joblib import Parallel, delayed
    return Parallel(n_jobs=jobs, backend="loky")(delayed(_in_worker)(fn, t) for t in tasks)


def _in_worker(fn, task):
    with limit_threads(1):
        return fn(**task)


@contextlib.contextmanager
def work_dir(args, name: str):
    """A folder for the runs' checkpoints: ``--work/NAME`` if given (kept), else a temporary one."""
    if args.work:
        path = Path(args.work) / name
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix=f"gcref-{name}-") as tmp:
            yield Path(tmp)


# ---------------------------------------------------------------------------------------- sweeps
def lab_config(base: dict, args) -> dict:
    """A :class:`gcref.lab.TrainConfig` dict from a claim's settings: ``--data-root`` filled in
    for the file datasets, and Fashion-MNIST replaced by the digits (said in the returned
    ``note``) when its files are nowhere to be found."""
    cfg = dict(base)
    cfg.setdefault("backend", args.backend)
    note = ""
    if cfg.get("dataset") == "fashion_mnist":
        root = fashion_root(args.data_root)
        if root is None:
            cfg["dataset"] = "digits"
            cfg.pop("max_per_class", None)
            note = ("Fashion-MNIST not found (no --data-root, no Debian dataset-fashion-mnist): "
                    "ran on the digits instead")
        else:
            cfg["data_root"] = str(root)
            note = f"Fashion-MNIST IDX files from {root}"
    elif cfg.get("dataset") in ("mnist", "cifar10", "cifar100", "cifar_fs"):
        if args.data_root is None:
            raise SystemExit(f"{cfg['dataset']} needs --data-root (the folder with the original "
                             "files; gcref downloads nothing)")
        cfg["data_root"] = str(args.data_root)
        note = f"{cfg['dataset']} original files from {args.data_root}"
    return {"config": cfg, "note": note}


def describe_lab(cfg: dict, sweeps: dict | None = None, seeds=None) -> str:
    """A short human-readable description of a lab configuration and its sweeps."""
    bits = [f"{cfg.get('dataset')}"]
    if cfg.get("max_per_class"):
        bits[0] += f" ({cfg['max_per_class']}/class)"
    if cfg.get("num_source"):
        bits[0] += f", {cfg['num_source']} random source classes, rest target"
    net = cfg.get("arch", "mlp")
    if net == "mlp":
        net = "MLP " + "-".join(str(h) for h in cfg.get("hidden") or [])
    elif cfg.get("width", 1.0) != 1.0:
        net += f" (width {cfg['width']:g})"
    opt = (f"plain SGD lr {cfg.get('lr'):g}, batch {cfg.get('batch_size')}, L2 {cfg.get('l2', 0):g}"
           + (f", lambda_GC {cfg['gc_reg']:g}" if cfg.get("gc_reg") else "")
           + f", {cfg.get('steps')} steps")
    out = f"{bits[0]}; {net}; {opt}"
    if cfg.get("ways"):
        out += f"; {cfg['ways']}-way {cfg.get('shots', 5)}-shot NCC on targets, {cfg.get('episodes')} episodes"
    if sweeps:
        out += "; sweeps " + ", ".join(f"{k} {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}}}"
                                       for k, vals in sweeps.items())
    if seeds is not None:
        out += f"; {len(seeds)} seeds per value"
    return out


def lab_data_info(cfg: dict, note: str = "") -> dict:
    """What a lab configuration trains on (sizes, classes), for the JSON summary."""
    from gcref.lab.config import load_run_data
    data = load_run_data(cfg)
    out = DataInfo(data.train.name, cfg.get("dataset", "?"), data.train.n, data.test.n,
                   data.train.input_shape, data.train.num_classes, note).describe()
    if data.target is not None:
        out["target"] = {"n": data.target.n, "classes": list(data.target.classes)}
        out["source_classes"] = list(data.train.classes)
    return out


def sweep(base: dict, grid: dict, seeds, out_dir, *, jobs: int = 1, transfer: bool = False,
          progress=None) -> list[dict]:
    """Run a grid of settings x seeds with :func:`gcref.lab.run_sweep` (or
    :func:`gcref.lab.run_transfer`) and return one record per run.

    Each record: ``hp`` (the run's full settings), ``settings`` (the swept ones), ``seed``,
    ``status``, ``final`` (the last history record's metrics) and ``history``. The lab runs the
    points in ``jobs`` processes (joblib's loky; ``sequential`` for one job) and resumes an
    interrupted sweep from ``out_dir``.
    """
    from gcref.lab.sweep import run_sweep, sweep_histories
    from gcref.lab.transfer import run_transfer
    fn = run_transfer if transfer else run_sweep
    summary = fn(base, grid, list(seeds), str(out_dir), n_jobs=max(1, int(jobs)),
                 backend="loky" if jobs > 1 else "sequential", progress=progress)
    errors = [r for r in summary["runs"] if r["status"] in ("error", "pending", "unfinished")]
    if errors:
        raise RuntimeError(f"{len(errors)} run(s) of the sweep in {out_dir} failed: " +
                           "; ".join(f"{r['name']}: {r['status']} {r.get('message', '')}" for r in errors[:3]))
    histories = {name: h for name, _, h in sweep_histories(out_dir)}
    out = []
    for r in summary["runs"]:
        out.append({"name": r["name"], "hp": {**base, **r["settings"]}, "settings": r["settings"],
                    "seed": r["settings"].get("seed"), "status": r["status"],
                    "message": r.get("message", ""), "final": r.get("final", {}),
                    "history": histories.get(r["name"], [])})
    return out


def excluded_runs(records) -> dict:
    """How many runs are left out of a statistic: ``diverged_runs`` and ``cap_runs`` (reached
    the cap without meeting the criterion); only :data:`TRAINED` runs are compared."""
    return {"diverged_runs": sum(r["status"] == "diverged" for r in records),
            "cap_runs": sum(r["status"] == "cap" for r in records)}


# ----------------------------------------------------------------------------------- statistics
# spearman, spearman_test, CorrelationTest, bootstrap_ci: gcref.lab.stats (imported above).


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


# ------------------------------------------------------------------------------------ output
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
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
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
    log(args, f"verdict: {summary.verdict} ({summary.runtime_s:.1f} s) -> {out / f'claim{summary.claim}.json'}")
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


def script_main(run, argv, *, claim: int, description: str):
    """Parse arguments, limit threads, time ``run(args)`` and return its summary dict."""
    args = parse_args(argv, claim=claim, description=description)
    t0 = args.t0 = time.time()
    if args.backend == "cuda":
        load_backend("cuda")          # fail early with a clear message
        args.jobs = 1                 # one device: every run in this process
    with limit_threads(1):
        summary = run(args, t0)
    return summary


if __name__ == "__main__":  # pragma: no cover
    sys.exit("common.py is a library for the claim scripts; run e.g. validation/run_all.py")
