"""The training loop: SGD on ``L(theta) + (l2/2)||theta||^2 + gc_reg * GC(f_theta, batch)``.

Reproducible and resumable: the mini-batch of step ``t`` is drawn from
``numpy.random.default_rng([seed, t])``, so a run resumed from its checkpoint at step ``t``
continues with exactly the batches (and so exactly the parameters, bitwise) of an uninterrupted
run. Checkpoints (parameters and momentum, ``.npz``) and the history (JSON Lines) are written
atomically (temp file + rename).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .._validation import as_labels, check_float, check_int
from ..engine import as_engine
from ..metrics.complexity import ESTIMATORS, estimate_gc, per_example_gc
from ..nn.params_io import atomic_write
from . import checkpoint as _ckpt
from .losses import cross_entropy_and_grad
from .optim import SGD
from .trainer import Trainer

__all__ = ["fit", "FitResult", "TrainingDiverged", "objective_and_grad", "evaluate", "load_history",
           "HISTORY_FILE", "CHECKPOINT_FILE", "CONFIG_FILE", "train_step", "check_until",
           "criterion_met", "steps_for", "UNTIL_KEYS"]

HISTORY_FILE = "history.jsonl"
CHECKPOINT_FILE = "checkpoint.npz"
CONFIG_FILE = "config.json"
_MOMENTUM_PREFIX = "__momentum__/"


class TrainingDiverged(RuntimeError):
    """Raised by ``fit(..., on_divergence="raise")``; carries the history so far."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


@dataclass
class FitResult:
    """Final parameters, the history records, and how the run ended."""

    params: dict
    history: list = field(default_factory=list)
    status: str = "completed"          # "completed", "converged", "cap" or "diverged"
    message: str = ""
    steps: int = 0
    converged_step: int | None = None  # the record where ``until`` was first met


def _as_xy(data, name):
    if data is None:
        return None
    if hasattr(data, "X") and hasattr(data, "y"):
        return np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise TypeError(f"{name} must be a gcref.data.Dataset or an (X, y) pair, got {type(data).__name__}")


def objective_and_grad(net, params, X, y, l2: float = 0.0, gc_reg: float = 0.0, gc_rows=None, seed=0, *,
                       engine=None):
    """The regularized objective on a batch and its exact gradient.

    ``J(theta) = L(theta) + (l2/2) ||theta||^2 + gc_reg * GC(f_theta, X)`` with ``L`` the mean
    softmax cross-entropy and the L2 sum over every trainable parameter. Parameters and inputs
    are validated and converted to float64 (a float32 ``state_dict`` gives the float64 result).

    Returns ``(objective, parts, grads)`` where ``parts`` holds ``loss``, ``l2_term``, ``gc``
    (``None`` when ``gc_reg == 0``), ``accuracy`` and ``grad_norm_sq`` (``||grad L||^2``, the
    learning-path flatness) and ``grads`` the gradient of the whole objective (host float64).
    ``engine`` computes the passes (default: the reference; see :func:`gcref.engine.as_engine`).
    The objective is assembled once, in :class:`gcref.train.trainer.Trainer`; this is its
    ``objective_and_grads`` on one batch.
    """
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    X = engine.check_input(X)
    y = as_labels(y, "y", n=X.shape[0])
    trainer = Trainer(engine, params, {}, X, y, SGD(1.0), l2=l2, gc_reg=gc_reg, gc_rows=gc_rows)
    Xb, yb = trainer.batch(np.arange(X.shape[0]))
    objective, parts, grads = trainer.objective_and_grads(Xb, yb, seed)
    logits = engine.to_host(trainer.last_logits)
    parts["accuracy"] = float(np.mean(logits.argmax(axis=1) == y))
    return objective, parts, {k: np.asarray(engine.to_host(g), dtype=np.float64) for k, g in grads.items()}


def train_step(net, params, state, X, y, optimizer: SGD, l2=0.0, gc_reg=0.0, gc_rows=None, seed=0, *,
               engine=None):
    """One optimizer step on a batch: returns ``(params, state, objective, parts)`` (float64)."""
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    objective, parts, grads = objective_and_grad(net, params, X, y, l2, gc_reg, gc_rows, seed,
                                                 engine=engine)
    new_params, new_state = optimizer.step(params, grads, state)
    return new_params, new_state, objective, parts


