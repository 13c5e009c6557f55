"""Sweeps: the Cartesian product of settings (and seeds), run in parallel through joblib, resumable.

A sweep folder holds ``sweep.json`` (the plan), one run folder per point of the grid, named from
its settings (``lr=0.05_seed=0``; see :mod:`gcref.lab.run`), and ``summary.json`` /
``summary.csv``: the final metrics of every run and the Spearman correlations across runs between
GC and NC (and, for transfer runs, target NC and few-shot accuracy), and between each swept
setting and the final GC / NC. Running the same sweep again skips the finished runs (those whose
files agree, :func:`gcref.lab.run.verify_finished`) and resumes the others from their
checkpoints; running another grid into the folder is refused unless ``overwrite=True``.

No two processes write one folder: the sweep holds its folder's lock for as long as it runs,
with a fresh token in the lock file, and each run holds its run folder's lock. Workers check
their sweep before every file they commit and after every step (at most every 0.25 s): once the
sweep's lock is gone or carries another token (the sweep was killed, or a new one started in the
folder), the worker stops without writing anything more.

Parallelism is joblib's: ``backend`` is any joblib backend name. ``loky`` (default, processes),
``multiprocessing``, ``threading`` and ``sequential`` are local; ``dask`` sends the runs to a
Dask cluster (needs ``dask[distributed]``; ``dask_scheduler`` is the scheduler address, else a
local cluster is started) and ``ray`` to a Ray cluster (needs ``ray``; ``RAY_ADDRESS`` selects
the cluster, else a local Ray is started for the sweep and stopped after it). gcref has no cluster code of its own: the workers only need gcref installed and the
output folder on a shared file system.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import time
import uuid
import warnings

from ..nn.params_io import FolderLock, atomic_write, clean_stale_temporaries, read_json, write_guard
from ..train.checkpoint import SWEEP_FILE, check_folder_kind
from ..train.fit import CONFIG_FILE, HISTORY_FILE, load_history
from .config import (FIELDS, SettingError, SettingWarning, TrainConfig, as_config, describe_differences,
                     load_run_data, shown, validate_config)
from .run import (FINAL_METRICS, FINISHED, RUN_FILES, TRAINED, _check_same_run, _normalise, read_done,
                  run_summary, run_training, verify_finished)
from .stats import spearman  # noqa: F401 - the lab's Spearman (one definition, gcref.lab.stats)

__all__ = ["run_sweep", "plan_sweep", "expand_grid", "summarize_sweep", "run_name", "spearman",
           "sweep_progress", "SWEEP_FILE", "SUMMARY_JSON", "SUMMARY_CSV", "LOCAL_BACKENDS",
           "PARALLEL_BACKENDS", "SweepPoint", "SweepGone", "RUN_LOCK_WAIT", "check_sweep_folder"]

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
LOCAL_BACKENDS = ("loky", "multiprocessing", "threading", "sequential")
PARALLEL_BACKENDS = LOCAL_BACKENDS + ("dask", "ray")

#: Pairs of final metrics correlated across the runs of a sweep (when both are present).
METRIC_PAIRS = (("gc", "nc"), ("gc", "geometric_collapse"), ("nc", "test_accuracy"),
                ("gc", "test_accuracy"), ("gc", "target_nc"), ("gc", "few_shot_accuracy"),
                ("nc", "target_nc"), ("target_nc", "few_shot_accuracy"))
#: Final metrics correlated with each swept setting.
SETTING_TARGETS = ("gc", "nc", "geometric_collapse", "target_nc", "few_shot_accuracy")
#: Seconds a sweep's worker (or a sweep with ``overwrite``) waits for a run folder's lock, e.g.
#: while a worker of a killed sweep notices and stops.
RUN_LOCK_WAIT = 60.0


class SweepGone(RuntimeError):
    """Raised in a sweep's worker once its sweep no longer holds the sweep folder's lock."""


class _Lease:
    """What a worker checks: the sweep folder's lock is held, with this sweep's token."""

    def __init__(self, sweep_dir: str, token: str):
        self.sweep_dir = sweep_dir
        self.token = token
        self._last = 0.0

    def check(self):
        if not FolderLock.is_held(self.sweep_dir, self.token):
            raise SweepGone(f"the sweep writing {self.sweep_dir} is gone (killed, or replaced by "
                            "another); this worker stops without writing")

    def progress(self, step, steps, record):
        now = time.monotonic()
        if now - self._last >= 0.25:
            self._last = now
            self.check()


class SweepPoint(dict):
    """One run of a sweep: ``name``, ``settings`` (the swept values) and ``config`` (TrainConfig)."""

    @property
    def name(self):
        return self["name"]

    @property
    def config(self) -> TrainConfig:
        return self["config"]


def _fmt(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v) for v in value)
    text = str(value)
    return "".join(ch if ch.isalnum() or ch in ".-+" else "_" for ch in text)


def run_name(settings: dict) -> str:
    """Folder name of a run from its swept settings: ``"lr=0.05_batch_size=32_seed=0"``."""
    return "_".join(f"{k}={_fmt(v)}" for k, v in settings.items()) or "run"


def expand_grid(base_config=None, grid: dict | None = None, seeds=None) -> list:
    """The points of a sweep: the Cartesian product of ``grid`` (in its key order), then seeds.

    Parameters
    ----------
    base_config : TrainConfig or dict, optional
        Settings shared by every run.
    grid : dict[str, list]
        Setting name -> values (each list non-empty, without repeats).
    seeds : list of int, optional
        Seeds of each grid point (default: the base config's seed). Give seeds either here or as
        ``grid["seed"]``, not both.

    Returns
    -------
    list of SweepPoint
        In run order; each with ``name`` (see :func:`run_name`), ``settings`` and ``config``.
    """
    base = as_config(base_config)
    grid = dict(grid or {})
    for key, values in grid.items():
        if key not in FIELDS:
            raise ValueError(f"unknown sweep setting {key!r}; valid settings are: {', '.join(FIELDS)}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid[{key!r}] must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty: give at least one value")
        names = [_fmt(v) for v in values]
        if len(set(names)) != len(names):
            raise ValueError(f"grid[{key!r}] repeats a value: {values}")
        grid[key] = values
    if "seed" in grid:
        if seeds is not None:
            raise ValueError("give the seeds either as seeds= (--seeds) or as a swept 'seed' setting, not both")
        seed_list = [None]
    else:
        seed_list = [base.seed] if seeds is None else list(seeds)
        if not seed_list:
            raise ValueError("seeds is empty: give at least one seed")
        if len(set(seed_list)) != len(seed_list):
            raise ValueError(f"seeds repeat: {seed_list}")
    points = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        for seed in seed_list:
            settings = dict(zip(keys, combo))
            if seed is not None:
                settings["seed"] = seed
            points.append(SweepPoint(name=run_name(settings), settings=settings,
                                     config=as_config(base, **settings)))
    return points


def plan_sweep(base_config=None, grid: dict | None = None, seeds=None) -> list:
    """:func:`expand_grid` and the validation of every point, before any run starts.

    Every configuration is checked (names, ranges), then the data each one names is loaded once
    and every setting that depends on it is checked (:func:`gcref.lab.config.check_against_data`:
    batch size, evaluation size, GC-penalty rows, few-shot protocol). The first bad point raises
    a ``ValueError`` (a :class:`gcref.lab.config.SettingError` for a bad setting) that names it.
    """
    points = expand_grid(base_config, grid, seeds)
    for check_data in (False, True):              # every point's settings, then against its data
        for p in points:
            try:
                data = load_run_data(p["config"]) if check_data else None
                p["config"] = validate_config(p["config"], data=data)
                if data is not None:               # the step budget (cap), also for --epochs
                    p["steps"] = p["config"].step_budget(data.train.n)
            except SettingError as err:
                raise err.prefixed(f"sweep point {p.name}: ") from None
            except ValueError as err:
                raise ValueError(f"sweep point {p.name}: {err}") from None
    return points


def _check_backend(backend: str):
    import joblib.parallel as jp

    if not isinstance(backend, str):
        raise ValueError(f"parallel backend must be a name, got {backend!r}")
    if backend in LOCAL_BACKENDS:
        return
    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError("the 'dask' parallel backend needs dask.distributed: "
                             "pip install 'dask[distributed]'") from None
        return
    if backend == "ray":
        try:
            import ray.util.joblib  # noqa: F401
        except ImportError:
            raise ValueError("the 'ray' parallel backend needs ray: pip install 'ray[default]'") from None
        return
    if backend in jp.BACKENDS:       # a backend the user registered with joblib
        return
    raise ValueError(f"unknown parallel backend {backend!r}; valid: {', '.join(PARALLEL_BACKENDS)} "
                     "(or a name registered with joblib.register_parallel_backend)")


@contextlib.contextmanager
def _backend(backend: str, n_jobs: int, dask_scheduler=None):
    from joblib import parallel_config

    if backend == "dask":
        import distributed
        try:
            client = distributed.Client(dask_scheduler) if dask_scheduler else distributed.default_client()
            own = bool(dask_scheduler)
        except ValueError:            # no client yet: start a local cluster
            client, own = distributed.Client(), True
        try:
            with parallel_config(backend="dask", n_jobs=n_jobs):
                yield
        finally:
            if own:
                client.close()
        return
    if backend == "ray":
        import ray
        from ray.util.joblib import register_ray
        own = not ray.is_initialized()
        if own:                 # RAY_ADDRESS picks a cluster; else a local one for this sweep
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                     log_to_driver=False)
        register_ray()
        try:
            with parallel_config(backend="ray", n_jobs=n_jobs):
                yield
        finally:
            if own:
                ray.shutdown()
        return
    with parallel_config(backend=backend, n_jobs=n_jobs):
        yield


def _run_one(config: dict, run_dir: str, lease: _Lease | None = None) -> dict:
    """One sweep run in a worker: never raises, returns the run's summary or the error.

    With a lease, nothing is written once the sweep is gone (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SettingWarning)      # said when the sweep was planned
            if lease is None:
                return run_training(config, run_dir, resume=True, progress=False)
            lease.check()
            with write_guard(lease.check):
                return run_training(config, run_dir, resume=True, progress=lease.progress,
                                    lock_timeout=RUN_LOCK_WAIT)
    except SweepGone as err:
        _exit_if_orphaned_pool_worker()
        return {"dir": run_dir, "status": "error", "message": f"SweepGone: {err}",
                "config": config, "final": {}}
    except Exception as err:  # noqa: BLE001 - reported in the sweep summary
        return {"dir": run_dir, "status": "error", "message": f"{type(err).__name__}: {err}",
                "config": config, "final": {}}


#: Process names of local pool workers (loky, multiprocessing): such a worker of a sweep that is
#: gone has nobody to report to and exits rather than idle until its pool's timeout.
_POOL_WORKERS = ("LokyProcess", "ForkPoolWorker", "SpawnPoolWorker", "ForkServerPoolWorker")


def _exit_if_orphaned_pool_worker():
    import multiprocessing
    if multiprocessing.current_process().name.startswith(_POOL_WORKERS):
        os._exit(3)


def _last_step(run_dir) -> int:
    path = os.path.join(run_dir, HISTORY_FILE)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            lines = fh.read().decode(errors="replace").strip().splitlines()
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            return int(rec.get("step", 0))
    except OSError:
        pass
    return 0


def _planned_steps(point, run_dir) -> int:
    """A sweep point's step budget: as planned (:func:`plan_sweep`); else (a plan written before
    budgets were recorded) the run folder's ``config.json``, else the configuration's ``steps``
    (its budget unless it is given in epochs: then 0 until the run has started)."""
    if point.get("steps") is not None:
        return int(point["steps"])
    try:
        return int(read_json(os.path.join(run_dir, CONFIG_FILE))["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cfg = point["config"] if isinstance(point.get("config"), TrainConfig) else as_config(point["config"])
    return 0 if cfg.epochs is not None else int(cfg.steps)


def sweep_progress(out_dir, points=None) -> tuple:
    """``(steps recorded, steps planned, runs finished, runs planned)`` of a sweep folder.

    Read from the run folders, so it works whatever process or machine runs them (the steps
    advance at each history record). A run's planned steps are its step budget (with a
    criterion: the cap; with ``epochs``: the budget in steps, from :func:`plan_sweep`); a
    finished run counts all of them, whether it ran them or converged (or diverged) earlier.
    """
    out_dir = os.fspath(out_dir)
    if points is None:
        points = load_sweep(out_dir)["runs"]
    done_steps = total = finished = 0
    for p in points:
        run_dir = os.path.join(out_dir, p["name"])
        steps = _planned_steps(p, run_dir)
        total += steps
        if read_done(run_dir) is not None:
            finished += 1
            done_steps += steps
        else:
            done_steps += min(steps, _last_step(run_dir))
    return done_steps, total, finished, len(points)


def run_sweep(base_config=None, grid: dict | None = None, seeds=None, out_dir="runs/sweep", *,
              n_jobs: int = -1, backend: str = "loky", progress=None, overwrite: bool = False,
              dask_scheduler: str | None = None, kind: str = "sweep") -> dict:
    """Run every point of a grid of settings (and seeds), in parallel, resumably.

    Parameters
    ----------
    base_config : TrainConfig or dict, optional
        Settings shared by all runs (defaults: :class:`TrainConfig`).
    grid : dict[str, list], optional
        Setting -> values; the runs are the Cartesian product (default ``{"lr": [0.01, 0.05,
        0.2]}``).
    seeds : list of int, optional
        Seeds per grid point (default ``[base_config.seed]``).
    out_dir : path
        Sweep folder; each run goes to ``out_dir/<run name>``.
    n_jobs : int
        Parallel jobs (joblib's convention: -1 = all cores).
    backend : str
        A joblib backend: ``loky``, ``multiprocessing``, ``threading``, ``sequential``, ``dask``,
        ``ray``, or one registered with :func:`joblib.register_parallel_backend`.
    progress : callable, optional
        ``progress(finished, total, run_summary_or_None)``: once at the start (skipped runs count
        as finished) and after each run.
    overwrite : bool
        Delete the planned runs' files and the summaries first, and run everything again (also
        when the folder holds a sweep over another grid, which is otherwise refused).
    dask_scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``) for ``backend="dask"``.
    kind : str
        Recorded in ``sweep.json`` (``"sweep"`` or ``"transfer"``).

    Returns
    -------
    dict
        The sweep summary (as written to ``summary.json``; see :func:`summarize_sweep`), with
        ``skipped`` (runs already finished) and ``ran`` (runs run now).

    Raises
    ------
    ValueError
        Any invalid point of the grid, an unknown backend, a folder holding a sweep over another
        grid (without ``overwrite``), or a run folder holding a run with other settings, all
        before any run starts.
    FolderLocked
        Another process is running a sweep in ``out_dir`` (the message names it).
    """
    if grid is None:
        grid = {"lr": [0.01, 0.05, 0.2]}
    points = plan_sweep(base_config, grid, seeds)
    _check_backend(backend)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    out_dir = os.fspath(out_dir)
    plan = _plan(base_config, grid, seeds, points, kind)
    token = uuid.uuid4().hex
    with FolderLock(out_dir, token=token):
        clean_stale_temporaries(out_dir)
        check_folder_kind(out_dir, kind)
        if not overwrite:
            _check_same_plan(out_dir, plan)
        else:
            for p in points:
                run_dir = os.path.join(out_dir, p.name)
                if os.path.isdir(run_dir):
                    with FolderLock(run_dir, timeout=RUN_LOCK_WAIT):
                        clean_stale_temporaries(run_dir)
                        for name in RUN_FILES:
                            if os.path.exists(os.path.join(run_dir, name)):
                                os.unlink(os.path.join(run_dir, name))
            for name in (SUMMARY_JSON, SUMMARY_CSV):
                if os.path.exists(os.path.join(out_dir, name)):
                    os.unlink(os.path.join(out_dir, name))
        for p in points:
            run_dir = os.path.join(out_dir, p.name)
            if os.path.isdir(run_dir):
                _check_same_run(run_dir, p.config)
        atomic_write(os.path.join(out_dir, SWEEP_FILE),
                     lambda fh: fh.write(json.dumps(plan, indent=2, default=str).encode()))

        pending = [p for p in points if verify_finished(os.path.join(out_dir, p.name), p.config)[0] is None]
        finished = len(points) - len(pending)
        if progress is not None:
            progress(finished, len(points), None)
        errors = []
        if pending:
            from joblib import delayed

            # absolute paths: pool workers keep the working folder they were started in
            where = os.path.abspath(out_dir)
            lease = _Lease(where, token)
            jobs = [delayed(_run_one)(p.config.to_dict(), os.path.join(where, p.name), lease)
                    for p in pending]
            n = min(len(pending), os.cpu_count() or 1) if n_jobs == -1 and backend in LOCAL_BACKENDS else n_jobs
            with _backend(backend, n, dask_scheduler):
                for result in _parallel()(jobs):
                    finished += 1
                    if result.get("status") == "error":
                        errors.append(result)
                    if progress is not None:
                        progress(finished, len(points), result)
        summary = summarize_sweep(out_dir, errors=errors)
    summary["skipped"] = len(points) - len(pending)
    summary["ran"] = len(pending)
    return summary


def _parallel():
    """joblib's Parallel yielding results as runs finish, or in order, or all at the end (ray's
    backend supports neither generator)."""
    from joblib import Parallel
    for mode in ("generator_unordered", "generator"):
        try:
            return Parallel(return_as=mode)
        except ValueError:
            continue
    return Parallel(return_as="list")


def _plan(base_config, grid, seeds, points, kind) -> dict:
    return {"kind": kind, "base_config": as_config(base_config).to_dict(), "grid": grid,
            "seeds": None if seeds is None else list(seeds),
            "runs": [{"name": p.name, "settings": p["settings"], "config": p.config.to_dict(),
                      **({"steps": p["steps"]} if "steps" in p else {})}
                     for p in points]}


def check_sweep_folder(out_dir, base_config, grid, seeds, points, kind="sweep") -> None:
    """Raise ``ValueError`` if ``out_dir`` holds a sweep over other runs, or a run folder of
    the plan holds a run with other settings (what :func:`run_sweep` refuses without
    ``overwrite``); for checks before any work (the CLI)."""
    out_dir = os.fspath(out_dir)
    check_folder_kind(out_dir, kind)
    _check_same_plan(out_dir, _plan(base_config, grid, seeds, points, kind))
    for p in points:
        run_dir = os.path.join(out_dir, p.name)
        if os.path.isdir(run_dir):
            _check_same_run(run_dir, p.config)


def _plan_key(plan) -> list:
    from .config import as_config as _as
    return sorted((r["name"], json.dumps(_normalise(_as(r["config"]).result_key()), sort_keys=True))
                  for r in plan["runs"])


def _check_same_plan(out_dir, plan):
    """Refuse a sweep whose runs differ from those of the sweep already in ``out_dir``, listing
    every difference with both values (:func:`_plan_differences`)."""
    path = os.path.join(out_dir, SWEEP_FILE)
    if not os.path.exists(path):
        return
    try:
        old = read_json(path)
        same = old.get("kind") == plan["kind"] and _plan_key(old) == _plan_key(plan)
    except (OSError, ValueError, KeyError, TypeError):
        same = False
        old = {}
    if not same:
        detail, names = _plan_differences(old, plan)
        raise SettingError(f"holds a sweep over other runs ({detail or 'the runs differ'}); "
                           "choose another output folder or pass overwrite=True (--overwrite) to "
                           "replace it", *names, prefix=f"{out_dir} ")


def _effective_seeds(plan):
    """The seeds a plan runs: its ``seeds``, else those of its base settings (or swept)."""
    if plan.get("seeds") is not None:
        return list(plan["seeds"])
    if "seed" in (plan.get("grid") or {}):
        return None
    return [(plan.get("base_config") or {}).get("seed", TrainConfig.seed)]


def _plan_differences(old, new) -> tuple:
    """Every difference between two sweep plans in the user's terms: the kind, each shared
    setting (both values), each swept setting's values, and the seeds."""
    parts, names = [], []
    if old.get("kind") != new["kind"]:
        parts.append(f"kind: {shown(old.get('kind'))} there, {shown(new['kind'])} now")
    old_grid, new_grid = old.get("grid") or {}, new.get("grid") or {}
    swept = list(dict.fromkeys([*new_grid, *old_grid]))
    try:
        have = _normalise(as_config(old.get("base_config") or {}).result_key())
    except (ValueError, TypeError):
        have = {}
    want = _normalise(as_config(new["base_config"]).result_key())
    detail, keys = describe_differences({k: v for k, v in have.items() if k not in swept},
                                        {k: v for k, v in want.items() if k not in swept})
    if detail:
        parts.append(detail)
        names += keys
    for k in swept:
        if old_grid.get(k) != new_grid.get(k):
            parts.append(f"swept {k}: {shown(old_grid.get(k), 'not swept')} there, "
                         f"{shown(new_grid.get(k), 'not swept')} now")
            names.append(k)
    seeds_there, seeds_now = _effective_seeds(old), _effective_seeds(new)
    if seeds_there != seeds_now:
        parts.append(f"seeds: {shown(seeds_there, 'swept')} there, {shown(seeds_now, 'swept')} now")
        names.append("seeds")
    return "; ".join(parts), tuple(names)


# ---------------------------------------------------------------------------- summaries


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarize_sweep(out_dir, errors=None) -> dict:
    """Read a sweep folder and write ``summary.json`` and ``summary.csv`` (atomically).

    The final metrics of each run are its last history record (so they equal the histories).
    Correlations use the runs trained as asked only (:data:`gcref.lab.run.TRAINED`: completed,
    or converged to the criterion; runs that reached the cap, diverged or are unfinished are
    listed and counted, not correlated; ``correlated_statuses`` says which):
    ``"<x>_vs_<y>"`` for the pairs of :data:`METRIC_PAIRS` and for each swept numeric setting
    against :data:`SETTING_TARGETS`, each :func:`gcref.lab.stats.spearman` within the runs' seeds
    as blocks (Spearman's rho within each seed, its within-seed permutation p-value; one seed:
    plain Spearman with its exact p-value up to 9 runs).
    """
    out_dir = os.fspath(out_dir)
    plan = load_sweep(out_dir)
    errors = {os.path.basename(os.path.normpath(e["dir"])): e for e in (errors or [])}
    rows = []
    for p in plan["runs"]:
        run_dir = os.path.join(out_dir, p["name"])
        if p["name"] in errors:
            row = {"name": p["name"], "settings": p["settings"], "status": "error",
                   "message": errors[p["name"]]["message"], "final": {}}
        elif os.path.exists(os.path.join(run_dir, HISTORY_FILE)):
            s = run_summary(run_dir, as_config(p["config"]))
            row = {"name": p["name"], "settings": p["settings"], "status": s["status"],
                   "message": s["message"], "steps": s["steps"], "epochs": s["epochs"],
                   "converged_step": s["converged_step"], "wall_time_s": s["wall_time_s"],
                   "final": s["final"]}
        else:
            row = {"name": p["name"], "settings": p["settings"], "status": "pending", "final": {}}
        rows.append(row)
    ok = [r for r in rows if r["status"] in TRAINED]
    seeds = [r["settings"].get("seed", plan["base_config"].get("seed")) for r in ok]   # the blocks
    correlations = {}
    for a, b in METRIC_PAIRS:
        if any(a in r["final"] for r in ok) and any(b in r["final"] for r in ok):
            correlations[f"{a}_vs_{b}"] = {"x": a, "y": b, **spearman(
                [r["final"].get(a) for r in ok], [r["final"].get(b) for r in ok], seeds)}
    swept = [k for k in plan["grid"] if k != "seed"]
    for k in swept:
        values = [r["settings"].get(k) for r in ok]
        if not all(_num(v) for v in values):
            continue
        for b in SETTING_TARGETS:
            if any(b in r["final"] for r in ok):
                correlations[f"{k}_vs_{b}"] = {"x": k, "y": b, **spearman(values, [r["final"].get(b) for r in ok],
                                                                          seeds)}
    summary = {"kind": plan.get("kind", "sweep"), "dir": out_dir, "grid": plan["grid"],
               "seeds": plan.get("seeds"), "base_config": plan["base_config"],
               "counts": {s: sum(r["status"] == s for r in rows)
                          for s in FINISHED + ("error", "unfinished", "pending")},
               "correlated_statuses": list(TRAINED), "runs": rows, "by_setting": _by_setting(rows, swept), "correlations": correlations}
    atomic_write(os.path.join(out_dir, SUMMARY_JSON),
                 lambda fh: fh.write(json.dumps(summary, indent=2, default=str).encode()))
    _write_csv(os.path.join(out_dir, SUMMARY_CSV), rows)
    return summary


def _by_setting(rows, swept):
    """Mean and sample standard deviation over seeds of each final metric, per setting."""
    import numpy as np

    groups: dict = {}
    for r in rows:
        if r["status"] not in TRAINED:
            continue
        key = tuple((k, r["settings"].get(k)) for k in swept)
        groups.setdefault(key, []).append(r)
    out = []
    for key, members in groups.items():
        entry = {"settings": dict(key), "runs": len(members), "mean": {}, "std": {}}
        for m in FINAL_METRICS:
            vals = [r["final"].get(m) for r in members if _num(r["final"].get(m))]
            if vals:
                entry["mean"][m] = float(np.mean(vals))
                entry["std"][m] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out.append(entry)
    return out


def _write_csv(path, rows):
    setting_keys = list(dict.fromkeys(k for r in rows for k in r["settings"]))
    metric_keys = [m for m in ("step",) + FINAL_METRICS
                   if m == "step" or any(m in r["final"] for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "status"] + setting_keys + metric_keys)
    for r in rows:
        final = dict(r["final"], step=r.get("steps"))
        w.writerow([r["name"], r["status"]] + [_csv(r["settings"].get(k)) for k in setting_keys]
                   + [_csv(final.get(m)) for m in metric_keys])
    text = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return v


def load_sweep(out_dir) -> dict:
    """The plan (``sweep.json``) of a sweep folder (a damaged one raises ``ValueError`` naming
    it)."""
    plan = read_json(os.path.join(os.fspath(out_dir), SWEEP_FILE))
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list):
        raise ValueError(f"{os.path.join(os.fspath(out_dir), SWEEP_FILE)} is not a sweep plan "
                         "(no list of runs): a damaged file")
    return plan


def sweep_histories(out_dir) -> list:
    """``[(run name, settings, history)]`` for the runs of a sweep that have a history."""
    plan = load_sweep(out_dir)
    out = []
    for p in plan["runs"]:
        path = os.path.join(os.fspath(out_dir), p["name"], HISTORY_FILE)
        if os.path.exists(path):
            out.append((p["name"], p["settings"], load_history(path)))
    return out
