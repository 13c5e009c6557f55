"""gcref's conformance battery inside another project's pytest suite, one test per case.

In the spirit of scikit-learn's ``parametrize_with_checks``::

    from gcref.testing import parametrize_conformance

    @parametrize_conformance("nc", my_neural_collapse)
    def test_my_nc_agrees_with_gcref(check):
        check()

Each case becomes its own pytest id (``test_my_nc_agrees_with_gcref[simplex ETF means]``); a
failing case raises ``AssertionError`` with its row and the convention it matches. pytest is
imported only when this function is called.
"""

from __future__ import annotations

from .conformance import conformance_checks

__all__ = ["parametrize_conformance"]


def parametrize_conformance(quantity: str, fn, framework: str = "numpy", **options):
    """A ``pytest.mark.parametrize("check", ...)`` decorator over gcref's cases for ``quantity``.

    Parameters
    ----------
    quantity : {"gc", "cdnv", "nc", "papyan", "estimator", "ncc", "few_shot", "few_shot_summary", "ncc_bound"}
    fn : callable
        Your implementation, with the signature of the matching ``check_*`` function.
    framework : {"numpy", "torch", "jax"}
    **options
        Passed on: ``rtol``, ``precision``, ``accept``; ``labels`` for the feature quantities,
        ``order`` for cdnv, ``keys`` for papyan; ``method``, ``draws``, ``z``, ``se_rtol``,
        ``seed`` for the estimator; ``accept`` alone for the NCC quantities.

    The decorated test takes one argument, ``check``, and calls it: ``check()``.
    """
    import pytest
    checks = conformance_checks(quantity, fn, framework, **options)
    return pytest.mark.parametrize("check", checks, ids=[c.case for c in checks])
