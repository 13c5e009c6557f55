"""Files gcref writes: parameter archives, atomic writes, and exclusive folder locks.

- Parameter files are ``.npz`` archives of ``dict[str, ndarray]`` with PyTorch names (never
  pickle): :func:`save_params`, :func:`load_params`.
- :func:`atomic_write` writes a file through a temporary file of gcref's own naming
  (:data:`TEMP_PREFIX`) and a rename; :func:`clean_stale_temporaries` removes the temporaries an
  interrupted write left behind.
- :class:`FolderLock` (:func:`lock_folder`) is an exclusive ``fcntl.flock`` lock on a folder's
  :data:`LOCK_FILE`, held while a process writes the folder; the lock file names the holder, so
  a refused writer can say who holds it. The kernel drops the lock when its holder dies.
- :func:`write_guard` installs, for the current thread, a check run before every
  :func:`atomic_write` commits a file (used by sweep workers to stop writing once their sweep is
  gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

try:                       # POSIX; on other systems folders are not locked (see FolderLock)
    import fcntl
except ImportError:        # pragma: no cover - Windows
    fcntl = None

__all__ = ["save_params", "load_params", "read_json", "atomic_write", "clean_stale_temporaries", "FolderLock",
           "FolderLocked", "lock_folder", "lock_holder", "write_guard", "TEMP_PREFIX", "LOCK_FILE"]

#: Prefix of the temporary files :func:`atomic_write` creates beside their target.
TEMP_PREFIX = ".gcref-tmp-"
#: Name of the lock file :class:`FolderLock` creates in a folder (it is never deleted: removing a
#: lock file while another process waits on it would let two writers in).
LOCK_FILE = ".gcref.lock"
# Temporaries of gcref before TEMP_PREFIX: ".tmp-<random><target name>" for these targets.
_LEGACY_PREFIX = ".tmp-"
_LEGACY_TARGETS = ("config.json", "history.jsonl", "checkpoint.npz", "params.npz", "done.json",
                   "sweep.json", "summary.json", "summary.csv")

_guards = threading.local()


@contextlib.contextmanager
def write_guard(check):
    """Run ``check()`` (which raises to refuse) before every :func:`atomic_write` of this thread.

    Guards nest; they apply to the calling thread only (sweeps on the threading backend run one
    run per thread).
    """
    stack = getattr(_guards, "stack", None)
    if stack is None:
        stack = _guards.stack = []
    stack.append(check)
    try:
        yield
    finally:
        stack.remove(check)


def _run_guards():
    for check in list(getattr(_guards, "stack", ())):
        check()


def atomic_write(path, write) -> None:
    """Write a file atomically: ``write(fileobj)`` into a temp file beside ``path``, then rename.

    An interrupted run leaves either the old file or the new one, never a truncated one (and at
    worst a temporary ``.gcref-tmp-*`` file, removed by :func:`clean_stale_temporaries`). The
    checks of :func:`write_guard` run just before the rename; if one raises, nothing is written.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        _run_guards()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path):
    """The JSON document in the file ``path``. A file that is not UTF-8 or not JSON raises one
    ``ValueError`` naming it and the cause; ``OSError`` (a missing file) passes through."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not valid UTF-8 (byte {err.start}): a damaged file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): a damaged or truncated file") from None


def clean_stale_temporaries(folder) -> list:
    """Delete the temporary files of interrupted :func:`atomic_write` calls in ``folder``.

    Only gcref's own names are touched: ``.gcref-tmp-*`` and the older ``.tmp-*<run file>``.
    Call it only while holding the folder's lock (no other gcref writer is then mid-write).
    Returns the names removed.
    """
    folder = os.fspath(folder)
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.startswith(TEMP_PREFIX) or (name.startswith(_LEGACY_PREFIX)
                                            and name.endswith(_LEGACY_TARGETS)):
            path = os.path.join(folder, name)
            try:
                if os.path.isfile(path):
                    os.unlink(path)
                    removed.append(name)
            except FileNotFoundError:
                pass
    return removed


# ---------------------------------------------------------------------------- folder locks

class FolderLocked(RuntimeError):
    """Another process (or thread) holds the lock of a folder; the message names the holder."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder


# Locks held by this process: real path of the folder -> [pid, thread id, count, FolderLock]
# (the pid tells a forked child that the entry is its parent's, not its own).
_held: dict = {}
_held_mutex = threading.Lock()


def lock_holder(folder) -> dict | None:
    """What the lock file of ``folder`` says about its last holder (``None`` if unreadable).

    Keys: ``pid``, ``host``, ``token``, ``since`` (UNIX time), ``command``. The lock may have been
    released since; :meth:`FolderLock.is_held` tells whether it is held now.
    """
    try:
        with open(os.path.join(os.fspath(folder), LOCK_FILE)) as fh:
            info = json.loads(fh.read() or "null")
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def _describe(holder) -> str:
    if not holder:
        return "another process"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return (f"process {holder.get('pid')} on {holder.get('host')} (since {when}: "
            f"{holder.get('command', '?')})")


