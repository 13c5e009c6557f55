"""Loaders for datasets a user already has on disk, in their original distribution formats.

- MNIST / Fashion-MNIST: the IDX files (``train-images-idx3-ubyte`` ...), raw or gzipped.
- CIFAR-10: the **binary version** (``cifar-10-batches-bin``: records of 1 label byte + 3072
  pixel bytes, channels-first).
- CIFAR-100: the **binary version** (``cifar-100-binary``: records of 1 coarse label byte, 1 fine
  label byte, 3072 pixel bytes).

Nothing is downloaded and nothing is ever unpickled (the "python version" archives of CIFAR are
pickles and are not read: a pickle can run code). Every format error raises ``ValueError`` naming
the file and what is wrong; a missing file raises ``FileNotFoundError`` naming the files looked
for and where.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .._validation import check_int
from .dataset import Dataset

__all__ = [
    "read_idx",
    "load_mnist",
    "load_cifar10",
    "load_cifar100",
    "default_fashion_mnist_root",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "CIFAR100_FINE_LABELS",
    "CIFAR100_COARSE_LABELS",
    "FASHION_MNIST_DEBIAN_ROOT",
]

MNIST_CLASSES = tuple(str(c) for c in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
CIFAR100_FINE_LABELS = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman",
    "worm")
CIFAR100_COARSE_LABELS = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")

#: Where Debian's ``dataset-fashion-mnist`` package installs the original gzipped IDX files.
FASHION_MNIST_DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")

# IDX type code -> (big-endian dtype of the data, name)
_IDX_TYPES = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short (int16)"),
    0x0C: (np.dtype(">i4"), "int (int32)"),
    0x0D: (np.dtype(">f4"), "float (float32)"),
    0x0E: (np.dtype(">f8"), "double (float64)"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_SPLITS = ("train", "test", "all")


# ---------------------------------------------------------------------------------- helpers
def _check_split(split, allowed=_SPLITS) -> str:
    if not isinstance(split, str) or split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
    return split


def _as_path(root, name: str = "root") -> Path:
    if root is None:
        raise ValueError(f"{name} must be a folder path, got None")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike folder path, got {type(root).__name__}")
    return Path(root).expanduser()


#: Bytes read from a stream at a time (so a header's promise is never allocated in advance).
_READ_CHUNK = 1 << 24


def _open_stream(path: Path):
    """The file as a binary stream, transparently gunzipped (detected by the gzip magic, not
    the name)."""
    fh = open(path, "rb")
    if fh.read(2) != _GZIP_MAGIC:
        fh.seek(0)
        return fh
    fh.seek(0)
    return gzip.GzipFile(fileobj=fh, mode="rb")


def _read_upto(stream, n: int, path: Path) -> bytes:
    """At most ``n`` bytes of ``stream`` (fewer at its end), read in bounded chunks; a corrupt
    gzip stream raises ``ValueError`` naming ``path``."""
    out = bytearray()
    try:
        while len(out) < n:
            chunk = stream.read(min(_READ_CHUNK, n - len(out)))
            if not chunk:
                break
            out += chunk
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from None
    return bytes(out)


def _check_limits(limit, max_per_class):
    if limit is not None:
        limit = check_int(limit, "limit", minimum=1)
    if max_per_class is not None:
        max_per_class = check_int(max_per_class, "max_per_class", minimum=1)
    return limit, max_per_class


def _select(labels: np.ndarray, limit, max_per_class) -> np.ndarray | None:
    """Deterministic subset: the first ``max_per_class`` of each class in file order, then the
    first ``limit`` of those. ``None`` means everything."""
    if limit is None and max_per_class is None:
        return None
    idx = np.arange(labels.shape[0])
    if max_per_class is not None:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
        rank = np.empty_like(idx)
        rank[order] = np.arange(labels.shape[0]) - starts
        idx = idx[rank < max_per_class]
    if limit is not None:
        idx = idx[:limit]
    return idx


def _read_names(path: Path, expected: int, fallback: tuple) -> tuple:
    """Class names from a text file with one name per line (blank lines ignored); the builtin
    ``fallback`` names when the file is absent."""
    if not path.is_file():
        return fallback
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: class-name file is not UTF-8 text") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != expected:
        raise ValueError(f"{path}: expected {expected} class names (one per line), "
                         f"found {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names are not distinct")
    return names


# ---------------------------------------------------------------------------------- IDX
def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Format: two zero bytes, one type byte (``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B``
    int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), one byte giving the number of
    dimensions ``ndim``, ``ndim`` big-endian uint32 sizes, then the data in C order, big-endian.
    Compression is detected from the gzip magic bytes, whatever the file's name.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    ndarray, shape given by the header
        Native byte order, dtype uint8, int8, int16, int32, float32 or float64 as in the file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the magic number or type code is wrong, or the data size does not match the header
        (truncated or padded file), naming the file.
    """
    path = _as_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    # Read no further than the header promises (plus one byte to detect trailing data): a gzip
    # bomb, or a file far longer than its header says, is refused after reading that much.
    stream = _open_stream(path)
    with stream:
        buf = _read_upto(stream, 4, path)
        if len(buf) < 4:
            raise ValueError(f"{path}: not an IDX file: only {len(buf)} byte(s), the header needs 4")
        if buf[0] != 0 or buf[1] != 0:
            raise ValueError(f"{path}: bad IDX magic number: first two bytes must be 0x00 0x00, got "
                             f"0x{buf[0]:02x} 0x{buf[1]:02x}")
        code, ndim = buf[2], buf[3]
        if code not in _IDX_TYPES:
            valid = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
            raise ValueError(f"{path}: bad IDX type code 0x{code:02X} (expected one of {valid})")
        header = 4 + 4 * ndim
        buf += _read_upto(stream, header - 4, path)
        if len(buf) < header:
            raise ValueError(f"{path}: truncated IDX header: {ndim} dimension(s) need {header} bytes, "
                             f"file has {len(buf)}")
        shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
        dtype, tname = _IDX_TYPES[code]
        expected = math.prod(shape) * dtype.itemsize      # Python ints: no overflow on absurd sizes
        gzipped = isinstance(stream, gzip.GzipFile)
        if not gzipped:
            found = os.fstat(stream.fileno()).st_size - header   # a plain file: its size says it
            data = b"" if found != expected else _read_upto(stream, expected, path)
        else:
            data = _read_upto(stream, expected + 1, path)
            found = len(data)
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        count = (f"more (decompressed; reading stopped there)" if gzipped and found > expected
                 else f"{found}")
        raise ValueError(f"{path}: IDX size mismatch ({what}): header says shape {shape} of "
                         f"{tname} = {expected} data bytes, file has {count}")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _find_file(folders, stems) -> Path | None:
    for folder in folders:
        for stem in stems:
            for candidate in (folder / stem, folder / (stem + ".gz")):
                if candidate.is_file():
                    return candidate
    return None


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_SUBDIRS = {"mnist": "MNIST", "fashion": "FashionMNIST"}


