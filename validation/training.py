"""Training runs of the validation scripts: data, networks, runs evaluated at checkpoints, sweeps
through :mod:`gcref.lab`, parallel processes, and the scripts' entry point (:func:`script_main`).

Sweeps (claims 1, 4, 5) run through :func:`gcref.lab.run_sweep` / :func:`gcref.lab.run_transfer`
(resumable: a finished run is not trained again); single runs evaluated along training (claims
2, 3, 6) through :func:`gcref.train.fit`, resumed between checkpoints (:func:`train_checkpoints`).
Under the converged protocol a run stops at the first record meeting its criterion (``until``):
its status is ``converged``, or ``cap`` if the budget ran out first (:data:`TRAINED` runs are
compared; :func:`excluded_runs` counts the others).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcref.lab.run import TRAINED, blas_threads, engine_for  # noqa: F401 - TRAINED used by the claims
from gcref.lab.config import as_config
from gcref.nn import atomic_write
from gcref.train.fit import UNTIL_KEYS

import common


# -------------------------------------------------------------------------------------- threads
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
    sgd = f"SGD momentum {cfg['momentum']:g}" if cfg.get("momentum") else "plain SGD"
    budget = f"{cfg['epochs']:g} epochs" if cfg.get("epochs") else f"{cfg.get('steps')} steps"
    until = as_config({k: cfg[k] for k in ("until_train_acc", "until_loss") if cfg.get(k)}).until()
    if until:                 # the criterion as fit sees it (gcref.train.fit.UNTIL_KEYS)
        stop = " and ".join(f"{k.replace('_', ' ')} {UNTIL_KEYS[k]} {v:g}" for k, v in until.items())
        budget = f"until {stop} (cap {budget})"
    opt = (f"{sgd} lr {cfg.get('lr'):g}, batch {cfg.get('batch_size')}, L2 {cfg.get('l2', 0):g}"
           + (f", lambda_GC {cfg['gc_reg']:g}" if cfg.get("gc_reg") else "")
           + f", {budget}")
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


#: The runs of a claim JSON that :func:`sweep` returns instead of training (``--reanalyse``).
_STORED: list | None = None


def _stored_records(base: dict, grid: dict, seeds) -> list[dict]:
    """The records of ``grid`` x ``seeds`` from the stored runs (:data:`_STORED`), matched on the
    full settings (``{**base, hp: value, "seed": seed}``); a missing one is an error."""
    index = {json.dumps(r["hp"], sort_keys=True, default=str): r for r in _STORED}
    out = []
    for hp, values in grid.items():
        for v in values:
            for s in seeds:
                settings = {hp: v, "seed": s}
                key = json.dumps({**base, **settings}, sort_keys=True, default=str)
                if key not in index:
                    raise SystemExit(f"--reanalyse: the stored JSON has no run {settings} of this setting "
                                     "(its configuration differs from the script's): train it instead")
                r = index[key]
                step = r.get("converged_step")
                out.append({"name": None, "hp": r["hp"], "settings": settings, "seed": s, "status": r["status"],
                            "message": "", "final": r["final"],
                            "history": [{"step": step, "converged": True}] if step is not None else []})
    return out


@contextlib.contextmanager
def stored_runs(runs):
    """Within the block, :func:`sweep` returns ``runs`` (a claim JSON's ``runs``) instead of training."""
    global _STORED
    _STORED = list(runs)
    try:
        yield
    finally:
        _STORED = None


def sweep(base: dict, grid: dict, seeds, out_dir, *, jobs: int = 1, transfer: bool = False,
          progress=None) -> list[dict]:
    """Run a grid of settings x seeds with :func:`gcref.lab.run_sweep` (or
    :func:`gcref.lab.run_transfer`) and return one record per run.

    Each record: ``hp`` (the run's full settings), ``settings`` (the swept ones), ``seed``,
    ``status``, ``final`` (the last history record's metrics) and ``history``. The lab runs the
    points in ``jobs`` processes (joblib's loky; ``sequential`` for one job) and resumes an
    interrupted sweep from ``out_dir``.
    """
    if _STORED is not None:
        return _stored_records(base, grid, seeds)
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


def one_dimensional_sweeps(args, label: str, base: dict, sweeps: dict, seeds, folder, *,
                           transfer: bool = False) -> list[dict]:
    """Each sweep of ``sweeps`` (``{hp: values}``) around ``base``, one at a time, into
    ``folder + "-" + hp`` (:func:`sweep`); every record gets ``swept = hp``. The records of all
    the sweeps, in order (a base point shared by two sweeps appears in both: the statistics
    count it once, :func:`verdicts.distinct_runs`)."""
    records = []
    for hp, values in sweeps.items():
        common.log(args, f"{label}: sweep {hp} over {values} x {len(seeds)} seeds "
                         f"(gcref.lab.{'run_transfer' if transfer else 'run_sweep'})")
        recs = sweep(base, {hp: values}, seeds, f"{folder}-{hp}", jobs=args.jobs, transfer=transfer)
        for r in recs:
            r["swept"] = hp
        records += recs
    return records


def excluded_runs(records) -> dict:
    """How many runs are left out of a statistic: ``diverged_runs`` and ``cap_runs`` (reached
    the cap without meeting the criterion); only :data:`TRAINED` runs are compared."""
    return {"diverged_runs": sum(r["status"] == "diverged" for r in records),
            "cap_runs": sum(r["status"] == "cap" for r in records)}


# --------------------------------------------------------------------------------- entry point
def script_main(run, argv, *, claim: int, description: str):
    """Parse arguments, limit threads, time ``run(args)`` and return its summary dict."""
    args = common.parse_args(argv, claim=claim, description=description)
    t0 = args.t0 = time.time()
    if args.backend == "cuda" and load_backend("cuda").device == "gpu":   # fails early, clearly
        args.jobs = 1                 # one device: every run in this process (on NumPy: --jobs)
    if args.reanalyse:
        return _reanalyse(run, args, t0)
    with limit_threads(1):
        summary = run(args, t0)
    return summary


def _reanalyse(run, args, t0):
    """``--reanalyse``: ``run`` on the runs stored in ``--out``'s claim JSON; that JSON's figure
    and matched fit (they need the histories) are kept, and the reason says so."""
    import reporting
    path = Path(args.out) / f"claim{args.claim}.json"
    if not path.is_file():
        raise SystemExit(f"--reanalyse reads {path}: not found")
    old = json.loads(path.read_text())
    if "runs" not in old:
        raise SystemExit(f"--reanalyse: {path} stores no per-run values (train the claim instead)")
    png = Path(args.out) / f"claim{args.claim}.png"
    figure = png.read_bytes() if png.is_file() else None
    with stored_runs(old["runs"]), limit_threads(1):
        summary = run(args, t0)
    if figure is not None:                  # the curves need the histories: the earlier figure stays
        atomic_write(png, lambda fh: fh.write(figure))
    summary["matched_fit"] = old.get("matched_fit")
    summary["reanalysed"] = {"from": old.get("versions", {}).get("git"), "runtime_s_of_the_runs": old.get("runtime_s"),
                             "note": "statistics recomputed from the stored per-run final values (--reanalyse); "
                                     "the matched fit and the figure are those of the earlier analysis (pooled "
                                     "p-values, no seed blocks): the JSON stores no histories"}
    summary["runtime_s"] = old.get("runtime_s")
    summary["reason"] += (". Recomputed from the stored per-run values with the within-seed statistics; "
                          "the matched fit (kept from the earlier analysis) is not")
    reporting.write_json(path, summary)
    return summary
