"""``gcref train``, ``gcref sweep``, ``gcref transfer`` and ``gcref plot``.

Every command is a thin layer over :mod:`gcref.lab`: it turns options into a
:class:`~gcref.lab.TrainConfig`, validates everything before any work (the output folder too),
shows rich progress bars (on stderr), prints a summary table and, with ``--json``, writes the
summary as JSON on stdout. Bad input (settings named as their options, ``--gc-rows``), an
output folder that cannot be written, a folder holding another kind of work, or a folder another
process is writing: one ``Error:`` line on stderr, exit code 2 (``gcref.cli`` makes usage errors
such as ``--steps 1.5`` the same line). A setting used otherwise than it reads gets a ``Note:``
line; a sweep with a diverged or failed run exits 1 naming it; Ctrl-C says where the work
resumes (exit 130).

This module does not know the application: :func:`register` attaches the commands to a typer
app (``gcref.cli`` builds gcref's app and calls it), so the import graph stays
``train <- lab <- cli``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import re
import sys
import threading
import warnings
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..nn.params_io import FolderLocked
from ..train.checkpoint import record_line, training_columns
from . import config as lab_config
from .config import PROTOCOL_DEFAULTS
from .stats import describe_association
from .tables import fitted_table as _table
from .transfer import DEFAULT_TRANSFER_SEEDS, TRANSFER_DEFAULTS

__all__ = ["register", "train", "sweep", "transfer", "plot", "error_line"]

_err = Console(stderr=True)

_INT_FIELDS = {"batch_size", "steps", "seed", "eval_every", "eval_early", "eval_size", "gc_rows", "max_per_class",
               "num_source", "split_seed", "ways", "shots", "queries", "episodes", "threads"}
_FLOAT_FIELDS = {"lr", "l2", "gc_reg", "momentum", "width", "gc_size", "epochs", "until_train_acc",
                 "until_loss"}
_STR_FIELDS = {"dataset", "arch", "gc_method", "data_root"}


class _Usage(Exception):
    """A bad option value, reported as ``Error: ...`` with exit code 2."""


# ---------------------------------------------------------------------------- shared options

def _datasets():
    from ..data import DATASETS
    return ", ".join(DATASETS)


def _archs():
    from ..nn.zoo import ARCHITECTURES
    return ", ".join(ARCHITECTURES)


_D = lab_config.TrainConfig()

#: (name, type, default, help) of the options that make a TrainConfig, shared by train/sweep/transfer.
_CONFIG_OPTIONS = [
    ("dataset", str, _D.dataset, f"Dataset: {_datasets()} (transfer: default glyphs)."),
    ("data_root", Optional[str], None, "Folder of the dataset files (mnist, fashion_mnist, cifar10, cifar100, cifar_fs)."),
    ("arch", str, _D.arch, f"Architecture: {_archs()}."),
    ("width", float, _D.width, "Width factor (channels / hidden units)."),
    ("hidden", Optional[str], None, "MLP hidden widths, comma-separated (default 128,128,32), or the CNN's embedding width."),
    ("lr", float, _D.lr, "Learning rate (> 0)."),
    ("batch_size", int, _D.batch_size, "Mini-batch size (at most the training set)."),
    ("steps", int, _D.steps, "SGD steps (with --until-*: the cap)."),
    ("epochs", Optional[float], None, "The budget in epochs instead of --steps (ceil(epochs * n / batch) steps)."),
    ("until_train_acc", Optional[float], None, "Train to a criterion: stop at the first record with training accuracy (on the evaluation subset) >= this, e.g. 0.99; --steps is then the cap; 0: no criterion."),
    ("until_loss", Optional[float], None, "Train to a criterion: stop at the first record with training cross-entropy (evaluation subset) <= this, e.g. 0.01; 0: no criterion."),
    ("l2", float, _D.l2, "L2 strength lambda_2 of (lambda_2/2)||theta||^2."),
    ("gc_reg", float, _D.gc_reg, "Explicit GC regularization strength lambda_GC."),
    ("momentum", float, _D.momentum, "Heavy-ball momentum in [0, 1)."),
    ("seed", int, _D.seed, "Seed of the initial weights and the batch order."),
    ("eval_every", Optional[int], None, "Steps between history records (default steps // 20; with a criterion 1% of the cap, at least 20 steps apart)."),
    ("eval_early", Optional[int], None, "More records early: this many per doubling of the step count, until they are --eval-every apart (0: none)."),
    ("eval_size", int, _D.eval_size, "Training examples (class-balanced) on which GC and NC are measured."),
    ("gc_method", str, _D.gc_method, "GC in the history: exact, or an estimator (examples, outputs, mask, projection)."),
    ("gc_rows", Optional[int], None, "Embedding rows sampled for the GC-penalty gradient (default: all, exact)."),
    ("source_classes", Optional[str], None, "Transfer: source classes, comma-separated indices or names (e.g. 0,1,2,3,4)."),
    ("target_classes", Optional[str], None, "Transfer: target classes (e.g. 5,6,7,8,9)."),
    ("num_source", Optional[int], None, "Transfer: a random class split with this many source classes."),
    ("split_seed", int, _D.split_seed, "Seed of the train/test split and of the random class split."),
    ("ways", Optional[int], None, "Few-shot ways (default min(5, #target classes))."),
    ("shots", int, _D.shots, "Few-shot shots per class."),
    ("queries", int, _D.queries, "Few-shot queries per class."),
    ("episodes", int, _D.episodes, "Few-shot episodes (for the mean and its 95% CI)."),
    ("max_per_class", Optional[int], None, "Keep at most this many training examples per class."),
    ("threads", int, 1, "BLAS threads per run (0: leave BLAS alone)."),
    ("backend", str, _D.backend, "reference (gcref, NumPy float64) or cuda (gcref_cuda: CuPy on a GPU, NumPy elsewhere)."),
    ("dtype", Optional[str], None, "Training precision with --backend cuda: float32 or float64 (default: float32 on a GPU, float64 on NumPy)."),
]
_CONFIG_NAMES = [o[0] for o in _CONFIG_OPTIONS]


def _with_config_options(func=None, *, defaults=None):
    """Add the shared TrainConfig options to a command; it receives them as ``config_options``.
    ``defaults`` overrides some options' defaults for this command (e.g. ``transfer``'s dataset)."""
    if func is None:
        return functools.partial(_with_config_options, defaults=defaults)
    defaults = defaults or {}
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.name != "config_options"]
    extra = []
    annotations = {k: v for k, v in func.__annotations__.items() if k != "config_options"}
    for name, typ, default, help_text in _CONFIG_OPTIONS:
        default = defaults.get(name, default)
        flag = "--" + name.replace("_", "-")
        extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typ,
                                       default=typer.Option(default, flag, help=help_text,
                                                            rich_help_panel="Run settings")))
        annotations[name] = typ

    @functools.wraps(func)
    def wrapper(**kwargs):
        opts = {k: kwargs.pop(k) for k in _CONFIG_NAMES}
        return func(config_options=opts, **kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = sig.replace(parameters=own + extra)
    wrapper.__annotations__ = annotations
    return wrapper


def _parse_list(text, name, integer_ok=True):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise _Usage(f"--{name.replace('_', '-')} is empty")
    out = []
    for t in items:
        out.append(int(t) if integer_ok and t.lstrip("-").isdigit() else t)
    return out


def _config_from_options(opts) -> dict:
    cfg = dict(opts)
    if cfg["hidden"] is not None:
        try:
            cfg["hidden"] = [int(t) for t in cfg["hidden"].split(",") if t.strip()]
        except ValueError:
            raise _Usage(f"--hidden must be comma-separated integers, got {opts['hidden']!r}") from None
    for name in ("source_classes", "target_classes"):
        if cfg[name] is not None:
            cfg[name] = _parse_list(cfg[name], name)
    cfg["threads"] = None if cfg["threads"] == 0 else cfg["threads"]
    for name in ("until_train_acc", "until_loss"):         # 0: no criterion (the whole budget)
        if cfg.get(name) == 0:
            cfg[name] = None
    return cfg


def _parse_value(key, text):
    t = text.strip()
    if t.lower() == "none":
        return None
    try:
        if key in _INT_FIELDS:
            return int(t)
        if key in _FLOAT_FIELDS:
            v = float(t)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        kind = "an integer" if key in _INT_FIELDS else "a number"
        raise _Usage(f"--param {key}: {t!r} is not {kind}") from None
    if key in _STR_FIELDS:
        return t
    raise _Usage(f"--param {key}: this setting cannot be swept from the command line; sweepable: "
                 f"{', '.join(sorted(_INT_FIELDS | _FLOAT_FIELDS | _STR_FIELDS))}")


def _parse_grid(params) -> dict:
    grid = {}
    for item in params or []:
        if "=" not in item:
            raise _Usage(f"--param must look like name=v1,v2,..., got {item!r}")
        key, _, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in lab_config.FIELDS:
            raise _Usage(f"--param: unknown setting {key!r}; valid settings are: {', '.join(lab_config.FIELDS)}")
        if key in grid:
            raise _Usage(f"--param {key} is given twice; list all its values in one --param {key}=v1,v2")
        vals = [v for v in values.split(",") if v.strip()]
        if not vals:
            raise _Usage(f"--param {key}: no values")
        grid[key] = [_parse_value(key, v) for v in vals]
    return grid


def _parse_seeds(text):
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise _Usage(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise _Usage("--seeds is empty")
    return seeds


def error_line(message) -> None:
    """Print ``Error: <message>`` as one line on stderr (every command's way of failing). An
    exception gives its message; a :class:`~gcref.lab.config.SettingError` names the settings
    as command-line options (``--gc-rows``)."""
    _err.print(f"[bold red]Error:[/bold red] {escape(_message(message))}", highlight=False,
               soft_wrap=True)


#: The library's spelling of a remedy (``overwrite=True``, with or without the flag after it)
#: and the command line's.
_PYTHON_SPELLING = (re.compile(r"overwrite=True(?: \(--overwrite\)|, --overwrite)?"), "--overwrite")


def _message(message) -> str:
    """An error's message as the command line says it: settings as their options
    (:class:`~gcref.lab.config.SettingError`), ``--overwrite`` where the library says
    ``overwrite=True``."""
    text = message.for_cli() if isinstance(message, lab_config.SettingError) else str(message)
    pattern, flag = _PYTHON_SPELLING
    return pattern.sub(flag, text)


@contextlib.contextmanager
def _setting_notes():
    """Collect the :class:`~gcref.lab.config.SettingWarning` of the settings checks in the
    block into the list it yields (each once, naming the options; other warnings pass
    through), for :func:`_say_notes` once every check has passed."""
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lab_config.SettingWarning)
        yield notes
    for w in caught:
        if isinstance(w.message, lab_config.SettingWarning):
            if w.message.for_cli() not in notes:
                notes.append(w.message.for_cli())
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _say_notes(notes):
    for text in notes:
        _err.print(f"Note: {escape(text)}", highlight=False, soft_wrap=True)


def _fail(message, as_json):
    if as_json:
        sys.stdout.write(json.dumps({"error": _message(message)}) + "\n")
    error_line(message)
    raise typer.Exit(code=2)


def _prepare_out(out, as_json, what="--out", lock=False):
    """Make sure the output folder can be written (after validation, before any work) and,
    with ``lock``, that no other process is writing it."""
    import tempfile
    from ..nn.params_io import FolderLock
    if os.path.exists(out) and not os.path.isdir(out):
        _fail(f"{what} {out} is a file, not a folder", as_json)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
        if lock:
            with FolderLock(out):
                pass
    except FolderLocked as err:
        _fail(err, as_json)
    except OSError as err:
        _fail(f"{what} {out} cannot be written: {err.strerror or err}", as_json)


def _emit_json(obj):
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


# ---------------------------------------------------------------------------- train

_METRIC_LABELS = {"loss": "training loss", "gc": "embedding GC", "nc": "NC (CDNV)",
                  "geometric_collapse": "geometric collapse", "train_accuracy": "train accuracy",
                  "test_accuracy": "test accuracy", "flatness": "flatness ||grad L||^2",
                  "target_gc": "target GC", "target_nc": "target NC (CDNV)",
                  "few_shot_accuracy": "few-shot NCC accuracy", "few_shot_ci95": "  95% CI half-width",
                  "train_loss": "train cross-entropy (eval subset)", "epoch": "epochs trained"}


#: The defaults of ``gcref train`` and ``gcref sweep`` (``gcref transfer``: its
#: :data:`~gcref.lab.transfer.TRANSFER_DEFAULTS`, the same protocol on the glyphs with a cap of
#: 40000): the paper's protocol (:data:`~gcref.lab.config.PROTOCOL_DEFAULTS`), 6000 steps the cap.
COMMAND_DEFAULTS = {**PROTOCOL_DEFAULTS, "steps": 6000}


@_with_config_options(defaults=COMMAND_DEFAULTS)
def train(
    out: str = typer.Option("runs/train", "--out", "-o", help="Run folder (config, history, checkpoint, params, done marker)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh, deleting the run files in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout (progress on stderr)."),
    config_options: dict = None,
):
    """Train one network and record GC, NC, geometric collapse and accuracies over the steps.

    Defaults: the digits (8x8, bundled with scikit-learn), MLP 64-128-128-32-10, lr 0.05, batch 32, and the protocol of gcref sweep and transfer: L2 5e-4, trained until 99% training accuracy (--until-train-acc 0: the whole budget), --steps 6000 the cap. A finished run in --out with the same settings is not run again; an interrupted one resumes from its checkpoint.
    """
    from .run import TRAINED, run_training
    from .config import load_run_data, validate_config
    from ..train.checkpoint import check_folder_kind
    try:
        with _setting_notes() as notes:
            cfg = validate_config(_config_from_options(config_options))
            data = load_run_data(cfg)
            cfg = validate_config(cfg, data=data)
        check_folder_kind(out, "run")
    except (_Usage, ValueError, TypeError, FileNotFoundError) as err:
        _fail(err, as_json)
    _prepare_out(out, as_json, lock=True)
    _say_notes(notes)
    with Progress(*training_columns(), console=_err, transient=False) as bar:
        task = bar.add_task(f"train {cfg.arch} on {cfg.dataset}", total=cfg.step_budget(data.train.n), line="")
        first = []

        def progress(step, steps, record):
            if not first:
                first.append(step)
                if step > 1:
                    bar.console.print(f"resumed from step {step - 1}", highlight=False)
            bar.update(task, completed=step)
            if record is not None and not record.get("diverged"):
                bar.update(task, line=record_line(record))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", lab_config.SettingWarning)   # said above
                summary = run_training(cfg, out, progress=progress, overwrite=overwrite)
        except KeyboardInterrupt:
            bar.stop()
            _interrupted(_resume_point(out))
        except (ValueError, FileNotFoundError, FolderLocked) as err:
            bar.stop()
            _fail(err, as_json)
        except OSError as err:
            bar.stop()
            _fail(f"cannot write {out}: {err}", as_json)
        # a run that converged (or diverged) before its cap: the bar ends full, at its last step
        bar.update(task, completed=summary["steps"], total=max(1, summary["steps"]))
    if as_json:
        _emit_json(summary)
    else:
        _print_run(summary)
    raise typer.Exit(code=0 if summary["status"] in TRAINED else 1)


#: Which direction of each metric is "better" in the paper's reading (lower GC and NC: more
#: collapse, expected to go with better transfer); shown in the tables.
BETTER = {"loss": "lower", "gc": "lower", "nc": "lower", "geometric_collapse": "lower",
          "train_accuracy": "higher", "test_accuracy": "higher", "flatness": "lower",
          "target_gc": "lower", "target_nc": "lower", "few_shot_accuracy": "higher", "train_loss": "lower"}
_ARROW = {"lower": "\u2193", "higher": "\u2191"}
_BETTER_NOTE = ("\u2193 lower is better, \u2191 higher is better, in the paper's reading "
                "(lower GC and NC: more collapse, expected to transfer better)")


def _console():
    """stdout console: the terminal's width, else ``$COLUMNS`` or 80 (the tables fit 80)."""
    return Console()


def _print_run(summary):
    console = _console()
    rows = [(_METRIC_LABELS.get(k, k), _fmt(v), BETTER.get(k, "")) for k, v in summary["final"].items()]
    console.print(_table(f"gcref train: {summary['dir']}",
                         [("quantity", False), ("final value", True), ("better", False, 1)], rows,
                         where="--json prints every value"))
    wall = summary.get("wall_time_s")
    note = " (already finished: not run again; --overwrite to redo)" if summary.get("skipped") else ""
    if summary.get("resumed_from"):
        note += f" (resumed from step {summary['resumed_from']})"
    if summary.get("redone"):
        note += f" (redone: {summary['redone']})"
    console.print(f"{summary['network']}, {summary['num_params']} parameters, {_run_status(summary)}"
                  + (f", {wall:.1f} s" if wall is not None else "") + note, highlight=False)
    if summary.get("message"):
        console.print(f"[yellow]{escape(summary['message'])}[/yellow]")


def _run_status(summary) -> str:
    """How a run ended, for the line under its table: the steps it trained and its status,
    with the criterion and cap it ran under (``600 steps (14.3 epochs), status converged
    (train_accuracy >= 0.99, cap 6000 steps)``); a diverged run says at which step, and that
    the table holds its last record before it."""
    steps, epochs = summary["steps"], summary.get("epochs")
    if summary["status"] == "diverged":
        from ..train import load_history
        at = [r["step"] for r in load_history(summary["dir"]) if r.get("diverged")]
        last = f"step {steps}" + (f", {epochs:.3g} epochs" if epochs is not None else "")
        return (f"status [bold]diverged[/bold]{f' at step {at[-1]}' if at else ''} (the values "
                f"above are its last record before it: {last})")
    config = summary.get("config") or {}
    until = _criterion(_until_of(config))
    budget = f"{config['epochs']:g} epochs" if config.get("epochs") else f"{config.get('steps')} steps"
    return (f"{steps} steps" + (f" ({epochs:.3g} epochs)" if epochs is not None else "")
            + f", status [bold]{summary['status']}[/bold]" + (f" ({until}, cap {budget})" if until else ""))


# ---------------------------------------------------------------------------- sweep / transfer

def _sweep_command(kind, config_options, params, seeds, n_jobs, backend, dask_scheduler, out,
                   overwrite, as_json):
    from .sweep import plan_sweep, run_sweep, sweep_progress, _check_backend
    from .transfer import transfer_config, DEFAULT_TRANSFER_GRID
    try:
        base = _config_from_options(config_options)
        grid = _parse_grid(params)
        seed_list = _parse_seeds(seeds)
        if "seed" in grid:
            raise _Usage("sweep seeds with --seeds, not --param seed=...")
        if not grid:
            grid = dict(DEFAULT_TRANSFER_GRID) if kind == "transfer" else {"lr": [0.01, 0.05, 0.2]}
        base = lab_config.validate_config(base)
        if kind == "transfer":
            base = transfer_config(base)
        with _setting_notes() as notes:
            points = plan_sweep(base, grid, seed_list)     # validates every point before any work
        _check_backend(backend)
        if n_jobs == 0 or n_jobs < -1:
            raise _Usage(f"--n-jobs must be a positive integer or -1 (all cores), got {n_jobs}")
    except (_Usage, ValueError, TypeError, FileNotFoundError) as err:
        _fail(err, as_json)
    from .sweep import check_sweep_folder
    from ..train.checkpoint import check_folder_kind
    try:
        if overwrite:
            check_folder_kind(out, kind)
        else:
            check_sweep_folder(out, base, grid, seed_list, points, kind)
    except ValueError as err:
        _fail(err, as_json)
    _prepare_out(out, as_json, lock=True)
    _say_notes(notes)

    total_steps = sweep_progress(out, points)[1]     # step budgets (caps; epochs in steps)
    stop = threading.Event()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=_err) as bar:
        runs_task = bar.add_task(f"{kind}: runs finished", total=len(points))
        steps_task = bar.add_task(f"{kind}: steps (all runs)", total=total_steps)

        def poll():
            while not stop.wait(0.5):
                try:
                    done_steps, _, _, _ = sweep_progress(out, points)
                    bar.update(steps_task, completed=done_steps)
                except (OSError, ValueError, KeyError):
                    pass
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        def progress(finished, total, result):
            bar.update(runs_task, completed=finished)
            if result is not None and result.get("status") == "error":
                _err.print(f"[red]run {escape(os.path.basename(result['dir']))} failed:[/red] {escape(result['message'])}",
                           highlight=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", lab_config.SettingWarning)   # said above
                summary = run_sweep(base, grid, seed_list, out, n_jobs=n_jobs, backend=backend,
                                    progress=progress, overwrite=overwrite,
                                    dask_scheduler=dask_scheduler, kind=kind)
        except KeyboardInterrupt:
            stop.set()
            bar.stop()
            _, _, finished, planned = sweep_progress(out, points)
            _interrupted(f"{finished} of {planned} runs finished; the same command resumes the "
                         f"{kind} in {out}, each unfinished run from its checkpoint")
        except (ValueError, FileNotFoundError, FolderLocked) as err:
            stop.set()
            bar.stop()
            _fail(err, as_json)
        except OSError as err:
            stop.set()
            bar.stop()
            _fail(f"cannot write {out}: {err}", as_json)
        finally:
            stop.set()
            poller.join()
        bar.update(steps_task, completed=sweep_progress(out, points)[0])
    if as_json:
        _emit_json(summary)
    else:
        _print_sweep(summary)
    diverged = [r for r in summary["runs"] if r["status"] == "diverged"]
    for r in diverged:              # (failed runs were named as they failed)
        _err.print(f"[red]run {escape(r['name'])} diverged:[/red] {escape(r.get('message') or '')}",
                   highlight=False, soft_wrap=True)
    raise typer.Exit(code=1 if diverged or summary["counts"]["error"] else 0)


def _resume_point(out) -> str:
    """Where an interrupted run in ``out`` continues from."""
    from ..train.checkpoint import checkpoint_info
    from ..train.fit import CHECKPOINT_FILE
    info = checkpoint_info(os.path.join(out, CHECKPOINT_FILE))
    if info is None or info["step"] == 0:
        return f"no checkpoint was written yet; the same command starts the run in {out} afresh"
    return f"the same command resumes the run in {out} from its checkpoint at step {info['step']}"


def _interrupted(where: str):
    """Ctrl-C: say where the work can be resumed from, and exit 130 (the shell's code for it)."""
    _err.print(f"Interrupted: {escape(where)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=130)


_RHO_ORDER = ("gc_vs_nc", "gc_vs_geometric_collapse", "gc_vs_target_nc", "gc_vs_few_shot_accuracy",
              "target_nc_vs_few_shot_accuracy", "nc_vs_target_nc", "nc_vs_test_accuracy", "gc_vs_test_accuracy")


def _print_sweep(summary):
    console = _console()
    transfer = any("few_shot_accuracy" in r["final"] for r in summary["runs"])
    setting_keys = list(dict.fromkeys(k for r in summary["runs"] for k in r["settings"]))
    cols = ["loss", "gc", "nc", "geometric_collapse", "test_accuracy"]
    heads = ["loss", "GC", "NC", "geom. coll.", "test acc."]
    if transfer:
        cols = ["gc", "nc", "target_nc", "few_shot_accuracy"]
        heads = ["source GC", "source NC", "target NC", "few-shot acc. \u00b1 95% CI"]
    heads = [f"{h} {_ARROW[BETTER[c]]}" for h, c in zip(heads, cols)]
    # left out first when the table does not fit: the higher, the sooner
    drop = [4, 1, 2, 5, 3] if not transfer else [1, 3, 2, 0]
    rows = []
    for r in summary["runs"]:
        f = r["final"]
        cells = [_fmt(f.get(c)) for c in cols]
        if transfer and f.get("few_shot_accuracy") is not None:
            cells[-1] = f"{f['few_shot_accuracy']:.3f} \u00b1 {f.get('few_shot_ci95') or 0:.3f}"
        rows.append([_fmt(r["settings"].get(k)) for k in setting_keys] + [_status_cell(r)] + cells)
    columns = ([(k, True) for k in setting_keys] + [("status", False)]
               + [(h, True, d) for h, d in zip(heads, drop)])
    console.print(_table(f"gcref {summary['kind']}: {summary['dir']}", columns, rows,
                         where=f"{os.path.join(summary['dir'], 'summary.csv')}, or --json"))
    console.print(_BETTER_NOTE, highlight=False)
    console.print(_STATUS_NOTE, highlight=False)
    corr = summary["correlations"]
    order = [k for k in _RHO_ORDER if k in corr] + [k for k in corr if k not in _RHO_ORDER]
    rows = []
    for k in order:
        v = corr[k]
        rho = "n/a" if v["rho"] is None else f"{v['rho']:+.3f}"
        rows.append((f"{v['x']} vs {v['y']}", rho + ("" if v["rho"] is not None else f" ({v.get('note', '')})"),
                     _fmt(v["pvalue"], 2), str(v["n"])))
    c = _table("Spearman rank correlations within seeds, within-seed permutation p (done or converged runs; "
               "cap and diverged runs left out)",
               [("x vs y", False), ("rho", False), ("p-value", True), ("n", True)], rows)
    capped = _capped_note(summary, bool(rows))
    console.print(c if rows else capped, highlight=False)
    if rows and capped:
        console.print(capped, highlight=False)
    for key, words, sign in (("gc_vs_nc", "GC and NC", +1),
                             ("gc_vs_few_shot_accuracy", "source GC and few-shot accuracy", -1),
                             ("gc_vs_target_nc", "source GC and target NC", +1)):
        v = corr.get(key)
        if v and v["rho"] is not None:      # a direction only where p < 0.05 (gcref.lab.stats.direction)
            console.print(describe_association(v, words, sign), highlight=False)
    counts = summary["counts"]
    until = ", ".join(f"{k}={v:g}" for k, v in _until_of(summary.get("base_config") or {}).items())
    console.print((f"{counts.get('converged', 0)} converged ({until}), {counts.get('cap', 0)} reached the cap "
                   "without converging, " if until else f"{counts['completed']} completed, ")
                  + f"{counts['diverged']} diverged, {counts['error']} failed; "
                  f"{summary.get('ran', 0)} run now, {summary.get('skipped', 0)} already finished (skipped). "
                  f"Summary: {os.path.join(summary['dir'], 'summary.json')} and summary.csv", highlight=False)


#: What loosens each criterion of :meth:`TrainConfig.until`, as the command line says it.
_LOOSER = {"train_accuracy": "lower --until-train-acc", "train_loss": "raise --until-loss"}


def _criterion(until: dict) -> str:
    """``train accuracy >= 0.99``: a criterion of :meth:`TrainConfig.until` in words."""
    from ..train.fit import UNTIL_KEYS
    return " and ".join(f"{k.replace('_', ' ')} {UNTIL_KEYS[k]} {v:g}" for k, v in until.items())


def _capped_note(summary, correlated: bool) -> str:
    """The line that says runs stopped at their cap before the criterion (their values are of
    unfinished training, left out of the correlations) and what to change; where no
    correlation could be computed, why (``""``: nothing to say)."""
    counts, runs = summary["counts"], len(summary["runs"])
    cap = counts.get("cap", 0)
    base = summary.get("base_config") or {}
    until = _until_of(base)
    if cap and until:
        unit = "epochs" if base.get("epochs") else "steps"
        if {"steps", "epochs"} & {k for r in summary["runs"] for k in r["settings"]}:
            budget, now = "their caps", ""
        else:
            budget, now = f"the cap of {base[unit]:g} {unit}", f" (now {base[unit]:g})"
        remedy = (f"to let them converge, raise --{unit}{now} or "
                  + " or ".join(f"{_LOOSER[k]} (now {v:g})" for k, v in until.items()))
        if cap == runs:
            return f"No correlations: all {runs} runs reached {budget} before {_criterion(until)}; {remedy}."
        return (f"{cap} of {runs} runs reached {budget} before {_criterion(until)}: their values are of "
                f"unfinished training, left out of the correlations; {remedy}.")
    if not correlated:
        return (f"No correlations: they need at least 3 runs trained as asked, and {counts.get('diverged', 0)} "
                f"of {runs} diverged, {counts.get('error', 0)} failed.")
    return ""


#: How a run ended, in the sweep table's narrow ``status`` column (``conv@41.2``: @ the epochs trained).
_STATUS_SHORT = {"completed": "done", "converged": "conv", "cap": "cap", "diverged": "div"}
_STATUS_NOTE = ("status: conv = converged to the criterion, cap = reached the cap without it, "
                "done = trained the whole budget, div = diverged; @ the epochs trained")


def _status_cell(row) -> str:
    """``conv@41.2``: how a run ended and the epochs it trained (its last record)."""
    epochs = row.get("epochs")
    return _STATUS_SHORT.get(row["status"], row["status"]) + ("" if epochs is None else f"@{epochs:.3g}")


def _until_of(config: dict) -> dict:
    """The criterion of a settings dict, as :meth:`TrainConfig.until` gives it (``{}``: none)."""
    return lab_config.as_config({k: v for k, v in config.items() if k in lab_config.FIELDS}).until() or {}


_PARAM_HELP = ("Swept setting: name=v1,v2,... (repeatable; the runs are the Cartesian product), "
               "e.g. --param lr=0.01,0.05,0.2 --param batch_size=8,32,128.")
_BACKEND_HELP = ("joblib backend: loky (processes, default), multiprocessing, threading, sequential; "
                 "dask (needs dask\\[distributed]; --dask-scheduler ADDRESS, else a local cluster) or ray "
                 "(needs ray; RAY_ADDRESS picks the cluster, else a local one) send the runs to a cluster.")


@_with_config_options(defaults=COMMAND_DEFAULTS)
def sweep(
    param: List[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP + " Default: lr=0.01,0.05,0.2."),
    seeds: str = typer.Option("0,1", "--seeds", help="Seeds of every setting, comma-separated."),
    n_jobs: int = typer.Option(-1, "--n-jobs", "-j", help="Parallel runs (-1: all cores)."),
    parallel_backend: str = typer.Option("loky", "--parallel-backend", help=_BACKEND_HELP),
    dask_scheduler: Optional[str] = typer.Option(None, "--dask-scheduler", help="Dask scheduler address for --parallel-backend dask."),
    out: str = typer.Option("runs/sweep", "--out", "-o", help="Sweep folder (one subfolder per run, summary.json, summary.csv)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run every point again, deleting its files."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep summary as JSON on stdout."),
    config_options: dict = None,
):
    """Sweep settings (Cartesian product x seeds) in parallel, resumably; Spearman rho of GC vs NC.

    Every point is validated before any run starts. Finished runs (done.json) are skipped when the same command runs again; unfinished ones resume from their checkpoints.
    """
    _sweep_command("sweep", config_options, param, seeds, n_jobs, parallel_backend, dask_scheduler,
                   out, overwrite, as_json)


@_with_config_options(defaults=TRANSFER_DEFAULTS)
def transfer(
    param: List[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP + " Default: lr=0.01,0.05,0.2."),
    seeds: str = typer.Option(",".join(map(str, DEFAULT_TRANSFER_SEEDS)), "--seeds",
                              help="Seeds of every setting, comma-separated."),
    n_jobs: int = typer.Option(-1, "--n-jobs", "-j", help="Parallel runs (-1: all cores)."),
    parallel_backend: str = typer.Option("loky", "--parallel-backend", help=_BACKEND_HELP),
    dask_scheduler: Optional[str] = typer.Option(None, "--dask-scheduler", help="Dask scheduler address for --parallel-backend dask."),
    out: str = typer.Option("runs/transfer", "--out", "-o", help="Transfer sweep folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run every point again, deleting its files."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    config_options: dict = None,
):
    """Pretrain on source classes, freeze the embedding, report target NC and few-shot NCC accuracy.

    Default: glyphs (characters rendered from matplotlib's fonts; 112 source, 35 target classes), 5-way 5-shot (15 queries, 200 episodes, 95% CI), over lr=0.01,0.05,0.2 and seeds 0,1; reports Spearman rho of source GC vs 5-shot accuracy and vs target NC. --dataset digits: the few-source-classes contrast (0-4 -> 5-9).
    """
    _sweep_command("transfer", config_options, param, seeds, n_jobs, parallel_backend, dask_scheduler,
                   out, overwrite, as_json)


# ---------------------------------------------------------------------------- plot

def plot(
    run_dir: str = typer.Argument(..., metavar="RUN_OR_SWEEP_DIR", help="A folder written by gcref train, sweep or transfer."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Folder for the PNGs (default RUN_OR_SWEEP_DIR/figures)."),
    as_json: bool = typer.Option(False, "--json", help="Print the list of figures as JSON on stdout."),
):
    """Draw PNG figures of a run or a sweep (training curves, final values, transfer scatter).

    curves.png: GC, NC, geometric collapse and loss over the steps, one curve per setting; final.png: final GC and NC against the swept setting and NC vs GC; transfer.png: source GC vs target NC and vs few-shot accuracy; fig4.png (transfer sweeps): the paper's Fig. 4 layout, source GC, target NC and few-shot accuracy against each swept setting (seeds as error bars). The final values draw finished runs only: runs that reached the cap of --until-* without converging (red) and unfinished runs (grey) are drawn as open markers in fig4.png and transfer.png, and a Note says what was left out (or that there is nothing to draw).
    """
    from .plots import _load, plot_run_or_sweep
    if not os.path.isdir(run_dir):
        _fail(f"{run_dir} is not a folder", as_json)
    try:
        _load(run_dir)                       # a run or a sweep, before any folder is made
    except (ValueError, FileNotFoundError) as err:
        _fail(err, as_json)
    _prepare_out(os.path.join(run_dir, "figures") if out is None else out, as_json,
                 "--out" if out is not None else "the figure folder")
    try:
        with _err.status("drawing figures"):
            paths = plot_run_or_sweep(run_dir, out)
    except (ValueError, FileNotFoundError) as err:
        _fail(err, as_json)
    except OSError as err:
        _fail(f"cannot write the figures: {err}", as_json)
    if as_json:
        _emit_json({"figures": list(paths), "notes": paths.notes})
    else:
        for p in paths:
            Console().print(f"wrote {p}", highlight=False)
    _say_notes(paths.notes)             # what the final values left out, and why


def register(app, cls=None) -> None:
    """Attach ``train``, ``sweep``, ``transfer`` and ``plot`` to the typer ``app`` (as commands
    of the click class ``cls``, if given)."""
    for command in (train, sweep, transfer, plot):
        app.command(cls=cls)(command)
