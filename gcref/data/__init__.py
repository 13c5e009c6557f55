"""Datasets for gcref: synthetic laws with known Poincaré constants, procedural images, the
offline scikit-learn digits, an offline many-class character dataset (glyphs), and loaders for MNIST / Fashion-MNIST / CIFAR-10 / CIFAR-100 /
CIFAR-FS files a user has on disk (original formats, never unpickled).

Every loader returns a :class:`Dataset` (``X`` float64, NCHW images or ``(n, d)`` vectors; ``y``
int64; class names). :func:`load_dataset` reaches them all by name.
"""

from __future__ import annotations

import numbers

import numpy as np

from .dataset import Dataset, concat
from .digits import load_digits_dataset
from .glyphs import GLYPH_CLASSES, glyph_class_split, glyph_metadata, load_glyphs
from .files import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_LABELS,
    CIFAR100_FINE_LABELS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_ROOT,
    MNIST_CLASSES,
    default_fashion_mnist_root,
    load_cifar10,
    load_cifar100,
    load_mnist,
    read_idx,
)
from .splits import (
    CIFAR_FS_SIZES,
    cifar_fs_classes,
    class_split,
    load_cifar_fs,
    random_class_split,
    select_classes,
    stratified_indices,
    train_test_split,
)
from .synthetic import (
    GaussianMixture,
    UniformBoxes,
    gaussian_mixture,
    procedural_images,
    uniform_boxes,
)

__all__ = [
    "Dataset", "concat", "DATASETS", "load_dataset",
    "GaussianMixture", "UniformBoxes", "gaussian_mixture", "uniform_boxes", "procedural_images",
    "load_digits_dataset", "load_glyphs", "glyph_class_split", "glyph_metadata", "GLYPH_CLASSES",
    "read_idx", "load_mnist", "load_cifar10", "load_cifar100", "default_fashion_mnist_root",
    "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES", "CIFAR100_FINE_LABELS",
    "CIFAR100_COARSE_LABELS", "FASHION_MNIST_DEBIAN_ROOT",
    "stratified_indices", "train_test_split", "select_classes", "class_split",
    "random_class_split", "cifar_fs_classes", "load_cifar_fs", "CIFAR_FS_SIZES",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "gaussian_mixture", "procedural", "mnist", "fashion_mnist", "cifar10",
            "cifar100", "cifar_fs", "glyphs")

_FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "cifar_fs")


def _split_seed(seed, split: str, name: str):
    """The seed of a synthetic draw: ``seed`` for train, an independent stream for test."""
    if split == "train":
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int for split='test' of {name!r} (the test draw uses an "
                        f"independent stream derived from it), got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng([int(seed), 1])


def load_dataset(name: str, root=None, split: str = "train", **kw) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`:

        - ``"digits"``: scikit-learn's 8x8 digits, ``(n, 1, 8, 8)``; ``kw``: ``test_fraction``,
          ``seed`` (see :func:`load_digits_dataset`).
        - ``"glyphs"``: :func:`load_glyphs`, characters rendered from matplotlib's fonts
          (175 classes, ``(n, 1, 28, 28)``); ``kw``: ``part`` (``"all"``, ``"source"``,
          ``"val"``, ``"target"``), ``n_per_class``, ``size``, ``seed``, ``class_split``,
          ``class_seed``, ``cache_dir``.
        - ``"gaussian_mixture"``: :func:`gaussian_mixture` (defaults ``n_per_class=100``,
          ``num_classes=5``, ``dim=16``, ``seed=0``), ``(n, dim)``.
        - ``"procedural"``: :func:`procedural_images` (defaults ``n_per_class=100``, ``seed=0``).
        - ``"mnist"``, ``"fashion_mnist"``: :func:`load_mnist` (for Fashion-MNIST, ``root``
          defaults to :func:`default_fashion_mnist_root`).
        - ``"cifar10"``, ``"cifar100"``: :func:`load_cifar10`, :func:`load_cifar100`.
        - ``"cifar_fs"``: :func:`load_cifar_fs` (``kw``: ``part``, ``max_per_class``); pass
          ``split="all"`` for the CIFAR-FS convention of 600 images per class.
    root : str or os.PathLike, optional
        Folder of the files; required for the file datasets, ignored by the others.
    split : str
        ``"train"`` or ``"test"`` (file datasets and digits also take ``"all"``). For the
        synthetic datasets, ``"test"`` is a fresh draw from the same distribution, with a random
        stream derived from the int ``seed``, independent of the ``"train"`` draw.
    **kw
        Passed on to the loader.

    Returns
    -------
    Dataset
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; valid names are {', '.join(DATASETS)}")
    if name in _FILE_DATASETS:
        if root is None and name == "fashion_mnist":
            root = default_fashion_mnist_root()
            if root is None:
                raise FileNotFoundError(
                    "fashion_mnist: no root given and the Debian folder "
                    f"{FASHION_MNIST_DEBIAN_ROOT} does not exist; pass root= the folder holding "
                    "train-images-idx3-ubyte[.gz] etc. (or apt-get install dataset-fashion-mnist)")
        if root is None:
            raise ValueError(f"root is required for dataset {name!r}: pass the folder holding "
                             "its files (gcref downloads nothing)")
        if name == "mnist":
            return load_mnist(root, split, kind="mnist", **kw)
        if name == "fashion_mnist":
            return load_mnist(root, split, kind="fashion", **kw)
        if name == "cifar10":
            return load_cifar10(root, split, **kw)
        if name == "cifar100":
            return load_cifar100(root, split, **kw)
        return load_cifar_fs(root, split=split, **kw)
    if name == "digits":
        return load_digits_dataset(split=split, **kw)
    if name == "glyphs":
        return load_glyphs(split=split, **kw)
    if not isinstance(split, str) or split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for {name!r}, got {split!r}")
    seed = kw.pop("seed", 0)
    if name == "gaussian_mixture":
        opts = {"n_per_class": 100, "num_classes": 5, "dim": 16}
        opts.update(kw)
        gm = gaussian_mixture(seed=seed, **opts)
        if split == "train":
            return gm.dataset
        return gm.sample(opts["n_per_class"], _split_seed(seed, split, name),
                         name="gaussian_mixture-test")
    opts = {"n_per_class": 100}
    opts.update(kw)
    return procedural_images(seed=_split_seed(seed, split, name), **opts)