def _mnist_folders(root: Path, kind: str):
    # the folder itself, then the layouts torchvision uses (root/raw, root/MNIST/raw)
    return [root, root / "raw", root / _MNIST_SUBDIRS[kind] / "raw"]


def _load_mnist_part(root: Path, part: str, kind: str):
    folders = _mnist_folders(root, kind)
    stems = _MNIST_FILES[part]
    paths = [_find_file(folders, (stem, stem.replace("-idx", ".idx"))) for stem in stems]
    if any(p is None for p in paths):
        missing = [s for s, p in zip(stems, paths) if p is None]
        looked = ", ".join(f"{s} or {s}.gz" for s in missing)
        raise FileNotFoundError(f"{kind} {part} files not found: looked for {looked} in "
                                f"{', '.join(str(f) for f in folders)}")
    img_path, lab_path = paths
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{img_path}: expected unsigned-byte images of shape (n, H, W), got "
                         f"{images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected unsigned-byte labels of shape (n,), got "
                         f"{labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{lab_path} holds {labels.shape[0]} labels but {img_path} holds "
                         f"{images.shape[0]} images")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lab_path}: labels must be in 0..9, found {int(labels.max())}")
    return images, labels


def load_mnist(root, split: str = "train", kind: str = "mnist", *, limit: int | None = None,
               max_per_class: int | None = None) -> Dataset:
    """Load MNIST or Fashion-MNIST from the original IDX files in ``root``.

    Looks for ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (split ``"train"``) or
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (split ``"test"``), each raw or with
    ``.gz``, in ``root``, then in ``root/raw`` and ``root/MNIST/raw`` (``root/FashionMNIST/raw``),
    the layouts torchvision uses.

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding the files (for Fashion-MNIST on Debian, see
        :func:`default_fashion_mnist_root`).
    split : {"train", "test", "all"}
        ``"all"`` is train followed by test.
    kind : {"mnist", "fashion"}
        Decides the class names (digits, or Fashion-MNIST's ``"T-shirt/top"``, ``"Trouser"``, ...).
    limit : int, optional
        Keep only the first ``limit`` examples (after ``max_per_class``).
    max_per_class : int, optional
        Keep only the first ``max_per_class`` examples of each class, in file order.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 1, 28, 28)`` (the files' H, W) in ``[0, 1]`` (bytes / 255).
    """
    root = _as_path(root)
    split = _check_split(split)
    if kind not in _MNIST_SUBDIRS:
        raise ValueError(f"kind must be one of {tuple(_MNIST_SUBDIRS)}, got {kind!r}")
    limit, max_per_class = _check_limits(limit, max_per_class)
    parts = ("train", "test") if split == "all" else (split,)
    loaded = [_load_mnist_part(root, p, kind) for p in parts]
    if len({im.shape[1:] for im, _ in loaded}) != 1:
        raise ValueError(f"{root}: train and test images have different sizes")
    images = np.concatenate([im for im, _ in loaded])
    labels = np.concatenate([lab for _, lab in loaded])
    idx = _select(labels, limit, max_per_class)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    X = images.astype(np.float64)[:, None, :, :] / 255.0
    classes = FASHION_MNIST_CLASSES if kind == "fashion" else MNIST_CLASSES
    name = ("fashion_mnist" if kind == "fashion" else "mnist") + f"-{split}"
    return Dataset(X, labels.astype(np.int64), classes, name)


