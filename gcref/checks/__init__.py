"""The verification suite behind ``gcref check``: every group in one place.

Each group is a function ``group(seed) -> list[CheckResult]``. The groups are listed here, in
the order the table shows them; nothing below this package imports it (the import graph reads
nn <- metrics <- train <- checks <- cli), so a module never registers itself upward.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..testing import CheckResult
from . import cuda, metrics, nn, training
from .cases import layer_cases, perturbed_params, random_layer_params, small_zoo
from .nn import layer_checks, network_checks

__all__ = ["GROUPS", "run_checks", "summarize", "layer_checks", "network_checks", "layer_cases",
           "small_zoo", "perturbed_params", "random_layer_params"]

#: group name -> ``fn(seed) -> list[CheckResult]``, in table order. The ``cuda*`` groups are
#: run by ``gcref check --backend cuda``; ``cuda-gpu`` exists only where CuPy has a GPU.
GROUPS: dict[str, Callable[[int], list[CheckResult]]] = {
    "layers": nn.layers_group,
    "networks": nn.networks_group,
    "parameters": nn.parameters_group,
    "metrics": metrics.metrics_group,
    "training": training.training_group,
    "cuda": cuda.cuda_group,
}
if cuda.gpu_available():
    GROUPS["cuda-gpu"] = cuda.cuda_gpu_group


def run_checks(groups=None, seed: int = 0, progress=None) -> list[CheckResult]:
    """Run the named groups (all by default) and return every result.

    ``progress(group_name)`` is called before each group (for progress bars). A group that
    raises is reported as one failing row with the exception, never silently dropped.
    """
    names = list(GROUPS) if groups is None else list(groups)
    unknown = [g for g in names if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown check group(s) {unknown}; valid: {sorted(GROUPS)}")
    results = []
    for name in names:
        if progress is not None:
            progress(name)
        try:
            results.extend(GROUPS[name](seed))
        except Exception as err:  # a crashing check is a failing check, with its reason
            results.append(CheckResult(f"{name}: crashed", np.inf, 0.0, False, repr(err)))
    return results


def summarize(results: list[CheckResult]) -> tuple[int, int]:
    """(passed, failed) counts."""
    passed = sum(r.passed for r in results)
    return passed, len(results) - passed
