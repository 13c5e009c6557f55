"""Public checks that other projects import: gcref as a testing oracle.

* :mod:`gcref.testing.numeric`: derivative checks against central finite differences
  (``check_vjp``, ``check_jvp``, ``check_vjp_jvp``, ``check_jacobian``, ``check_gradient``; each
  takes the function under test and the derivative as a function), ``assert_close`` and the
  documented tolerances.
* :mod:`gcref.testing.layer`: ``check_layer(layer, in_shape)``, the whole layer battery of
  ``gcref check`` for any layer (a user's own included), returning a report.
* :mod:`gcref.testing.conformance`: conformance suites for *your* implementation of GC, CDNV, NC,
  Papyan's NC1-NC4, GC estimators, NCC classification, few-shot episodes and their summary, and
  the NCC error bound (``check_gc_implementation``, ...), with a diagnosis naming the known
  convention, rounding pattern or working precision a disagreeing value matches
  (:mod:`gcref.testing.conventions`, :mod:`gcref.testing.diagnosis`), or saying it cannot tell.
* :mod:`gcref.testing.pytest_plugin`: ``parametrize_conformance``, the battery as pytest cases.
"""

from .layer import LayerReport, check_layer
from .numeric import *  # noqa: F401,F403  (the names listed in numeric.__all__)
from .numeric import __all__ as _numeric_all
from .conformance import (ConformanceReport, CaseResult, check_cdnv_implementation,  # noqa: E402
                          check_gc_estimator, check_gc_implementation, check_implementation,
                          check_nc_implementation, check_papyan_implementation, conformance_checks,
                          check_ncc_implementation, check_few_shot_implementation,
                          check_few_shot_summary, check_ncc_bound_implementation)
from .conventions import CONVENTIONS, Convention  # noqa: E402
from .frameworks import to_jax  # noqa: E402
from .pytest_plugin import parametrize_conformance  # noqa: E402

__all__ = list(_numeric_all) + ["check_layer", "LayerReport"] + [
    "check_gc_implementation", "check_cdnv_implementation", "check_nc_implementation",
    "check_papyan_implementation", "check_gc_estimator", "check_implementation",
    "check_ncc_implementation", "check_few_shot_implementation", "check_few_shot_summary",
    "check_ncc_bound_implementation", "conformance_checks", "parametrize_conformance", "ConformanceReport", "CaseResult",
    "CONVENTIONS", "Convention", "to_jax",
]
