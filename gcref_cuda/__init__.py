"""gcref_cuda: the fast backend of gcref (CuPy on a GPU, NumPy elsewhere).

The same networks, parameters and metrics as :mod:`gcref`, batched and matrix-free. Every public
function has the name and signature of its ``gcref`` twin, plus ``dtype=`` (float32 or float64;
default float64 on NumPy, float32 on CuPy) and ``memory_budget=`` (bytes), and returns host values.
Property tests hold it to ``gcref``: 1e-10 relative in float64, 1e-4 in float32.

The metrics and training functions are ``gcref``'s own, run with :class:`FastEngine` (the fast
primitives of :mod:`gcref.engine`): ``gcref_cuda.fit(net, ...)`` is
``gcref.train.fit(net, ..., engine=FastEngine(net))``, and any ``gcref`` function taking
``engine=`` accepts ``FastEngine`` (an instance, or the class itself to build one per network).

Backend: ``GCREF_BACKEND=numpy|cupy`` or :func:`set_backend`; see :mod:`gcref_cuda.backend`.
"""

from .backend import (backend_name, get_xp, gpu_available, set_backend, to_device, to_host,
                      using)
from .metrics import (ESTIMATORS, Estimate, cdnv, class_stats, estimate_gc,
                      few_shot_accuracy, few_shot_accuracy_features, geometric_collapse,
                      geometric_complexity, ncc_error_bound, neural_collapse, pairwise_ratio,
                      per_class_gc, per_example_gc)
from .fast_engine import FastEngine
from .network import DEFAULT_MEMORY_BUDGET, FastNetwork, as_fast
from .train import evaluate, fit, gc_penalty_and_grad, objective_and_grad, train_step

__all__ = [
    "backend_name", "get_xp", "gpu_available", "set_backend", "using", "to_device", "to_host",
    "FastNetwork", "as_fast", "DEFAULT_MEMORY_BUDGET", "FastEngine",
    "per_example_gc", "geometric_complexity", "per_class_gc", "estimate_gc", "Estimate",
    "ESTIMATORS", "geometric_collapse", "class_stats", "cdnv", "neural_collapse",
    "pairwise_ratio", "ncc_error_bound", "few_shot_accuracy", "few_shot_accuracy_features",
    "train_step", "objective_and_grad", "gc_penalty_and_grad", "evaluate", "fit",
]
