"""Every quantity of the theory: GC (exact and estimated), neural collapse, geometric collapse,
Poincaré constants and inequality, the flatness link, NCC few-shot accuracy and its error bound."""

from .bounds import (DESIGN_CONSTANT, LOOSE_CONSTANT, TIGHT_CONSTANT, NCCErrorBound, ncc_error_bound,
                     ncc_error_bound_from_stats, ncc_pairwise_terms)
from .collapse import (ClassStats, cdnv, cdnv_from_stats, class_stats, geometric_collapse_from_stats,
                       geometric_collapse_pairs, neural_collapse, neural_collapse_from_stats,
                       pairwise_ratio, papyan_nc)
from .complexity import (ESTIMATORS, Estimate, estimate_gc, gc_of_linear_map, geometric_collapse,
                         geometric_complexity, per_class_gc, per_example_gc)
from .flatness import FlatnessReport, flatness_bound
from .ncc import (FewShotResult, few_shot_accuracy, few_shot_accuracy_features, few_shot_episodes,
                  ncc_accuracy, ncc_fit, ncc_predict)
from .poincare import (PoincareLowerBound, PoincareReport, empirical_poincare_lower_bound,
                       gaussian_poincare_constant, poincare_inequality, poincare_inequality_from_stats,
                       product_poincare_constant, uniform_box_poincare_constant)
