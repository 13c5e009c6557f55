"""Run folders of :func:`gcref.train.fit`: locked while written, checkpoints bound to their settings.

- **Lock.** While ``fit(..., out_dir=d)`` runs, it holds the exclusive lock of ``d``
  (:class:`gcref.nn.params_io.FolderLock`); a second writer is refused with a message naming
  the holder. Stale temporaries of interrupted writes are removed when the folder is opened.
- **Binding.** Every checkpoint stores the fingerprint (SHA-256) of the run's settings — the
  ``config.json`` of the run without the settings that change nothing in the result
  (:data:`NON_RESULT_SETTINGS`) — and the settings themselves. A resume whose settings differ is
  refused with a message listing what differs; a history that ends before the checkpoint is
  refused as inconsistent. Every checkpoint also stores the SHA-256 of the history up to its
  step (:func:`history_digest`), so a resume on another run's history, or on edited records,
  is refused naming ``history.jsonl`` (a checkpoint written before gcref recorded it has none:
  :func:`gcref.train.fit` then trusts the history as before; the lab reruns such a run). ``fit``'s own ``steps`` and ``eval_every`` are not bound (the
  parameters of step ``t`` do not depend on them, so a run may be extended and recorded at other
  steps, as ``validation/`` does), but a checkpoint past ``steps`` is refused; a lab run binds
  its whole ``lab_config``, steps and ``eval_every`` included.
- **Progress.** ``progress=None`` shows a progress bar on stderr when it is a terminal (``False``
  never, ``True`` always, a callable is called instead).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import threading
import zipfile

import numpy as np

from ..nn.params_io import FolderLock, clean_stale_temporaries, load_params

__all__ = ["NON_RESULT_SETTINGS", "shown", "settings_fingerprint", "binding_arrays", "check_binding", "history_text",
           "history_digest",
           "read_checkpoint", "checkpoint_info", "folder_kind", "check_folder_kind", "SWEEP_FILE", "check_resumed_history", "open_run_folder", "managed_run",
           "ProgressBar"]

#: Settings that change nothing in the result (BLAS threads, where the data files live); they are
#: left out of the fingerprint, at any depth of the settings.
NON_RESULT_SETTINGS = ("threads", "data_root")
#: ``fit``'s own settings left out of the binding: they set how far the run goes and where it
#: records, not the parameters of any step (a lab run binds its ``lab_config``, which has both).
_UNBOUND = ("steps", "eval_every")
_SHA_KEY = "__config_sha256__"
_CONFIG_KEY = "__config__"
_HISTORY_KEY = "__history_sha256__"


def _canonical(config) -> dict:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in NON_RESULT_SETTINGS}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    out = strip(json.loads(json.dumps(config, default=str)))
    for key in _UNBOUND:       # fit's own record cadence: a run may be extended (module docstring)
        out.pop(key, None)
    return out


def settings_fingerprint(config: dict) -> str:
    """SHA-256 (hex) of a run's settings as written to ``config.json``, without
    :data:`NON_RESULT_SETTINGS`; equal settings give equal fingerprints in any process."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def history_text(records) -> str:
    """``history.jsonl`` as gcref writes it: one JSON record a line, keys sorted."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def history_digest(records) -> str:
    """SHA-256 (hex) of :func:`history_text` of ``records`` (a record read back gives the same
    text: JSON numbers round-trip exactly)."""
    return hashlib.sha256(history_text(records).encode()).hexdigest()


def binding_arrays(config: dict, history=None) -> dict:
    """The entries a checkpoint stores to bind it to ``config`` (fingerprint and settings) and,
    when given, to ``history``, the records up to its step (:func:`history_digest`)."""
    text = json.dumps(_canonical(config), sort_keys=True)
    out = {_SHA_KEY: np.array(settings_fingerprint(config)), _CONFIG_KEY: np.array(text)}
    if history is not None:
        out[_HISTORY_KEY] = np.array(history_digest(history))
    return out


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def shown(value, unset: str = "unset (the default)") -> str:
    """A setting's value as a message shows it: ``repr``, and ``unset`` for ``None``."""
    return unset if value is None else repr(value)


def _differences(stored: dict, now: dict) -> str:
    """Every setting that differs, with both values (a setting nested in the lab's settings is
    named once, by its own name)."""
    a, b = _flatten(stored), _flatten(now)
    seen, parts = set(), []
    for key in sorted(set(a) | set(b), key=lambda k: (k.count("."), k)):
        leaf = key.rsplit(".", 1)[-1]
        old, new = a.get(key, "(absent)"), b.get(key, "(absent)")
        if old != new and (leaf, repr(old), repr(new)) not in seen:
            seen.add((leaf, repr(old), repr(new)))
            parts.append(f"{leaf}: {shown(old)} in the checkpoint, {shown(new)} now")
    return "; ".join(parts)


