import os

from hypothesis import HealthCheck, settings

# Deterministic, modest hypothesis runs everywhere (CI and local): the same examples each run.
settings.register_profile(
    "gcref",
    max_examples=int(os.environ.get("GCREF_HYPOTHESIS_EXAMPLES", "15")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("gcref")
