"""One training run: settings in, a folder of results out (:func:`run_training`).

A run folder holds ``config.json`` (the settings, under ``"lab_config"``), ``history.jsonl`` (one
record per evaluation), ``checkpoint.npz`` (parameters and momentum of the last record),
``params.npz`` (final parameters, PyTorch names) and, once the run has finished, ``done.json``
(its summary). Every file is written atomically; a run without ``done.json`` is resumed from its
checkpoint, bitwise as if it had never stopped.

A process writes a run folder only while it holds the folder's exclusive lock
(:class:`gcref.nn.params_io.FolderLock`, the file ``.gcref.lock``): a second writer is refused
with a message naming the holder. A run counts as finished only when its files agree
(:func:`verify_finished`): ``done.json``, the last record of ``history.jsonl`` and the
checkpoint all carry the step count and the settings fingerprint of ``config.json``, whose
settings are the ones asked for, and every file a result is read from (``params.npz``,
``checkpoint.npz``, ``history.jsonl``, ``config.json``) has the size and SHA-256 recorded in
``done.json``. A run whose files do not check out is not finished: its summary says
``unfinished`` (with the reason), and running it again resumes it from its checkpoint when the
checkpoint vouches for the history (it records the digest of the records up to its step), else
trains it again from step 0; the summary's ``redone`` says why. An unreadable file (not UTF-8,
not JSON) counts as a file that does not check out.

Folders of an older gcref: a ``done.json`` without the checksum of ``history.jsonl`` and
``config.json``, or a checkpoint without the history's digest, cannot tell its own history from
another run's; such a run counts as unfinished and is trained again from step 0 (the settings'
fingerprint is unchanged, so the folder is recognised as the same run). A damaged checkpoint is
refused, naming the file and how to start afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from ..nn.params_io import (FolderLock, atomic_write, clean_stale_temporaries, load_params, read_json,
                            save_params)
from ..train.checkpoint import check_folder_kind, checkpoint_info, history_digest, settings_fingerprint
from ..train.fit import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, fit, load_history
from .config import (SettingError, TrainConfig, build_network, describe_differences,
                     few_shot_protocol, load_run_data, validate_config)

__all__ = ["run_training", "run_summary", "final_record", "read_done", "verify_finished",
           "DONE_FILE", "PARAMS_FILE", "FINAL_METRICS", "RUN_FILES", "FINISHED", "TRAINED"]

DONE_FILE = "done.json"
PARAMS_FILE = "params.npz"
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, CHECKPOINT_FILE, PARAMS_FILE, DONE_FILE)
#: The files whose size and SHA-256 ``done.json`` records (:func:`verify_finished`): every file
#: a finished run's results are read from.
OUTPUT_FILES = (PARAMS_FILE, CHECKPOINT_FILE, HISTORY_FILE, CONFIG_FILE)

#: The metrics a run's summary reports (from its last history record), in display order.
FINAL_METRICS = ("loss", "gc", "nc", "geometric_collapse", "train_accuracy", "test_accuracy",
                 "flatness", "target_gc", "target_nc", "few_shot_accuracy", "few_shot_ci95",
                 "train_loss", "epoch")

#: How a finished run ended (``done.json``'s ``status``): the whole budget (no criterion),
#: the criterion met (``converged``), the cap reached without meeting it (``cap``), or diverged.
FINISHED = ("completed", "converged", "cap", "diverged")
#: The statuses of runs trained as asked (compared across a sweep); ``cap`` and ``diverged``
#: runs are listed and counted apart, never mixed in.
TRAINED = ("completed", "converged")


def _normalise(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _stored_config(out_dir):
    path = os.path.join(out_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        return read_json(path).get("lab_config")
    except (OSError, ValueError, AttributeError):
        return None


def read_done(out_dir) -> dict | None:
    """The summary a finished run left in ``done.json``, or ``None`` if it has not finished."""
    return _read_done(out_dir)[0]


def _read_done(out_dir) -> tuple:
    """``(done, "")``, or ``(None, why)`` when ``done.json`` is absent or cannot be read (a
    damaged marker counts as unfinished: the run is resumed)."""
    path = os.path.join(os.fspath(out_dir), DONE_FILE)
    if not os.path.exists(path):
        return None, "no done.json"
    try:
        done = read_json(path)
    except (OSError, ValueError) as err:
        return None, f"done.json cannot be read ({err})"
    return (done, "") if isinstance(done, dict) else (None, "done.json holds no summary (a damaged file)")


def _settings_difference(stored, cfg: TrainConfig) -> tuple:
    """Every result setting that differs between a folder's ``lab_config`` and ``cfg``, both
    values shown (:func:`gcref.lab.config.describe_differences`), and their names."""
    want = _normalise(cfg.result_key())
    have = _normalise({k: v for k, v in stored.items() if k in want})
    return describe_differences(have, want)


def _check_same_run(out_dir, cfg: TrainConfig):
    stored = _stored_config(out_dir)
    if stored is None:
        return
    detail, names = _settings_difference(stored, cfg)
    if detail:
        raise SettingError(f"holds a run with other settings ({detail}); choose another output "
                           "folder or pass overwrite=True (--overwrite) to start it afresh",
                           *names, prefix=f"{out_dir} ")


def verify_finished(out_dir, cfg: TrainConfig | None = None) -> tuple:
    """Whether a run folder holds a finished run whose files agree: ``(done, "")`` or
    ``(None, reason)``.

    Finished means: ``done.json`` is readable and says one of :data:`FINISHED`; its
    settings fingerprint equals that of ``config.json`` (and of the checkpoint); ``config.json``
    holds the settings ``cfg`` (when given); the last history record is the final step
    (``steps`` of the config; for ``converged`` the first record meeting the criterion; or the
    divergence marker one step after ``done.json``'s steps); the checkpoint is at the last
    recorded step; ``params.npz`` and ``checkpoint.npz`` have the size and SHA-256 that
    ``done.json`` records (``outputs``) and ``params.npz`` loads with the recorded shapes
    (``param_shapes``); so do ``history.jsonl`` and ``config.json``, which are checked first. A
    ``done.json`` written before gcref recorded these checksums counts as unfinished (the module
    docstring says what running it again does).
    """
    out_dir = os.fspath(out_dir)
    done, reason = _read_done(out_dir)
    if done is None:
        return None, reason
    if done.get("status") not in FINISHED:
        return None, f"done.json has status {done.get('status')!r}"
    reason = _check_outputs(out_dir, done)
    if reason:
        return None, reason
    try:
        config = read_json(os.path.join(out_dir, CONFIG_FILE))
        history = load_history(out_dir)
    except (OSError, ValueError) as err:
        return None, f"unreadable run files ({err})"
    sha = settings_fingerprint(config)
    if done.get("config_sha256") != sha:
        return None, "done.json was not written for the settings in config.json"
    if cfg is not None:
        detail = _settings_difference(config.get("lab_config") or {}, cfg)[0]
        if detail:
            return None, f"config.json holds other settings ({detail})"
    steps = done.get("steps")
    last = history[-1] if history else {}
    if done["status"] in ("completed", "cap"):
        want_last = config.get("steps", (config.get("lab_config") or {}).get("steps"))
        if not (last.get("step") == steps == want_last and not last.get("diverged")
                and not last.get("converged")):
            return None, (f"history.jsonl ends at step {last.get('step')}, done.json says {steps}, "
                          f"the settings {want_last}")
    elif done["status"] == "converged":
        first = next((r.get("step") for r in history if r.get("converged")), None)
        if not (last.get("converged") and last.get("step") == steps == first == done.get("converged_step")):
            return None, (f"history.jsonl ends at step {last.get('step')} (first record meeting the "
                          f"criterion: {first}), done.json says converged at {done.get('converged_step')}")
    elif not (last.get("diverged") and isinstance(steps, int) and last.get("step") == steps + 1):
        return None, "history.jsonl does not end with the divergence done.json reports"
    info = checkpoint_info(os.path.join(out_dir, CHECKPOINT_FILE))
    recorded = final_record(history).get("step")
    if info is None or info["sha256"] != sha or info["step"] != recorded:
        return None, (f"checkpoint.npz (step {None if info is None else info['step']}) does not "
                      f"match the history (last record at step {recorded}) and settings")
    return done, ""


def _file_record(path) -> dict:
    """``{"bytes", "sha256"}`` of a file."""
    import hashlib
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _outputs_record(out_dir, params) -> dict:
    """What ``done.json`` records of a finished run's outputs: size and SHA-256 of each of
    :data:`OUTPUT_FILES`, and the shape of every parameter."""
    return {"outputs": {name: _file_record(os.path.join(out_dir, name)) for name in OUTPUT_FILES},
            "param_shapes": {k: list(v.shape) for k, v in params.items()}}


def _check_outputs(out_dir, done) -> str:
    """Why the outputs of a finished run cannot be trusted (``""`` if they can): each of
    :data:`OUTPUT_FILES` has the size and SHA-256 recorded in ``done.json``, and ``params.npz``
    loads (safely) with the recorded shapes."""
    outputs = done.get("outputs")
    if not isinstance(outputs, dict):
        return "done.json records no checksums of the outputs (written by an older gcref)"
    for name in OUTPUT_FILES:
        path = os.path.join(out_dir, name)
        want = outputs.get(name)
        if not isinstance(want, dict):
            return f"done.json was written by an older gcref and does not bind {name}"
        if not os.path.isfile(path):
            return f"{name} is missing"
        have = _file_record(path)
        if have["bytes"] != want.get("bytes"):
            return f"{name} has {have['bytes']} bytes, done.json recorded {want.get('bytes')}"
        if have["sha256"] != want.get("sha256"):
            return f"{name} does not match the SHA-256 recorded in done.json"
    try:
        params = load_params(os.path.join(out_dir, PARAMS_FILE))
    except ValueError as err:
        return str(err)
    if {k: list(v.shape) for k, v in params.items()} != done.get("param_shapes"):
        return "params.npz does not hold the parameter shapes recorded in done.json"
    return ""


def final_record(history) -> dict:
    """The last record of a history that is not a divergence marker (``{}`` if none)."""
    for rec in reversed(history):
        if not rec.get("diverged"):
            return rec
    return {}


def run_summary(out_dir, cfg: TrainConfig | None = None) -> dict:
    """Summary of a run folder from its files: settings, status and final metrics.

    The final metrics are those of the last record of ``history.jsonl`` (so they always equal the
    history); the status comes from ``done.json`` when :func:`verify_finished` accepts the folder
    (against ``cfg`` when given), else it is ``"unfinished"`` (with the reason as ``message``
    when a ``done.json`` is there but its files disagree).
    """
    out_dir = os.fspath(out_dir)
    done, reason = verify_finished(out_dir, cfg)
    if done is None:
        done = {"status": "unfinished",
                "message": "" if not os.path.exists(os.path.join(out_dir, DONE_FILE)) else f"not finished: {reason}"}
    try:
        history = load_history(out_dir)
        config = read_json(os.path.join(out_dir, CONFIG_FILE))
    except (OSError, ValueError) as err:       # unfinished (verify_finished read them)
        history, config = [], {}
        done["message"] = f"not finished: {err}"
    last = final_record(history)
    return {
        "dir": out_dir,
        "status": done.get("status", "unfinished"),
        "message": done.get("message", ""),
        "steps": last.get("step", 0),
        "epochs": last.get("epoch"),
        "converged_step": done.get("converged_step"),
        "wall_time_s": done.get("wall_time_s"),
        "network": config.get("network"),
        "num_params": config.get("num_params"),
        "config": config.get("lab_config", {}),
        "final": {k: last.get(k) for k in FINAL_METRICS if k in last},
    }


@contextlib.contextmanager
def blas_threads(n):
    """At most ``n`` BLAS threads in this process for a ``with`` block (``None``: no limit)."""
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


def engine_for(backend: str, dtype: str | None = None):
    """The engine of a backend for :func:`gcref.train.fit`: ``None`` (the reference) or a
    callable building ``gcref_cuda.FastEngine(net, dtype)`` for the run's network (``dtype``
    ``None``: the backend's default)."""
    if backend == "cuda":
        from gcref_cuda import FastEngine
        return FastEngine if dtype is None else (lambda net: FastEngine(net, dtype))
    if dtype not in (None, "float64"):
        raise ValueError(f"dtype {dtype!r} needs the cuda backend (the reference trains in float64)")
    return None


def run_training(config=None, out_dir=None, *, progress=None, resume: bool = True,
                 overwrite: bool = False, lock_timeout: float = 0.0) -> dict:
    """Train one network as its settings say and return a summary.

    Parameters
    ----------
    config : TrainConfig or dict, optional
        The settings (unknown names raise); defaults: the digits, the lab's MLP
        (``64 -> 128 -> 128 -> 32 -> 10``), ``lr=0.05``, ``batch_size=32``, ``l2=0.005``,
        ``steps=3000``, ``seed=0``.
    out_dir : path, optional
        Run folder (see the module docstring). Without it nothing is written.
    progress : callable, bool or None
        ``progress(step, steps, record_or_None)`` after every step; ``None``: a progress bar
        on stderr when it is a terminal; ``False``: none (see :func:`gcref.train.fit`).
    resume : bool
        With ``out_dir``: a finished run with the same settings (:func:`verify_finished`) is not
        run again (its summary is returned with ``skipped=True``); an unfinished one continues
        from its checkpoint (``resumed_from`` in the summary). A folder holding a run with other
        settings, or a checkpoint made with other settings, raises ``ValueError``.
    overwrite : bool
        Delete the run files in ``out_dir`` first and start afresh.
    lock_timeout : float
        Seconds to wait for another process writing ``out_dir`` to finish before raising
        :class:`gcref.nn.params_io.FolderLocked` (which names it).

    Returns
    -------
    dict
        ``status`` (one of :data:`FINISHED`: "completed", or with a criterion "converged" /
        "cap", or "diverged"), ``message``, ``steps``, ``epochs`` (of the last record),
        ``converged_step``, ``wall_time_s``,
        ``network``, ``num_params``, ``config`` (the settings), ``final`` (the last history
        record's ``loss``, ``gc``, ``nc``, ``geometric_collapse``, accuracies and, for transfer
        runs, ``target_nc``, ``target_gc``, ``few_shot_accuracy``, ``few_shot_ci95``), ``dir``,
        ``skipped`` and ``resumed_from`` (the checkpoint's step, or ``None``); ``redone`` (why)
        when the folder held a finished run whose files did not check out
        (:func:`verify_finished`), which was resumed from its checkpoint and written again.

    Raises
    ------
    ValueError
        Invalid settings (:class:`gcref.lab.config.SettingError`, before any work), a folder
        holding a different run (every differing setting listed) or another kind of work (a
        sweep), or a damaged checkpoint (naming the file).
    FolderLocked
        Another process (or thread) is writing ``out_dir``.
    NotADirectoryError
        ``out_dir`` is a file.
    """
    cfg = validate_config(config)
    data = load_run_data(cfg)
    cfg = validate_config(cfg, data=data)
    if out_dir is None:
        return _train(cfg, data, None, progress, resume)
    out_dir = os.fspath(out_dir)
    redone = ""
    with FolderLock(out_dir, timeout=lock_timeout):
        clean_stale_temporaries(out_dir)
        check_folder_kind(out_dir, "run")
        if overwrite:
            remove_run_files(out_dir)
        else:
            _check_same_run(out_dir, cfg)
            if resume:
                done, reason = verify_finished(out_dir, cfg)
                if done is not None:
                    summary = run_summary(out_dir, cfg)
                    summary.update(skipped=True, resumed_from=None)
                    return summary
                if os.path.exists(os.path.join(out_dir, DONE_FILE)):
                    redone = reason
                unbound = _unvouched_history(out_dir)
                if unbound:          # nothing vouches for the history: train again from step 0
                    redone = "; ".join(filter(None, [redone, f"{unbound}: trained again from step 0"]))
                    remove_run_files(out_dir)
        if os.path.exists(os.path.join(out_dir, DONE_FILE)):
            os.unlink(os.path.join(out_dir, DONE_FILE))        # about to run again: not finished
        summary = _train(cfg, data, out_dir, progress, resume)
        if redone:
            summary["redone"] = redone
        return summary


def remove_run_files(out_dir) -> None:
    """Delete the files of :data:`RUN_FILES` in ``out_dir`` (held locked by the caller)."""
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.unlink(path)


def _unvouched_history(out_dir) -> str:
    """Why the checkpoint of ``out_dir`` does not vouch for its history (``""`` if it does, or
    there is no readable checkpoint to resume from): it records no digest of the history (an
    older gcref), or the records up to its step are not those it was written with."""
    info = checkpoint_info(os.path.join(out_dir, CHECKPOINT_FILE))
    if info is None or info["sha256"] is None:       # fresh, or refused by fit naming the file
        return ""
    if info["history_sha256"] is None:
        return "checkpoint.npz was written by an older gcref and does not bind history.jsonl"
    try:
        history = [r for r in load_history(out_dir) if r.get("step", 0) <= info["step"]]
    except (OSError, ValueError) as err:
        return f"history.jsonl cannot be read ({err})"
    if history_digest(history) != info["history_sha256"]:
        return (f"history.jsonl is not the history checkpoint.npz was written with (records up "
                f"to step {info['step']})")
    return ""


def _eval_every(cfg: TrainConfig, n_train: int):
    """Steps between records: as set; else, with a criterion, 1% of the cap (so the criterion is
    checked often enough) but no closer than 20 steps (or 5% of a short cap); else
    :func:`gcref.train.fit`'s default (5% of the budget)."""
    if cfg.eval_every is not None or cfg.until() is None:
        return cfg.eval_every
    budget = cfg.step_budget(n_train)
    return max(1, budget // 100, min(20, budget // 20))


def _train(cfg: TrainConfig, data, out_dir, progress, resume) -> dict:
    resumed_from = None
    if out_dir is not None and resume:
        info = checkpoint_info(os.path.join(out_dir, CHECKPOINT_FILE))
        resumed_from = info["step"] if info is not None and info["step"] > 0 else None
    t0 = time.perf_counter()
    with blas_threads(cfg.threads):
        net = build_network(cfg, data)
        params = net.init(cfg.seed)
        extra = {"lab_config": cfg.to_dict(), "dataset": data.train.name, "n_train": data.train.n,
                 "n_test": data.test.n, "classes": list(data.train.classes)}
        if data.target is not None:
            extra.update(n_target=data.target.n, target_classes_names=list(data.target.classes))
        result = fit(net, params, data.train, lr=cfg.lr, batch_size=cfg.batch_size,
                     steps=None if cfg.epochs is not None else cfg.steps, epochs=cfg.epochs,
                     until=cfg.until(),
                     l2=cfg.l2, gc_reg=cfg.gc_reg, momentum=cfg.momentum, seed=cfg.seed,
                     test_data=data.test, target_data=data.target, eval_every=_eval_every(cfg, data.train.n),
                     eval_early=cfg.eval_early,
                     eval_size=cfg.eval_size, gc_method=cfg.gc_method, gc_size=cfg.gc_size,
                     gc_rows=cfg.gc_rows, few_shot=few_shot_protocol(cfg, data), out_dir=out_dir,
                     resume=resume, progress=progress, config_extra=extra,
                     engine=engine_for(cfg.backend, cfg.dtype))
    wall = time.perf_counter() - t0
    done = {"status": result.status, "message": result.message, "steps": result.steps,
            "converged_step": result.converged_step, "wall_time_s": wall}
    if out_dir is None:
        last = final_record(result.history)
        return {"dir": None, **done, "network": net.name, "num_params": net.num_params(),
                "config": cfg.to_dict(), "final": {k: last.get(k) for k in FINAL_METRICS if k in last},
                "skipped": False, "resumed_from": None, "history": result.history}
    done["config_sha256"] = settings_fingerprint(read_json(os.path.join(out_dir, CONFIG_FILE)))
    save_params(os.path.join(out_dir, PARAMS_FILE), result.params)
    done.update(_outputs_record(out_dir, result.params))
    atomic_write(os.path.join(out_dir, DONE_FILE),
                 lambda fh: fh.write(json.dumps(done, indent=2).encode()))
    summary = run_summary(out_dir, cfg)
    summary.update(skipped=False, resumed_from=resumed_from)
    return summary
