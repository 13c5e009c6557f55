"""Transfer experiments: pretrain on source classes, freeze the embedding, measure the targets.

Each run trains on the source classes only; at every history record the frozen embedding is
evaluated on the target classes (never trained on): target NC (CDNV), target GC and k-way m-shot
nearest-class-mean accuracy with its 95% CI (:func:`gcref.few_shot_accuracy_features`). Over a
sweep of settings the summary reports Spearman's rho of the source GC against the 5-shot accuracy
and against the target NC (the paper: lower source GC -> lower target NC -> higher accuracy).
"""

from __future__ import annotations

from .config import PROTOCOL_DEFAULTS, as_config, load_run_data
from .sweep import run_sweep

__all__ = ["run_transfer", "transfer_config", "transfer_defaults", "DEFAULT_TRANSFER_GRID",
           "DEFAULT_TRANSFER_DATASET", "DEFAULT_TRANSFER_SEEDS", "TRANSFER_DEFAULTS"]

#: The defaults of a transfer experiment, shared by :func:`run_transfer` and ``gcref transfer``:
#: the settings swept, the dataset (glyphs: 112 source / 35 target classes, the paper's regime
#: of many source classes) and the seeds of each setting.
DEFAULT_TRANSFER_GRID = {"lr": [0.01, 0.05, 0.2]}
DEFAULT_TRANSFER_DATASET = "glyphs"
DEFAULT_TRANSFER_SEEDS = (0, 1)
#: The settings a transfer experiment defaults to where it names none: the dataset and the
#: paper's protocol (:data:`gcref.lab.config.PROTOCOL_DEFAULTS`: weight decay 5e-4, trained to
#: >= 99% training accuracy) with a cap of 40000 steps.
TRANSFER_DEFAULTS = {"dataset": DEFAULT_TRANSFER_DATASET, **PROTOCOL_DEFAULTS, "steps": 40000}


def transfer_defaults(base_config=None):
    """The settings of a transfer experiment: ``base_config`` with each of
    :data:`TRANSFER_DEFAULTS` (glyphs, L2 5e-4, to >= 99% training accuracy, cap 40000 steps)
    that it does not name (``None``, or a dict without the key; a :class:`TrainConfig` names
    every setting and is kept as it is). Name a setting as ``None`` to leave it unset (e.g.
    ``until_train_acc=None``: train the whole budget)."""
    if base_config is None:
        base_config = {}
    if isinstance(base_config, dict):
        base_config = {**TRANSFER_DEFAULTS, **base_config}
    return as_config(base_config)


def transfer_config(base_config=None):
    """The settings with a source/target class split: kept if given, else the first half of the
    classes as source and the second half as target (digits: 0-4 -> 5-9)."""
    cfg = as_config(base_config)
    if cfg.transfer:
        return cfg
    k = load_run_data(cfg).train.num_classes
    if k < 4:
        raise ValueError(f"{cfg.dataset} has {k} classes; a transfer split needs at least 4 "
                         "(2 source, 2 target)")
    return cfg.replace(source_classes=list(range(k // 2)), target_classes=list(range(k // 2, k)))


def run_transfer(base_config=None, grid: dict | None = None, seeds=None, out_dir="runs/transfer",
                 **sweep_options) -> dict:
    """Pretrain on source classes over a sweep of settings; report target NC and few-shot accuracy.

    Parameters
    ----------
    base_config : TrainConfig or dict, optional
        Shared settings; those it does not name default to :data:`TRANSFER_DEFAULTS` (glyphs,
        with its own class split; the paper's protocol: L2 5e-4, each run trained to >= 99%
        training accuracy, at most 40000 steps), as for ``gcref transfer``. On a dataset without a class split
        the first half of the classes is the source (``source_classes`` / ``target_classes``
        or ``num_source`` choose another; ``ways``, ``shots``, ``queries``, ``episodes`` the
        few-shot protocol, default 5-way 5-shot, 15 queries, 200 episodes).
    grid : dict[str, list], optional
        Settings swept (default :data:`DEFAULT_TRANSFER_GRID`); ``{}`` runs one setting.
    seeds : list of int, optional
        Seeds per setting (default :data:`DEFAULT_TRANSFER_SEEDS`, as for ``gcref transfer``).
    out_dir : path
        The sweep folder.
    **sweep_options
        ``n_jobs``, ``backend``, ``progress``, ``overwrite``, ``dask_scheduler`` of
        :func:`gcref.lab.run_sweep`.

    Returns
    -------
    dict
        The sweep summary (``kind="transfer"``); each run's ``final`` holds ``gc`` (source GC),
        ``nc``, ``target_nc``, ``target_gc``, ``few_shot_accuracy``, ``few_shot_ci95``;
        ``correlations`` holds ``gc_vs_few_shot_accuracy`` and ``gc_vs_target_nc`` among others.
    """
    cfg = transfer_config(transfer_defaults(base_config))
    grid = dict(DEFAULT_TRANSFER_GRID) if grid is None else grid
    if seeds is None and "seed" not in grid:
        seeds = list(DEFAULT_TRANSFER_SEEDS)
    return run_sweep(cfg, grid, seeds, out_dir, kind="transfer", **sweep_options)
