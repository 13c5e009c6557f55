"""Array backend selection: ``xp`` is CuPy where a GPU is usable, NumPy otherwise.

The choice, in order:

1. ``GCREF_BACKEND=numpy`` or ``GCREF_BACKEND=cupy`` in the environment (read at import). Asking
   for ``cupy`` where CuPy is missing or has no usable device raises a ``RuntimeError`` saying why.
2. Otherwise CuPy if it imports and ``cupy.is_available()`` is true, else NumPy.

:func:`set_backend` and the :func:`using` context manager switch at run time (the tests run every
function on both). Importing this module never fails on a machine without CUDA: CuPy is imported
lazily and every error it raises is caught.

Randomness is never drawn on the device: every random choice (initialisation, projections, masks,
episodes, batch order) comes from a host ``numpy.random.Generator`` and is moved with
:func:`to_device`, so both backends see the same draws.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["get_xp", "backend_name", "set_backend", "using", "cupy_status", "gpu_available",
           "to_device", "to_host", "is_device_array", "default_dtype", "resolve_dtype",
           "BACKENDS", "cpu_threads", "set_cpu_threads", "cpu_compute", "count_transfers",
           "TransferLog", "SimulatedDevice", "blas_limit"]

BACKENDS = ("numpy", "cupy")
_ENV = "GCREF_BACKEND"
_THREADS_ENV = "GCREF_CPU_THREADS"

_state = {"name": None, "xp": None}
_cupy_cache: dict = {}


def cupy_status() -> tuple[object | None, str]:
    """``(cupy_module_or_None, reason)``: the reason is ``""`` when CuPy is usable."""
    if "result" in _cupy_cache:
        return _cupy_cache["result"]
    try:
        import cupy  # noqa: PLC0415  (optional dependency, imported on demand)
    except Exception as err:  # ImportError, or a broken CUDA installation
        result = (None, f"CuPy is not importable ({type(err).__name__}: {err})")
    else:
        try:
            ok = bool(cupy.is_available())
        except Exception as err:
            ok, why = False, f"{type(err).__name__}: {err}"
        else:
            why = "cupy.is_available() is False (no usable CUDA device)"
        result = (cupy, "") if ok else (None, f"CuPy is installed but unusable: {why}")
    _cupy_cache["result"] = result
    return result


def gpu_available() -> bool:
    """Whether the CuPy backend can be used on this machine."""
    return cupy_status()[0] is not None


def set_backend(name: str | None = None):
    """Select ``"numpy"`` or ``"cupy"`` (``None``: the environment / automatic choice).

    Returns the array module now in use. Raises ``RuntimeError`` if ``"cupy"`` is requested
    but cannot be used, naming the reason.
    """
    if name is None:
        name = os.environ.get(_ENV, "").strip().lower() or None
    if name is None:
        cp, _ = cupy_status()
        name, mod = ("cupy", cp) if cp is not None else ("numpy", np)
    elif name == "numpy":
        mod = np
    elif name == "cupy":
        cp, why = cupy_status()
        if cp is None:
            raise RuntimeError(f"gcref_cuda: the cupy backend was requested but {why}. "
                               f"Install it with `pip install -e .[cuda]` on a CUDA machine, or use "
                               f"{_ENV}=numpy.")
        mod = cp
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r} "
                         f"(check the {_ENV} environment variable)")
    _state["name"], _state["xp"] = name, mod
    return mod


def get_xp():
    """The array module in use (``numpy`` or ``cupy``)."""
    if _state["xp"] is None:
        set_backend(None)
    return _state["xp"]


def backend_name() -> str:
    """``"numpy"`` or ``"cupy"``."""
    get_xp()
    return _state["name"]


@contextlib.contextmanager
def using(name: str):
    """Run a block with another backend: ``with using("numpy"): ...``."""
    old = _state["name"], _state["xp"]
    set_backend(name)
    try:
        yield _state["xp"]
    finally:
        _state["name"], _state["xp"] = old


def default_dtype():
    """float32 on the GPU (its fast path), float64 on NumPy (the reference's precision)."""
    return np.float32 if backend_name() == "cupy" else np.float64


def resolve_dtype(dtype):
    """``None`` -> :func:`default_dtype`; otherwise float32 or float64 (anything else raises)."""
    if dtype is None:
        return np.dtype(default_dtype())
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def is_device_array(a) -> bool:
    """Whether ``a`` is an array of the current backend that is not a NumPy array."""
    xp = get_xp()
    return xp is not np and isinstance(a, xp.ndarray)


def to_device(a, dtype=None):
    """Host (or device) array -> array of the current backend, optionally cast."""
    xp = get_xp()
    log = _transfers["log"]
    if xp is np:
        if log is None:
            return np.asarray(a, dtype=dtype)
        if isinstance(a, SimulatedDevice):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        log.add("to_device", a)
        return np.array(a, dtype=dtype).view(SimulatedDevice)
    if log is not None and not isinstance(a, xp.ndarray):
        log.add("to_device", a)
    return xp.asarray(a, dtype=dtype)


def to_host(a):
    """Backend array (or scalar) -> NumPy array (or Python/NumPy scalar unchanged)."""
    if isinstance(a, SimulatedDevice):
        if _transfers["log"] is not None:
            _transfers["log"].add("to_host", a)
        return a.view(np.ndarray)
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return a
    get = getattr(a, "get", None)
    if get is not None:
        if _transfers["log"] is not None:
            _transfers["log"].add("to_host", a)
        return get()
    return np.asarray(a)


# ------------------------------------------------------------------------- transfer counting
#
# Host <-> device copies are what a GPU training step must not make per step (docs/theory.md §6,
# "The trainer"). ``count_transfers()`` records every copy made through to_device / to_host. On
# CuPy these are the real copies. On NumPy, where host and device memory are the same, arrays
# moved by to_device are marked as "device" arrays (a NumPy subclass, values unchanged) while
# counting, so the same code paths can be checked without a GPU: a to_device of an unmarked
# array, or a to_host of a marked one, is what would be a copy on a GPU.

class SimulatedDevice(np.ndarray):
    """A NumPy array standing for device memory while :func:`count_transfers` is active."""


class TransferLog:
    """The copies made while counting: ``entries`` is a list of ``(direction, shape, nbytes,
    dtype)`` (``direction`` is ``"to_device"`` or ``"to_host"``)."""

    def __init__(self):
        self.entries: list = []

    def add(self, direction, a):
        shape = tuple(getattr(a, "shape", ()))
        nbytes = int(getattr(a, "nbytes", np.asarray(a).nbytes))
        dtype = str(getattr(a, "dtype", np.asarray(a).dtype))
        self.entries.append((direction, shape, nbytes, dtype))

    def mark(self) -> int:
        """The current position (to look at the copies made after it)."""
        return len(self.entries)

    def since(self, mark: int) -> list:
        return self.entries[mark:]

    @property
    def nbytes(self) -> int:
        return sum(e[2] for e in self.entries)


_transfers: dict = {"log": None}


@contextlib.contextmanager
def count_transfers():
    """Record every host <-> device copy made in the block: ``with count_transfers() as log``.
    Not thread-safe across concurrent counts (one at a time)."""
    old = _transfers["log"]
    log = _transfers["log"] = TransferLog()
    try:
        yield log
    finally:
        _transfers["log"] = old


# ------------------------------------------------------------------------------- CPU threads
#
# On NumPy, derivative passes run as many independent row chunks. Multi-threaded BLAS on small
# GEMMs synchronises its threads at every call, which collapses when the cores are shared (a
# descheduled worker stalls the others: measured 3x slower than one thread on a busy 2-core
# VM). gcref_cuda therefore runs its own worker threads over row chunks, each calling BLAS with
# one thread (NumPy releases the GIL in BLAS and ufunc loops): no barrier between workers, so it
# degrades gracefully under contention and scales on idle cores.

_threads: dict = {"n": None}


def cpu_threads() -> int:
    """Worker threads for NumPy row passes: ``set_cpu_threads`` / ``GCREF_CPU_THREADS`` /
    the CPUs this process may use. ``0`` means: leave BLAS threading alone, no workers."""
    if _threads["n"] is None:
        env = os.environ.get(_THREADS_ENV, "").strip()
        if env:
            try:
                n = int(env)
            except ValueError:
                raise ValueError(f"{_THREADS_ENV} must be a non-negative integer, got {env!r}") from None
            if n < 0:
                raise ValueError(f"{_THREADS_ENV} must be a non-negative integer, got {env!r}")
        else:
            try:
                n = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                n = os.cpu_count() or 1
        _threads["n"] = n
    return _threads["n"]


def set_cpu_threads(n: int | None) -> None:
    """Set the worker count of NumPy row passes (``None``: back to the default)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"cpu threads must be a non-negative int or None, got {n!r}")
    _threads["n"] = n


@contextlib.contextmanager
def cpu_compute():
    """Inside gcref_cuda's NumPy computations: BLAS limited to one thread per worker (restored
    on exit). A no-op on CuPy, with ``cpu_threads() == 0``, or without ``threadpoolctl``."""
    if get_xp() is not np or cpu_threads() == 0:
        yield
        return
    with blas_limit(1):
        yield


_blas: dict = {}


def _blas_libs() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (built once)."""
    if "libs" not in _blas:
        try:
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415
        except ImportError:
            _blas["libs"] = []
        else:
            _blas["libs"] = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
    return _blas["libs"]


@contextlib.contextmanager
def blas_limit(n: int):
    """At most ``n`` BLAS threads inside the block (never more than already allowed; a no-op
    without ``threadpoolctl``). The library controllers are found once per process and set
    directly: ``threadpool_limits`` scans the libraries at every call (about a millisecond, and
    memory that stays: measured +48 bytes per call, +35 KiB over 200 GC-penalty steps). Inside
    another ``blas_limit`` the thread counts are known and not queried again."""
    libs = _blas_libs()
    known = _blas.get("current")
    old = known if known is not None else [lc.get_num_threads() for lc in libs]
    new = [o if o is None or o <= n else n for o in old]
    changed = [(lc, o) for lc, o, m in zip(libs, old, new) if m != o]
    for lc, _ in changed:
        lc.set_num_threads(n)
    _blas["current"] = new
    try:
        yield
    finally:
        for lc, o in changed:
            lc.set_num_threads(o)
        _blas["current"] = known