def default_fashion_mnist_root() -> Path | None:
    """The folder where Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST
    (``/usr/share/datasets/fashion-mnist``) if it exists, else ``None``."""
    return FASHION_MNIST_DEBIAN_ROOT if FASHION_MNIST_DEBIAN_ROOT.is_dir() else None


# ---------------------------------------------------------------------------------- CIFAR
_CIFAR_PIXELS = 3 * 32 * 32
_C100_RANGES = [(0, 20, "coarse label"), (1, 100, "fine label")]


def _read_records(path: Path, label_bytes: int, need: int | None = None) -> np.ndarray:
    """Records of ``label_bytes + 3072`` bytes from a CIFAR binary file, shape (m, record).
    With ``need``, only the first ``need`` records are read (the size check covers the file)."""
    record = label_bytes + _CIFAR_PIXELS
    size = path.stat().st_size
    if size == 0 or size % record != 0:
        raise ValueError(f"{path}: size {size} bytes is not a positive multiple of the "
                         f"{record}-byte record ({label_bytes} label byte(s) + {_CIFAR_PIXELS} "
                         "pixel bytes): truncated or not a CIFAR binary file")
    count = size // record if need is None else min(need, size // record)
    with open(path, "rb") as fh:
        buf = fh.read(count * record)
    if len(buf) != count * record:
        raise ValueError(f"{path}: could only read {len(buf)} of {count * record} bytes")
    return np.frombuffer(buf, dtype=np.uint8).reshape(count, record)


def _locate(root: Path, subdir: str, marker_files) -> Path:
    """``root`` if it holds any of ``marker_files``, else ``root/subdir`` if that does."""
    for folder in (root, root / subdir):
        if any((folder / m).is_file() for m in marker_files):
            return folder
    return root / subdir if (root / subdir).is_dir() else root


def _require(folder: Path, names, root: Path, subdir: str, what: str):
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        where = str(folder) if folder != root else f"{root} and {root / subdir}"
        raise FileNotFoundError(f"{what} files not found: looked for {', '.join(names)} in "
                                f"{where}; missing {', '.join(missing)}. gcref reads the binary "
                                "version (never the pickled python version)")
    return [folder / n for n in names]


def _load_cifar(files, label_bytes, label_col, label_ranges, limit, max_per_class, keep=None):
    """Records from CIFAR binary ``files``; ``label_ranges`` is ``[(column, count, what), ...]``
    for the label bytes, each checked to lie in ``0..count-1``. ``keep`` (bool per class) drops
    the other classes before any conversion to float."""
    # read lazily only when the first `limit` records are exactly what is wanted
    need = limit if (max_per_class is None and keep is None) else None
    chunks = []
    for path in files:
        rec = _read_records(path, label_bytes, need)
        for col, count, what in label_ranges:
            if rec.shape[0] and rec[:, col].max() >= count:
                raise ValueError(f"{path}: {what} byte {int(rec[:, col].max())} out of range "
                                 f"0..{count - 1}: not a valid record")
        chunks.append(rec)
        if need is not None:
            need -= rec.shape[0]
            if need <= 0:
                break
    rec = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    if keep is not None:
        rec = rec[keep[rec[:, label_col]]]
    labels = rec[:, label_col]
    idx = _select(labels, limit, max_per_class)
    if idx is not None:
        rec = rec[idx]
    X = rec[:, label_bytes:].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    return X, rec[:, label_col].astype(np.int64)


