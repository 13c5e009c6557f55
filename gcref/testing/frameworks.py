"""A gcref network's embedding as a function of the user's framework (NumPy, PyTorch, JAX).

The GC conformance suite hands the user's code the embedding ``f`` (inputs -> features) of a
gcref network in the user's framework:

* ``"numpy"``: :class:`NumpyEmbedding`, a callable ``f(X) -> Z`` on NumPy arrays;
* ``"torch"``: a ``torch.nn.Module`` built with ``gcref.interop.torch.to_torch`` (float64);
* ``"jax"``: :func:`to_jax`'s function of a JAX array (float64; this enables ``jax_enable_x64``).

Each may carry an output and input scale: the function is ``x -> a * f(x / b)`` (the scaling-law
cases of the suite).
"""

from __future__ import annotations

import numpy as np

from ..nn import layers as L

__all__ = ["FRAMEWORKS", "NumpyEmbedding", "to_jax", "embedding_function", "as_framework_input"]

FRAMEWORKS = ("numpy", "torch", "jax")


def check_framework(framework) -> str:
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    return framework


class NumpyEmbedding:
    """``f(X) = out_scale * net.embed(params, X / in_scale)`` on NumPy arrays ``(n, *input_shape)``.

    ``net``, ``params``, ``out_scale`` and ``in_scale`` are attributes, so code built on gcref can
    use the network itself.
    """

    def __init__(self, net, params, out_scale: float = 1.0, in_scale: float = 1.0):
        self.net, self.params = net, net.check_params(params)
        self.out_scale, self.in_scale = float(out_scale), float(in_scale)

    def __call__(self, X):
        return self.out_scale * self.net.embed(self.params, np.asarray(X, dtype=np.float64) / self.in_scale)

    def __repr__(self):
        return f"NumpyEmbedding({self.net.name}, out_scale={self.out_scale:g}, in_scale={self.in_scale:g})"


# ------------------------------------------------------------------------------------- JAX

def _jax():
    try:
        import jax
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("framework='jax' needs JAX installed (pip install jax)") from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _windows(jnp, x, k, s, pad_value=None, padding=0):
    if padding:
        x = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                    constant_values=pad_value)
    h, w = x.shape[2], x.shape[3]
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    parts = [x[:, :, a:a + s * (ho - 1) + 1:s, e:e + s * (wo - 1) + 1:s] for a in range(k) for e in range(k)]
    return jnp.stack(parts, axis=-1)                       # (n, C, Ho, Wo, k*k), row-major offsets