def _eval_subset(y, size, seed):
    """A fixed, class-balanced subset of at most ``size`` indices (at least 2 per class if possible)."""
    y = np.asarray(y)
    if size is None or size >= y.shape[0]:
        return np.arange(y.shape[0])
    rng = np.random.default_rng([seed, 7919])
    classes = np.unique(y)
    per = max(2, int(math.ceil(size / len(classes))))
    idx = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    return np.sort(np.concatenate(idx))


def evaluate(net, params, X, y, gc_method="exact", gc_size=None, seed=0, *, engine=None) -> dict:
    """Embedding metrics on ``(X, y)``: accuracy, mean cross-entropy (``loss``), GC (exact or
    estimated), NC, geometric collapse.

    Metrics that are undefined for these features (e.g. coinciding class means, or the standard
    error of a one-draw estimate) are recorded as ``None`` with the reason under
    ``"<name>_error"``, never as ``nan`` or ``inf``. Class statistics are taken on centred
    features (:func:`gcref.metrics.collapse.centred`); everything is float64.
    """
    from ..metrics.collapse import centred, class_stats, geometric_collapse_from_stats, neural_collapse_from_stats
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    X = engine.check_input(X)
    y = as_labels(y, "y", n=X.shape[0])
    Z, logits = engine.embed_and_logits(params, X)
    out = {"accuracy": float(np.mean(logits.argmax(axis=1) == y)),
           "loss": float(cross_entropy_and_grad(logits, y)[0])}
    pe = per_example_gc(net, params, X, engine=engine) if gc_method == "exact" else None
    if gc_method == "exact":
        out["gc"] = float(pe.mean())
    else:
        est = estimate_gc(net, params, X, method=gc_method, size=gc_size, seed=seed, engine=engine)
        out["gc"], out["gc_stderr"] = est.value, est.stderr
        if not math.isfinite(est.stderr):
            out["gc_stderr"] = None
            out["gc_stderr_error"] = f"one draw per example (gc_size={gc_size}) gives no standard error"
    try:
        stats = class_stats(centred(Z), y)
        out["nc"] = neural_collapse_from_stats(stats.means, stats.variances)
        if pe is not None:
            gc_c = np.array([pe[y == c].mean() for c in stats.classes])
            out["geometric_collapse"] = geometric_collapse_from_stats(stats.means, gc_c)
    except ValueError as err:
        out["nc"] = None
        out["nc_error"] = str(err)
    return out


