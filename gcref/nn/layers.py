"""Hand-written layers with explicit parameters and exact derivatives (float64).

Every layer is an object without state of its own: parameters are a ``dict[str, ndarray]`` passed
to each call, with PyTorch's local names and layouts (``weight``, ``bias``; linear ``(out, in)``,
conv ``(out, in, kh, kw)``; batch-first, NCHW). Each layer writes its derivatives next to its
forward pass:

``forward(p, x) -> (y, cache)``
    the layer's output for a batch ``x`` of shape ``(n, *in_shape)``.
``vjp(p, cache, gy, params=True) -> (gx, gp)``
    reverse mode: ``gx = J_x^T gy`` and the parameter gradient ``gp[name] = J_p^T gy``.
``jvp(p, cache, tx) -> ty``
    forward mode with respect to the input: ``ty = J_x tx`` (the layer linearized at the cached
    point: ReLU masks and max-pool choices held fixed).
``second_order(p, cache, g, u) -> (gp, gx)``
    the gradient of the scalar ``<g, J_x(x; p) u>`` with respect to the parameters ``p`` and the
    input ``x``, with ``g`` and ``u`` held fixed. This is the one new primitive that the exact
    gradient of the geometric-complexity penalty needs (double backprop by hand, DESIGN.md §6).
    ``gx`` is ``None`` where it is identically zero (affine and piecewise-linear layers).
``local_jacobian(p, x) -> (out_size, in_size)``
    the analytic Jacobian of one example, written out entry by entry (for checks on small nets).

Batch norm is in evaluation mode (an affine map per channel from its running statistics).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._validation import check_int

__all__ = [
    "Layer", "Linear", "Conv2d", "ReLU", "Tanh", "MaxPool2d", "AvgPool2d", "Flatten",
    "BatchNorm2d", "Sequential", "BasicBlock",
]


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _he_init(rng, shape, fan_in: int, bias: bool) -> dict[str, np.ndarray]:
    """He (Kaiming) normal weights, std sqrt(2 / fan_in), so ReLU chains keep their scale.

    PyTorch's default uniform init shrinks the signal by a constant factor per layer; deep VGGs
    then have Jacobians ~1e-5 of their outputs, which hides them under round-off. Biases follow
    PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    p = {"weight": rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)}
    if bias:
        bound = 1.0 / math.sqrt(fan_in)
        p["bias"] = rng.uniform(-bound, bound, (shape[0],))
    return p


class Layer:
    """Base class: a layer with no parameters and shape-preserving output."""

    def param_specs(self, in_shape: tuple) -> dict[str, tuple]:
        """Trainable parameters: local name -> shape."""
        return {}

    def buffer_specs(self, in_shape: tuple) -> dict[str, tuple]:
        """Non-trainable state saved with the parameters (batch-norm running statistics)."""
        return {}

    def out_shape(self, in_shape: tuple) -> tuple:
        return tuple(in_shape)

    def init(self, rng: np.random.Generator, in_shape: tuple) -> dict[str, np.ndarray]:
        return {}

    def second_order(self, p, cache, g, u):
        # Affine and piecewise-linear layers: J_x does not depend on x (a.e.) and the
        # parameter-free ones have no parameter gradient.
        return {}, None

    def describe(self) -> str:
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()


# --------------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------------

