"""The engine: the primitives every metric and the training loop are written against.

Every quantity that needs a network (GC and its estimators, per-class GC, geometric collapse,
the training objective and its gradient, the GC penalty, ``evaluate`` and the ``fit`` loop) is
written **once**, in :mod:`gcref.metrics` and :mod:`gcref.train`, against the small set of
primitives of :class:`Engine` below. An engine computes forward passes and derivative passes of
one network; it never samples, scales or averages (the formulas of the estimators and the
objective stay in one place, with their random draws on the host). See ``docs/theory.md``,
section "The engine seam".

:class:`ReferenceEngine` is the definition: float64 NumPy through ``Network.forward_cache`` /
``vjp_cached`` / ``jvp_cached`` / ``second_order``, ``chunk_size`` examples at a time. The fast
backend (``gcref_cuda.FastEngine``) supplies the same primitives batched on a GPU or on CPU
threads; ``gcref_cuda.fit`` is ``gcref.train.fit(..., engine=gcref_cuda.FastEngine(net))``.

Contract of every primitive
---------------------------
* ``params`` were validated by :meth:`Engine.check_params` and ``X`` by
  :meth:`Engine.check_input` (host float64), so a primitive does not validate again.
* Results are host NumPy float64 arrays (an engine computing in float32 converts them).
* ``output`` is ``"embedding"`` (``f``) or ``"logits"`` (``F = h o f``); ``J(x)`` is the input
  Jacobian of that output, ``(out_dim, d)`` with inputs flattened.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_int

__all__ = ["Engine", "ReferenceEngine", "as_engine"]


class Engine:
    """The primitives the metrics and the training loop need from a network backend.

    Subclasses implement every method; each is documented with the quantity it returns.
    ``net`` is the :class:`gcref.nn.Network` the engine computes (its parameter names,
    dimensions and validators are the reference's).
    """

    net = None

    # ---------------------------------------------------------------- validation (host)
    def check_params(self, params, name: str = "params") -> dict:
        """Validated float64 host copies of ``params`` (the reference's rules and messages)."""
        return self.net.check_params(params, name)

    def check_input(self, X, name: str = "X") -> np.ndarray:
        """Validated float64 host inputs of shape ``(n, *input_shape)``."""
        return self.net.check_input(X, name)

    # ---------------------------------------------------------------- forward
    def forward(self, params, X, output: str = "logits") -> np.ndarray:
        """``F(x)`` (``output="logits"``) or ``f(x)`` (``"embedding"``), shape ``(n, out_dim)``."""
        raise NotImplementedError

    def embed_and_logits(self, params, X) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), F(x))`` of a batch."""
        raise NotImplementedError

    def logits_and_pullback(self, params, X):
        """``(F(x), pullback)`` where ``pullback(v)`` returns the parameter gradient of
        ``sum_n <v_n, F(x_n)>`` for a cotangent ``v`` of shape ``(n, k)`` (one forward pass
        shared by the loss and its gradient)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- Jacobian norms
    def jacobian_sq_norms(self, params, X, output: str = "embedding") -> np.ndarray:
        """``||J(x)||_F^2`` of every example, shape ``(n,)`` (exact)."""
        raise NotImplementedError

    def row_sq_norms(self, params, X, rows, output: str = "embedding") -> np.ndarray:
        """``a[i, j] = ||J(x_i)^T e_{rows[i, j]}||^2`` for an int array ``rows`` of shape ``(n, s)``."""
        raise NotImplementedError

    def probe_sq_norms(self, params, X, V, output: str = "embedding") -> np.ndarray:
        """``||J(x_i)^T V[i, r]||^2`` for probes ``V`` of shape ``(n, R, out_dim)``: ``(n, R)``."""
        raise NotImplementedError

    def jacobian_blocks(self, params, X, output: str = "embedding"):
        """Yield ``(start, J)``: the exact Jacobians ``(m, out_dim, d)`` of consecutive example
        blocks ``X[start:start + m]``, in order (block sizes are the engine's business)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- training state
    # The trainer (:class:`gcref.train.trainer.Trainer`) keeps the parameters, the momentum and
    # the training set on the engine's backend, in its compute dtype, between records: these
    # primitives move them there once, compute a step's passes on them, and bring them back at
    # records. The reference's backend is host float64 NumPy (moving is a copy).

    #: The array module of the engine's backend arrays (``numpy`` for the reference).
    xp = np

    @property
    def dtype(self) -> np.dtype:
        """The compute dtype of the engine (float64 for the reference)."""
        return np.dtype(np.float64)

    def to_backend(self, a, dtype=None):
        """A host array on the backend (a copy), in ``dtype`` (default the compute dtype)."""
        return np.array(a, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a) -> np.ndarray:
        """A backend array (or 0-d scalar) as a host NumPy array, in its own dtype."""
        return np.asarray(a)

    def training_scope(self, batch_size: int):
        """A context manager around a run's steps (not its records): the reference leaves the
        process as it is; a fast engine may, e.g., limit BLAS threads for small steps."""
        import contextlib
        return contextlib.nullcontext()

    def step_passes(self, bparams, X):
        """``(F(x), pullback)`` on backend parameters ``bparams`` (compute dtype, validated
        once by the caller) and a backend batch ``X``: logits and parameter gradients are
        backend arrays in the compute dtype (``pullback`` as in :meth:`logits_and_pullback`,
        same key order)."""
        return self.logits_and_pullback(bparams, X)

    def step_gc_rows(self, bparams, X, rows) -> tuple[object, dict]:
        """:meth:`gc_rows_value_and_grad` on backend parameters and a backend batch: the value
        (a backend 0-d array or float) and the gradients as backend arrays (compute dtype)."""
        return self.gc_rows_value_and_grad(bparams, X, rows)

    # ---------------------------------------------------------------- GC penalty
    def gc_rows_value_and_grad(self, params, X, rows) -> tuple[float, dict]:
        """``sum_x sum_{k in rows} ||J_f(x)^T e_k||^2`` and its gradient for every trainable
        parameter (zeros for the head), for embedding rows ``rows`` (1-D int array).

        The gradient is the double-backprop rule of ``docs/theory.md`` §5.1 (and §6 for the
        seam): with ``s_k = J^T e_k``, ``d||s_k||^2 = <e_k, dJ (2 s_k)>``, which each layer's
        ``second_order`` computes with ``g = e_k``, ``u = 2 s_k``.
        """
        raise NotImplementedError


class ReferenceEngine(Engine):
    """The definition: float64 NumPy passes of a :class:`gcref.nn.Network`, ``chunk_size``
    examples at a time (one forward cache per chunk, one batched VJP/JVP per direction)."""

    def __init__(self, net, chunk_size: int = 256):
        from .nn import Network
        if not isinstance(net, Network):
            raise TypeError(f"net must be a gcref.nn.Network, got {type(net).__name__}")
        self.net = net
        self.chunk_size = check_int(chunk_size, "chunk_size", minimum=1)

    def _chunks(self, n):
        return range(0, n, self.chunk_size)

    def forward(self, params, X, output="logits"):
        self.net._check_output(output)
        if output == "embedding":
            return self.net.embedding.forward(params, X)[0]
        return self.net.forward_cache(params, X)[1]

    def embed_and_logits(self, params, X):
        Z, logits, _ = self.net.forward_cache(params, X)
        return Z, logits

    def logits_and_pullback(self, params, X):
        net = self.net
        _, logits, cache = net.forward_cache(params, X)

        def pullback(v):
            return net.vjp_cached(params, cache, v, output="logits")[1]

        return logits, pullback

    def _basis_norms(self, params, cache, rows, m, output):
        """``||J^T e_{rows[:, j]}||^2`` for one chunk from its forward cache, ``(m, s)``."""
        out_dim = self.net.output_dim(output)
        result = np.empty(rows.shape)
        for col in range(rows.shape[1]):
            v = np.zeros((m, out_dim))
            v[np.arange(m), rows[:, col]] = 1.0
            gx, _ = self.net.vjp_cached(params, cache, v, output, need_params=False)
            result[:, col] = np.sum(gx.reshape(m, -1) ** 2, axis=1)
        return result

    def jacobian_sq_norms(self, params, X, output="embedding"):
        """Reverse mode (``out_dim`` VJPs per chunk) or forward mode (``d`` JVPs), the cheaper:
        ``||J||_F^2 = sum_k ||J^T e_k||^2 = sum_i ||J e_i||^2``."""
        net = self.net
        out_dim, d = net.output_dim(output), net.input_dim
        n = X.shape[0]
        gc = np.empty(n)
        for start in self._chunks(n):
            Xc = X[start:start + self.chunk_size]
            m = Xc.shape[0]
            _, _, cache = net.forward_cache(params, Xc)
            if out_dim <= d:
                rows = np.broadcast_to(np.arange(out_dim), (m, out_dim))
                gc[start:start + m] = self._basis_norms(params, cache, rows, m, output).sum(axis=1)
            else:
                acc = np.zeros(m)
                for i in range(d):
                    t = np.zeros((m, d))
                    t[:, i] = 1.0
                    acc += np.sum(net.jvp_cached(params, cache, t.reshape(Xc.shape), output) ** 2, axis=1)
                gc[start:start + m] = acc
        return gc

    def row_sq_norms(self, params, X, rows, output="embedding"):
        parts = []
        for start in self._chunks(X.shape[0]):
            Xc = X[start:start + self.chunk_size]
            _, _, cache = self.net.forward_cache(params, Xc)
            parts.append(self._basis_norms(params, cache, rows[start:start + self.chunk_size],
                                           Xc.shape[0], output))
        return np.concatenate(parts)

    def probe_sq_norms(self, params, X, V, output="embedding"):
        n, R, _ = V.shape
        vals = np.empty((n, R))
        for start in self._chunks(n):
            Xc = X[start:start + self.chunk_size]
            m = Xc.shape[0]
            _, _, cache = self.net.forward_cache(params, Xc)
            for r in range(R):
                gx, _ = self.net.vjp_cached(params, cache, V[start:start + m, r], output, need_params=False)
                vals[start:start + m, r] = np.sum(gx.reshape(m, -1) ** 2, axis=1)
        return vals

    def jacobian_blocks(self, params, X, output="embedding"):
        for start in self._chunks(X.shape[0]):
            yield start, self.net.jacobian(params, X[start:start + self.chunk_size], output=output,
                                           chunk_size=self.chunk_size)

    def gc_rows_value_and_grad(self, params, X, rows):
        net = self.net
        n, p = X.shape[0], net.embedding_dim
        _, cache_f = net.embedding.forward(params, X)
        grads = {k: np.zeros_like(params[k]) for k in net.param_names}
        value = 0.0
        for k in rows:
            v = np.zeros((n, p))
            v[:, k] = 1.0
            s_k, _ = net.embedding.vjp(params, cache_f, v, params=False)
            value += float(np.sum(s_k ** 2))
            gp, _ = net.embedding.second_order(params, cache_f, v, 2.0 * s_k)
            for name, g in gp.items():
                grads[name] += g
        return value, grads


def as_engine(net, engine=None, chunk_size: int = 256) -> Engine:
    """The engine a public function computes with.

    ``engine=None`` is the reference (``ReferenceEngine(net, chunk_size)``); an :class:`Engine`
    instance must have been built for ``net``; a callable (e.g. the class
    ``gcref_cuda.FastEngine``) is called with ``net`` to build one. ``chunk_size`` is validated
    in every case and used by the reference only.
    """
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if engine is None:
        return ReferenceEngine(net, chunk_size)
    if not isinstance(engine, Engine) and callable(engine):
        engine = engine(net)
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be None, a gcref.engine.Engine or a callable net -> Engine, "
                        f"got {type(engine).__name__}")
    if engine.net is not net:
        raise ValueError(f"engine was built for {engine.net!r}, not for net={net!r}")
    return engine
