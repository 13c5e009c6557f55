"""Deprecated: the check suite moved to :mod:`gcref.checks` (kept so old imports keep working)."""

from __future__ import annotations

import warnings

from .checks import (GROUPS, layer_cases, layer_checks, network_checks, perturbed_params, run_checks,
                     small_zoo, summarize)

__all__ = ["GROUPS", "run_checks", "summarize", "layer_checks", "network_checks", "small_zoo",
           "perturbed_params", "layer_cases"]

warnings.warn("gcref.check is deprecated; import gcref.checks", DeprecationWarning, stacklevel=2)
