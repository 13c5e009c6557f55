"""The seeded small cases of the check groups; they live in :mod:`gcref.testing.cases` (public,
so other projects' tests can use the same networks)."""

from ..testing.cases import layer_cases, layer_types, perturbed_params, random_layer_params, small_zoo

__all__ = ["layer_types", "layer_cases", "random_layer_params", "small_zoo", "perturbed_params"]
