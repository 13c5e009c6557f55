"""The settings of one training run (:class:`TrainConfig`), their validation, and the data they name.

Everything a run needs is in its ``TrainConfig``; validation happens before any work, so a bad
learning rate or batch size, an unknown dataset or architecture, or an impossible class split is
reported at once (for a sweep: for every point of the grid before the first run starts).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..train.checkpoint import shown

__all__ = ["PROTOCOL_DEFAULTS", "TrainConfig", "RunData", "as_config", "validate_config", "check_against_data",
           "SettingError", "SettingWarning", "describe_differences", "load_run_data",
           "build_network", "DEFAULT_MLP_HIDDEN", "RESULT_FIELDS", "SWEEPABLE"]

#: Hidden widths of the lab's default MLP (``d -> 128 -> 128 -> 32 -> k``): small enough that a
#: sweep on the digits runs in about a minute on two cores.
DEFAULT_MLP_HIDDEN = (128, 128, 32)

#: The paper's training protocol, the defaults of ``gcref sweep`` and of transfer experiments
#: (``gcref transfer``, :func:`gcref.lab.run_transfer`), as in validation/: weight decay at the
#: base and every run trained until >= 99% training accuracy (on the evaluation subset),
#: ``steps`` being the cap; ``until_train_acc=None`` (``--until-train-acc 0``) trains the whole
#: budget instead.
PROTOCOL_DEFAULTS = {"l2": 5e-4, "until_train_acc": 0.99}

#: Settings that change nothing in the result (they are not compared when a run is resumed).
_NON_RESULT_FIELDS = ("threads", "data_root")
#: Settings added after run folders existed, written (to_dict, config.json, fingerprints) only
#: when set: a folder made before them keeps its fingerprint and resumes.
_WRITTEN_WHEN_SET = ("eval_early",)


class _NamesSettings:
    """A message about settings that names them as Python does (``gc_rows``); :meth:`for_cli`
    names them as the command line does (``--gc-rows``)."""

    def __init__(self, message: str, *settings: str, prefix: str = ""):
        super().__init__(prefix + message)
        self.message, self.settings, self.prefix = message, settings, prefix

    def for_cli(self) -> str:
        """The message with each setting it names written as its command-line option (or the
        options appended, where the message does not name them as such)."""
        import re
        text, missing = self.message, []
        for name in self.settings:
            flag = "--" + name.replace("_", "-")
            text, n = re.subn(rf"(?<![\w-]){re.escape(name)}(?!\w)", flag, text)
            if not n:
                missing.append(flag)
        return self.prefix + text + (f" ({', '.join(missing)})" if missing else "")

    def prefixed(self, prefix: str):
        """The same message with ``prefix`` before it (e.g. the sweep point)."""
        return type(self)(self.message, *self.settings, prefix=prefix + self.prefix)


class SettingError(_NamesSettings, ValueError):
    """A bad setting (or combination of settings) of a run: a ``ValueError`` naming it
    (:meth:`for_cli`: as a command-line option)."""


class SettingWarning(_NamesSettings, UserWarning):
    """A setting that is used otherwise than it reads (e.g. an evaluation size below 2 examples
    per class, raised to that): the run goes ahead, and the user is told."""


@dataclass
class TrainConfig:
    """Settings of one training run (the lab's defaults are a teaching run on the digits).

    Data
    ----
    dataset : str
        A name of :data:`gcref.data.DATASETS` (default ``"digits"``: scikit-learn's 8x8 digits,
        bundled, no download).
    data_root : str, optional
        Folder of the files for ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
        ``cifar_fs``.
    dataset_options : dict
        Extra keyword arguments of the loader (e.g. ``{"num_classes": 8}`` for
        ``gaussian_mixture``).
    max_per_class : int, optional
        Keep at most this many training examples per class (the first ones, in file order).
    source_classes, target_classes : list of int or str, optional
        Train on the source classes only; the target classes (all their examples, train and
        test) are never trained on and are used to measure target NC and few-shot accuracy on
        the frozen embedding.
    num_source : int, optional
        Instead of listing classes: a random split with this many source classes (seed
        ``split_seed``), the rest target.
    split_seed : int
        Seed of the random class split and of the digits' train/test split.

    Network
    -------
    arch : str
        A name of :data:`gcref.nn.zoo.ARCHITECTURES` (default ``"mlp"``).
    width : float
        Width factor (channel / hidden-unit multiplier).
    hidden : list of int, optional
        MLP hidden widths (default :data:`DEFAULT_MLP_HIDDEN`), or the CNN's embedding width.

    Optimisation (see :func:`gcref.train.fit`)
    ------------
    lr, batch_size, steps, l2, gc_reg, momentum, seed
        ``seed`` sets the initial weights and the batch order.
    epochs : float, optional
        The budget in epochs instead of ``steps`` (``steps`` is then not used):
        ``ceil(epochs * n_train / batch_size)`` steps (:func:`gcref.train.fit.steps_for`).
    until_train_acc, until_loss : float, optional
        Train to a criterion (:func:`gcref.train.fit`'s ``until``): stop at the first record
        where the accuracy on the training evaluation subset is ``>= until_train_acc`` and/or
        its cross-entropy ``<= until_loss``; the budget is then the cap, and the run ends
        ``"converged"`` or ``"cap"``.

    Recording
    ---------
    eval_every, eval_size, gc_method, gc_size, gc_rows
        As in :func:`gcref.train.fit` (``eval_every=None`` with a criterion: every 1% of the cap, at
        least 20 steps or 5% of the cap apart).
    eval_early : int, optional
        More records early (:func:`gcref.train.fit`): ``eval_early`` records per doubling of the
        step count until they are ``eval_every`` apart, so that a matched-fit level is resolved
        where the loss falls fastest. ``None`` (or 0): none.
    ways, shots, queries, episodes
        Few-shot NCC protocol on the target classes (``ways=None``: ``min(5, #target classes)``).
    threads : int, optional
        BLAS threads inside the run (default 1: the lab's networks are small, and one thread per
        process is much faster than several competing for the cores); ``None`` leaves BLAS alone.
    backend : {"reference", "cuda"}
        ``"reference"`` trains with :func:`gcref.train.fit` (NumPy float64); ``"cuda"`` with
        :func:`gcref_cuda.fit` (the same loop, batches and files, on CuPy where a GPU is usable,
        NumPy elsewhere).
    dtype : {None, "float32", "float64"}
        The training precision: ``None`` is the backend's default (float64 for the reference and
        for gcref_cuda on NumPy, float32 for gcref_cuda on CuPy); ``"float32"`` needs
        ``backend="cuda"`` (the reference is float64 by definition). Recorded in ``config.json``
        and bound into the checkpoint's fingerprint.
    """

    dataset: str = "digits"
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    max_per_class: int | None = None
    source_classes: list | None = None
    target_classes: list | None = None
    num_source: int | None = None
    split_seed: int = 0
    arch: str = "mlp"
    width: float = 1.0
    hidden: list | None = None
    lr: float = 0.05
    batch_size: int = 32
    steps: int = 3000
    l2: float = 0.005
    gc_reg: float = 0.0
    momentum: float = 0.0
    seed: int = 0
    eval_every: int | None = None
    eval_size: int = 512
    gc_method: str = "exact"
    gc_size: float | None = None
    gc_rows: int | None = None
    ways: int | None = None
    shots: int = 5
    queries: int = 15
    episodes: int = 200
    threads: int | None = 1
    backend: str = "reference"
    dtype: str | None = None
    epochs: float | None = None
    until_train_acc: float | None = None
    until_loss: float | None = None
    eval_early: int | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every setting (lists, not tuples)."""
        out = dataclasses.asdict(self)
        for k in _WRITTEN_WHEN_SET:
            if out[k] is None:
                del out[k]
        for k in ("source_classes", "target_classes", "hidden"):
            if out[k] is not None:
                out[k] = list(out[k])
        return out

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some settings changed (names checked)."""
        return as_config({**self.to_dict(), **changes})

    @property
    def transfer(self) -> bool:
        """Whether the run has target classes (source classes trained, target classes held out)."""
        return (self.source_classes is not None or self.num_source is not None
                or self.dataset in _OWN_SPLIT)

    def until(self) -> dict | None:
        """The stopping criterion of :func:`gcref.train.fit` (``None``: train the whole budget)."""
        out = {}
        if self.until_train_acc is not None:
            out["train_accuracy"] = self.until_train_acc
        if self.until_loss is not None:
            out["train_loss"] = self.until_loss
        return out or None

    def step_budget(self, n_train: int) -> int:
        """The number of steps (with a criterion: the cap): ``steps``, or ``epochs`` in steps."""
        from ..train.fit import steps_for
        return steps_for(None if self.epochs is not None else self.steps, self.epochs, n_train,
                         self.batch_size)

    def result_key(self) -> dict:
        """The settings that determine the result (everything but threads and paths)."""
        d = self.to_dict()
        for k in _NON_RESULT_FIELDS:
            d.pop(k)
        return d


#: Field names of :class:`TrainConfig`.
FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
RESULT_FIELDS = tuple(k for k in FIELDS if k not in _NON_RESULT_FIELDS)
#: Settings a sweep may vary (any scalar setting; these are the usual ones).
SWEEPABLE = ("lr", "batch_size", "l2", "gc_reg", "momentum", "seed", "steps", "width", "arch",
             "dataset", "gc_method", "num_source", "split_seed", "max_per_class", "epochs",
             "until_train_acc", "until_loss")


BACKENDS = ("reference", "cuda")
#: Datasets with their own source/target class split (CIFAR-FS; glyphs: 64/16/20 proportions).
_OWN_SPLIT = ("cifar_fs", "glyphs")


def as_config(config=None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a ``TrainConfig``, a dict, or ``None`` (the defaults).

    Unknown setting names raise a ``ValueError`` listing the valid ones.
    """
    if config is None:
        data = {}
    elif isinstance(config, TrainConfig):
        data = config.to_dict()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        raise TypeError(f"config must be a TrainConfig or a dict, got {type(config).__name__}")
    data.update(overrides)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings are: {', '.join(FIELDS)}")
    return TrainConfig(**data)


def describe_differences(there: dict, now: dict, where: str = "there") -> tuple:
    """Every setting whose value differs between ``there`` (a folder's) and ``now`` (the one
    asked for), as ``("lr: 0.05 there, 0.2 now; dataset: 'glyphs' there, 'digits' now", names)``
    (keys in ``now``'s order, then ``there``'s)."""
    parts, names = [], []
    for key in dict.fromkeys([*now, *there]):
        if there.get(key) != now.get(key):
            parts.append(f"{key}: {shown(there.get(key))} {where}, {shown(now.get(key))} now")
            names.append(key)
    return "; ".join(parts), tuple(names)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def validate_config(config, n_train: int | None = None, data=None) -> TrainConfig:
    """Check every setting of a run; raise :class:`SettingError` (a ``ValueError``) naming the
    first bad one.

    Parameters
    ----------
    config : TrainConfig or dict
    n_train : int, optional
        Number of training examples, when known: ``batch_size`` must not exceed it.
    data : RunData, optional
        The run's data (:func:`load_run_data`), when loaded: the settings are also checked
        against it (:func:`check_against_data`), so that nothing fails after the run started.

    Returns
    -------
    TrainConfig
        The validated settings (numbers normalised to float/int).
    """
    from ..data import DATASETS
    from ..metrics.complexity import ESTIMATORS
    from ..nn.zoo import ARCHITECTURES

    cfg = as_config(config)
    if cfg.dataset not in DATASETS:
        raise SettingError(f"unknown dataset {cfg.dataset!r}; valid names are: {', '.join(DATASETS)}", "dataset")
    if cfg.arch not in ARCHITECTURES:
        raise SettingError(f"unknown architecture {cfg.arch!r}; valid names are: {', '.join(ARCHITECTURES)}", "arch")
    if cfg.gc_method != "exact" and cfg.gc_method not in ESTIMATORS:
        raise SettingError(f"unknown gc_method {cfg.gc_method!r}; valid: exact, {', '.join(ESTIMATORS)}", "gc_method")

    def positive(name, integer=False, allow_zero=False, upper=None):
        v = getattr(cfg, name)
        ok = _is_int(v) if integer else _is_real(v)
        if not ok or (v < 0 if allow_zero else v <= 0) or (upper is not None and v >= upper):
            need = ("a non-negative" if allow_zero else "a positive") + (" integer" if integer else " number")
            if upper is not None:
                need += f" below {upper}"
            raise SettingError(f"{name} must be {need}, got {v!r}", name)
        setattr(cfg, name, int(v) if integer else float(v))

    positive("lr")
    positive("batch_size", integer=True)
    positive("steps", integer=True)
    positive("l2", allow_zero=True)
    positive("gc_reg", allow_zero=True)
    positive("momentum", allow_zero=True, upper=1.0)
    positive("seed", integer=True, allow_zero=True)
    positive("split_seed", integer=True, allow_zero=True)
    positive("width")
    positive("eval_size", integer=True)
    positive("shots", integer=True)
    positive("queries", integer=True)
    positive("episodes", integer=True)
    if cfg.episodes < 2:
        raise SettingError(f"episodes must be at least 2 (the 95% CI needs a standard deviation), got {cfg.episodes}",
                           "episodes")
    for name in ("eval_every", "gc_rows", "max_per_class", "num_source", "ways", "threads"):
        if getattr(cfg, name) is not None:
            positive(name, integer=True)
    if cfg.eval_early is not None:
        positive("eval_early", integer=True, allow_zero=True)
        cfg.eval_early = cfg.eval_early or None      # 0 and unset are the same setting
    if cfg.gc_size is not None:
        # the mask estimator's budget is a keep probability; the others count samples
        positive("gc_size", integer=cfg.gc_method != "mask", upper=None)
        if cfg.gc_method == "mask" and cfg.gc_size > 1:
            raise SettingError(f"gc_size is the keep probability of the mask estimator: it must be in (0, 1], "
                               f"got {cfg.gc_size}", "gc_size")
    if cfg.backend not in BACKENDS:
        raise SettingError(f"unknown backend {cfg.backend!r}; valid: {', '.join(BACKENDS)}", "backend")
    if cfg.dtype not in (None, "float32", "float64"):
        raise SettingError(f"dtype must be float32 or float64 (or unset: the backend's default), "
                           f"got {cfg.dtype!r}", "dtype")
    if cfg.dtype == "float32" and cfg.backend != "cuda":
        raise SettingError("dtype float32 needs backend cuda (the reference trains in float64)",
                           "dtype", "backend")
    if cfg.epochs is not None:
        positive("epochs")
    for name in ("until_train_acc", "until_loss"):
        if getattr(cfg, name) is not None:
            positive(name)
    if cfg.until_train_acc is not None and cfg.until_train_acc > 1:
        raise SettingError(f"until_train_acc is a training accuracy: it must be in (0, 1], "
                           f"got {cfg.until_train_acc}", "until_train_acc")
    if cfg.eval_every is not None and cfg.epochs is None and cfg.eval_every > cfg.steps:
        raise SettingError(f"eval_every={cfg.eval_every} is larger than steps={cfg.steps}", "eval_every", "steps")
    if data is not None and n_train is None:
        n_train = data.train.n
    if cfg.eval_every is not None and cfg.epochs is not None and n_train is not None \
            and cfg.eval_every > cfg.step_budget(n_train):
        raise SettingError(f"eval_every={cfg.eval_every} is larger than the {cfg.step_budget(n_train)} "
                           f"steps of epochs={cfg.epochs:g}", "eval_every", "epochs")
    if cfg.hidden is not None:
        if isinstance(cfg.hidden, (str, bytes)) or not hasattr(cfg.hidden, "__iter__"):
            raise SettingError(f"hidden must be a list of positive integers, got {cfg.hidden!r}", "hidden")
        cfg.hidden = list(cfg.hidden)
        if not cfg.hidden or not all(_is_int(h) and h > 0 for h in cfg.hidden):
            raise SettingError(f"hidden must be a list of positive integers, got {cfg.hidden!r}", "hidden")
        if cfg.arch not in ("mlp", "cnn"):
            raise SettingError(f"hidden applies to the mlp and cnn architectures only, not {cfg.arch!r}", "hidden")
        if cfg.arch == "cnn" and len(cfg.hidden) != 1:
            raise SettingError(f"hidden for the cnn is one embedding width, got {cfg.hidden!r}", "hidden")
    if not isinstance(cfg.dataset_options, dict):
        raise SettingError(f"dataset_options must be a dict, got {cfg.dataset_options!r}")
    if (cfg.source_classes is None) != (cfg.target_classes is None):
        raise SettingError("give both source_classes and target_classes, or neither", "source_classes",
                           "target_classes")
    if cfg.source_classes is not None and cfg.num_source is not None:
        raise SettingError("give either source_classes/target_classes or num_source, not both",
                           "source_classes", "target_classes", "num_source")
    if cfg.dataset == "cifar_fs" and (cfg.source_classes is not None or cfg.num_source is not None):
        raise SettingError("cifar_fs has its own class split (64 source, 20 target classes); "
                           "do not give source_classes or num_source", "source_classes", "num_source")
    if cfg.dataset == "glyphs" and (cfg.source_classes is not None or cfg.num_source is not None):
        raise SettingError("glyphs has its own class split (CIFAR-FS proportions, seed split_seed; "
                           "dataset_options={'class_split': [n_source, n_val, n_target]} changes it); "
                           "do not give source_classes or num_source", "split_seed", "source_classes",
                           "num_source")
    for name in ("source_classes", "target_classes"):
        v = getattr(cfg, name)
        if v is not None:
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise SettingError(f"{name} must be a list of class indices or names, got {v!r}", name)
            setattr(cfg, name, list(v))
    for name in ("source_classes", "target_classes"):
        v = getattr(cfg, name)
        if v is not None and len(v) < 2:
            raise SettingError(f"{name} must name at least 2 classes (a run on one class has "
                               f"nothing to separate), got {v!r}", name)
    if cfg.num_source is not None and cfg.num_source < 2:
        raise SettingError(f"num_source must be at least 2 (a run on one class has nothing to "
                           f"separate), got {cfg.num_source}", "num_source")
    if cfg.ways is not None and cfg.ways < 2:
        raise SettingError(f"ways must be at least 2 (a few-shot episode tells classes apart), "
                           f"got {cfg.ways}", "ways")
    if data is not None:
        check_against_data(cfg, data)
    elif n_train is not None:
        _check_batch_size(cfg, n_train)
    return cfg


def _check_batch_size(cfg, n_train):
    if cfg.batch_size > n_train:
        raise SettingError(f"batch_size={cfg.batch_size} is larger than the training data "
                           f"({n_train} examples of {cfg.dataset})", "batch_size")


def check_against_data(cfg: TrainConfig, data) -> None:
    """The checks of a run's settings that need its data (part of :func:`validate_config`
    with ``data``): ``batch_size`` at most the training examples; at least 2 training classes;
    ``eval_size`` below 2 examples of each class is said (:class:`SettingWarning`: GC and NC are
    measured on 2 of each);
    ``gc_rows`` at most the network's embedding width; for a transfer run at least 2 target
    classes, ``ways`` at most the target classes and ``shots + queries`` examples in each.
    Raises :class:`SettingError` naming the setting."""
    train = data.train
    _check_batch_size(cfg, train.n)
    k = train.num_classes
    if k < 2:
        raise SettingError(f"the training data ({train.name}) has {k} class; a run needs at least 2 "
                           "(check source_classes, num_source and dataset_options)",
                           "source_classes", "num_source", "dataset_options")
    if cfg.eval_size < 2 * k and cfg.eval_size < train.n:
        if cfg.eval_size < 2:
            raise SettingError(f"eval_size must be at least 2 (NC needs 2 examples of a class), "
                               f"got {cfg.eval_size}", "eval_size")
        import warnings
        warnings.warn(SettingWarning(
            f"eval_size={cfg.eval_size} is below 2 examples of each of the {k} training classes: "
            f"GC and NC are measured on {int(np.minimum(train.class_counts(), 2).sum())} examples "
            "(2 per class)", "eval_size"),
            stacklevel=3)
    if cfg.gc_rows is not None:
        width = build_network(cfg, data).output_dim("embedding")
        if cfg.gc_rows > width:
            raise SettingError(f"gc_rows={cfg.gc_rows} is more than the {width} rows of the "
                               f"network's embedding (the GC penalty samples gc_rows of them); "
                               f"it must be at most {width}", "gc_rows")
    target = data.target
    if target is not None:
        if target.num_classes < 2:
            raise SettingError(f"a transfer run needs at least 2 target classes, got {target.num_classes}",
                               "target_classes", "num_source")
        ways = cfg.ways if cfg.ways is not None else min(5, target.num_classes)
        if ways > target.num_classes:
            raise SettingError(f"ways={ways} is more than the {target.num_classes} target classes", "ways")
        need = cfg.shots + cfg.queries
        counts = target.class_counts()
        if counts.min() < need:
            raise SettingError(f"shots + queries = {need} examples per target class are needed, but a "
                               f"target class has only {int(counts.min())}", "shots", "queries")


@dataclass(frozen=True)
class RunData:
    """The data of a run: training set, held-out test set of the same classes, target set (or None)."""

    train: object
    test: object
    target: object = None


def _first_per_class(ds, m):
    if m is None:
        return ds
    keep = np.concatenate([np.flatnonzero(ds.y == c)[:m] for c in range(ds.num_classes)])
    return ds.subset(np.sort(keep))


_DATA_CACHE: dict = {}


def _data_key(cfg: TrainConfig):
    import json
    return json.dumps({k: getattr(cfg, k) for k in ("dataset", "data_root", "dataset_options",
                                                    "max_per_class", "source_classes", "target_classes",
                                                    "num_source", "split_seed")},
                      sort_keys=True, default=str)


def load_run_data(config) -> RunData:
    """Load (and cache, per process) the data a run's settings name, split into train/test/target.

    - plain runs: the dataset's train and test splits (the digits: a stratified 75/25 split with
      ``split_seed``; synthetic sets: independent draws);
    - transfer runs: train and test restricted to the source classes (relabelled ``0..k_s-1``),
      and all examples (train and test) of the target classes;
    - ``cifar_fs``: the 64 train classes (CIFAR-100 train / test images) and the 20 test classes;
    - ``glyphs``: the source classes of :func:`gcref.data.glyph_class_split` (``split_seed``;
      ``n_per_class`` (default ``max_per_class``, else 100) training and ``test_per_class``
      (default ``min(30, n_per_class)``) test renderings per class) and the target classes
      (``n_per_class`` renderings of the test stream).
    """
    from ..data import class_split, concat, load_dataset, random_class_split

    cfg = as_config(config)
    key = _data_key(cfg)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    opts = dict(cfg.dataset_options)
    name = cfg.dataset
    if name == "digits":
        opts.setdefault("seed", cfg.split_seed)
    if name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "cifar_fs") and cfg.max_per_class:
        opts.setdefault("max_per_class", cfg.max_per_class)
    if name == "glyphs":
        # source classes: n_per_class training and test_per_class test renderings; target
        # classes: n_per_class renderings of the test stream (never trained on)
        opts.setdefault("class_seed", cfg.split_seed)
        if cfg.max_per_class:
            opts.setdefault("n_per_class", cfg.max_per_class)
        n_test = opts.pop("test_per_class", min(30, opts.get("n_per_class", 100)))
        train = load_dataset(name, split="train", part="source", **opts)
        test = load_dataset(name, split="test", part="source", **{**opts, "n_per_class": n_test})
        target = load_dataset(name, split="test", part="target", **opts)
        data = RunData(_first_per_class(train, cfg.max_per_class), test, target)
    elif name == "cifar_fs":
        train = load_dataset(name, cfg.data_root, split="train", part="train", **opts)
        test = load_dataset(name, cfg.data_root, split="test", part="train", **opts)
        target = load_dataset(name, cfg.data_root, split="all", part="test", **opts)
        data = RunData(_first_per_class(train, cfg.max_per_class), test, target)
    else:
        train = load_dataset(name, cfg.data_root, split="train", **opts)
        test = load_dataset(name, cfg.data_root, split="test", **opts)
        train = _first_per_class(train, cfg.max_per_class)
        if cfg.source_classes is not None or cfg.num_source is not None:
            if cfg.num_source is not None:
                if train.num_classes < 2 or cfg.num_source >= train.num_classes:
                    raise SettingError(f"num_source={cfg.num_source} must be below the number of classes "
                                       f"({train.num_classes}) of {name}", "num_source")
                src, tgt = random_class_split(train, cfg.num_source, seed=cfg.split_seed)
                src_classes, tgt_classes = list(src.classes), list(tgt.classes)
            else:
                src_classes, tgt_classes = cfg.source_classes, cfg.target_classes
            src_train, tgt_train = class_split(train, src_classes, tgt_classes)
            src_test, tgt_test = class_split(test, src_classes, tgt_classes)
            data = RunData(src_train, src_test, concat([tgt_train, tgt_test], name=f"{name}-target"))
        else:
            data = RunData(train, test, None)
    if len(_DATA_CACHE) > 4:
        _DATA_CACHE.clear()
    _DATA_CACHE[key] = data
    return data


def few_shot_protocol(cfg: TrainConfig, data: RunData) -> dict | None:
    """The ``few_shot`` argument of :func:`gcref.train.fit` for a run (None without targets)."""
    if data.target is None:
        return None
    ways = cfg.ways if cfg.ways is not None else min(5, data.target.num_classes)
    return {"ways": ways, "shots": cfg.shots, "queries": cfg.queries, "episodes": cfg.episodes}


def build_network(config, data: RunData):
    """The network of a run: ``gcref.nn.zoo.build(arch, input shape, #classes, width, ...)``."""
    from ..nn import zoo

    cfg = as_config(config)
    kw = {}
    if cfg.arch == "mlp":
        kw["hidden"] = tuple(cfg.hidden) if cfg.hidden is not None else DEFAULT_MLP_HIDDEN
    elif cfg.arch == "cnn" and cfg.hidden is not None:
        kw["hidden"] = int(cfg.hidden[0])
    return zoo.build(cfg.arch, data.train.input_shape, data.train.num_classes, width=cfg.width, **kw)
