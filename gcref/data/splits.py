"""Splits: stratified train/test, source/target class splits for transfer, and CIFAR-FS.

CIFAR-FS (Bertinetto et al., ICLR 2019) splits the 100 CIFAR-100 fine classes into 64 train
(source), 16 validation and 20 test (target) classes; the class lists ship with gcref as
``gcref/data/cifar_fs_split.json``.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from .._validation import as_generator, as_labels, check_float, check_int
from .dataset import Dataset

__all__ = [
    "stratified_indices",
    "train_test_split",
    "select_classes",
    "class_split",
    "random_class_split",
    "cifar_fs_classes",
    "load_cifar_fs",
    "CIFAR_FS_SIZES",
]

#: Number of classes in each CIFAR-FS part.
CIFAR_FS_SIZES = {"train": 64, "val": 16, "test": 20}


def stratified_indices(y, test_fraction: float, seed) -> tuple:
    """Stratified random split of example indices.

    Each class with ``n_c >= 2`` examples puts ``round(test_fraction * n_c)`` of them, clipped to
    ``1 .. n_c - 1``, in the test part (a class with a single example stays in train).

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Labels.
    test_fraction : float
        Fraction of each class held out, in ``(0, 1)``.
    seed : int or numpy.random.Generator
        Randomness of the split.

    Returns
    -------
    train_idx, test_idx : ndarray of int64
        Disjoint sorted index arrays covering ``0 .. n - 1``.
    """
    y = as_labels(y, "y")
    test_fraction = check_float(test_fraction, "test_fraction", minimum=0.0, maximum=1.0,
                                strict_min=True, strict_max=True)
    rng = as_generator(seed)
    test = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_c = idx.shape[0]
        n_test = 0 if n_c < 2 else min(max(int(round(test_fraction * n_c)), 1), n_c - 1)
        test.append(idx[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    mask = np.ones(y.shape[0], dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx.astype(np.int64)


def _check_dataset(dataset):
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a gcref.data.Dataset, got {type(dataset).__name__}")


def train_test_split(dataset: Dataset, test_fraction: float = 0.25, seed=0) -> tuple:
    """Stratified random train/test split of a dataset (see :func:`stratified_indices`).

    Parameters
    ----------
    dataset : Dataset
        ``n`` examples.
    test_fraction : float
        Fraction of each class held out, in ``(0, 1)``.
    seed : int or numpy.random.Generator
        Randomness of the split.

    Returns
    -------
    train, test : Dataset
        Disjoint, together all ``n`` examples, original order within each part, same classes.
    """
    _check_dataset(dataset)
    tr, te = stratified_indices(dataset.y, test_fraction, seed)
    return (dataset.subset(tr, name=f"{dataset.name}-train"),
            dataset.subset(te, name=f"{dataset.name}-test"))


def _class_indices(dataset: Dataset, classes, name: str) -> list:
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError(f"{name} must be a sequence of class indices or class names, "
                        f"got {classes!r}")
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in dataset.classes:
                raise ValueError(f"{name}: unknown class name {c!r}; the dataset's classes are "
                                 f"{list(dataset.classes)}")
            out.append(dataset.classes.index(c))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            if not 0 <= int(c) < dataset.num_classes:
                raise ValueError(f"{name}: class index {int(c)} out of range "
                                 f"0..{dataset.num_classes - 1}")
            out.append(int(c))
        else:
            raise TypeError(f"{name} must hold class indices (int) or class names (str), got {c!r}")
    if not out:
        raise ValueError(f"{name} must name at least one class, got none")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} names a class more than once: {list(classes)}")
    return out


def select_classes(dataset: Dataset, classes, name: str | None = None) -> Dataset:
    """Keep the examples of the given classes and relabel them ``0 .. m-1`` in the order given.

    Parameters
    ----------
    dataset : Dataset
        Source of the examples.
    classes : sequence of int or str, length m
        Class indices or names of ``dataset``, distinct.
    name : str, optional
        Name of the result (default: the dataset's name).

    Returns
    -------
    Dataset
        The examples whose class is listed (original order); label ``j`` is ``classes[j]``, and
        ``classes`` of the result are the corresponding names.
    """
    _check_dataset(dataset)
    idx = _class_indices(dataset, classes, "classes")
    remap = np.full(dataset.num_classes, -1, dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    keep = np.flatnonzero(remap[dataset.y] >= 0)
    return Dataset(dataset.X[keep], remap[dataset.y[keep]],
                   tuple(dataset.classes[i] for i in idx),
                   dataset.name if name is None else name)


def class_split(dataset: Dataset, source_classes, target_classes) -> tuple:
    """Split a dataset by class into source and target datasets (transfer learning).

    Parameters
    ----------
    dataset : Dataset
        All examples.
    source_classes, target_classes : sequence of int or str
        Disjoint, non-empty lists of class indices or names.

    Returns
    -------
    source, target : Dataset
        Each relabelled ``0 .. k-1`` in the order its classes were listed
        (see :func:`select_classes`).
    """
    _check_dataset(dataset)
    src = _class_indices(dataset, source_classes, "source_classes")
    tgt = _class_indices(dataset, target_classes, "target_classes")
    common = sorted(set(src) & set(tgt))
    if common:
        raise ValueError("source_classes and target_classes must be disjoint, both hold "
                         f"{[dataset.classes[i] for i in common]}")
    return (select_classes(dataset, src, name=f"{dataset.name}-source"),
            select_classes(dataset, tgt, name=f"{dataset.name}-target"))


def random_class_split(dataset: Dataset, num_source: int, seed=0) -> tuple:
    """Split the classes at random: ``num_source`` source classes, the rest target.

    Parameters
    ----------
    dataset : Dataset
        ``k`` classes.
    num_source : int
        Number of source classes, in ``1 .. k-1``.
    seed : int or numpy.random.Generator
        Randomness of the class choice.

    Returns
    -------
    source, target : Dataset
        As :func:`class_split`; within each, classes keep their original relative order.
    """
    _check_dataset(dataset)
    k = dataset.num_classes
    if k < 2:
        raise ValueError(f"dataset must have at least 2 classes to split, has {k}")
    num_source = check_int(num_source, "num_source", minimum=1, maximum=k - 1)
    perm = as_generator(seed).permutation(k)
    src = sorted(int(c) for c in perm[:num_source])
    tgt = sorted(int(c) for c in perm[num_source:])
    return class_split(dataset, src, tgt)


def _split_file():
    return resources.files("gcref.data").joinpath("cifar_fs_split.json")


def cifar_fs_classes() -> dict:
    """The CIFAR-FS class lists: 64 train, 16 val and 20 test CIFAR-100 fine class names.

    The lists are read from the packaged ``cifar_fs_split.json`` and checked: the right sizes,
    pairwise disjoint, and every name a CIFAR-100 fine label.

    Returns
    -------
    dict
        ``{"train": [...64 names], "val": [...16], "test": [...20]}`` (fresh lists).
    """
    from .files import CIFAR100_FINE_LABELS

    src = _split_file()
    data = json.loads(src.read_text(encoding="utf-8"))
    fine = data.get("cifar100_fine_labels")
    if fine is not None and tuple(fine) != CIFAR100_FINE_LABELS:
        raise ValueError(f"{src}: cifar100_fine_labels differ from CIFAR-100's fine label names")
    out = {}
    for part, size in CIFAR_FS_SIZES.items():
        names = data.get(part)
        if not isinstance(names, list) or len(names) != size or len(set(names)) != size:
            raise ValueError(f"{src}: {part!r} must list {size} distinct class names")
        unknown = [c for c in names if c not in CIFAR100_FINE_LABELS]
        if unknown:
            raise ValueError(f"{src}: {part!r} holds names that are not CIFAR-100 fine labels: "
                             f"{unknown}")
        out[part] = list(names)
    parts = list(out)
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            both = sorted(set(out[a]) & set(out[b]))
            if both:
                raise ValueError(f"{src}: parts {a!r} and {b!r} share classes {both}")
    return out


def load_cifar_fs(root, part: str = "train", split: str = "all", *,
                  max_per_class: int | None = None) -> Dataset:
    """Load one part of CIFAR-FS from the CIFAR-100 binary files.

    Parameters
    ----------
    root : str or os.PathLike
        The ``cifar-100-binary`` folder or its parent (see :func:`~gcref.data.load_cifar100`).
    part : {"train", "val", "test"}
        The 64 source (train), 16 validation or 20 target (test) classes.
    split : {"train", "test", "all"}
        Which CIFAR-100 images of those classes: ``"all"`` (the CIFAR-FS convention: 600 images
        per class, CIFAR-100 train then test), or only CIFAR-100's ``"train"`` (500 per class) or
        ``"test"`` (100 per class) images.
    max_per_class : int, optional
        Keep only the first ``max_per_class`` examples of each class, in file order.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 3, 32, 32)`` in ``[0, 1]``; labels ``0 .. K-1`` in the order of the
        part's class list (``classes`` holds that list).
    """
    if not isinstance(part, str) or part not in CIFAR_FS_SIZES:
        raise ValueError(f"part must be one of {tuple(CIFAR_FS_SIZES)}, got {part!r}")
    from .files import _load_cifar100

    names = cifar_fs_classes()[part]
    full = _load_cifar100(root, split, "fine", None, max_per_class, keep_names=names)
    return select_classes(full, names, name=f"cifar_fs_{part}-{split}")