def check_binding(path, arrays: dict, config: dict) -> str | None:
    """Pop the binding entries of a loaded checkpoint and refuse it unless it was made with
    ``config`` (``ValueError`` naming the file and what differs); return the digest of the
    history it was written with (``None``: a checkpoint of an older gcref)."""
    history = arrays.pop(_HISTORY_KEY, None)
    sha = arrays.pop(_SHA_KEY, None)
    stored = arrays.pop(_CONFIG_KEY, None)
    if sha is None:
        raise ValueError(f"{path} does not record the settings it was made with (written by an "
                         "older gcref), so it cannot be resumed safely; start afresh "
                         "(overwrite=True, --overwrite)")
    if str(sha) != settings_fingerprint(config):
        detail = "settings differ"
        if stored is not None:
            try:
                detail = _differences(json.loads(str(stored)), _canonical(config)) or detail
            except ValueError:
                pass
        raise ValueError(f"{path} was made with other settings ({detail}); refusing to resume "
                         "it: use another output folder or start afresh (overwrite=True, --overwrite)")
    return None if history is None else str(history)


def read_checkpoint(path) -> dict:
    """The arrays of the checkpoint file ``path``, read by the package's safe loader
    (:func:`gcref.nn.params_io.load_params`: never unpickles).

    An empty, truncated or corrupt file, or one without a step, raises one ``ValueError`` that
    names the file and how to start afresh.
    """
    path = os.fspath(path)
    try:
        arrays = load_params(path)
    except ValueError as err:
        raise ValueError(f"cannot resume from {path}, a damaged checkpoint: {_reason(err, path)}; "
                         "delete it or start afresh (overwrite=True, --overwrite)") from None
    if "__step__" not in arrays:
        raise ValueError(f"cannot resume from {path}: it is not a gcref checkpoint (no step "
                         "recorded); delete it or start afresh (overwrite=True, --overwrite)")
    return arrays


def _reason(err, path) -> str:
    """The part of a loader's message after the file's name (the caller names it)."""
    text = str(err)
    return "it " + text[len(path):].lstrip(" :") if text.startswith(path) else text


def checkpoint_info(path) -> dict | None:
    """``{"step", "sha256", "history_sha256"}`` of the checkpoint file ``path`` (the digests are
    ``None`` for a checkpoint of an older gcref), or ``None`` if there is no readable one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            step = int(data["__step__"])
            sha, history = (str(data[k]) if k in data.files else None for k in (_SHA_KEY, _HISTORY_KEY))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return {"step": step, "sha256": sha, "history_sha256": history}


def check_resumed_history(history: list, start: int, steps: int, out_dir, digest=None) -> None:
    """Refuse to resume from step ``start`` past ``steps``, when the history has no record
    of that step (a history cut back after the checkpoint was written cannot be continued
    faithfully), or when its records up to ``start`` are not those the checkpoint was written
    with (``digest``, :func:`history_digest`; ``None``: not recorded, not checked)."""
    if start > steps:
        raise ValueError(f"{out_dir} holds a checkpoint at step {start}, past steps={steps}; "
                         "use another output folder or start afresh (overwrite=True, --overwrite)")
    if start and not any(r.get("step") == start and not r.get("diverged") for r in history):
        last = history[-1]["step"] if history else None
        raise ValueError(f"{out_dir} is inconsistent: the checkpoint is at step {start} but "
                         f"history.jsonl {'ends at step ' + str(last) if history else 'is empty'}; "
                         "start afresh (overwrite=True, --overwrite)")
    if digest is not None and history_digest(history) != digest:
        raise ValueError(f"{os.path.join(out_dir, 'history.jsonl')} is not the history checkpoint.npz "
                         f"was written with (another run's, or edited records up to step {start}); "
                         "start afresh (overwrite=True, --overwrite)")


# ---------------------------------------------------------------------------- what a folder holds

#: The file that makes a folder a sweep's (written by :func:`gcref.lab.run_sweep`, with its kind).
SWEEP_FILE = "sweep.json"
#: Files that make a folder a training run's (written by :func:`gcref.train.fit`).
_RUN_MARKERS = ("config.json", "history.jsonl", "checkpoint.npz")
_KIND_WORDS = {"run": "a training run", "sweep": "a sweep", "transfer": "a transfer sweep"}


def folder_kind(folder) -> tuple:
    """What ``folder`` holds: ``("sweep" or "transfer", "sweep.json")`` for a sweep folder,
    ``("run", <the first run file found>)`` for a training run's, ``(None, None)`` otherwise."""
    folder = os.fspath(folder)
    path = os.path.join(folder, SWEEP_FILE)
    if os.path.exists(path):
        try:
            with open(path) as fh:
                kind = json.load(fh).get("kind", "sweep")
        except (OSError, ValueError, AttributeError):
            kind = "sweep"
        return (kind if kind in _KIND_WORDS else "sweep"), SWEEP_FILE
    for name in _RUN_MARKERS:
        if os.path.exists(os.path.join(folder, name)):
            return "run", name
    return None, None


