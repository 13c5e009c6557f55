"""Transfer experiments: pretrain on source classes, freeze the embedding, measure the targets.

Each run trains on the source classes only; at every history record the frozen embedding is
evaluated on the target classes (never trained on): target NC (CDNV), target GC and k-way m-shot
nearest-class-mean accuracy with its 95% CI (:func:`gcref.few_shot_accuracy_features`). Over a
sweep of settings the summary reports Spearman's rho of the source GC against the 5-shot accuracy
and against the target NC (the paper: lower source GC -> lower target NC -> higher accuracy).
"""

from __future__ import annotations

from .config import as_config, load_run_data
from .sweep import run_sweep

__all__ = ["run_transfer", "transfer_config", "DEFAULT_TRANSFER_GRID"]

#: The default settings swept by :func:`run_transfer`.
DEFAULT_TRANSFER_GRID = {"lr": [0.01, 0.05, 0.2]}


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
        Shared settings; without a class split the first half of the classes is the source
        (``source_classes`` / ``target_classes`` or ``num_source`` choose another; ``ways``,
        ``shots``, ``queries``, ``episodes`` the few-shot protocol, default 5-way 5-shot,
        15 queries, 200 episodes).
    grid : dict[str, list], optional
        Settings swept (default :data:`DEFAULT_TRANSFER_GRID`); ``{}`` runs one setting.
    seeds : list of int, optional
        Seeds per setting (default ``[base_config.seed]``).
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
    cfg = transfer_config(base_config)
    grid = dict(DEFAULT_TRANSFER_GRID) if grid is None else grid
    return run_sweep(cfg, grid, seeds, out_dir, kind="transfer", **sweep_options)