class FolderLock:
    """An exclusive lock on a folder while this process writes it (``with FolderLock(d): ...``).

    Parameters
    ----------
    folder : path
        Created if missing; a file in its place raises ``NotADirectoryError``.
    timeout : float
        Seconds to wait for a holder to let go before raising :class:`FolderLocked` (at least
        one second is always waited: checkers hold the lock for microseconds).
    token : str, optional
        Written into the lock file with the holder's pid, host, start time and command line;
        :meth:`is_held` can require it (a sweep's workers check their sweep this way).

    Re-entrant within a thread (a run locks its folder and the training loop locks it again);
    another thread of the same process is refused like another process. On systems without
    ``fcntl`` the lock is a no-op.
    """

    def __init__(self, folder, *, timeout: float = 0.0, token: str | None = None):
        self.folder = os.fspath(folder)
        self.timeout = float(timeout)
        self.token = token
        self._fd = None
        self._key = None

    # -- acquisition
    def acquire(self) -> "FolderLock":
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise NotADirectoryError(f"{self.folder} is a file, not a folder")
        os.makedirs(self.folder, exist_ok=True)
        key = os.path.realpath(self.folder)
        me = threading.get_ident()
        with _held_mutex:
            entry = _held.get(key)
            if entry is not None and entry[0] != os.getpid():
                del _held[key]            # inherited through fork: not ours
                entry = None
            if entry is not None:
                if entry[1] == me:
                    entry[2] += 1
                    self._key = key
                    return self
                raise FolderLocked(f"{self.folder} is being written by another thread of this "
                                   f"process (pid {os.getpid()})", lock_holder(self.folder))
        path = os.path.join(self.folder, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        first = time.monotonic()
        try:
            while fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # at least 1 s: a checker (is_held) holds a shared lock for microseconds
                    if time.monotonic() - first >= max(self.timeout, 1.0):
                        holder = lock_holder(self.folder)
                        raise FolderLocked(
                            f"{self.folder} is being written by {_describe(holder)}; wait for it "
                            "to finish or stop it (a killed holder releases the lock at once)",
                            holder) from None
                    time.sleep(0.05)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                    "since": time.time(), "command": " ".join(sys.argv)[:200]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._key = key
        with _held_mutex:
            _held[key] = [os.getpid(), me, 1, self]
        return self

    def release(self) -> None:
        if self._key is None:
            return
        with _held_mutex:
            entry = _held.get(self._key)
            if entry is not None:
                entry[2] -= 1
                if entry[2] > 0:
                    self._key = None
                    return
                del _held[self._key]
                owner = entry[3]
            else:           # pragma: no cover - released twice
                owner = self
        self._key = None
        if owner._fd is not None:
            os.close(owner._fd)           # closing the descriptor releases the flock
            owner._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    # -- checks by others
    @staticmethod
    def is_held(folder, token: str | None = None) -> bool:
        """Whether some process holds the lock of ``folder`` now (with ``token`` if given).

        A holder on this host that is no longer alive counts as gone (a forked child may keep
        the descriptor open after its parent died).
        """
        folder = os.fspath(folder)
        holder = lock_holder(folder)
        if token is not None and (holder is None or holder.get("token") != token):
            return False
        if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        if fcntl is None:      # pragma: no cover
            return True
        with _held_mutex:
            entry = _held.get(os.path.realpath(folder))
            if entry is not None and entry[0] == os.getpid():
                return True
        try:
            fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)       # also drops the shared lock if it was taken
        return False


def lock_folder(folder, *, timeout: float = 0.0, token: str | None = None) -> FolderLock:
    """:class:`FolderLock` of ``folder`` (use as a context manager)."""
    return FolderLock(folder, timeout=timeout, token=token)


# ---------------------------------------------------------------------------- parameters

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


_EXPECTED = "expected a .npz parameter archive (a zip of named arrays, as written by gcref.nn.save_params)"


def load_params(path, net=None) -> dict[str, np.ndarray]:
    """Load a ``.npz`` parameter file (``allow_pickle=False``); validated against ``net`` if given.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and what
    was expected for anything else: an empty file, a ``.npy`` array file, a truncated or corrupt
    archive, object arrays. A file that does not fit the network raises a ``ValueError`` naming
    the missing, unexpected or mis-shaped keys. The file is always closed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"parameter file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; {_EXPECTED}")
    with open(path, "rb") as fh:
        head = fh.read(8)
        if not head:
            raise ValueError(f"{path} is empty (0 bytes); {_EXPECTED}")
        if head.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path} is a .npy file (a single array); {_EXPECTED}. Save a dict "
                             "of arrays with gcref.nn.save_params or numpy.savez")
        if not head.startswith(b"PK"):
            raise ValueError(f"{path} is not a zip archive (starts with {head[:4]!r}); {_EXPECTED}")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as data:
                params = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
            detail = ("it holds object arrays (pickled Python objects), which gcref never loads"
                      if "pickle" in str(err) else f"truncated or corrupt: {err}")
            raise ValueError(f"{path} is not a readable .npz parameter file ({detail}); "
                             f"{_EXPECTED}") from None
    if not params:
        raise ValueError(f"{path} holds no arrays; {_EXPECTED}")
    if net is not None:
        try:
            params = net.check_params(params, name=f"parameters in {path}")
        except ValueError as err:
            raise ValueError(str(err)) from None
    return params
