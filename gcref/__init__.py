"""gcref: geometric complexity and neural collapse, computable and checkable (reference backend).

The definition of every quantity in Munn, Dherin & Gonzalvo (NeurIPS 2024), in float64 NumPy with
hand-written derivatives. See ``docs/theory.md`` for the formulas and proofs.
"""

__version__ = "0.1.0"

from . import data, metrics, nn, testing, train  # noqa: E402
from .metrics import (ESTIMATORS, ClassStats, Estimate, FewShotResult, NCCErrorBound,  # noqa: E402
                      cdnv, class_stats, empirical_poincare_lower_bound, estimate_gc,
                      few_shot_accuracy, few_shot_accuracy_features, few_shot_episodes,
                      flatness_bound, gaussian_poincare_constant, geometric_collapse,
                      geometric_complexity, ncc_accuracy, ncc_error_bound, ncc_fit, ncc_predict,
                      neural_collapse, papyan_nc, per_class_gc, per_example_gc, poincare_inequality,
                      product_poincare_constant, uniform_box_poincare_constant)
from .nn import Network, load_params, save_params, zoo  # noqa: E402

__all__ = [
    "nn", "zoo", "Network", "save_params", "load_params", "metrics", "train", "data", "testing",
    "geometric_complexity", "per_example_gc", "per_class_gc", "estimate_gc", "Estimate", "ESTIMATORS",
    "class_stats", "ClassStats", "cdnv", "neural_collapse", "geometric_collapse", "papyan_nc",
    "gaussian_poincare_constant", "uniform_box_poincare_constant", "product_poincare_constant",
    "empirical_poincare_lower_bound", "poincare_inequality", "flatness_bound",
    "ncc_fit", "ncc_predict", "ncc_accuracy", "few_shot_episodes", "few_shot_accuracy",
    "few_shot_accuracy_features", "FewShotResult", "ncc_error_bound", "NCCErrorBound",
]