class Linear(Layer):
    """Affine map ``y = x W^T + b`` with ``W`` of shape ``(out, in)`` (PyTorch layout)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        self.bias = bool(bias)

    def param_specs(self, in_shape):
        specs = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            specs["bias"] = (self.out_features,)
        return specs

    def out_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects inputs of "
                             f"shape ({self.in_features},), got {tuple(in_shape)}")
        return (self.out_features,)

    def init(self, rng, in_shape):
        return _he_init(rng, (self.out_features, self.in_features), self.in_features, self.bias)

    def forward(self, p, x):
        y = x @ p["weight"].T
        if self.bias:
            y = y + p["bias"]
        return y, x

    def vjp(self, p, cache, gy, params=True):
        gx = gy @ p["weight"]
        gp = {}
        if params:
            gp = self._weight_grad(cache, gy)
            if self.bias:
                gp["bias"] = gy.sum(axis=0)
        return gx, gp

    def _weight_grad(self, x, gy):
        # dL/dW = sum_n gy_n x_n^T
        return {"weight": gy.T @ x}

    def jvp(self, p, cache, tx):
        return tx @ p["weight"].T

    def second_order(self, p, cache, g, u):
        # <g, W u> is linear in W: gradient g u^T; the bias does not enter J.
        gp = self._weight_grad(u, g)
        if self.bias:
            gp["bias"] = np.zeros(self.out_features)
        return gp, None

    def local_jacobian(self, p, x):
        return p["weight"].copy()

    def describe(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias})"


# --------------------------------------------------------------------------------------------
# Conv2d
# --------------------------------------------------------------------------------------------

class Conv2d(Layer):
    """2-D cross-correlation, NCHW, weight ``(out, in, kh, kw)`` as in PyTorch.

    ``y[n, o, i, j] = b[o] + sum_{c, a, e} W[o, c, a, e] * xpad[n, c, i*s + a, j*s + e]``
    with ``xpad`` the input zero-padded by ``padding`` on each side and ``s`` the stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.stride = check_int(stride, "stride", minimum=1)
        self.padding = check_int(padding, "padding", minimum=0)
        self.bias = bool(bias)

    def param_specs(self, in_shape):
        k = self.kernel_size
        specs = {"weight": (self.out_channels, self.in_channels, k, k)}
        if self.bias:
            specs["bias"] = (self.out_channels,)
        return specs

    def out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, ...) expects inputs of shape "
                             f"({self.in_channels}, H, W), got {tuple(in_shape)}")
        _, h, w = in_shape
        ho = (h + 2 * self.padding - self.kernel_size) // self.stride + 1
        wo = (w + 2 * self.padding - self.kernel_size) // self.stride + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d kernel {self.kernel_size} does not fit input {tuple(in_shape)} "
                             f"with padding {self.padding}")
        return (self.out_channels, ho, wo)

    def init(self, rng, in_shape):
        k = self.kernel_size
        return _he_init(rng, (self.out_channels, self.in_channels, k, k), self.in_channels * k * k,
                        self.bias)

    def _pad(self, x):
        q = self.padding
        if q == 0:
            return x
        return np.pad(x, ((0, 0), (0, 0), (q, q), (q, q)))

    def _windows(self, x):
        """Patches of the padded input: shape (n, C, Ho, Wo, k, k)."""
        k, s = self.kernel_size, self.stride
        win = sliding_window_view(self._pad(x), (k, k), axis=(2, 3))
        return win[:, :, ::s, ::s][:, :, : self._ho(x), : self._wo(x)]

    def _ho(self, x):
        return (x.shape[2] + 2 * self.padding - self.kernel_size) // self.stride + 1

    def _wo(self, x):
        return (x.shape[3] + 2 * self.padding - self.kernel_size) // self.stride + 1

    def _conv(self, x, weight):
        # (n, C, Ho, Wo, k, k) x (O, C, k, k) -> (n, Ho, Wo, O) -> (n, O, Ho, Wo)
        out = np.tensordot(self._windows(x), weight, axes=([1, 4, 5], [1, 2, 3]))
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def forward(self, p, x):
        y = self._conv(x, p["weight"])
        if self.bias:
            y += p["bias"][None, :, None, None]
        return y, x

    def _weight_grad(self, x, gy):
        # dL/dW[o, c, a, e] = sum_{n, i, j} gy[n, o, i, j] xpad[n, c, i*s + a, j*s + e]
        return {"weight": np.tensordot(gy, self._windows(x), axes=([0, 2, 3], [0, 2, 3]))}

    def _input_grad(self, x_shape, gy, weight):
        # Transposed convolution: scatter each output cotangent back onto its receptive field.
        n, c, h, w = x_shape
        k, s, q = self.kernel_size, self.stride, self.padding
        ho, wo = gy.shape[2], gy.shape[3]
        cols = np.tensordot(gy, weight, axes=([1], [0]))  # (n, Ho, Wo, C, k, k)
        gxp = np.zeros((n, c, h + 2 * q, w + 2 * q))
        for a in range(k):
            for e in range(k):
                gxp[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] += \
                    cols[:, :, :, :, a, e].transpose(0, 3, 1, 2)
        return gxp[:, :, q:q + h, q:q + w] if q else gxp

    def vjp(self, p, cache, gy, params=True):
        x = cache
        gx = self._input_grad(x.shape, gy, p["weight"])
        gp = {}
        if params:
            gp = self._weight_grad(x, gy)
            if self.bias:
                gp["bias"] = gy.sum(axis=(0, 2, 3))
        return gx, gp

    def jvp(self, p, cache, tx):
        return self._conv(tx, p["weight"])

    def second_order(self, p, cache, g, u):
        # <g, conv(u; W)> is linear in W: the weight gradient with input u and cotangent g.
        gp = self._weight_grad(u, g)
        if self.bias:
            gp["bias"] = np.zeros(self.out_channels)
        return gp, None

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        o, ho, wo = self.out_shape(x.shape)
        k, s, q = self.kernel_size, self.stride, self.padding
        jac = np.zeros((o, ho, wo, c, h, w))
        for i in range(ho):
            for j in range(wo):
                for a in range(k):
                    for e in range(k):
                        r, t = i * s + a - q, j * s + e - q
                        if 0 <= r < h and 0 <= t < w:
                            jac[:, i, j, :, r, t] = p["weight"][:, :, a, e]
        return jac.reshape(o * ho * wo, c * h * w)

    def describe(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias})")


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