def check_folder_kind(folder, kind: str) -> None:
    """Refuse (``ValueError``, one line) to write ``kind`` (``"run"``, ``"sweep"`` or
    ``"transfer"``) into a folder that holds another kind of work, whose files would
    interleave with it (also with ``overwrite``, which replaces only work of the same kind)."""
    have, evidence = folder_kind(folder)
    if have is not None and have != kind:
        raise ValueError(f"{os.fspath(folder)} holds {_KIND_WORDS[have]} ({evidence}), not "
                         f"{_KIND_WORDS[kind]}; give the {_KIND_WORDS[kind][2:]} its own "
                         "output folder (--out)")


# ---------------------------------------------------------------------------- lock and progress

_scope = threading.local()


def open_run_folder(out_dir) -> None:
    """Create ``out_dir``, lock it for the rest of the enclosing :func:`managed_run` call and
    remove stale temporaries. Raises :class:`gcref.nn.params_io.FolderLocked` if another
    process writes it."""
    stack = getattr(_scope, "stacks", None)
    if not stack:
        raise RuntimeError("open_run_folder is called from inside gcref.train.fit only")
    stack[-1].enter_context(FolderLock(out_dir))
    clean_stale_temporaries(out_dir)
    check_folder_kind(out_dir, "run")


class ProgressBar:
    """A rich progress bar on stderr, driven as ``fit``'s ``progress(step, steps, record)``.

    Created lazily at the first call (nothing is drawn for a run refused before its first
    step); the first call of a resumed run says from which step it resumed.
    """

    def __init__(self, description: str = "train"):
        self.description = description
        self._bar = None
        self._task = None

    def __call__(self, step, steps, record):
        if self._bar is None:
            from rich.console import Console
            from rich.progress import Progress
            console = Console(stderr=True)
            if step > 1:
                console.print(f"resumed from step {step - 1}", highlight=False)
            self._bar = Progress(*training_columns(), console=console)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=steps, completed=step - 1, line="")
        self._bar.update(self._task, completed=step)
        if record is not None and not record.get("diverged"):
            self._bar.update(self._task, line=record_line(record))
            if record.get("converged"):          # stopped before the cap: the bar is full
                self._bar.update(self._task, total=step)

    def close(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def training_columns() -> tuple:
    """The columns of a training progress bar (rich): description, bar, steps done / budget,
    elapsed, remaining, and the last record (:func:`record_line`, the task's ``line`` field).
    In a narrow terminal the description and the record line are cut (with an ellipsis), not
    the step count or the times."""
    from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Column

    def kept(width):
        return Column(no_wrap=True, min_width=width)

    def cut():
        return Column(no_wrap=True, overflow="ellipsis")
    return (TextColumn("{task.description}", table_column=cut()),
            BarColumn(bar_width=20, table_column=kept(10)), MofNCompleteColumn(table_column=kept(5)),
            TimeElapsedColumn(table_column=kept(7)), TimeRemainingColumn(table_column=kept(7)),
            TextColumn("{task.fields[line]}", table_column=cut()))


def record_line(record: dict) -> str:
    """A history record in one line, for progress displays: the mean batch loss since the last
    record, the training accuracy (the quantity of ``until``), GC and NC; ``converged`` at the
    record that met the criterion."""
    def f(key, digits):
        v = record.get(key)
        return "-" if v is None else f"{v:.{digits}g}"
    line = f"loss {f('loss', 3)} acc {f('train_accuracy', 3)} GC {f('gc', 4)} NC {f('nc', 3)}"
    return line + (" converged" if record.get("converged") else "")


def managed_run(fit):
    """Decorator of :func:`gcref.train.fit`: the scope of the run folder's lock and the default
    progress display (see the module docstring)."""
    @functools.wraps(fit)
    def wrapper(*args, **kwargs):
        progress = kwargs.get("progress")
        with contextlib.ExitStack() as stack:
            if progress is None and sys.stderr is not None and sys.stderr.isatty():
                progress = True
            if progress is True:
                net = args[0] if args else kwargs.get("net")
                bar = ProgressBar(f"train {getattr(net, 'name', 'network')}")
                stack.callback(bar.close)
                progress = bar
            kwargs["progress"] = progress or None
            stacks = getattr(_scope, "stacks", None)
            if stacks is None:
                stacks = _scope.stacks = []
            stacks.append(stack)
            try:
                return fit(*args, **kwargs)
            finally:
                stacks.pop()
    return wrapper
