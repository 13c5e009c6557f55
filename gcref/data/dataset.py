"""The :class:`Dataset` container every gcref data loader returns.

A dataset is three things kept together and checked against each other: the inputs ``X`` (float64,
images as NCHW ``(n, C, H, W)``, vectors as ``(n, d)``), the integer labels ``y`` (int64, ``(n,)``,
values in ``0 .. num_classes - 1``) and the class names (``classes[y[i]]`` names example ``i``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, as_labels

__all__ = ["Dataset", "concat"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs, integer labels and class names, checked for consistency.

    Parameters
    ----------
    X : array_like, shape (n, C, H, W) or (n, d)
        Inputs, converted to float64 (images NCHW, vectors 2-D). Must be finite.
    y : array_like of int, shape (n,)
        Class labels in ``0 .. len(classes) - 1``, converted to int64.
    classes : sequence of str, length k
        Class names; ``classes[c]`` names label ``c``.
    name : str
        A short name for messages and plots (e.g. ``"digits"``).

    Notes
    -----
    The dataclass is frozen (the fields cannot be reassigned), but the arrays are not copied: a
    loader hands over arrays it owns, and :meth:`subset` returns new arrays.
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple
    name: str = "dataset"

    def __post_init__(self):
        X = as_float_array(self.X, "X", min_ndim=2, allow_empty=True)
        y = as_labels(self.y, "y", n=X.shape[0])
        if isinstance(self.classes, str) or not hasattr(self.classes, "__iter__"):
            raise TypeError(f"classes must be a sequence of class names (str), got {self.classes!r}")
        classes = tuple(self.classes)
        if not classes:
            raise ValueError("classes must name at least one class, got an empty sequence")
        for c in classes:
            if not isinstance(c, str):
                raise TypeError(f"classes must hold str class names, got {c!r} ({type(c).__name__})")
        if len(set(classes)) != len(classes):
            dup = sorted({c for c in classes if classes.count(c) > 1})
            raise ValueError(f"classes must be distinct names, got duplicates {dup}")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"y must hold labels in 0..{len(classes) - 1} (one per class name), "
                             f"got values in {int(y.min())}..{int(y.max())}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "classes", classes)

    # ------------------------------------------------------------------ shape helpers
    @property
    def n(self) -> int:
        """Number of examples ``n``."""
        return int(self.X.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def input_shape(self) -> tuple:
        """Shape of one input, ``X.shape[1:]`` (``(C, H, W)`` or ``(d,)``)."""
        return tuple(self.X.shape[1:])

    @property
    def input_dim(self) -> int:
        """Flattened input dimension ``d = prod(input_shape)``."""
        return int(np.prod(self.input_shape))

    @property
    def num_classes(self) -> int:
        """Number of classes ``k = len(classes)`` (a class may have no example in a subset)."""
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Examples per class, int64 array of shape ``(k,)``."""
        return np.bincount(self.y, minlength=self.num_classes).astype(np.int64)

    def flat(self) -> np.ndarray:
        """Inputs flattened to shape ``(n, d)`` (a view when possible)."""
        return self.X.reshape(self.n, -1)

    # ------------------------------------------------------------------ selection
    def subset(self, index, name: str | None = None) -> "Dataset":
        """Return the examples selected by a boolean mask or an integer index array.

        Parameters
        ----------
        index : array_like of bool, shape (n,), or array_like of int, shape (m,)
            A mask over the examples, or example indices (negative indices count from the end).
        name : str, optional
            Name of the result; defaults to this dataset's name.

        Returns
        -------
        Dataset
            ``m`` examples with the same class names and labels.
        """
        idx = np.asarray(index)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n,):
                raise ValueError(f"index: a boolean mask must have shape ({self.n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        else:
            if idx.size == 0:
                idx = idx.astype(np.int64)
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise TypeError("index must be a 1-D boolean mask or a 1-D array of integer indices, "
                                f"got dtype {idx.dtype} and shape {idx.shape}")
            if idx.size and (idx.min() < -self.n or idx.max() >= self.n):
                raise ValueError(f"index holds indices outside 0..{self.n - 1}: "
                                 f"{int(idx.min())}..{int(idx.max())}")
        return Dataset(self.X[idx], self.y[idx], self.classes,
                       self.name if name is None else name)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, n={self.n}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")


def concat(datasets, name: str | None = None) -> Dataset:
    """Concatenate datasets that share input shape and class names.

    Parameters
    ----------
    datasets : sequence of Dataset
        At least one dataset; all with the same ``input_shape`` and ``classes``.
    name : str, optional
        Name of the result (default: the first dataset's name).

    Returns
    -------
    Dataset
        ``sum(d.n)`` examples, in the order given.
    """
    datasets = list(datasets)
    if not datasets:
        raise ValueError("datasets must hold at least one Dataset, got none")
    for i, d in enumerate(datasets):
        if not isinstance(d, Dataset):
            raise TypeError(f"datasets[{i}] must be a Dataset, got {type(d).__name__}")
    first = datasets[0]
    for i, d in enumerate(datasets[1:], start=1):
        if d.input_shape != first.input_shape:
            raise ValueError(f"datasets[{i}] has input shape {d.input_shape}, "
                             f"datasets[0] has {first.input_shape}")
        if d.classes != first.classes:
            raise ValueError(f"datasets[{i}] has different class names from datasets[0]")
    return Dataset(np.concatenate([d.X for d in datasets]), np.concatenate([d.y for d in datasets]),
                   first.classes, first.name if name is None else name)