def _jax_layer(layer, p):
    """A JAX function of the batch for one gcref layer with local parameters ``p``."""
    jax = _jax()
    jnp = jax.numpy
    if isinstance(layer, L.Sequential):
        fns = [_jax_layer(child, {loc: p[full] for loc, full in names.items()})
               for (_, child), names in zip(layer.children, layer._child_names())]

        def run(x):
            for fn in fns:
                x = fn(x)
            return x
        return run
    if isinstance(layer, L.BasicBlock):                    # and Bottleneck: only the main path differs
        pm, pd = layer._split(p)
        main = _jax_layer(layer.main, pm)
        short = _jax_layer(layer.downsample, pd) if layer.downsample is not None else (lambda x: x)
        return lambda x: _relu(jnp, main(x) + short(x))
    if isinstance(layer, L.Linear):
        W = jnp.asarray(p["weight"])
        b = jnp.asarray(p["bias"]) if layer.bias else None
        return lambda x: x @ W.T + b if b is not None else x @ W.T
    if isinstance(layer, L.Conv2d):
        W = jnp.asarray(p["weight"])
        b = jnp.asarray(p["bias"])[None, :, None, None] if layer.bias else None
        s, q = layer.stride, layer.padding

        def conv(x):
            y = jax.lax.conv_general_dilated(x, W, (s, s), [(q, q), (q, q)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                             precision=jax.lax.Precision.HIGHEST)
            return y + b if b is not None else y
        return conv
    if isinstance(layer, L.ReLU):
        return lambda x: _relu(jnp, x)
    if isinstance(layer, L.Tanh):
        return jnp.tanh
    if isinstance(layer, L.GELU):
        from jax.scipy.special import erf
        return lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if isinstance(layer, L.SiLU):
        return lambda x: x * jax.nn.sigmoid(x)
    if isinstance(layer, L.MaxPool2d):
        k, s, q = layer.kernel_size, layer.stride, getattr(layer, "padding", 0)

        def maxpool(x):
            win = _windows(jnp, x, k, s, -jnp.inf, q)
            idx = jnp.argmax(win, axis=-1)                 # first maximal entry, as gcref
            return jnp.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
        return maxpool
    if type(layer) is L.AvgPool2d:
        k, s = layer.kernel_size, layer.stride
        return lambda x: jnp.mean(_windows(jnp, x, k, s), axis=-1)
    if isinstance(layer, L.AdaptiveAvgPool2d):
        from ..nn.pooling import adaptive_windows

        def adaptive(x):
            oh, ow = layer.output_size
            rows = adaptive_windows(x.shape[2], x.shape[2] if oh is None else oh)
            cols = adaptive_windows(x.shape[3], x.shape[3] if ow is None else ow)
            return jnp.stack([jnp.stack([jnp.mean(x[:, :, hs:he, ws:we], axis=(2, 3)) for ws, we in cols],
                                        axis=-1) for hs, he in rows], axis=-2)
        return adaptive
    if isinstance(layer, L.Affine):
        return lambda x: x * layer.scale + layer.shift
    if isinstance(layer, L.Dropout):                       # evaluation mode
        return lambda x: x
    if isinstance(layer, L.Flatten):
        return lambda x: x.reshape(x.shape[0], -1)
    if isinstance(layer, L.BatchNorm2d):
        scale = jnp.asarray(p["weight"] / np.sqrt(p["running_var"] + layer.eps))[None, :, None, None]
        shift = jnp.asarray(p["bias"] - p["running_mean"] * p["weight"]
                            / np.sqrt(p["running_var"] + layer.eps))[None, :, None, None]
        return lambda x: x * scale + shift
    raise TypeError(f"to_jax: layer {layer.describe()} is not supported; supported: Linear, Conv2d, "
                    "ReLU, Tanh, GELU, SiLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Affine, "
                    "Dropout, Flatten, BatchNorm2d, BasicBlock, Bottleneck, Sequential")


def _relu(jnp, x):
    # derivative 0 at the kink, as gcref and PyTorch (jnp.maximum would split it 1/2 : 1/2)
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def to_jax(net, params, output: str = "embedding"):
    """The embedding (or ``output="logits"``) of a gcref network as a JAX function, float64.

    The function maps a JAX array of shape ``(n, *net.input_shape)`` to ``(n, p)`` (or ``(n, k)``)
    and is differentiable with ``jax.jacrev``/``jax.jvp`` with gcref's derivative conventions:
    ReLU's derivative is 0 at 0 and max-pool routes to the first maximal entry of a window.
    Importing JAX this way turns on ``jax_enable_x64``.
    """
    if output not in ("embedding", "logits"):
        raise ValueError(f"output must be 'embedding' or 'logits', got {output!r}")
    params = net.check_params(params)
    jax = _jax()
    emb = _jax_layer(net.embedding, params)
    if output == "embedding":
        return jax.jit(emb)
    head = _jax_layer(net.head, {loc: params[f"{net.head_name}.{loc}"]
                                 for loc in net.head.param_specs((net.embedding_dim,))})
    return jax.jit(lambda x: head(emb(x)))


# ------------------------------------------------------------------------------------ torch

def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("framework='torch' needs PyTorch installed (pip install torch)") from None
    return torch


def torch_embedding(net, params):
    """The embedding of a gcref network as a float64 ``torch.nn.Module`` in evaluation mode
    (``gcref.interop.torch.to_torch(net, params, output="embedding")``)."""
    _torch()
    from ..interop.torch import to_torch
    return to_torch(net, params, output="embedding")


def _scaled_torch(torch, module, out_scale, in_scale):
    if out_scale == 1.0 and in_scale == 1.0:
        return module

    class Scaled(torch.nn.Module):
        """``x -> out_scale * module(x / in_scale)``."""

        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x):
            return out_scale * self.inner(x / in_scale)

    return Scaled().eval()


def embedding_function(framework: str, net, params, out_scale: float = 1.0, in_scale: float = 1.0):
    """``x -> out_scale * f(x / in_scale)`` for the embedding ``f`` of ``net`` in ``framework``."""
    check_framework(framework)
    if framework == "numpy":
        return NumpyEmbedding(net, params, out_scale, in_scale)
    if framework == "jax":
        f = to_jax(net, params)
        if out_scale == 1.0 and in_scale == 1.0:
            return f
        return lambda x: out_scale * f(x / in_scale)
    torch = _torch()
    return _scaled_torch(torch, torch_embedding(net, params), out_scale, in_scale)


def as_framework_input(framework: str, X):
    """``X`` as the framework's float64 array type (a copy: the user's code may modify it)."""
    check_framework(framework)
    X = np.array(X, dtype=np.float64)
    if framework == "numpy":
        return X
    if framework == "jax":
        return _jax().numpy.asarray(X)
    return _torch().tensor(X, dtype=_torch().float64)
