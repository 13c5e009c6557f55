"""Parameter files: ``.npz`` archives of ``dict[str, ndarray]`` with PyTorch names (never pickle)."""

from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save_params", "load_params", "atomic_write"]


def atomic_write(path, write) -> None:
    """Write a file atomically: ``write(fileobj)`` into a temp file beside ``path``, then rename.

    An interrupted run leaves either the old file or the new one, never a truncated one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_params(path, params: dict, net=None) -> None:
    """Save parameters to ``path`` (``.npz``) atomically; validated against ``net`` if given."""
    if net is not None:
        params = net.check_params(params)
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict of arrays")
    arrays = {str(k): np.asarray(v) for k, v in params.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"params['{k}'] must be a numeric array, got dtype object")
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_params(path, net=None) -> dict[str, np.ndarray]:
    """Load a ``.npz`` parameter file (``allow_pickle=False``); validated against ``net`` if given.

    A file that does not fit the network raises a ``ValueError`` naming the missing, unexpected
    or mis-shaped keys.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"parameter file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            params = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ValueError(f"{path} is not a readable .npz parameter file: {err}") from None
    if net is not None:
        try:
            params = net.check_params(params, name=f"parameters in {path}")
        except ValueError as err:
            raise ValueError(str(err)) from None
    return params
