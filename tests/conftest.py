import os
import re

import pytest
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

PYPROJECT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")


def test_extra_modules(path=PYPROJECT) -> set:
    """The modules gcref's test extra installs (``pip install -e '.[test]'``): each requirement's
    name and its extras' (``dask[distributed]``: ``dask``, ``distributed``), as imported."""
    from packaging.requirements import Requirement
    try:
        import tomllib
    except ModuleNotFoundError:          # Python 3.10: the installed metadata says the same
        from importlib.metadata import requires
        wanted = [Requirement(r) for r in requires("gcref") or []]
        wanted = [r for r in wanted if r.marker is not None and r.marker.evaluate({"extra": "test"})]
    else:
        with open(path, "rb") as fh:
            wanted = [Requirement(r) for r in tomllib.load(fh)["project"]["optional-dependencies"]["test"]]
    return {name.lower().replace("-", "_") for r in wanted for name in (r.name, *r.extras)}


test_extra_modules.__test__ = False          # a helper, not a test

#: A skip for a module that cannot be imported: ``pytest.importorskip``'s reason
#: (``could not import 'torch': ...``).
_MISSING = re.compile(r"could not import '([\w.]+)'")


def _required_but_missing(longrepr):
    """The module named by a skip's reason when gcref's test extra installs it, else ``None``."""
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    m = _MISSING.search(reason)
    if m and m.group(1).split(".")[0].lower() in test_extra_modules():
        return m.group(1)
    return None


def _fail_instead_of_skip(report):
    """A test (or module) skipped because a module of the test extra is missing fails: a
    green run must have run the PyTorch, JAX and Dask paths it claims."""
    if report.skipped:
        module = _required_but_missing(report.longrepr)
        if module:
            report.outcome = "failed"
            report.longrepr = (f"{module} cannot be imported, but gcref's test extra installs it "
                               f"(pyproject.toml: pip install -e '.[test]'): this test must run, not "
                               f"skip ({report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_instead_of_skip(outcome.get_result())


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures ``gcref.lab.plots`` draws, by file name, kept open for a test to read."""
    import os
    from gcref.lab import plots
    figures = {}
    real_save = plots._save

    def keep(fig, path):
        figures[os.path.basename(path)] = fig
        real_save(fig, path)
    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(plots._pyplot(), "close", lambda fig=None: None)
    return figures
