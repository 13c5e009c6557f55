"""Input validation shared by every gcref module.

Every public function of gcref checks its arguments with these helpers, so a bad input gives a
``TypeError`` or ``ValueError`` that names the argument and says what was expected, instead of a
silent broadcast, ``nan`` or ``inf`` further down.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float_array",
    "as_labels",
    "check_int",
    "check_float",
    "check_probability",
    "as_generator",
]


def as_float_array(x, name: str, *, ndim: int | None = None, min_ndim: int | None = None,
                   shape: tuple | None = None, allow_empty: bool = False,
                   dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a finite floating array (float64 by default), or raise naming ``name``.

    Parameters
    ----------
    x : array_like
        Real numbers. Booleans, complex numbers, strings and objects are rejected.
    name : str
        The argument's name, used in error messages.
    ndim, min_ndim : int, optional
        Required exact / minimum number of dimensions.
    shape : tuple, optional
        Required shape; ``None`` entries match any length.
    allow_empty : bool
        Whether an array with zero elements is acceptable.
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)
                                   or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.dtype == np.bool_:
        raise TypeError(f"{name} must be an array of real numbers, got dtype bool")
    arr = np.asarray(arr, dtype=dtype)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def as_labels(y, name: str = "y", *, n: int | None = None) -> np.ndarray:
    """Return integer class labels as a 1-D int64 array, or raise naming ``name``.

    Float arrays are accepted only when every entry is integral (e.g. ``3.0``).
    ``n`` is the required length (the number of examples it must match).
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {arr.shape}")
    if arr.dtype == np.bool_ or arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{name} must hold integer class labels, got non-integral values")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but there are {n} examples")
    return arr


def check_int(v, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``v`` as an int, or raise if it is not an integer within [minimum, maximum]."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_float(v, name: str, *, minimum: float | None = None, maximum: float | None = None,
                strict_min: bool = False, strict_max: bool = False) -> float:
    """Return ``v`` as a finite float within the given bounds, or raise naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and (v < minimum or (strict_min and v == minimum)):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum}, got {v}")
    if maximum is not None and (v > maximum or (strict_max and v == maximum)):
        raise ValueError(f"{name} must be {'<' if strict_max else '<='} {maximum}, got {v}")
    return v


def check_probability(q, name: str) -> float:
    """Return ``q`` as a float in (0, 1], or raise naming ``name``."""
    return check_float(q, name, minimum=0.0, maximum=1.0, strict_min=True)


def as_generator(seed, name: str = "seed") -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from an int seed, a list of ints or a Generator.

    ``None`` is rejected on purpose: every random choice in gcref must be reproducible.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (list, tuple)) and seed and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seed):
        # a sequence of ints is SeedSequence entropy: derived, independent streams ([seed, step])
        if any(s < 0 for s in seed):
            raise ValueError(f"{name} entries must be non-negative, got {list(seed)}")
        return np.random.default_rng([int(s) for s in seed])
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int, a list of ints or a numpy.random.Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))
