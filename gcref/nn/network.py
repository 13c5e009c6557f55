"""A network ``F = h o f``: an embedding ``f`` (a chain of layers) and a linear head ``h``.

Parameters are plain data, a ``dict[str, ndarray]`` keyed with PyTorch's names
(``features.0.weight``, ``layer1.0.bn1.running_var``, ``classifier.weight``), so a PyTorch user can
pass ``{k: v.numpy() for k, v in model.state_dict().items()}`` and get the reference value for the
same network.
"""

from __future__ import annotations

import numpy as np

from .._validation import as_float_array, as_generator, check_int
from .base import Layer, _prod
from .containers import Sequential
from .linear import Linear

__all__ = ["Network"]

_IGNORED_SUFFIXES = ("num_batches_tracked",)  # PyTorch bookkeeping, not part of the function
_OUTPUTS = ("embedding", "logits")


class Network:
    """An embedding ``f: R^d -> R^p`` followed by a linear head ``h: R^p -> R^k``.

    Parameters
    ----------
    embedding : list of (name, Layer) or Sequential
        The layers of ``f``; their parameter keys are ``"<name>.<local>"``.
    head : (name, Linear)
        The last linear layer, mapping the ``p`` embedding features to ``k`` logits.
    input_shape : tuple of int
        Shape of one example, e.g. ``(64,)`` or ``(3, 32, 32)`` (NCHW without the batch axis).
    name : str
        A label for reports.

    Notes
    -----
    Inputs are flattened for the Jacobian: ``d = prod(input_shape)`` and
    ``J_f(x) = df/dx`` has shape ``(p, d)`` (docs/theory.md §1).
    """

    def __init__(self, embedding, head: tuple[str, Linear], input_shape, name: str = "network"):
        self.embedding = embedding if isinstance(embedding, Sequential) else Sequential(list(embedding))
        head_name, head_layer = head
        if not isinstance(head_layer, Linear):
            raise TypeError(f"head must be a Linear layer, got {type(head_layer).__name__}")
        self.head_name = str(head_name)
        self.head = head_layer
        self.input_shape = tuple(check_int(s, "input_shape entry", minimum=1) for s in input_shape)
        self.name = name
        self._shapes = self.embedding.shapes(self.input_shape)
        emb_shape = self._shapes[-1]
        if len(emb_shape) != 1:
            raise ValueError(f"the embedding must end in a vector (flatten first), got shape {emb_shape}")
        try:
            self.head.out_shape(emb_shape)
        except ValueError as err:
            raise ValueError(f"head '{self.head_name}': {err}") from None
        self.embedding_dim = emb_shape[0]
        self.num_classes = self.head.out_features
        self.input_dim = _prod(self.input_shape)
        self._head_keys = {loc: f"{self.head_name}.{loc}" for loc in self.head.param_specs(emb_shape)}
        specs = self.embedding.param_specs(self.input_shape)
        specs.update({v: self.head.param_specs(emb_shape)[k] for k, v in self._head_keys.items()})
        self._param_specs = specs
        self._buffer_specs = self.embedding.buffer_specs(self.input_shape)
        clash = set(self._param_specs) & set(self._buffer_specs)
        if clash:
            raise ValueError(f"duplicate parameter names {sorted(clash)}")

    # ---------------------------------------------------------------- parameters
    def param_specs(self) -> dict[str, tuple]:
        """Trainable parameters: key -> shape (PyTorch names and layouts)."""
        return dict(self._param_specs)

    def buffer_specs(self) -> dict[str, tuple]:
        """Non-trainable state (batch-norm running statistics): key -> shape."""
        return dict(self._buffer_specs)

    @property
    def param_names(self) -> list[str]:
        return list(self._param_specs)

    def num_params(self) -> int:
        return sum(_prod(s) for s in self._param_specs.values())

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """Random parameters with PyTorch's default initialisation, reproducible from ``seed``."""
        rng = as_generator(seed)
        params = self.embedding.init(rng, self.input_shape)
        for loc, v in self.head.init(rng, (self.embedding_dim,)).items():
            params[self._head_keys[loc]] = v
        return params

    def check_params(self, params, name: str = "params") -> dict[str, np.ndarray]:
        """Validate a parameter dict against this network; return float64 copies.

        Raises a ``ValueError`` naming every missing, unexpected or mis-shaped key. Keys ending in
        ``num_batches_tracked`` (PyTorch bookkeeping) are ignored.
        """
        if not isinstance(params, dict):
            raise TypeError(f"{name} must be a dict of arrays keyed by parameter name, "
                            f"got {type(params).__name__}")
        expected = {**self._param_specs, **self._buffer_specs}
        given = {k for k in params if not str(k).endswith(_IGNORED_SUFFIXES)}
        missing = sorted(set(expected) - given)
        extra = sorted(given - set(expected))
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if extra:
            problems.append(f"unexpected keys {extra}")
        out = {}
        for key in expected:
            if key not in params:
                continue
            arr = as_float_array(params[key], f"{name}['{key}']", allow_empty=True)
            if arr.shape != tuple(expected[key]):
                problems.append(f"'{key}' has shape {arr.shape}, expected {tuple(expected[key])}")
            out[key] = arr
        if problems:
            raise ValueError(f"{name} does not fit {self.name}: " + "; ".join(problems))
        return out

    # ---------------------------------------------------------------- inputs
    def check_input(self, X, name: str = "X") -> np.ndarray:
        """Validate a batch of inputs: finite reals of shape ``(n, *input_shape)``."""
        X = as_float_array(X, name)
        if X.shape[1:] != self.input_shape:
            hint = ""
            if len(self.input_shape) == 1 and X.ndim > 2 and int(np.prod(X.shape[1:])) == self.input_shape[0]:
                hint = (f"; for inputs of shape {X.shape[1:]}, build the network with "
                        f"input_shape={X.shape[1:]} (it then flattens them), or pass "
                        f"{name}.reshape(len({name}), -1)")
            raise ValueError(f"{name} must have shape (n, {', '.join(map(str, self.input_shape))}) "
                             f"for {self.name}, got {X.shape}{hint}")
        return X

    def _check_output(self, output: str) -> None:
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")

    def output_dim(self, output: str = "embedding") -> int:
        self._check_output(output)
        return self.embedding_dim if output == "embedding" else self.num_classes

    # ---------------------------------------------------------------- evaluation
    def _head_params(self, params):
        return {loc: params[full] for loc, full in self._head_keys.items()}

    def forward_cache(self, params, X):
        """Forward pass keeping what the derivatives need: ``(Z, logits, cache)``.

        ``params`` and ``X`` must already be validated (``check_params``, ``check_input``).
        """
        Z, cache_f = self.embedding.forward(params, X)
        logits, cache_h = self.head.forward(self._head_params(params), Z)
        return Z, logits, (cache_f, cache_h)

    def forward(self, params, X) -> np.ndarray:
        """Logits ``F(x) = h(f(x))``, shape ``(n, k)``."""
        params, X = self.check_params(params), self.check_input(X)
        return self.forward_cache(params, X)[1]

    def embed(self, params, X) -> np.ndarray:
        """Embedding ``f(x)`` (penultimate features), shape ``(n, p)``."""
        params, X = self.check_params(params), self.check_input(X)
        return self.embedding.forward(params, X)[0]

    def vjp_cached(self, params, cache, cotangent, output="embedding", need_params=True):
        """Reverse mode from a cache: ``(J^T v, dparams)``; ``v`` of shape ``(n, out_dim)``."""
        cache_f, cache_h = cache
        grads = {}
        if output == "logits":
            cotangent, gh = self.head.vjp(self._head_params(params), cache_h, cotangent,
                                          params=need_params)
            grads.update({self._head_keys[k]: v for k, v in gh.items()})
        gx, gf = self.embedding.vjp(params, cache_f, cotangent, params=need_params)
        grads.update(gf)
        return gx, grads

    def jvp_cached(self, params, cache, tangent, output="embedding"):
        cache_f, _ = cache
        t = self.embedding.jvp(params, cache_f, tangent)
        if output == "logits":
            t = t @ params[self._head_keys["weight"]].T
        return t

    def vjp(self, params, X, cotangent, output: str = "logits"):
        """Vector-Jacobian product: ``(v^T dF/dx, v^T dF/dtheta)``.

        Parameters
        ----------
        cotangent : ndarray, shape (n, out_dim)
            ``v``; ``out_dim`` is ``k`` for ``output="logits"``, ``p`` for ``"embedding"``.

        Returns
        -------
        gX : ndarray, shape (n, *input_shape)
        gparams : dict[str, ndarray]
            gradient of ``sum_n <v_n, F(x_n)>`` for every trainable parameter.
        """
        self._check_output(output)
        params, X = self.check_params(params), self.check_input(X)
        v = as_float_array(cotangent, "cotangent", shape=(X.shape[0], self.output_dim(output)))
        _, _, cache = self.forward_cache(params, X)
        return self.vjp_cached(params, cache, v, output)

    backward = vjp

    def jvp(self, params, X, tangent, output: str = "embedding") -> np.ndarray:
        """Jacobian-vector product with respect to the input: ``J(x_n) t_n``, shape ``(n, out_dim)``."""
        self._check_output(output)
        params, X = self.check_params(params), self.check_input(X)
        t = as_float_array(tangent, "tangent", shape=X.shape)
        _, _, cache = self.forward_cache(params, X)
        return self.jvp_cached(params, cache, t, output)

    def jacobian(self, params, X, output: str = "embedding", mode: str = "auto",
                 chunk_size: int = 256) -> np.ndarray:
        """Exact input Jacobians ``J(x_n) = dF/dx`` (or ``df/dx``), shape ``(n, out_dim, d)``.

        Reverse mode runs one batched VJP per output coordinate (``out_dim`` passes); forward mode
        one JVP per input coordinate (``d`` passes). ``mode="auto"`` picks the cheaper one.
        Examples are processed ``chunk_size`` at a time to bound memory.
        """
        self._check_output(output)
        if mode not in ("auto", "reverse", "forward"):
            raise ValueError(f"mode must be 'auto', 'reverse' or 'forward', got {mode!r}")
        chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        params, X = self.check_params(params), self.check_input(X)
        out_dim, d = self.output_dim(output), self.input_dim
        if mode == "auto":
            mode = "forward" if d < out_dim else "reverse"
        n = X.shape[0]
        jac = np.empty((n, out_dim, d))
        for start in range(0, n, chunk_size):
            Xc = X[start:start + chunk_size]
            m = Xc.shape[0]
            _, _, cache = self.forward_cache(params, Xc)
            if mode == "reverse":
                for j in range(out_dim):
                    v = np.zeros((m, out_dim))
                    v[:, j] = 1.0
                    gx, _ = self.vjp_cached(params, cache, v, output, need_params=False)
                    jac[start:start + m, j, :] = gx.reshape(m, d)
            else:
                for i in range(d):
                    t = np.zeros((m, d))
                    t[:, i] = 1.0
                    jac[start:start + m, :, i] = self.jvp_cached(
                        params, cache, t.reshape(Xc.shape), output)
        return jac

    def local_jacobian_chain(self, params, x, output: str = "embedding") -> np.ndarray:
        """Jacobian of one example as the product of the layers' analytic local Jacobians."""
        self._check_output(output)
        params = self.check_params(params)
        x = self.check_input(np.asarray(x)[None], "x")[0]
        jac = self.embedding.local_jacobian(params, x)
        if output == "logits":
            jac = params[self._head_keys["weight"]] @ jac
        return jac

    # ---------------------------------------------------------------- description
    def layers(self) -> list[tuple[str, Layer]]:
        """The (name, layer) pairs of the embedding followed by the head."""
        return list(self.embedding.children) + [(self.head_name, self.head)]

    def summary(self) -> str:
        rows = [f"{self.name}: input {self.input_shape} -> embedding ({self.embedding_dim},) -> "
                f"logits ({self.num_classes},); {self.num_params()} parameters"]
        for (name, layer), shp in zip(self.embedding.children, self._shapes[1:]):
            rows.append(f"  {name:<14} {layer.describe():<60} -> {shp}")
        rows.append(f"  {self.head_name:<14} {self.head.describe():<60} -> ({self.num_classes},)  [head]")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, input_shape={self.input_shape}, p={self.embedding_dim}, k={self.num_classes})"
