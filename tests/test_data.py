"""Tests for gcref.data: formats written byte by byte, laws checked against their declared values."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

import gcref.data as D
from gcref.data import Dataset

SHARED_SPLIT = Path("/work/shared/data/cifar-fs-split.json")


# ------------------------------------------------------------------------------ writers
def write_idx(path: Path, arr: np.ndarray, code: int, *, gz: bool = False) -> Path:
    """Write ``arr`` in IDX format exactly as the spec says (big-endian header and data)."""
    be = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    payload = (bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
               + np.ascontiguousarray(arr).astype(be).tobytes())
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_mnist(folder: Path, part: str, n: int, seed: int, *, gz_images=True, gz_labels=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    prefix = "train" if part == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, 0x08, gz=gz_images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, 0x08, gz=gz_labels)
    return images, labels


def cifar_records(labels, seed, label_cols=1):
    """Records: ``label_cols`` label bytes then 3072 pixel bytes; ``labels`` shape (m, label_cols)."""
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, label_cols)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(labels.shape[0], 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1)


def write_cifar10(root: Path, per_batch: int = 4):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    batches = []
    for b in range(1, 6):
        rec = cifar_records((np.arange(per_batch) + b) % 10, seed=b)
        (folder / f"data_batch_{b}.bin").write_bytes(rec.tobytes())
        batches.append(rec)
    test = cifar_records(np.arange(per_batch) % 10, seed=99)
    (folder / "test_batch.bin").write_bytes(test.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(D.CIFAR10_CLASSES) + "\n\n")
    return folder, np.concatenate(batches), test


def expected_images(rec, label_bytes):
    return rec[:, label_bytes:].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0


# ------------------------------------------------------------------------------ Dataset
class TestDataset:
    def make(self):
        X = np.arange(6 * 2 * 3 * 3).reshape(6, 2, 3, 3)
        return Dataset(X, [0, 1, 2, 0, 1, 2], ("a", "b", "c"), "toy")

    def test_fields_and_helpers(self):
        ds = self.make()
        assert ds.X.dtype == np.float64 and ds.y.dtype == np.int64
        assert ds.n == len(ds) == 6
        assert ds.input_shape == (2, 3, 3) and ds.input_dim == 18
        assert ds.num_classes == 3
        np.testing.assert_array_equal(ds.class_counts(), [2, 2, 2])
        np.testing.assert_array_equal(ds.flat(), ds.X.reshape(6, 18))
        with pytest.raises(dataclasses.FrozenInstanceError):
            ds.name = "other"

    def test_subset_mask_and_indices(self):
        ds = self.make()
        sub = ds.subset(ds.y == 1)
        np.testing.assert_array_equal(sub.X, ds.X[[1, 4]])
        np.testing.assert_array_equal(sub.y, [1, 1])
        assert sub.classes == ds.classes
        sub2 = ds.subset([5, 0])
        np.testing.assert_array_equal(sub2.y, [2, 0])
        np.testing.assert_array_equal(sub2.X, ds.X[[5, 0]])
        assert ds.subset([]).n == 0
        with pytest.raises(ValueError, match="index"):
            ds.subset(np.ones(3, dtype=bool))
        with pytest.raises(ValueError, match="index"):
            ds.subset([6])
        with pytest.raises(TypeError, match="index"):
            ds.subset([0.5])

    def test_validation(self):
        with pytest.raises(ValueError, match="y"):
            Dataset(np.zeros((3, 2)), [0, 1, 2], ("a", "b"))
        with pytest.raises(ValueError, match="y has 2 labels"):
            Dataset(np.zeros((3, 2)), [0, 1], ("a", "b"))
        with pytest.raises(ValueError, match="X"):
            Dataset(np.zeros(3), [0, 1, 0], ("a", "b"))
        with pytest.raises(ValueError, match="X"):
            Dataset(np.array([[np.nan, 0.0]]), [0], ("a",))
        with pytest.raises(ValueError, match="duplicates"):
            Dataset(np.zeros((2, 2)), [0, 1], ("a", "a"))
        with pytest.raises(TypeError, match="classes"):
            Dataset(np.zeros((2, 2)), [0, 0], "ab")

    def test_concat(self):
        ds = self.make()
        both = D.concat([ds.subset([0, 1]), ds.subset([2])])
        np.testing.assert_array_equal(both.X, ds.X[:3])
        np.testing.assert_array_equal(both.y, ds.y[:3])
        other = Dataset(np.zeros((1, 2, 3, 3)), [0], ("x", "y", "z"))
        with pytest.raises(ValueError, match="class names"):
            D.concat([ds, other])


# ------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                        (0x0C, np.int32), (0x0D, np.float32),
                                        (0x0E, np.float64)])
def test_read_idx_roundtrip(tmp_path, code, dtype, gz):
    rng = np.random.default_rng(code)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    else:
        arr = rng.standard_normal((3, 4, 5)).astype(dtype)
    path = write_idx(tmp_path / "arr-idx3", arr, code, gz=gz)
    out = D.read_idx(path)
    assert out.dtype == dtype and out.dtype.isnative
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_detected_by_content(tmp_path):
    arr = np.arange(7, dtype=np.uint8)
    payload = bytes([0, 0, 8, 1]) + struct.pack(">I", 7) + arr.tobytes()
    p = tmp_path / "no-gz-suffix"
    p.write_bytes(gzip.compress(payload))
    np.testing.assert_array_equal(D.read_idx(p), arr)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_truncated_and_padded(tmp_path, gz):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 4) + arr.tobytes()
    for name, data, what in [("short", payload[:-1], "truncated"),
                             ("long", payload + b"\x00", "trailing")]:
        p = tmp_path / name
        p.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(ValueError, match=f"{name}.*size mismatch.*{what}"):
            D.read_idx(p)


def test_read_idx_bad_headers(tmp_path):
    cases = {
        "magic": (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic"),
        "code": (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x07"),
        "tiny": (b"\x00\x00", "only 2 byte"),
        "header": (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / f"file-{name}"
        p.write_bytes(data)
        with pytest.raises(ValueError, match=f"file-{name}.*{msg}"):
            D.read_idx(p)


def test_read_idx_corrupt_gzip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8)
    payload = bytes([0, 0, 8, 1]) + struct.pack(">I", arr.size) + arr.tobytes()
    p = tmp_path / "broken.gz"
    p.write_bytes(gzip.compress(payload)[:-40])
    with pytest.raises(ValueError, match="broken.gz.*gzip"):
        D.read_idx(p)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        D.read_idx(tmp_path / "nothing-here")


# ------------------------------------------------------------------------------ MNIST
def test_load_mnist_values(tmp_path):
    tr_img, tr_lab = write_mnist(tmp_path, "train", 23, seed=1, gz_images=True, gz_labels=False)
    te_img, te_lab = write_mnist(tmp_path, "test", 11, seed=2, gz_images=False, gz_labels=True)
    tr = D.load_mnist(tmp_path, "train")
    assert tr.X.shape == (23, 1, 28, 28) and tr.X.dtype == np.float64
    np.testing.assert_array_equal(tr.X[:, 0], tr_img / 255.0)
    np.testing.assert_array_equal(tr.y, tr_lab)
    assert tr.classes == tuple("0123456789")
    te = D.load_mnist(str(tmp_path), "test", kind="fashion")
    np.testing.assert_array_equal(te.X[:, 0], te_img / 255.0)
    np.testing.assert_array_equal(te.y, te_lab)
    assert te.classes[0] == "T-shirt/top" and te.classes[9] == "Ankle boot"
    assert te.classes == D.FASHION_MNIST_CLASSES
    both = D.load_mnist(tmp_path, "all")
    np.testing.assert_array_equal(both.y, np.concatenate([tr_lab, te_lab]))
    assert 0.0 <= both.X.min() and both.X.max() <= 1.0


def test_load_mnist_subsets_are_deterministic(tmp_path):
    img, lab = write_mnist(tmp_path, "train", 40, seed=3)
    first = D.load_mnist(tmp_path, limit=7)
    np.testing.assert_array_equal(first.y, lab[:7])
    np.testing.assert_array_equal(first.X[:, 0], img[:7] / 255.0)
    per = D.load_mnist(tmp_path, max_per_class=2)
    want = [i for i in range(40) if np.sum(lab[:i] == lab[i]) < 2]
    np.testing.assert_array_equal(per.y, lab[want])
    np.testing.assert_array_equal(per.X[:, 0], img[want] / 255.0)
    np.testing.assert_array_equal(per.class_counts(), np.full(10, 2))
    with pytest.raises(ValueError, match="limit"):
        D.load_mnist(tmp_path, limit=0)


def test_load_mnist_torchvision_layout(tmp_path):
    img, lab = write_mnist(tmp_path / "MNIST" / "raw", "test", 5, seed=4, gz_images=False)
    ds = D.load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(ds.y, lab)


def test_load_mnist_missing_files_lists_names(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        D.load_mnist(tmp_path, "train")
    msg = str(err.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", ".gz", str(tmp_path)):
        assert name in msg
    write_mnist(tmp_path, "train", 5, seed=0)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        D.load_mnist(tmp_path, "test")


def test_load_mnist_inconsistent_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), 0x08)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), 0x08)
    with pytest.raises(ValueError, match="3 labels.*4 images"):
        D.load_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(4, 10, np.uint8), 0x08)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*0..9"):
        D.load_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        D.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        D.load_mnist(tmp_path, kind="kmnist")
    with pytest.raises(ValueError, match="split"):
        D.load_mnist(tmp_path, split="val")


_DEBIAN = D.FASHION_MNIST_DEBIAN_ROOT


@pytest.mark.skipif(not _DEBIAN.is_dir(),
                    reason=f"real Fashion-MNIST not installed ({_DEBIAN} absent; "
                           "apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_debian():
    assert D.default_fashion_mnist_root() == _DEBIAN
    te = D.load_dataset("fashion_mnist", split="test")
    assert te.X.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(te.class_counts(), np.full(10, 1000))
    assert te.X.min() == 0.0 and te.X.max() == 1.0
    tr = D.load_mnist(_DEBIAN, "train", kind="fashion", limit=10)
    # the published first training labels: Ankle boot, T-shirt/top, T-shirt/top, Dress, ...
    np.testing.assert_array_equal(tr.y, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    assert tr.classes[tr.y[0]] == "Ankle boot"


# ------------------------------------------------------------------------------ CIFAR-10
def test_load_cifar10_values_and_layout(tmp_path):
    folder, train_rec, test_rec = write_cifar10(tmp_path)
    for root in (tmp_path, folder):
        tr = D.load_cifar10(root, "train")
        assert tr.X.shape == (20, 3, 32, 32) and tr.X.dtype == np.float64
        np.testing.assert_array_equal(tr.X, expected_images(train_rec, 1))
        np.testing.assert_array_equal(tr.y, train_rec[:, 0])
    # channel-first: bytes 1..1024 are the red plane in row-major order
    assert tr.X[0, 0, 0, 1] == train_rec[0, 2] / 255.0
    assert tr.X[0, 1, 0, 0] == train_rec[0, 1 + 1024] / 255.0
    assert tr.X[0, 2, 31, 31] == train_rec[0, 3072] / 255.0
    te = D.load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(te.X, expected_images(test_rec, 1))
    np.testing.assert_array_equal(te.y, test_rec[:, 0])
    assert te.classes == D.CIFAR10_CLASSES
    allds = D.load_cifar10(tmp_path, "all")
    np.testing.assert_array_equal(allds.y, np.concatenate([train_rec[:, 0], test_rec[:, 0]]))


def test_load_cifar10_subsets(tmp_path):
    _, train_rec, _ = write_cifar10(tmp_path)
    lim = D.load_cifar10(tmp_path, limit=6)   # crosses from data_batch_1 into data_batch_2
    np.testing.assert_array_equal(lim.X, expected_images(train_rec[:6], 1))
    per = D.load_cifar10(tmp_path, max_per_class=1)
    labels = train_rec[:, 0]
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    np.testing.assert_array_equal(per.y, labels[sorted(first)])
    np.testing.assert_array_equal(per.X, expected_images(train_rec[sorted(first)], 1))


def test_load_cifar10_bad_files(tmp_path):
    folder, _, _ = write_cifar10(tmp_path)
    meta = folder / "batches.meta.txt"
    meta.unlink()
    assert D.load_cifar10(tmp_path, "test").classes == D.CIFAR10_CLASSES   # builtin names
    meta.write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="batches.meta.txt.*10 class names"):
        D.load_cifar10(tmp_path, "test")
    meta.unlink()
    p = folder / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match="data_batch_3.bin.*multiple of the 3073-byte record"):
        D.load_cifar10(tmp_path, "train")
    (folder / "test_batch.bin").write_bytes(cifar_records([10], seed=0).tobytes())
    with pytest.raises(ValueError, match="test_batch.bin.*label byte 10"):
        D.load_cifar10(tmp_path, "test")
    (folder / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        D.load_cifar10(tmp_path, "test")
    with pytest.raises(FileNotFoundError) as err:
        D.load_cifar10(tmp_path / "empty", "train")
    for i in range(1, 6):
        assert f"data_batch_{i}.bin" in str(err.value)
    assert "cifar-10-batches-bin" in str(err.value)


# ------------------------------------------------------------------------------ CIFAR-100
def write_cifar100(root: Path, fine_per_class: int = 1, test_n: int = 7, names=True):
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    fine = np.repeat(np.arange(100), fine_per_class)
    coarse = fine % 20
    train = cifar_records(np.stack([coarse, fine], 1), seed=5, label_cols=2)
    (folder / "train.bin").write_bytes(train.tobytes())
    tfine = np.arange(test_n) * 7 % 100
    test = cifar_records(np.stack([tfine % 20, tfine], 1), seed=6, label_cols=2)
    (folder / "test.bin").write_bytes(test.tobytes())
    if names:
        (folder / "fine_label_names.txt").write_text("\n".join(D.CIFAR100_FINE_LABELS) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(D.CIFAR100_COARSE_LABELS))
    return folder, train, test


def test_load_cifar100_fine_and_coarse(tmp_path):
    folder, train, test = write_cifar100(tmp_path)
    fine = D.load_cifar100(tmp_path, "train")
    assert fine.X.shape == (100, 3, 32, 32) and fine.num_classes == 100
    np.testing.assert_array_equal(fine.X, expected_images(train, 2))
    np.testing.assert_array_equal(fine.y, train[:, 1])
    assert fine.classes == D.CIFAR100_FINE_LABELS
    coarse = D.load_cifar100(folder, "test", label="coarse")
    np.testing.assert_array_equal(coarse.y, test[:, 0])
    np.testing.assert_array_equal(coarse.X, expected_images(test, 2))
    assert coarse.classes == D.CIFAR100_COARSE_LABELS and coarse.num_classes == 20
    lim = D.load_cifar100(tmp_path, "train", limit=3)
    np.testing.assert_array_equal(lim.y, [0, 1, 2])
    with pytest.raises(ValueError, match="label"):
        D.load_cifar100(tmp_path, label="medium")


def test_load_cifar100_bad_files(tmp_path):
    folder, train, _ = write_cifar100(tmp_path, names=False)
    assert D.load_cifar100(tmp_path, "test").classes == D.CIFAR100_FINE_LABELS
    (folder / "test.bin").write_bytes(b"\x00" * 3073)   # a CIFAR-10-sized record
    with pytest.raises(ValueError, match="test.bin.*3074-byte record"):
        D.load_cifar100(tmp_path, "test")
    bad = train.copy()
    bad[3, 0] = 20
    (folder / "train.bin").write_bytes(bad.tobytes())
    with pytest.raises(ValueError, match="train.bin.*coarse label byte 20"):
        D.load_cifar100(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="train.bin"):
        D.load_cifar100(tmp_path / "nowhere", "train")


# ------------------------------------------------------------------------------ CIFAR-FS
def test_cifar_fs_classes():
    parts = D.cifar_fs_classes()
    assert {k: len(v) for k, v in parts.items()} == {"train": 64, "val": 16, "test": 20}
    sets = {k: set(v) for k, v in parts.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
    assert not (sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(D.CIFAR100_FINE_LABELS)
    parts["train"].append("x")   # fresh lists each call
    assert len(D.cifar_fs_classes()["train"]) == 64


@pytest.mark.skipif(not SHARED_SPLIT.is_file(), reason="shared split file not present")
def test_packaged_split_matches_shared_copy():
    packaged = Path(D.__file__).with_name("cifar_fs_split.json")
    assert json.loads(packaged.read_text()) == json.loads(SHARED_SPLIT.read_text())


def test_load_cifar_fs_relabels_in_list_order(tmp_path):
    _, train, test = write_cifar100(tmp_path, fine_per_class=2)
    names = D.cifar_fs_classes()["test"]
    ds = D.load_cifar_fs(tmp_path, part="test", split="train")
    assert ds.classes == tuple(names) and ds.num_classes == 20
    np.testing.assert_array_equal(ds.class_counts(), np.full(20, 2))
    for j, name in enumerate(names):
        fine = D.CIFAR100_FINE_LABELS.index(name)
        np.testing.assert_array_equal(ds.X[ds.y == j], expected_images(train[train[:, 1] == fine], 2))
    one = D.load_cifar_fs(tmp_path, part="val", split="train", max_per_class=1)
    np.testing.assert_array_equal(one.class_counts(), np.ones(16))
    both = D.load_cifar_fs(tmp_path, part="train", split="all")
    kept = [c for c in test[:, 1] if D.CIFAR100_FINE_LABELS[c] in D.cifar_fs_classes()["train"]]
    assert both.n == 64 * 2 + len(kept)
    with pytest.raises(ValueError, match="part"):
        D.load_cifar_fs(tmp_path, part="source")


# ------------------------------------------------------------------------------ splits
def toy(n_per=(6, 4, 5), dim=3):
    y = np.concatenate([np.full(m, c) for c, m in enumerate(n_per)])
    X = np.arange(y.size * dim, dtype=float).reshape(y.size, dim)
    return Dataset(X, y, tuple(f"c{c}" for c in range(len(n_per))), "toy")


def test_class_split_remaps_labels():
    ds = toy()
    src, tgt = D.class_split(ds, ["c2", "c0"], [1])
    assert src.classes == ("c2", "c0") and tgt.classes == ("c1",)
    np.testing.assert_array_equal(src.y, [1] * 6 + [0] * 5)
    np.testing.assert_array_equal(src.X, ds.X[(ds.y == 0) | (ds.y == 2)])
    np.testing.assert_array_equal(tgt.y, np.zeros(4))
    np.testing.assert_array_equal(tgt.X, ds.X[ds.y == 1])
    with pytest.raises(ValueError, match="disjoint.*c0"):
        D.class_split(ds, [0, 1], ["c0"])
    with pytest.raises(ValueError, match="unknown class name 'c9'"):
        D.class_split(ds, ["c9"], [1])
    with pytest.raises(ValueError, match="out of range"):
        D.class_split(ds, [3], [1])
    with pytest.raises(ValueError, match="at least one"):
        D.class_split(ds, [], [1])


def test_random_class_split_reproducible():
    ds = toy(n_per=(3,) * 8)
    a_src, a_tgt = D.random_class_split(ds, 5, seed=7)
    b_src, b_tgt = D.random_class_split(ds, 5, seed=np.random.default_rng(7))
    assert a_src.classes == b_src.classes and a_tgt.classes == b_tgt.classes
    assert a_src.num_classes == 5 and a_tgt.num_classes == 3
    assert set(a_src.classes) | set(a_tgt.classes) == set(ds.classes)
    assert not set(a_src.classes) & set(a_tgt.classes)
    np.testing.assert_array_equal(a_src.class_counts(), np.full(5, 3))
    others = {D.random_class_split(ds, 5, seed=s)[0].classes for s in range(10)}
    assert len(others) > 1
    with pytest.raises(ValueError, match="num_source"):
        D.random_class_split(ds, 8, seed=0)
    with pytest.raises(TypeError, match="seed"):
        D.random_class_split(ds, 2, seed=None)


def test_train_test_split_stratified():
    ds = toy(n_per=(40, 20, 8))
    tr, te = D.train_test_split(ds, 0.25, seed=3)
    np.testing.assert_array_equal(te.class_counts(), [10, 5, 2])
    np.testing.assert_array_equal(tr.class_counts(), [30, 15, 6])
    rows = {tuple(r) for r in tr.X} | {tuple(r) for r in te.X}
    assert len(rows) == ds.n and tr.n + te.n == ds.n
    tr2, te2 = D.train_test_split(ds, 0.25, seed=3)
    np.testing.assert_array_equal(te.X, te2.X)
    _, te3 = D.train_test_split(ds, 0.25, seed=4)
    assert not np.array_equal(te.X, te3.X)
    with pytest.raises(ValueError, match="test_fraction"):
        D.train_test_split(ds, 1.0, seed=0)


# ------------------------------------------------------------------------------ digits
def test_digits_split():
    full = D.load_digits_dataset("all")
    assert full.X.shape == (1797, 1, 8, 8) and full.X.dtype == np.float64
    assert full.X.min() == 0.0 and full.X.max() == 1.0
    tr = D.load_digits_dataset("train", seed=1)
    te = D.load_digits_dataset("test", seed=1)
    tr_idx, te_idx = D.stratified_indices(full.y, 0.25, seed=1)
    assert not set(tr_idx) & set(te_idx) and len(tr_idx) + len(te_idx) == 1797
    np.testing.assert_array_equal(tr.X, full.X[tr_idx])
    np.testing.assert_array_equal(te.y, full.y[te_idx])
    counts = full.class_counts()
    np.testing.assert_array_equal(te.class_counts(), np.round(0.25 * counts).astype(int))
    np.testing.assert_array_equal(tr.class_counts() + te.class_counts(), counts)
    assert tr.classes == tuple("0123456789")
    assert not np.array_equal(D.load_digits_dataset("test", seed=2).X, te.X)
    with pytest.raises(ValueError, match="split"):
        D.load_digits_dataset("validation")


# ------------------------------------------------------------------------------ synthetic
def test_gaussian_mixture_law():
    n = 4000
    gm = D.gaussian_mixture(n, 3, 5, separation=4.0, scale=1.5, anisotropy=4.0, seed=11)
    ds = gm.dataset
    assert ds.X.shape == (3 * n, 5) and gm.means.shape == (3, 5) and gm.covs.shape == (3, 5, 5)
    np.testing.assert_array_equal(ds.class_counts(), [n] * 3)
    for c in range(3):
        Xc = ds.X[ds.y == c]
        cov = gm.covs[c]
        var = np.diag(cov)
        assert np.all(var >= 1.5 ** 2 / 4 - 1e-12) and np.all(var <= 1.5 ** 2 + 1e-12)
        np.testing.assert_array_equal(cov, np.diag(var))
        se_mean = np.sqrt(var / n)
        assert np.all(np.abs(Xc.mean(0) - gm.means[c]) < 5 * se_mean)
        emp = np.cov(Xc, rowvar=False)
        se_cov = np.sqrt((np.outer(var, var) + np.diag(var ** 2)) / n)
        assert np.all(np.abs(emp - cov) < 5 * se_cov)
        assert gm.poincare[c] == pytest.approx(np.linalg.eigvalsh(cov).max(), rel=1e-12)
    dists = np.linalg.norm(gm.means[:, None] - gm.means[None], axis=-1)
    np.testing.assert_allclose(dists[~np.eye(3, dtype=bool)], 4.0 * 1.5, rtol=1e-12)


def test_gaussian_mixture_seeds_and_args():
    a = D.gaussian_mixture(10, 4, 2, seed=3)   # dim < num_classes: i.i.d. means
    b = D.gaussian_mixture(10, 4, 2, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.dataset.X, b.dataset.X)
    np.testing.assert_array_equal(a.means, b.means)
    assert not np.array_equal(a.dataset.X, D.gaussian_mixture(10, 4, 2, seed=4).dataset.X)
    np.testing.assert_array_equal(a.poincare, np.ones(4))   # isotropic, scale 1
    fresh = a.sample(50, seed=1)
    assert fresh.n == 200 and fresh.classes == a.dataset.classes
    with pytest.raises(ValueError, match="n_per_class"):
        D.gaussian_mixture(0, 2, 2, seed=0)
    with pytest.raises(ValueError, match="anisotropy"):
        D.gaussian_mixture(5, 2, 2, anisotropy=0.5, seed=0)
    with pytest.raises(ValueError, match="scale"):
        D.gaussian_mixture(5, 2, 2, scale=0.0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        D.gaussian_mixture(5, 2, 2, seed=None)
    with pytest.raises(TypeError, match="dim"):
        D.gaussian_mixture(5, 2, 2.0, seed=0)


def test_uniform_boxes_law():
    n = 3000
    ub = D.uniform_boxes(n, 4, 5, width=2.0, separation=3.0, anisotropy=3.0, seed=5)
    ds = ub.dataset
    sides = ub.highs - ub.lows
    assert np.all(sides >= 2.0 / 3 - 1e-12) and np.all(sides <= 2.0 + 1e-12)
    np.testing.assert_allclose(ub.poincare, sides.max(axis=1) ** 2 / math.pi ** 2, rtol=1e-12)
    for c in range(4):
        Xc = ds.X[ds.y == c]
        assert Xc.shape == (n, 5)
        assert np.all(Xc >= ub.lows[c]) and np.all(Xc <= ub.highs[c])
        var = sides[c] ** 2 / 12
        assert np.all(np.abs(Xc.mean(0) - ub.means[c]) < 5 * np.sqrt(var / n))
        # Var of a uniform sample variance: (m4 - var^2)/n with m4 = L^4/80
        se_var = np.sqrt((sides[c] ** 4 / 80 - var ** 2) / n)
        assert np.all(np.abs(Xc.var(0) - var) < 5 * se_var)
        np.testing.assert_allclose(np.diag(ub.covs[c]), var)
    dists = np.linalg.norm(ub.means[:, None] - ub.means[None], axis=-1)
    np.testing.assert_allclose(dists[~np.eye(4, dtype=bool)], 6.0, rtol=1e-12)
    eq = D.uniform_boxes(5, 2, 2, seed=0)
    np.testing.assert_allclose(eq.poincare, 1 / math.pi ** 2)
    again = D.uniform_boxes(5, 2, 2, seed=0)
    np.testing.assert_array_equal(eq.dataset.X, again.dataset.X)
    with pytest.raises(ValueError, match="width"):
        D.uniform_boxes(5, 2, 2, width=-1.0, seed=0)


def _ncc_accuracy(F, y, Ft, yt):
    mu = np.stack([F[y == c].mean(0) for c in range(y.max() + 1)])
    d = ((Ft[:, None, :] - mu[None]) ** 2).sum(-1)
    return float(np.mean(d.argmin(1) == yt))


def test_procedural_images():
    tr = D.procedural_images(60, num_classes=10, size=16, seed=0)
    assert tr.X.shape == (600, 1, 16, 16) and tr.X.dtype == np.float64
    assert tr.X.min() >= 0.0 and tr.X.max() <= 1.0
    np.testing.assert_array_equal(tr.class_counts(), np.full(10, 60))
    np.testing.assert_array_equal(tr.X, D.procedural_images(60, 10, 16, seed=0).X)
    te = D.procedural_images(20, num_classes=10, size=16, seed=1)
    assert not np.array_equal(te.X[:20], tr.X[:20])
    # not trivial: the random phase flattens every class mean image ...
    spread = np.mean([tr.X[tr.y == c].mean(0).std() for c in range(10)])
    assert spread < 0.25 * tr.X.std()
    # ... yet learnable: orientation/frequency are plain in the Fourier magnitude
    feat = lambda X: np.abs(np.fft.fft2(X)).reshape(len(X), -1)   # noqa: E731
    assert _ncc_accuracy(feat(tr.X), tr.y, feat(te.X), te.y) > 0.9
    rgb = D.procedural_images(3, num_classes=4, size=8, channels=3, noise=0.0, seed=2)
    assert rgb.X.shape == (12, 3, 8, 8) and rgb.input_shape == (3, 8, 8)
    with pytest.raises(ValueError, match="size"):
        D.procedural_images(3, size=2, seed=0)


# ------------------------------------------------------------------------------ load_dataset
def test_load_dataset_names():
    assert D.DATASETS == ("digits", "gaussian_mixture", "procedural", "mnist", "fashion_mnist",
                          "cifar10", "cifar100", "cifar_fs", "glyphs")
    with pytest.raises(ValueError) as err:
        D.load_dataset("imagenet")
    for name in D.DATASETS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="root"):
        D.load_dataset("cifar10")


def test_load_dataset_dispatch(tmp_path):
    d = D.load_dataset("digits", split="test")
    np.testing.assert_array_equal(d.X, D.load_digits_dataset("test").X)
    g_tr = D.load_dataset("gaussian_mixture", n_per_class=20, num_classes=3, dim=4, seed=2)
    g_te = D.load_dataset("gaussian_mixture", split="test", n_per_class=20, num_classes=3, dim=4,
                          seed=2)
    gm = D.gaussian_mixture(20, 3, 4, seed=2)
    np.testing.assert_array_equal(g_tr.X, gm.dataset.X)
    assert g_te.n == 60 and not np.array_equal(g_te.X, g_tr.X)
    p_te = D.load_dataset("procedural", split="test", n_per_class=2, size=8)
    assert p_te.X.shape == (20, 1, 8, 8)
    with pytest.raises(TypeError, match="seed"):
        D.load_dataset("procedural", split="test", n_per_class=2, seed=np.random.default_rng(0))
    img, lab = write_mnist(tmp_path / "m", "test", 6, seed=0)
    m = D.load_dataset("mnist", root=tmp_path / "m", split="test")
    np.testing.assert_array_equal(m.y, lab)
    write_cifar10(tmp_path / "c")
    assert D.load_dataset("cifar10", root=tmp_path / "c", split="test", limit=2).n == 2
    write_cifar100(tmp_path / "h")
    assert D.load_dataset("cifar100", root=tmp_path / "h", label="coarse").num_classes == 20
    fs = D.load_dataset("cifar_fs", root=tmp_path / "h", part="val")
    assert fs.num_classes == 16 and fs.n == 16


@pytest.mark.parametrize("promised", [10, 1 << 20])
def test_read_idx_gzip_bomb_stops_at_the_size_the_header_promises(tmp_path, promised):
    """A small gzip file whose stream is far longer (256 MiB) than its header promises is refused
    after reading what the header promises (+1 byte): bounded memory (issue 19)."""
    import tracemalloc
    p = tmp_path / "bomb-idx1-ubyte.gz"
    zeros = bytes(1 << 20)
    with gzip.GzipFile(p, mode="wb", compresslevel=9) as gz:
        gz.write(bytes([0, 0, 8, 1]) + struct.pack(">I", promised))
        for _ in range(256):
            gz.write(zeros)
    assert p.stat().st_size < 1 << 20                   # a small file ...
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb-idx1-ubyte.gz: IDX size mismatch \(has trailing "
                                             rf"bytes\).*{promised} data bytes, file has more"):
            D.read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * promised + (8 << 20)                # ... read no further than promised
