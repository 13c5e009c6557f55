"""The verification suite behind ``gcref check``: every group in one place.

Each group is a function ``group(seed) -> list[CheckResult]``. The groups are listed here, in
the order the table shows them; nothing below this package imports it (the import graph reads
nn <- metrics <- train <- checks <- cli), so a module never registers itself upward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..testing import CheckResult
from . import cuda, metrics, nn, training
from .cases import layer_cases, perturbed_params, random_layer_params, small_zoo
from .nn import layer_checks, network_checks

__all__ = ["GROUPS", "run_checks", "summarize", "Summary", "layer_checks", "network_checks", "layer_cases",
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


class Summary(NamedTuple):
    """Counts of a run: skipped checks (e.g. no GPU) are neither passed nor failed."""

    passed: int
    failed: int
    skipped: int


def summarize(results: list[CheckResult]) -> Summary:
    """``(passed, failed, skipped)`` counts."""
    passed = sum(r.status == "passed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    return Summary(passed, len(results) - passed - skipped, skipped)
