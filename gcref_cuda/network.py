"""The fast network: :class:`FastNetwork`, compiled from a ``gcref.nn.Network``.

A :class:`FastNetwork` is compiled from a ``gcref.nn.Network``: the same layer specs, the same
parameter names and ``.npz`` files (PyTorch names and layouts), the same function. What differs is
how the arrays are laid out and how derivatives are batched:

* Images are held channel-first with the batch second, ``(C, N, H, W)``: a convolution is then
  one GEMM ``W (O, C k k) @ cols (C k k, N Ho Wo)`` on im2col patches, and its transpose one GEMM
  and ``k^2`` shifted adds (col2im). Stride-1 convolutions (where the padding adds at most 35 %:
  3x3 kernels on maps from 7x7 up) run on the zero-padded grid flattened to one axis, where
  every shift is a contiguous slice ("flat shifts"); the grid pads each image on the top and
  left only, since a window's bottom/right padding is the next row's (image's) top/left
  padding. Vectors are ``(N, F)``.
* Derivatives run on **rows**: a row is one (example, cotangent) or (example, tangent) pair, so a
  pass pushes a whole block of cotangents through the network at once (``docs/theory.md``
  §5.3, "The fast backend's row passes"). Per-example state (ReLU masks, max-pool choices) is
  broadcast to the rows of its example: by a loop over contiguous example segments on NumPy
  (no copies) or a gather on CuPy (one kernel). Rows are processed in chunks sized from a
  memory budget, with buffers reused across chunks.
* Exact GC uses exact shortcuts (``docs/theory.md`` §5.4): rows ``e_k`` whose output ReLU is
  off have ``J^T e_k = 0`` and are skipped; the cotangent of a basis row through the top linear
  layer is a row of its weight (no GEMM); and a first dense layer ``x -> W x`` with more inputs
  than outputs is replaced by its Gram matrix: ``||W^T g||^2 = g^T (W W^T) g``.

``ReLU`` followed by a non-overlapping ``MaxPool2d`` is fused (``maxpool(relu(x)) =
relu(maxpool(x))``; the derivative routes to the first maximum when it is positive, exactly as the
reference's chain)."""

from __future__ import annotations

import math

import numpy as np

from gcref.nn.network import Network

from .backend import get_xp, resolve_dtype, to_device, to_host
from .compile import compile_chain, unique_keys
from .ops.linear import LinearOp
from .workspace import Ctx, Workspace

#: Default peak working memory of one call, in bytes.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: On the CPU, row chunks are kept near this many bytes of workspace so they stay in cache.
_CPU_ROW_CHUNK_BYTES = 24 << 20

__all__ = ["FastNetwork", "as_fast", "DEFAULT_MEMORY_BUDGET"]