def load_history(path) -> list[dict]:
    """Read a ``history.jsonl`` file (one JSON record per line)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, HISTORY_FILE)
    records = []
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"{path}: line {i} is not valid UTF-8 (a damaged file)") from None
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {i} is not valid JSON ({err})") from None
    return records


def _write_history(out_dir, history):
    text = _ckpt.history_text(history)
    atomic_write(os.path.join(out_dir, HISTORY_FILE), lambda fh: fh.write(text.encode()))


def _write_checkpoint(out_dir, params, state, step, config, dtype="float64", history=()):
    """Parameters and momentum in the run's compute dtype (exactly the trainer's values), bound
    to the settings and to the history up to ``step``."""
    arrays = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    arrays.update({_MOMENTUM_PREFIX + k: np.asarray(v, dtype=dtype) for k, v in state.items()})
    arrays["__step__"] = np.array(step)
    arrays.update(_ckpt.binding_arrays(config, [r for r in history if r["step"] <= step]))
    atomic_write(os.path.join(out_dir, CHECKPOINT_FILE), lambda fh: np.savez(fh, **arrays))


def _read_checkpoint(out_dir, net, config):
    path = os.path.join(out_dir, CHECKPOINT_FILE)
    arrays = _ckpt.read_checkpoint(path)          # the safe loader: one error naming the file
    digest = _ckpt.check_binding(path, arrays, config)
    step = int(arrays.pop("__step__"))
    state = {k[len(_MOMENTUM_PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(_MOMENTUM_PREFIX)}
    params = net.check_params(arrays, name=f"parameters in {path}")
    return params, state, step, digest


@_ckpt.managed_run
def fit(net, params, data, *, lr: float, batch_size: int, steps: int | None = None, l2: float = 0.0,
        gc_reg: float = 0.0, momentum: float = 0.0, seed=0, test_data=None, target_data=None,
        eval_every: int | None = None, eval_size: int | None = 512, gc_method: str = "exact",
        gc_size=None, gc_rows: int | None = None, few_shot: dict | None = None,
        out_dir=None, resume: bool = False, max_param_norm: float = 1e6,
        on_divergence: str = "stop", progress=None, config_extra: dict | None = None,
        engine=None, epochs: float | None = None, until: dict | None = None,
        eval_early: int | None = None) -> FitResult:
    """Train ``net`` with SGD on the regularized objective and record a history.

    Parameters
    ----------
    net : gcref.nn.Network
    params : dict[str, ndarray]
        Initial parameters (e.g. ``net.init(seed)``).
    data : Dataset or (X, y)
        Training data.
    lr : float > 0
        Learning rate.
    batch_size : int
        Mini-batch size, at most the number of training examples.
    steps : int
        Number of SGD steps (with ``until``: the cap). Give ``steps`` or ``epochs``.
    epochs : float, optional
        The budget in epochs instead: ``steps = ceil(epochs * n / batch_size)`` for ``n``
        training examples. Every record carries ``epoch = step * batch_size / n``.
    until : dict, optional
        Train to a criterion: ``{"train_accuracy": a}`` (accuracy on the fixed training
        evaluation subset ``>= a``) and/or ``{"train_loss": l}`` (its mean cross-entropy
        ``<= l``); every given condition must hold. The criterion is checked at records
        (``eval_every``): the run stops at the first record where it holds, with
        ``status="converged"`` and ``converged_step``; if it never holds within ``steps`` the run
        ends with ``status="cap"`` (reached the cap, not converged). Part of the settings a
        checkpoint is bound to; a resumed run stops at the same step.
    l2 : float >= 0
        ``lambda_2`` of the term ``(lambda_2 / 2) ||theta||^2`` (all trainable parameters).
    gc_reg : float >= 0
        ``lambda_GC`` of the explicit term ``lambda_GC * GC(f_theta, batch)``; its gradient is exact
        (double backprop by hand), or sampled over ``gc_rows`` embedding rows when given.
    momentum : float in [0, 1)
        Heavy-ball momentum (PyTorch's convention); 0 is plain SGD.
    seed : int
        Batch order (step ``t`` uses ``default_rng([seed, t])``), evaluation subsets and estimators.
    test_data, target_data : Dataset or (X, y), optional
        Held-out source data (test accuracy) and new target classes (target NC and, with
        ``few_shot``, k-way m-shot NCC accuracy with a 95% CI).
    eval_every : int, optional
        Steps between history records (default ``max(1, steps // 20)``); step 0 and the last step
        are always recorded.
    eval_early : int, optional
        More records early, where the loss falls fastest: also record at the steps
        ``round(2 ** (j / eval_early))``, ``j = 0, 1, ...``, as long as consecutive ones are less
        than ``eval_every`` apart (``eval_early`` records per doubling of the step count;
        :func:`record_steps`). ``None`` or 0: every ``eval_every`` steps only. Records do not
        change the training trajectory: the parameters at every step are bitwise the same.
    eval_size : int, optional
        Examples (class-balanced, fixed) on which GC, NC and geometric collapse are measured.
    gc_method : "exact" or an estimator of :func:`gcref.estimate_gc`
    few_shot : dict, optional
        ``ways``, ``shots``, ``queries``, ``episodes`` for the target few-shot evaluation.
    out_dir : path, optional
        Where ``config.json``, ``history.jsonl`` and ``checkpoint.npz`` go (atomically, at each
        record), under an exclusive lock of the folder for the whole call
        (:mod:`gcref.train.checkpoint`: another writer raises ``FolderLocked``).
    resume : bool
        Continue from ``out_dir``'s checkpoint (bitwise the same result as an uninterrupted run);
        a checkpoint made with other settings raises ``ValueError`` saying what differs.
    max_param_norm : float
        Divergence guard: the run stops if ``||theta||`` exceeds it or the loss is not finite.
    on_divergence : {"stop", "raise"}
        ``"stop"`` returns with ``status="diverged"`` and the history so far; ``"raise"`` raises
        :class:`TrainingDiverged`.
    progress : callable, bool or None
        ``progress(step, steps, record_or_None)`` after every step; ``None`` (default): a
        progress bar on stderr when it is a terminal; ``True``: always; ``False``: none.
    engine : gcref.engine.Engine or callable, optional
        Who computes every forward and derivative pass of the run (steps and records); default
        the reference. ``gcref_cuda.fit`` is this loop with ``gcref_cuda.FastEngine``; the
        batches, draws, checkpoints and history files are the same for every engine.

    Returns
    -------
    FitResult
        ``status`` is ``"completed"`` (no ``until``), ``"converged"``, ``"cap"`` or
        ``"diverged"``. Each history record has ``step``, ``epoch``, ``loss`` (mean batch loss
        since the last record), ``train_loss`` (cross-entropy on the training evaluation subset),
        ``objective``, ``flatness`` (mean ``||grad L||^2`` since the last record), ``train_accuracy``,
        ``gc``, ``nc``, ``geometric_collapse`` (train subset), and if given ``test_accuracy``,
        ``target_nc``, ``target_gc``, ``few_shot_accuracy`` and ``few_shot_ci95``.
    """
    # ---- validate everything before any work (once: the steps below do not validate again)
    lr = check_float(lr, "lr", minimum=0.0, strict_min=True)
    l2 = check_float(l2, "l2", minimum=0.0)
    gc_reg = check_float(gc_reg, "gc_reg", minimum=0.0)
    momentum = check_float(momentum, "momentum", minimum=0.0, maximum=1.0, strict_max=True)
    seed = check_int(seed, "seed", minimum=0)
    max_param_norm = check_float(max_param_norm, "max_param_norm", minimum=0.0, strict_min=True)
    if gc_method != "exact" and gc_method not in ESTIMATORS:
        raise ValueError(f"gc_method must be 'exact' or one of {ESTIMATORS}, got {gc_method!r}")
    if on_divergence not in ("stop", "raise"):
        raise ValueError(f"on_divergence must be 'stop' or 'raise', got {on_divergence!r}")
    until = check_until(until)
    X, y = _as_xy(data, "data")
    X = net.check_input(X, "data.X")
    y = as_labels(y, "data.y", n=X.shape[0])
    if y.min() < 0 or y.max() >= net.num_classes:
        raise ValueError(f"data.y must lie in 0..{net.num_classes - 1} for a {net.num_classes}-class head, "
                         f"got labels {y.min()}..{y.max()}")
    n = X.shape[0]
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the training data ({n} examples)")
    steps = steps_for(steps, epochs, n, batch_size)
    if gc_reg and gc_rows is not None:
        check_int(gc_rows, "gc_rows", minimum=1, maximum=net.embedding_dim)
    eval_every = max(1, steps // 20) if eval_every is None else check_int(eval_every, "eval_every", minimum=1)
    early = record_steps(eval_every, eval_early, steps)
    test = _as_xy(test_data, "test_data")
    if test is not None:
        test = (net.check_input(test[0], "test_data.X"), as_labels(test[1], "test_data.y", n=len(test[0])))
    target = _as_xy(target_data, "target_data")
    if target is not None:
        tX = np.asarray(target[0], dtype=np.float64)
        target = (net.check_input(tX, "target_data.X"), as_labels(target[1], "target_data.y", n=len(tX)))
    if few_shot is not None and target is None:
        raise ValueError("few_shot needs target_data")
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    optimizer = SGD(lr, momentum=momentum)
    state = optimizer.init_state(params)
    dtype = np.dtype(engine.dtype).name

    history: list[dict] = []
    start = 0
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        _ckpt.open_run_folder(out_dir)      # locked until fit returns; stale temporaries removed
        config = {"lr": lr, "batch_size": batch_size, "steps": steps, "l2": l2, "gc_reg": gc_reg,
                  "momentum": momentum, "seed": seed, "eval_every": eval_every, "eval_size": eval_size,
                  "gc_method": gc_method, "gc_rows": gc_rows, "network": net.name,
                  "num_params": net.num_params(), "dtype": dtype, **(config_extra or {})}
        if until is not None:
            config["until"] = until
        if eval_early:
            config["eval_early"] = eval_early
        if resume and os.path.exists(os.path.join(out_dir, CHECKPOINT_FILE)):
            params, state, start, digest = _read_checkpoint(out_dir, net, config)
            if os.path.exists(os.path.join(out_dir, HISTORY_FILE)):
                history = [r for r in load_history(out_dir) if r["step"] <= start]
            _ckpt.check_resumed_history(history, start, steps, out_dir, digest)
        atomic_write(os.path.join(out_dir, CONFIG_FILE),
                     lambda fh: fh.write(json.dumps(config, indent=2, default=str).encode()))

    eval_idx = _eval_subset(y, eval_size, seed)
    target_idx = None if target is None else _eval_subset(target[1], eval_size, seed + 1)

    def record(step, params, losses, objectives, flats):
        rec = {"step": step, "epoch": step * batch_size / n}
        if losses:
            rec.update(loss=float(np.mean(losses)), objective=float(np.mean(objectives)),
                       flatness=float(np.mean(flats)))
        ev = evaluate(net, params, X[eval_idx], y[eval_idx], gc_method, gc_size, seed=[seed, step],
                      engine=engine)
        rec["train_accuracy"] = ev.pop("accuracy")
        rec["train_loss"] = ev.pop("loss")
        rec.update(ev)
        if test is not None:
            logits = engine.forward(params, test[0], "logits")
            rec["test_accuracy"] = float(np.mean(logits.argmax(axis=1) == test[1]))
        if target is not None:
            from ..metrics.collapse import neural_collapse
            tX, ty = target[0][target_idx], target[1][target_idx]
            Zt = engine.forward(params, tX, "embedding")
            try:
                rec["target_nc"] = neural_collapse(Zt, ty)
            except ValueError as err:
                rec["target_nc"], rec["target_nc_error"] = None, str(err)
            rec["target_gc"] = float(per_example_gc(net, params, tX, engine=engine).mean()) \
                if gc_method == "exact" else estimate_gc(net, params, tX, method=gc_method, size=gc_size,
                                                         seed=[seed, step, 1], engine=engine).value
            if few_shot is not None:
                from ..metrics.ncc import few_shot_accuracy_features
                res = few_shot_accuracy_features(engine.forward(params, target[0], "embedding"), target[1],
                                                 seed=seed, **few_shot)
                rec["few_shot_accuracy"], rec["few_shot_ci95"] = res.mean, res.ci95
        if until is not None and step > 0 and criterion_met(until, rec):
            rec["converged"] = True
        return rec

    if start == 0:
        history = [record(0, params, [], [], [])]
        if out_dir is not None:
            _write_history(out_dir, history)
            _write_checkpoint(out_dir, params, state, 0, config, dtype, history)
    trainer = Trainer(engine, params, state, X, y, optimizer, l2=l2, gc_reg=gc_reg, gc_rows=gc_rows)
    losses, objectives, flats = [], [], []
    status, message = "completed", ""
    step = start
    converged_at = next((r["step"] for r in history if r.get("converged")), None)
    if converged_at is not None:             # a resumed run that had already converged
        status = "converged"
    with engine.training_scope(batch_size):     # e.g. one BLAS thread for small steps
        for step in range(start + 1, steps + 1 if converged_at is None else start + 1):
            idx = np.random.default_rng([seed, step]).choice(n, size=batch_size, replace=False)
            res = trainer.step(idx, gc_seed=[seed, step, 2], max_param_norm=max_param_norm)
            objective, norm = res.objective, res.param_norm
            if not (math.isfinite(objective) and math.isfinite(norm)) or norm > max_param_norm:
                status = "diverged"
                message = (f"training diverged at step {step}: objective={objective:.4g}, ||theta||={norm:.4g} "
                           f"(limit {max_param_norm:g}); try a smaller lr (now {lr:g}) or gc_reg (now {gc_reg:g})")
                rec = {"step": step, "diverged": True, "message": message}
                history.append(rec)
                if out_dir is not None:
                    _write_history(out_dir, history)
                break
            losses.append(res.parts["loss"])
            objectives.append(objective)
            flats.append(res.parts["grad_norm_sq"])
            rec = None
            if step % eval_every == 0 or step == steps or step in early:
                params, state = trainer.host_params(), trainer.host_state()
                rec = record(step, params, losses, objectives, flats)
                history.append(rec)
                losses, objectives, flats = [], [], []
                if out_dir is not None:
                    _write_history(out_dir, history)
                    _write_checkpoint(out_dir, params, state, step, config, dtype, history)
            if progress is not None:
                progress(step, steps, rec)
            if rec is not None and rec.get("converged"):
                status, converged_at = "converged", step
                break
    if status == "completed" and until is not None:
        status = "cap"
        last = ", ".join(f"{k}={history[-1].get(k)}" for k in until)
        message = f"reached the cap of {steps} steps without meeting until={until} (last record: {last})"
    if status == "diverged" and on_divergence == "raise":
        raise TrainingDiverged(message, history)
    final = trainer.host_params(np.float64)
    return FitResult(params=final, history=history, status=status, message=message,
                     steps=step if status != "diverged" else step - 1, converged_step=converged_at)


def record_steps(eval_every: int, eval_early: int | None, steps: int) -> frozenset:
    """The early record steps of :func:`fit` (besides every ``eval_every``-th step and the last):
    ``round(2 ** (j / eval_early))`` for ``j = 0, 1, ...`` while the next one is less than
    ``eval_every`` steps further, at most ``steps``. ``eval_early`` is the number of records per
    doubling of the step count; ``None`` or 0 gives none.

    >>> sorted(record_steps(32, 2, 1000))
    [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91]
    """
    if eval_early is None or eval_early == 0:
        return frozenset()
    eval_early = check_int(eval_early, "eval_early", minimum=0)
    out, j = set(), 0
    while True:
        here, nxt = 2.0 ** (j / eval_early), 2.0 ** ((j + 1) / eval_early)
        if round(here) > steps:
            break
        out.add(int(round(here)))
        if nxt - here >= eval_every:
            break
        j += 1
    return frozenset(out)


#: The criteria ``until`` may name, with the direction that meets them.
UNTIL_KEYS = {"train_accuracy": ">=", "train_loss": "<="}


def check_until(until) -> dict | None:
    """Validate a stopping criterion (see :func:`fit`): ``None`` or a non-empty dict of
    ``train_accuracy`` in (0, 1] and/or ``train_loss`` > 0."""
    if until is None:
        return None
    if not isinstance(until, dict) or not until:
        raise TypeError(f"until must be None or a non-empty dict with keys {sorted(UNTIL_KEYS)}, "
                        f"got {until!r}")
    out = {}
    for key, value in until.items():
        if key == "train_accuracy":
            out[key] = check_float(value, "until['train_accuracy']", minimum=0.0, maximum=1.0,
                                   strict_min=True)
        elif key == "train_loss":
            out[key] = check_float(value, "until['train_loss']", minimum=0.0, strict_min=True)
        else:
            raise ValueError(f"until has an unknown criterion {key!r}; expected {sorted(UNTIL_KEYS)}")
    return dict(sorted(out.items()))


def criterion_met(until: dict, record: dict) -> bool:
    """Whether a history record meets every condition of ``until`` (a missing or ``None``
    metric does not)."""
    for key, bound in until.items():
        value = record.get(key)
        if value is None or not math.isfinite(value):
            return False
        if (value < bound) if UNTIL_KEYS[key] == ">=" else (value > bound):
            return False
    return True


def steps_for(steps, epochs, n: int, batch_size: int) -> int:
    """The step budget from ``steps`` or ``epochs`` (exactly one): ``ceil(epochs n / batch)``."""
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps and epochs, got steps={steps!r}, epochs={epochs!r}")
    if steps is not None:
        return check_int(steps, "steps", minimum=1)
    epochs = check_float(epochs, "epochs", minimum=0.0, strict_min=True)
    return max(1, math.ceil(epochs * n / batch_size - 1e-9))