def load_cifar10(root, split: str = "train", *, limit: int | None = None,
                 max_per_class: int | None = None) -> Dataset:
    """Load CIFAR-10 from its binary version (``cifar-10-batches-bin``).

    Files: ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train, 50000 images) and
    ``test_batch.bin`` (test, 10000); each record is 1 label byte then 3072 pixel bytes (1024 red,
    1024 green, 1024 blue, rows of 32). Class names come from ``batches.meta.txt`` when present.

    Parameters
    ----------
    root : str or os.PathLike
        The ``cifar-10-batches-bin`` folder or its parent.
    split : {"train", "test", "all"}
        ``"all"`` is train followed by test.
    limit : int, optional
        Keep only the first ``limit`` examples (read lazily: only those bytes are read unless
        ``max_per_class`` is also given).
    max_per_class : int, optional
        Keep only the first ``max_per_class`` examples of each class, in file order.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 3, 32, 32)``, float64 in ``[0, 1]`` (bytes / 255). The full training
        set takes 1.2 GB as float64.
    """
    root = _as_path(root)
    split = _check_split(split)
    limit, max_per_class = _check_limits(limit, max_per_class)
    train_names = [f"data_batch_{i}.bin" for i in range(1, 6)]
    folder = _locate(root, "cifar-10-batches-bin", train_names + ["test_batch.bin"])
    names = {"train": train_names, "test": ["test_batch.bin"],
             "all": train_names + ["test_batch.bin"]}[split]
    files = _require(folder, names, root, "cifar-10-batches-bin", "CIFAR-10 binary")
    classes = _read_names(folder / "batches.meta.txt", 10, CIFAR10_CLASSES)
    X, y = _load_cifar(files, 1, 0, [(0, 10, "label")], limit, max_per_class)
    return Dataset(X, y, classes, f"cifar10-{split}")


def load_cifar100(root, split: str = "train", label: str = "fine", *, limit: int | None = None,
                  max_per_class: int | None = None) -> Dataset:
    """Load CIFAR-100 from its binary version (``cifar-100-binary``).

    Files: ``train.bin`` (50000 images) and ``test.bin`` (10000); each record is 1 coarse label
    byte, 1 fine label byte, then 3072 pixel bytes (channels-first, as CIFAR-10). Class names come
    from ``fine_label_names.txt`` / ``coarse_label_names.txt`` when present.

    Parameters
    ----------
    root : str or os.PathLike
        The ``cifar-100-binary`` folder or its parent.
    split : {"train", "test", "all"}
        ``"all"`` is train followed by test.
    label : {"fine", "coarse"}
        The 100 fine classes or the 20 superclasses.
    limit, max_per_class : int, optional
        Deterministic subset, as in :func:`load_cifar10`.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 3, 32, 32)``, float64 in ``[0, 1]``.
    """
    return _load_cifar100(root, split, label, limit, max_per_class)


def _load_cifar100(root, split, label, limit, max_per_class, keep_names=None) -> Dataset:
    """:func:`load_cifar100`; ``keep_names`` drops the examples of other classes early."""
    root = _as_path(root)
    split = _check_split(split)
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    limit, max_per_class = _check_limits(limit, max_per_class)
    folder = _locate(root, "cifar-100-binary", ["train.bin", "test.bin"])
    names = {"train": ["train.bin"], "test": ["test.bin"], "all": ["train.bin", "test.bin"]}[split]
    files = _require(folder, names, root, "cifar-100-binary", "CIFAR-100 binary")
    if label == "fine":
        classes = _read_names(folder / "fine_label_names.txt", 100, CIFAR100_FINE_LABELS)
        keep = None if keep_names is None else np.isin(np.array(classes), list(keep_names))
        X, y = _load_cifar(files, 2, 1, _C100_RANGES, limit, max_per_class, keep)
    else:
        classes = _read_names(folder / "coarse_label_names.txt", 20, CIFAR100_COARSE_LABELS)
        keep = None if keep_names is None else np.isin(np.array(classes), list(keep_names))
        X, y = _load_cifar(files, 2, 0, _C100_RANGES, limit, max_per_class, keep)
    return Dataset(X, y, classes, f"cifar100-{split}")