class ReLU(Layer):
    """``y = max(x, 0)``; derivative ``1[x > 0]`` (0 at the kink, as PyTorch)."""

    def forward(self, p, x):
        mask = x > 0
        return x * mask, mask

    def vjp(self, p, cache, gy, params=True):
        return gy * cache, {}

    def jvp(self, p, cache, tx):
        return tx * cache

    def local_jacobian(self, p, x):
        return np.diag((x > 0).astype(np.float64).ravel())


class Tanh(Layer):
    """``y = tanh(x)``; ``y' = 1 - y^2``, ``y'' = -2 y (1 - y^2)``."""

    def forward(self, p, x):
        y = np.tanh(x)
        return y, y

    def vjp(self, p, cache, gy, params=True):
        return gy * (1.0 - cache ** 2), {}

    def jvp(self, p, cache, tx):
        return tx * (1.0 - cache ** 2)

    def second_order(self, p, cache, g, u):
        # d/dx <g, sigma'(x) * u> = g * u * sigma''(x)
        y = cache
        return {}, g * u * (-2.0 * y * (1.0 - y ** 2))

    def local_jacobian(self, p, x):
        return np.diag((1.0 - np.tanh(x) ** 2).ravel())


# --------------------------------------------------------------------------------------------
# Pooling and reshaping
# --------------------------------------------------------------------------------------------

