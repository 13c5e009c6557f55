"""Public checks that other projects import: gcref as a testing oracle.

* :mod:`gcref.testing.numeric`: derivative checks against central finite differences
  (``check_vjp``, ``check_jvp``, ``check_vjp_jvp``, ``check_jacobian``, ``check_gradient``),
  ``assert_close`` and the documented tolerances.
* :mod:`gcref.testing.layer`: ``check_layer(layer, in_shape)``, the whole layer battery of
  ``gcref check`` for any layer (a user's own included), returning a report.
"""

from .layer import LayerReport, check_layer
from .numeric import *  # noqa: F401,F403  (the names listed in numeric.__all__)
from .numeric import __all__ as _numeric_all

__all__ = list(_numeric_all) + ["check_layer", "LayerReport"]
