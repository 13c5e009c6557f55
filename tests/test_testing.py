"""gcref.testing.numeric: every derivative check takes the derivative as a function; the old value
forms of check_jacobian / check_gradient still work, with a DeprecationWarning."""

import warnings

import numpy as np
import pytest

from gcref import testing as T


def f(x):
    return np.sin(x) * x


def df(x):
    return np.cos(x) * x + np.sin(x)


X = np.linspace(0.1, 1.0, 5)


def test_check_jacobian_takes_a_function():
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no DeprecationWarning for the function form
        good = T.check_jacobian(f, lambda x: np.diag(df(x)), X)
        bad = T.check_jacobian(f, lambda x: np.diag(df(x)) + 1e-3, X)
    assert good.passed and good.error < 1e-8
    assert not bad.passed and bad.error > 1e-4


def test_check_gradient_takes_a_function_for_arrays_and_dicts():
    def loss(p):
        return float(np.sum(f(p["a"])) + np.sum(p["b"] ** 2))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = T.check_gradient(loss, lambda p: {"a": df(p["a"]), "b": 2 * p["b"]},
                              {"a": X, "b": np.ones(2)})
        arr = T.check_gradient(lambda x: float(np.sum(f(x))), df, X)
        wrong = T.check_gradient(lambda x: float(np.sum(f(x))), lambda x: 1.01 * df(x), X)
    assert ok.passed and arr.passed and not wrong.passed


def test_gradient_function_sees_the_point_not_a_reference_to_it():
    seen = []

    def grad(x):
        seen.append(np.array(x))
        x[...] = 0.0                                  # a careless gradient must not move the point
        return df(seen[-1])

    x = X.copy()
    assert T.check_gradient(lambda x: float(np.sum(f(x))), grad, x).passed
    np.testing.assert_array_equal(seen[0], X)
    np.testing.assert_array_equal(x, X)


@pytest.mark.parametrize("call", [
    lambda: T.check_jacobian(f, np.diag(df(X)), X),
    lambda: T.check_gradient(lambda x: float(np.sum(f(x))), df(X), X),
    lambda: T.check_gradient(lambda p: float(np.sum(f(p["a"]))), {"a": df(X)}, {"a": X}),
], ids=["jacobian value", "gradient array value", "gradient dict value"])
def test_value_forms_are_deprecated_but_still_correct(call):
    with pytest.warns(DeprecationWarning, match="pass a function"):
        result = call()
    assert result.passed


def test_shape_and_structure_mistakes_fail_with_a_reason():
    r = T.check_jacobian(f, lambda x: np.ones((5, 4)), X)
    assert not r.passed and "shape" in r.detail
    r = T.check_gradient(lambda p: 0.0, lambda p: np.zeros(3), {"a": X})
    assert not r.passed and "dict" in r.detail
    r = T.check_gradient(lambda p: 0.0, lambda p: {"zz": X}, {"a": X})
    assert not r.passed and "unknown keys" in r.detail
