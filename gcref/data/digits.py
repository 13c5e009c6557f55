"""The scikit-learn 8x8 handwritten digits, an offline real dataset for teaching and tests."""

from __future__ import annotations

import numpy as np

from .._validation import check_float
from .dataset import Dataset
from .splits import stratified_indices

__all__ = ["load_digits_dataset"]

_SPLITS = ("train", "test", "all")


def load_digits_dataset(split: str = "train", test_fraction: float = 0.25, seed=0) -> Dataset:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes) as NCHW images in ``[0, 1]``.

    The data ship with scikit-learn, so no download is needed. Pixel values (0..16) are divided
    by 16. The train/test split is stratified (each class split in the same proportion) and is a
    deterministic function of ``seed`` and ``test_fraction``.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which part to return; ``"all"`` returns the 1797 images in scikit-learn's order.
    test_fraction : float
        Fraction of each class held out for ``"test"``, in ``(0, 1)``.
    seed : int or numpy.random.Generator
        Randomness of the split.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 1, 8, 8)`` in ``[0, 1]``, ``y`` in ``0..9``, classes ``"0".."9"``.
    """
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    test_fraction = check_float(test_fraction, "test_fraction", minimum=0.0, maximum=1.0,
                                strict_min=True, strict_max=True)
    from sklearn.datasets import load_digits

    raw = load_digits()
    X = np.asarray(raw.data, dtype=np.float64).reshape(-1, 1, 8, 8) / 16.0
    y = np.asarray(raw.target, dtype=np.int64)
    classes = tuple(str(c) for c in range(10))
    if split == "all":
        return Dataset(X, y, classes, "digits")
    train_idx, test_idx = stratified_indices(y, test_fraction, seed)
    idx = train_idx if split == "train" else test_idx
    return Dataset(X[idx], y[idx], classes, f"digits-{split}")