class FastNetwork:
    """The fast twin of a ``gcref.nn.Network``: same parameters, same function, batched.

    Parameters
    ----------
    net : gcref.nn.Network
        The network spec (``gcref.zoo.mlp/cnn/vgg/resnet18`` or hand-built).
    dtype : float32 or float64, optional
        Compute precision; default float64 on NumPy and float32 on CuPy.
    memory_budget : int, optional
        Peak working memory per call in bytes (default 1 GiB); examples and derivative rows are
        processed in chunks that fit.

    Every public method takes host arrays (or device arrays) in gcref's layouts (``X`` of shape
    ``(n, *input_shape)``, NCHW) and returns host NumPy arrays, like ``gcref``.
    """

    def __init__(self, net: Network, dtype=None, memory_budget: int | None = None):
        if isinstance(net, FastNetwork):
            net = net.net
        if not isinstance(net, Network):
            raise TypeError(f"net must be a gcref.nn.Network, got {type(net).__name__}")
        self.net = net
        self._dtype_arg = dtype
        if dtype is not None:
            resolve_dtype(dtype)
        self.memory_budget = _check_budget(memory_budget)
        self.input_shape = net.input_shape
        self.ops = compile_chain(net.embedding.children, net.input_shape)
        self.head = LinearOp(net.head_name + ".", net.head, (net.embedding_dim,))
        self.head.key = net.head_name
        unique_keys(self.ops + [self.head])
        self.embedding_dim = net.embedding_dim
        self.num_classes = net.num_classes
        self.input_dim = net.input_dim
        self.param_names = net.param_names
        self.name = net.name

    # ---------------------------------------------------------------- basics
    @property
    def dtype(self):
        return resolve_dtype(self._dtype_arg)

    def output_dim(self, output="embedding") -> int:
        return self.net.output_dim(output)

    def chain(self, output="embedding") -> list:
        self.net._check_output(output)
        return self.ops + ([self.head] if output == "logits" else [])

    def init(self, seed=0):
        return self.net.init(seed)

    def check_params(self, params, name="params"):
        return self.net.check_params(params, name)

    def prepare(self, params) -> dict:
        """Validated parameters moved to the device in the compute dtype, per op."""
        return self.prepare_params(params)

    def prepare_params(self, params, validate: bool = True) -> dict:
        """Parameters per op on the device in the compute dtype. ``validate=False`` takes
        parameters already checked (the trainer's backend arrays, validated once per run):
        arrays already on the device in the compute dtype are used in place, not copied."""
        xp, dtype = get_xp(), self.dtype
        if validate:
            params = self.net.check_params({k: to_host(v) for k, v in params.items()}
                                           if isinstance(params, dict) else params)
        P = {op.key: op.prepare(params, xp, dtype) for op in self.ops}
        P[self.head.key] = self.head.prepare(params, xp, dtype)
        return P

    def check_input(self, X, name="X") -> np.ndarray:
        return self.net.check_input(to_host(X), name)

    def to_layout(self, X, ctx: Ctx):
        """Host/device ``(n, *input_shape)`` -> the internal layout on the device."""
        Xd = to_device(X, ctx.dtype)
        if len(self.input_shape) == 3:
            return ctx.xp.ascontiguousarray(Xd.transpose(1, 0, 2, 3))
        return Xd.reshape(Xd.shape[0], -1)

    def from_layout(self, G, n_rows: int):
        """Internal input-layout rows -> ``(n_rows, d)`` flattened in C order (device)."""
        if len(self.input_shape) == 3:
            return G.transpose(1, 0, 2, 3).reshape(n_rows, -1)
        return G.reshape(n_rows, -1)

    def ctx(self, keep_inputs=True) -> Ctx:
        return Ctx(get_xp(), self.dtype, Workspace(get_xp()), keep_inputs)

    # ---------------------------------------------------------------- budgets
    def example_bytes(self, output="embedding") -> int:
        item = self.dtype.itemsize
        return sum(op.cache_bytes(item) for op in self.chain(output)) + 4 * item * self.input_dim

    def row_bytes(self, output="embedding") -> int:
        item = self.dtype.itemsize
        return sum(op.row_bytes(item) for op in self.chain(output)) + 2 * item * self.input_dim

    def example_chunk(self, output="embedding", budget=None) -> int:
        budget = self.memory_budget if budget is None else budget
        return max(1, int((budget // 2) // max(1, self.example_bytes(output))))

    def row_chunk(self, output="embedding", budget=None, workers: int = 1) -> int:
        """Rows per chunk: each of ``workers`` chunks in flight gets ``budget / (2 workers)``;
        on the CPU also about ``_CPU_ROW_CHUNK_BYTES`` of scratch, to stay in cache."""
        budget = self.memory_budget if budget is None else budget
        per_row = max(1, self.row_bytes(output))
        rows = max(1, int((budget // (2 * max(1, workers))) // per_row))
        if get_xp() is np:
            rows = min(rows, max(16, _CPU_ROW_CHUNK_BYTES // per_row))
        return rows

    # ---------------------------------------------------------------- forward
    def forward_layout(self, P, Xl, ctx, output="embedding"):
        """Run the chain on a batch in internal layout: ``(out, caches)`` (device)."""
        caches = []
        x = Xl
        for op in self.chain(output):
            x, c = op.forward(P[op.key], x, ctx)
            caches.append(c)
        return x, caches

    def _apply(self, params, X, output):
        P = self.prepare(params)
        X = self.check_input(X)
        ctx = self.ctx(keep_inputs=False)
        n = X.shape[0]
        step = self.example_chunk(output)
        out = np.empty((n, self.output_dim(output)), dtype=self.dtype)
        for s in range(0, n, step):
            y, _ = self.forward_layout(P, self.to_layout(X[s:s + step], ctx), ctx, output)
            out[s:s + step] = to_host(y)
        return out

    def forward(self, params, X) -> np.ndarray:
        """Logits ``F(x)``, shape ``(n, k)`` (host)."""
        return self._apply(params, X, "logits")

    def embed(self, params, X) -> np.ndarray:
        """Embedding ``f(x)``, shape ``(n, p)`` (host)."""
        return self._apply(params, X, "embedding")

    def embed_and_forward(self, params, X) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), F(x))``, shapes ``(n, p)`` and ``(n, k)`` (host), from one pass: the head
        runs on the embedding chunk just computed (the same ops as ``embed`` then ``forward``)."""
        P = self.prepare(params)
        X = self.check_input(X)
        ctx = self.ctx(keep_inputs=False)
        n = X.shape[0]
        step = self.example_chunk("logits")
        Z = np.empty((n, self.embedding_dim), dtype=self.dtype)
        logits = np.empty((n, self.num_classes), dtype=self.dtype)
        for s in range(0, n, step):
            z, _ = self.forward_layout(P, self.to_layout(X[s:s + step], ctx), ctx, "embedding")
            y, _ = self.head.forward(P[self.head.key], z, ctx)
            Z[s:s + step], logits[s:s + step] = to_host(z), to_host(y)
        return Z, logits

    def embed_device(self, params, X):
        """Embedding on the device (no host copy), shape ``(n, p)``."""
        return self.embed_prepared(self.prepare(params), self.check_input(X))

    def embed_prepared(self, P, X):
        """:meth:`embed_device` on prepared parameters and checked (host or device) inputs."""
        ctx = self.ctx(keep_inputs=False)
        step = self.example_chunk("embedding")
        parts = [self.forward_layout(P, self.to_layout(X[s:s + step], ctx), ctx)[0]
                 for s in range(0, X.shape[0], step)]
        return parts[0] if len(parts) == 1 else ctx.xp.concatenate(parts, axis=0)

    # ---------------------------------------------------------------- derivatives
    def vjp(self, params, X, cotangent, output: str = "logits"):
        """``(v^T dF/dx, v^T dF/dtheta)``: ``gX`` of shape ``(n, *input_shape)`` and the
        parameter gradients of ``sum_n <v_n, F(x_n)>``, as ``gcref.nn.Network.vjp`` (host)."""
        self.net._check_output(output)
        P = self.prepare(params)
        X = self.check_input(X)
        from gcref._validation import as_float_array
        v = as_float_array(to_host(cotangent), "cotangent", shape=(X.shape[0], self.output_dim(output)))
        ctx = self.ctx(keep_inputs=True)
        _, caches = self.forward_layout(P, self.to_layout(X, ctx), ctx, output)
        g = to_device(v, ctx.dtype)
        grads = {}
        for op, c in zip(reversed(self.chain(output)), reversed(caches)):
            g, gp = op.vjp_params(P[op.key], c, g, ctx)
            grads.update(gp)
        gX = to_host(self.from_layout(g, X.shape[0])).reshape(X.shape)
        return gX, {k: to_host(v) for k, v in grads.items()}

    def jvp(self, params, X, tangent, output: str = "embedding") -> np.ndarray:
        """``J(x_n) t_n``, shape ``(n, out_dim)`` (host)."""
        self.net._check_output(output)
        P = self.prepare(params)
        X = self.check_input(X)
        from gcref._validation import as_float_array
        t = as_float_array(to_host(tangent), "tangent", shape=X.shape)
        ctx = self.ctx(keep_inputs=False)
        _, caches = self.forward_layout(P, self.to_layout(X, ctx), ctx, output)
        tl = self.to_layout(t, ctx)
        for op, c in zip(self.chain(output), caches):
            tl = op.jvp(P[op.key], c, tl, None, ctx)
        return to_host(tl).copy()

    def jacobian(self, params, X, output: str = "embedding") -> np.ndarray:
        """Exact input Jacobians, shape ``(n, out_dim, d)`` (host)."""
        from . import engine
        return engine.jacobian(self, params, X, output)

    def flops_forward(self, output="embedding") -> int:
        """Multiply-adds of one example's forward pass."""
        return sum(op.flops() for op in self.chain(output))

    def __repr__(self):
        return f"FastNetwork({self.name!r}, dtype={self._dtype_arg or 'auto'})"


def _check_budget(memory_budget):
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, np.integer, float)):
        raise TypeError(f"memory_budget must be a number of bytes, got {memory_budget!r}")
    if not math.isfinite(memory_budget) or memory_budget < (1 << 20):
        raise ValueError(f"memory_budget must be at least 1 MiB, got {memory_budget!r}")
    return int(memory_budget)


def as_fast(net, dtype=None, memory_budget=None) -> FastNetwork:
    """A :class:`FastNetwork` for ``net`` (a gcref ``Network`` or a ``FastNetwork``).

    A ``FastNetwork`` passed with ``dtype``/``memory_budget`` of ``None`` is returned as is.
    """
    if isinstance(net, FastNetwork):
        if dtype is None and memory_budget is None:
            return net
        return FastNetwork(net.net, dtype if dtype is not None else net._dtype_arg,
                           memory_budget if memory_budget is not None else net.memory_budget)
    return FastNetwork(net, dtype, memory_budget)
