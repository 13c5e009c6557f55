"""The lab: training runs, sweeps and transfer experiments, shared by the CLI and validation/.

>>> from gcref import lab
>>> summary = lab.run_training({"lr": 0.05, "steps": 3000}, "runs/one")          # doctest: +SKIP
>>> sweep = lab.run_sweep(None, {"lr": [0.01, 0.05, 0.2]}, seeds=[0, 1],
...                       out_dir="runs/sweep", n_jobs=2)                        # doctest: +SKIP
>>> sweep["correlations"]["gc_vs_nc"]["rho"]                                     # doctest: +SKIP
>>> lab.run_transfer(out_dir="runs/transfer")                                    # doctest: +SKIP
>>> lab.plot_run_or_sweep("runs/sweep")                                          # doctest: +SKIP
"""

from .config import (DEFAULT_MLP_HIDDEN, RunData, SettingError, SettingWarning, TrainConfig, as_config,
                     build_network, load_run_data, validate_config)
from .plots import plot_run_or_sweep
from .run import (DONE_FILE, FINAL_METRICS, PARAMS_FILE, read_done, run_summary, run_training,
                  verify_finished)
from .sweep import (LOCAL_BACKENDS, PARALLEL_BACKENDS, SUMMARY_CSV, SUMMARY_JSON, SWEEP_FILE,
                    expand_grid, load_sweep, plan_sweep, run_name, run_sweep, spearman,
                    summarize_sweep, sweep_histories, sweep_progress)
from .transfer import (DEFAULT_TRANSFER_DATASET, DEFAULT_TRANSFER_GRID, DEFAULT_TRANSFER_SEEDS,
                       run_transfer, transfer_config)

__all__ = [
    "TrainConfig", "as_config", "validate_config", "load_run_data", "build_network", "RunData",
    "DEFAULT_MLP_HIDDEN", "run_training", "run_summary", "read_done", "verify_finished", "DONE_FILE", "PARAMS_FILE",
    "FINAL_METRICS", "run_sweep", "plan_sweep", "expand_grid", "run_name", "summarize_sweep",
    "spearman", "sweep_progress", "sweep_histories", "load_sweep", "SWEEP_FILE", "SUMMARY_JSON",
    "SUMMARY_CSV", "LOCAL_BACKENDS", "PARALLEL_BACKENDS", "run_transfer", "transfer_config",
    "DEFAULT_TRANSFER_GRID", "DEFAULT_TRANSFER_DATASET", "DEFAULT_TRANSFER_SEEDS", "plot_run_or_sweep",
    "SettingError", "SettingWarning",
]
