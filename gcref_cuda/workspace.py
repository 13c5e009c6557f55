"""Scratch space and derivative rows shared by every op: :class:`Workspace`, :class:`Rows`,
:class:`Ctx` and :func:`rowmul` (per-example state broadcast to the rows of a pass)."""

from __future__ import annotations

import numpy as np

__all__ = ["Workspace", "Rows", "Ctx", "rowmul", "prod"]


class Workspace:
    """Reusable scratch buffers keyed by (owner, slot): first-touch page faults cost as much as
    the arithmetic on the CPU, so a row chunk reuses the previous chunk's memory."""

    def __init__(self, xp):
        self.xp = xp
        self._bufs: dict = {}
        self.tags: dict = {}          # per-buffer facts that survive reuse (e.g. "border zeroed")

    def get(self, key, shape, dtype, zero: bool = False):
        n = int(np.prod(shape, dtype=np.int64))
        buf = self._bufs.get(key)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self.xp.empty(max(n, 1), dtype=dtype)
            self._bufs[key] = buf
            self.tags.pop(key, None)
        out = buf[:n].reshape(shape)
        if zero:
            out.fill(0)
        return out

    def nbytes(self) -> int:
        return sum(int(b.nbytes) for b in self._bufs.values())


class Rows:
    """Rows of a derivative pass: ``ex[r]`` is the example (index within the current example
    chunk) that row ``r`` belongs to. Rows are sorted by example, so the rows of one example form
    a contiguous segment ``(e, start, stop)``."""

    def __init__(self, ex_host: np.ndarray, xp):
        self.ex_host = np.asarray(ex_host, dtype=np.int64)
        self.n = int(self.ex_host.shape[0])
        if self.n and np.any(np.diff(self.ex_host) < 0):
            raise AssertionError("rows must be sorted by example")
        self._xp = xp
        self._ex_dev = None
        if self.n:
            change = np.flatnonzero(np.diff(self.ex_host)) + 1
            starts = np.concatenate([[0], change])
            stops = np.concatenate([change, [self.n]])
            self.segs = list(zip(self.ex_host[starts].tolist(), starts.tolist(), stops.tolist()))
        else:
            self.segs = []
        # Segments avoid a gather on NumPy when they hold several rows each.
        self.use_segments = xp is np and self.n >= 4 * max(1, len(self.segs))

    @property
    def ex(self):
        if self._ex_dev is None:
            self._ex_dev = self.ex_host if self._xp is np else self._xp.asarray(self.ex_host)
        return self._ex_dev


class Ctx:
    """What an op needs besides its parameters: the array module, dtype and scratch space."""

    def __init__(self, xp, dtype, ws: Workspace | None = None, keep_inputs: bool = True):
        self.xp = xp
        self.dtype = dtype
        self.ws = ws if ws is not None else Workspace(xp)
        self.keep_inputs = keep_inputs
        self._children: dict = {}

    def child(self, role: str) -> "Ctx":
        """A context with its own scratch space for one role (kept and reused across calls).

        The product rule of ``second_order`` holds three families of per-op results at once
        (forward tangents, backward cotangents, the primal-chain term); each lives in its own
        role's buffers, so no op's result overwrites another family's. Within a role every op
        writes only its own slots.
        """
        c = self._children.get(role)
        if c is None:
            c = self._children[role] = Ctx(self.xp, self.dtype, Workspace(self.xp), self.keep_inputs)
        return c


def rowmul(ctx: Ctx, g, m, rows: Rows | None, axis: int, out=None):
    """``out = g * m`` with ``m`` per example (axis ``axis``) broadcast to the rows of ``g``.

    ``g`` may itself broadcast into ``out`` (pooling upsamples this way); ``out`` defaults to a
    new array of the broadcast shape.
    """
    xp = ctx.xp
    if rows is None:
        return xp.multiply(g, m, out=out)
    if out is None:
        shape = list(np.broadcast_shapes(g.shape, m.shape[:axis] + (1,) + m.shape[axis + 1:]))
        shape[axis] = rows.n
        out = xp.empty(tuple(shape), dtype=ctx.dtype)
    if rows.use_segments:
        sl = (slice(None),) * axis
        for e, s, t in rows.segs:
            gi = g[sl + (slice(s, t),)] if g.shape[axis] != 1 else g
            np.multiply(gi, m[sl + (slice(e, e + 1),)], out=out[sl + (slice(s, t),)])
        return out
    return xp.multiply(g, xp.take(m, rows.ex, axis=axis), out=out)


def prod(shape) -> int:
    """Number of entries of an array of ``shape``."""
    return int(np.prod(shape, dtype=np.int64))
