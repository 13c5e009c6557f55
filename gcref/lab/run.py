"""One training run: settings in, a folder of results out (:func:`run_training`).

A run folder holds ``config.json`` (the settings, under ``"lab_config"``), ``history.jsonl`` (one
record per evaluation), ``checkpoint.npz`` (parameters and momentum of the last record),
``params.npz`` (final parameters, PyTorch names) and, once the run has finished, ``done.json``
(its summary). Every file is written atomically; a run without ``done.json`` is resumed from its
checkpoint, bitwise as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from ..nn.params_io import atomic_write, save_params
from ..train.fit import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, fit, load_history
from .config import (TrainConfig, build_network, few_shot_protocol, load_run_data,
                     validate_config)

__all__ = ["run_training", "run_summary", "final_record", "read_done", "DONE_FILE", "PARAMS_FILE",
           "FINAL_METRICS", "RUN_FILES"]

DONE_FILE = "done.json"
PARAMS_FILE = "params.npz"
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, CHECKPOINT_FILE, PARAMS_FILE, DONE_FILE)

#: The metrics a run's summary reports (from its last history record), in display order.
FINAL_METRICS = ("loss", "gc", "nc", "geometric_collapse", "train_accuracy", "test_accuracy",
                 "flatness", "target_gc", "target_nc", "few_shot_accuracy", "few_shot_ci95")


def _normalise(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _stored_config(out_dir):
    path = os.path.join(out_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            return json.load(fh).get("lab_config")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def read_done(out_dir) -> dict | None:
    """The summary a finished run left in ``done.json``, or ``None`` if it has not finished."""
    path = os.path.join(os.fspath(out_dir), DONE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None          # a damaged marker counts as unfinished: the run is resumed


def _check_same_run(out_dir, cfg: TrainConfig):
    stored = _stored_config(out_dir)
    if stored is None:
        return
    want = _normalise(cfg.result_key())
    have = _normalise({k: v for k, v in stored.items() if k in want})
    diff = sorted(k for k in want if have.get(k) != want[k])
    if diff:
        detail = ", ".join(f"{k}: {have.get(k)!r} there, {want[k]!r} now" for k in diff[:4])
        raise ValueError(f"{out_dir} holds a run with other settings ({detail}); choose another "
                         "output folder or pass overwrite=True (--overwrite) to start it afresh")


def final_record(history) -> dict:
    """The last record of a history that is not a divergence marker (``{}`` if none)."""
    for rec in reversed(history):
        if not rec.get("diverged"):
            return rec
    return {}


def run_summary(out_dir) -> dict:
    """Summary of a run folder from its files: settings, status and final metrics.

    The final metrics are those of the last record of ``history.jsonl`` (so they always equal the
    history); the status comes from ``done.json`` (``"unfinished"`` when absent).
    """
    out_dir = os.fspath(out_dir)
    history = load_history(out_dir)
    last = final_record(history)
    done = read_done(out_dir) or {}
    with open(os.path.join(out_dir, CONFIG_FILE)) as fh:
        config = json.load(fh)
    return {
        "dir": out_dir,
        "status": done.get("status", "unfinished"),
        "message": done.get("message", ""),
        "steps": last.get("step", 0),
        "wall_time_s": done.get("wall_time_s"),
        "network": config.get("network"),
        "num_params": config.get("num_params"),
        "config": config.get("lab_config", {}),
        "final": {k: last.get(k) for k in FINAL_METRICS if k in last},
    }


@contextlib.contextmanager
def _blas_threads(n):
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:          # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=int(n)):
        yield


#: The BLAS thread limiter under a public name (``validation/`` uses it): ``with blas_threads(1):``.
blas_threads = _blas_threads


def _fit_for(backend: str):
    """The training loop of a backend: gcref's reference, or gcref_cuda's fast twin."""
    if backend == "cuda":
        try:
            import gcref_cuda
        except ImportError as err:  # pragma: no cover - gcref_cuda ships with gcref
            raise ValueError(f"backend 'cuda' needs gcref_cuda: {err}") from None
        return gcref_cuda.fit
    return fit


def run_training(config=None, out_dir=None, *, progress=None, resume: bool = True,
                 overwrite: bool = False) -> dict:
    """Train one network as its settings say and return a summary.

    Parameters
    ----------
    config : TrainConfig or dict, optional
        The settings (unknown names raise); defaults: the digits, the lab's MLP
        (``64 -> 128 -> 128 -> 32 -> 10``), ``lr=0.05``, ``batch_size=32``, ``l2=0.005``,
        ``steps=3000``, ``seed=0``.
    out_dir : path, optional
        Run folder (see the module docstring). Without it nothing is written.
    progress : callable, optional
        ``progress(step, steps, record_or_None)`` after every step (:func:`gcref.train.fit`).
    resume : bool
        With ``out_dir``: a finished run (``done.json``) with the same settings is not run again
        (its summary is returned with ``skipped=True``); an unfinished one continues from its
        checkpoint. A folder holding a run with other settings raises ``ValueError``.
    overwrite : bool
        Delete the run files in ``out_dir`` first and start afresh.

    Returns
    -------
    dict
        ``status`` ("completed" / "diverged"), ``message``, ``steps``, ``wall_time_s``,
        ``network``, ``num_params``, ``config`` (the settings), ``final`` (the last history
        record's ``loss``, ``gc``, ``nc``, ``geometric_collapse``, accuracies and, for transfer
        runs, ``target_nc``, ``target_gc``, ``few_shot_accuracy``, ``few_shot_ci95``), ``dir`` and
        ``skipped``.

    Raises
    ------
    ValueError
        Invalid settings (before any work), or a folder holding a different run.
    """
    cfg = validate_config(config)
    data = load_run_data(cfg)
    cfg = validate_config(cfg, n_train=data.train.n)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        if overwrite:
            for name in RUN_FILES:
                path = os.path.join(out_dir, name)
                if os.path.exists(path):
                    os.unlink(path)
        elif os.path.isdir(out_dir):
            _check_same_run(out_dir, cfg)
            if resume and read_done(out_dir) is not None and os.path.exists(os.path.join(out_dir, HISTORY_FILE)):
                summary = run_summary(out_dir)
                summary["skipped"] = True
                return summary
    if out_dir is not None and os.path.exists(os.path.join(out_dir, DONE_FILE)):
        os.unlink(os.path.join(out_dir, DONE_FILE))        # about to run again: not finished
    t0 = time.perf_counter()
    with _blas_threads(cfg.threads):
        net = build_network(cfg, data)
        params = net.init(cfg.seed)
        extra = {"lab_config": cfg.to_dict(), "dataset": data.train.name, "n_train": data.train.n,
                 "n_test": data.test.n, "classes": list(data.train.classes)}
        if data.target is not None:
            extra.update(n_target=data.target.n, target_classes_names=list(data.target.classes))
        result = _fit_for(cfg.backend)(net, params, data.train, lr=cfg.lr, batch_size=cfg.batch_size, steps=cfg.steps,
                     l2=cfg.l2, gc_reg=cfg.gc_reg, momentum=cfg.momentum, seed=cfg.seed,
                     test_data=data.test, target_data=data.target, eval_every=cfg.eval_every,
                     eval_size=cfg.eval_size, gc_method=cfg.gc_method, gc_size=cfg.gc_size,
                     gc_rows=cfg.gc_rows, few_shot=few_shot_protocol(cfg, data), out_dir=out_dir,
                     resume=resume, progress=progress, config_extra=extra)
    wall = time.perf_counter() - t0
    done = {"status": result.status, "message": result.message, "steps": result.steps,
            "wall_time_s": wall}
    if out_dir is None:
        last = final_record(result.history)
        return {"dir": None, **done, "network": net.name, "num_params": net.num_params(),
                "config": cfg.to_dict(), "final": {k: last.get(k) for k in FINAL_METRICS if k in last},
                "skipped": False, "history": result.history}
    save_params(os.path.join(out_dir, PARAMS_FILE), result.params)
    atomic_write(os.path.join(out_dir, DONE_FILE),
                 lambda fh: fh.write(json.dumps(done, indent=2).encode()))
    summary = run_summary(out_dir)
    summary["skipped"] = False
    return summary