class _Pool2d(Layer):
    def __init__(self, kernel_size: int, stride: int | None = None):
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else check_int(stride, "stride", minimum=1)

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (C, H, W), "
                             f"got {tuple(in_shape)}")
        c, h, w = in_shape
        k, s = self.kernel_size, self.stride
        if h < k or w < k:
            raise ValueError(f"{type(self).__name__}(kernel_size={k}) does not fit input "
                             f"{tuple(in_shape)}")
        return (c, (h - k) // s + 1, (w - k) // s + 1)

    def _windows(self, x):
        k, s = self.kernel_size, self.stride
        _, ho, wo = self.out_shape(x.shape[1:])
        win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return win[:, :, :ho, :wo]

    def _scatter(self, x_shape, per_offset):
        """Sum ``per_offset(a, e)`` (shape (n, C, Ho, Wo)) back onto the input grid."""
        k, s = self.kernel_size, self.stride
        gx = np.zeros(x_shape)
        for a in range(k):
            for e in range(k):
                contrib = per_offset(a, e)
                ho, wo = contrib.shape[2], contrib.shape[3]
                gx[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] += contrib
        return gx

    def describe(self):
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2d(_Pool2d):
    """Max over each ``k x k`` window; the derivative routes to the first maximal entry."""

    def forward(self, p, x):
        win = self._windows(x)
        n, c, ho, wo = win.shape[:4]
        flat = win.reshape(n, c, ho, wo, -1)
        idx = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        return y, (x.shape, idx)

    def vjp(self, p, cache, gy, params=True):
        x_shape, idx = cache
        k = self.kernel_size
        return self._scatter(x_shape, lambda a, e: gy * (idx == a * k + e)), {}

    def jvp(self, p, cache, tx):
        _, idx = cache
        flat = self._windows(tx).reshape(*idx.shape, -1)
        return np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        _, (_, idx) = self.forward(p, x[None])
        _, ho, wo = idx.shape[1:]
        k, s = self.kernel_size, self.stride
        jac = np.zeros((c, ho, wo, c, h, w))
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    a, e = divmod(int(idx[0, ch, i, j]), k)
                    jac[ch, i, j, ch, i * s + a, j * s + e] = 1.0
        return jac.reshape(c * ho * wo, c * h * w)


class AvgPool2d(_Pool2d):
    """Mean over each ``k x k`` window (a linear map)."""

    def forward(self, p, x):
        return self._windows(x).mean(axis=(-2, -1)), x.shape

    def vjp(self, p, cache, gy, params=True):
        scale = 1.0 / self.kernel_size ** 2
        return self._scatter(cache, lambda a, e: gy * scale), {}

    def jvp(self, p, cache, tx):
        return self._windows(tx).mean(axis=(-2, -1))

    def local_jacobian(self, p, x):
        c, h, w = x.shape
        _, ho, wo = self.out_shape(x.shape)
        k, s = self.kernel_size, self.stride
        jac = np.zeros((c, ho, wo, c, h, w))
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    jac[ch, i, j, ch, i * s:i * s + k, j * s:j * s + k] = 1.0 / k ** 2
        return jac.reshape(c * ho * wo, c * h * w)


class Flatten(Layer):
    """Flatten everything but the batch axis, in C order (as ``torch.flatten(x, 1)``)."""

    def out_shape(self, in_shape):
        return (_prod(in_shape),)

    def forward(self, p, x):
        return x.reshape(x.shape[0], -1), x.shape

    def vjp(self, p, cache, gy, params=True):
        return gy.reshape(cache), {}

    def jvp(self, p, cache, tx):
        return tx.reshape(tx.shape[0], -1)

    def local_jacobian(self, p, x):
        return np.eye(x.size)


# --------------------------------------------------------------------------------------------
# Batch norm (evaluation mode)
# --------------------------------------------------------------------------------------------

class BatchNorm2d(Layer):
    """Batch norm in evaluation mode: ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.

    ``weight`` (gamma) and ``bias`` (beta) are trainable; ``running_mean`` and ``running_var`` are
    buffers (saved, never trained), initialised to 0 and 1 as in PyTorch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        self.num_features = check_int(num_features, "num_features", minimum=1)
        self.eps = float(eps)

    def param_specs(self, in_shape):
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_specs(self, in_shape):
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}) expects inputs of shape "
                             f"({self.num_features}, H, W), got {tuple(in_shape)}")
        return tuple(in_shape)

    def init(self, rng, in_shape):
        c = self.num_features
        return {"weight": np.ones(c), "bias": np.zeros(c),
                "running_mean": np.zeros(c), "running_var": np.ones(c)}

    @staticmethod
    def _bc(v):
        return v[None, :, None, None]

    def _inv_std(self, p):
        var = p["running_var"]
        if np.any(var + self.eps <= 0):
            raise ValueError("BatchNorm2d running_var + eps must be positive")
        return 1.0 / np.sqrt(var + self.eps)

    def forward(self, p, x):
        inv = self._inv_std(p)
        xhat = (x - self._bc(p["running_mean"])) * self._bc(inv)
        return xhat * self._bc(p["weight"]) + self._bc(p["bias"]), xhat

    def vjp(self, p, cache, gy, params=True):
        gx = gy * self._bc(p["weight"] * self._inv_std(p))
        gp = {}
        if params:
            gp = {"weight": (gy * cache).sum(axis=(0, 2, 3)), "bias": gy.sum(axis=(0, 2, 3))}
        return gx, gp

    def jvp(self, p, cache, tx):
        return tx * self._bc(p["weight"] * self._inv_std(p))

    def second_order(self, p, cache, g, u):
        # <g, gamma/sigma * u>: linear in gamma, independent of x and beta.
        gw = (g * u).sum(axis=(0, 2, 3)) * self._inv_std(p)
        return {"weight": gw, "bias": np.zeros(self.num_features)}, None

    def local_jacobian(self, p, x):
        scale = p["weight"] * self._inv_std(p)
        return np.diag(np.repeat(scale, x[0].size))

    def describe(self):
        return f"BatchNorm2d({self.num_features}, eps={self.eps})"


# --------------------------------------------------------------------------------------------
# Composites
# --------------------------------------------------------------------------------------------

def _sub(params: dict, names: dict[str, str]) -> dict:
    return {local: params[full] for local, full in names.items()}


class Sequential(Layer):
    """A chain ``a_l = L_l(a_{l-1})`` of named layers; parameter keys are ``"<name>.<local>"``.

    Derivatives of a chain are the chain rule written out: the VJP runs the children's VJPs in
    reverse, the JVP their JVPs forward, and ``second_order`` applies the product rule to
    ``<g, J_L ... J_1 u>`` (one term per child; input-dependent terms flow back along the primal
    chain).
    """

    def __init__(self, children: list[tuple[str, Layer]]):
        if not children:
            raise ValueError("Sequential needs at least one layer")
        names = [n for n, _ in children]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential layer names must be unique, got {names}")
        self.children = [(str(n), layer) for n, layer in children]

    def shapes(self, in_shape) -> list[tuple]:
        """Input shape of every child, then the output shape: a list of length len(children)+1."""
        shapes = [tuple(in_shape)]
        for name, layer in self.children:
            try:
                shapes.append(tuple(layer.out_shape(shapes[-1])))
            except ValueError as err:
                raise ValueError(f"layer '{name}': {err}") from None
        return shapes

    def out_shape(self, in_shape):
        return self.shapes(in_shape)[-1]

    def _specs(self, in_shape, which):
        out = {}
        for (name, layer), shp in zip(self.children, self.shapes(in_shape)):
            for local, s in getattr(layer, which)(shp).items():
                out[f"{name}.{local}"] = tuple(s)
        return out

    def param_specs(self, in_shape):
        return self._specs(in_shape, "param_specs")

    def buffer_specs(self, in_shape):
        return self._specs(in_shape, "buffer_specs")

    def all_keys(self) -> list[str]:
        """Every parameter and buffer key this chain reads (no input shape needed)."""
        return [full for names in self._child_names() for full in names.values()]

    def _child_names(self):
        # For each child, its local key -> the full key in this chain's parameter dict.
        if not hasattr(self, "_names"):
            self._names = [{loc: f"{name}.{loc}" for loc in _local_names(layer)}
                           for name, layer in self.children]
        return self._names

    def init(self, rng, in_shape):
        params = {}
        for (name, layer), shp in zip(self.children, self.shapes(in_shape)):
            for local, v in layer.init(rng, shp).items():
                params[f"{name}.{local}"] = v
        return params

    def forward(self, p, x):
        caches = []
        for (name, layer), names in zip(self.children, self._child_names()):
            x, cache = layer.forward(_sub(p, names), x)
            caches.append(cache)
        return x, caches

    def vjp(self, p, cache, gy, params=True):
        grads = {}
        for (name, layer), names, c in reversed(list(zip(self.children, self._child_names(), cache))):
            gy, gp = layer.vjp(_sub(p, names), c, gy, params=params)
            for local, v in gp.items():
                grads[f"{name}.{local}"] = v
        return gy, grads

    def jvp(self, p, cache, tx):
        for (name, layer), names, c in zip(self.children, self._child_names(), cache):
            tx = layer.jvp(_sub(p, names), c, tx)
        return tx

    def second_order(self, p, cache, g, u):
        children = list(zip(self.children, self._child_names(), cache))
        # Forward tangents u_{l-1} (input of child l) and backward cotangents g_l (its output).
        tangents = [u]
        for (name, layer), names, c in children[:-1]:
            tangents.append(layer.jvp(_sub(p, names), c, tangents[-1]))
        grads: dict[str, np.ndarray] = {}
        carried = None  # cotangent on the current child's output from input-dependent terms
        g_l = g
        for idx in range(len(children) - 1, -1, -1):
            (name, layer), names, c = children[idx]
            sub = _sub(p, names)
            gp, gx = layer.second_order(sub, c, g_l, tangents[idx])
            for local, v in gp.items():
                grads[f"{name}.{local}"] = v
            if carried is not None:
                # the primal chain carries the input-dependent terms further back
                carried, gpc = layer.vjp(sub, c, carried, params=True)
                for local, v in gpc.items():
                    key = f"{name}.{local}"
                    grads[key] = grads[key] + v if key in grads else v
            if gx is not None:
                carried = gx if carried is None else carried + gx
            if idx > 0:
                g_l, _ = layer.vjp(sub, c, g_l, params=False)
        return grads, carried

    def local_jacobian(self, p, x):
        jac = None
        for (name, layer), names in zip(self.children, self._child_names()):
            sub = _sub(p, names)
            local = layer.local_jacobian(sub, x)
            jac = local if jac is None else local @ jac
            x = layer.forward(sub, x[None])[0][0]
        return jac

    def describe(self):
        inner = ", ".join(f"{n}={l.describe()}" for n, l in self.children)
        return f"Sequential({inner})"


def _local_names(layer: Layer):
    """Every parameter/buffer key a layer reads, without needing its input shape."""
    if isinstance(layer, (Sequential, BasicBlock)):
        return layer.all_keys()
    if isinstance(layer, (Linear, Conv2d)):
        return ["weight", "bias"] if layer.bias else ["weight"]
    if isinstance(layer, BatchNorm2d):
        return ["weight", "bias", "running_mean", "running_var"]
    return []


class BasicBlock(Layer):
    """ResNet basic block (He et al. 2016), evaluation-mode batch norm, PyTorch names.

    ``y = relu( bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x) )`` with 3x3 convolutions (no bias),
    ``shortcut = downsample = [1x1 conv (stride s, no bias), bn]`` when the stride is not 1 or the
    channel count changes, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.stride = check_int(stride, "stride", minimum=1)
        self.main = Sequential([
            ("conv1", Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)),
            ("bn1", BatchNorm2d(out_channels)),
            ("relu", ReLU()),
            ("conv2", Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)),
            ("bn2", BatchNorm2d(out_channels)),
        ])
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential([
                ("0", Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)),
                ("1", BatchNorm2d(out_channels)),
            ])
        self.final = ReLU()

    def _parts(self):
        parts = [("", self.main)]
        if self.downsample is not None:
            parts.append(("downsample.", self.downsample))
        return parts

    def all_keys(self):
        return [pre + k for pre, part in self._parts() for k in part.all_keys()]

    def _split(self, p):
        main = {k: p[k] for k in self.main.all_keys()}
        down = None
        if self.downsample is not None:
            down = {k: p["downsample." + k] for k in self.downsample.all_keys()}
        return main, down

    def param_specs(self, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.param_specs(in_shape).items()}

    def buffer_specs(self, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.buffer_specs(in_shape).items()}

    def out_shape(self, in_shape):
        out = self.main.out_shape(in_shape)
        if self.downsample is not None:
            short = self.downsample.out_shape(in_shape)
        else:
            short = tuple(in_shape)
        if short != out:
            raise ValueError(f"BasicBlock shortcut shape {short} does not match main path {out}")
        return out

    def init(self, rng, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.init(rng, in_shape).items()}

    def forward(self, p, x):
        pm, pd = self._split(p)
        ym, cm = self.main.forward(pm, x)
        if self.downsample is not None:
            ys, cd = self.downsample.forward(pd, x)
        else:
            ys, cd = x, None
        y, mask = self.final.forward({}, ym + ys)
        return y, (cm, cd, mask)

    def vjp(self, p, cache, gy, params=True):
        pm, pd = self._split(p)
        cm, cd, mask = cache
        gs = gy * mask
        gx, grads = self.main.vjp(pm, cm, gs, params=params)
        if self.downsample is not None:
            gxd, gpd = self.downsample.vjp(pd, cd, gs, params=params)
            gx = gx + gxd
            grads.update({"downsample." + k: v for k, v in gpd.items()})
        else:
            gx = gx + gs
        return gx, grads

    def jvp(self, p, cache, tx):
        pm, pd = self._split(p)
        cm, cd, mask = cache
        ts = self.main.jvp(pm, cm, tx)
        ts = ts + (self.downsample.jvp(pd, cd, tx) if self.downsample is not None else tx)
        return ts * mask

    def second_order(self, p, cache, g, u):
        # J = D_mask (J_main + J_short): the mask is fixed (a.e.), so the terms add.
        pm, pd = self._split(p)
        cm, cd, mask = cache
        gs = g * mask
        grads, gx = self.main.second_order(pm, cm, gs, u)
        if self.downsample is not None:
            gpd, gxd = self.downsample.second_order(pd, cd, gs, u)
            grads.update({"downsample." + k: v for k, v in gpd.items()})
            if gxd is not None:
                gx = gxd if gx is None else gx + gxd
        return grads, gx

    def local_jacobian(self, p, x):
        pm, pd = self._split(p)
        jac = self.main.local_jacobian(pm, x)
        if self.downsample is not None:
            jac = jac + self.downsample.local_jacobian(pd, x)
        else:
            jac = jac + np.eye(x.size)
        y, _ = self.forward(p, x[None])
        return np.diag((y[0] > 0).astype(np.float64).ravel()) @ jac

    def describe(self):
        return f"BasicBlock({self.in_channels}, {self.out_channels}, stride={self.stride})"
