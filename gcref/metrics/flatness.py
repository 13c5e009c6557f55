"""The flatness link: GC bounded through the first layer's parameter gradients (Munn et al. 2024).

For an embedding whose first parametric layer is dense, ``f(x) = g(W x + b)``::

    ||J_f(x)||_F^2 <= ||W||_2^2 * ||grad_{(W, b)} f(x)||_F^2 / (1 + ||x||^2)

Proof: with ``G = dg/dz`` at ``z = W x + b`` (``p x h``), ``J_f = G W`` and, per output ``j``,
``grad_W f_j = G_j^T x^T``, ``grad_b f_j = G_j^T``, so
``||grad_{(W,b)} f||_F^2 = ||G||_F^2 (1 + ||x||^2)`` while
``||G W||_F^2 <= ||G||_F^2 ||W||_2^2``. Averaging over ``x`` bounds GC by the mean squared
parameter-gradient norm of the first layer: flat minima (small parameter gradients) have low GC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn.layers import Flatten, Linear

__all__ = ["FlatnessReport", "flatness_bound"]


@dataclass(frozen=True)
class FlatnessReport:
    """Per-example sides of the flatness inequality (``lhs <= rhs``)."""

    lhs: np.ndarray            # ||J_f(x)||_F^2, shape (n,)
    rhs: np.ndarray            # ||W||_2^2 ||grad_(W,b) f(x)||_F^2 / (1 + ||x||^2), shape (n,)
    param_grad_sq: np.ndarray  # ||grad_(W,b) f(x)||_F^2, shape (n,)
    spectral_norm_sq: float    # ||W||_2^2
    layer: str

    @property
    def slack(self) -> np.ndarray:
        return self.rhs - self.lhs

    @property
    def holds(self) -> bool:
        return bool(np.all(self.lhs <= self.rhs * (1 + 1e-9) + 1e-300))

    @property
    def gc(self) -> float:
        return float(self.lhs.mean())

    @property
    def gc_bound(self) -> float:
        return float(self.rhs.mean())


def _first_dense(net):
    for name, layer in net.embedding.children:
        if isinstance(layer, Flatten):
            continue
        if isinstance(layer, Linear):
            if not layer.bias:
                raise ValueError(f"the flatness bound needs a bias in the first layer '{name}'")
            return name
        raise ValueError(f"the flatness bound needs a dense first layer (f(x) = g(Wx + b)); "
                         f"{net.name}'s first parametric layer '{name}' is {layer.describe()}")
    raise ValueError(f"{net.name} has no dense layer")


def flatness_bound(net, params, X) -> FlatnessReport:
    """Evaluate ``||J_f(x)||_F^2 <= ||W||_2^2 ||grad_{(W,b)} f(x)||_F^2 / (1 + ||x||^2)`` per example.

    The parameter gradients are computed independently of the proof's identity: one VJP per
    example and embedding coordinate (the reference is explicit, not fast).
    """
    from .complexity import per_example_gc
    name = _first_dense(net)
    params = net.check_params(params)
    X = net.check_input(X)
    W = params[f"{name}.weight"]
    spec = float(np.linalg.norm(W, 2) ** 2)
    lhs = per_example_gc(net, params, X)
    p = net.embedding_dim
    grad_sq = np.zeros(X.shape[0])
    for i in range(X.shape[0]):
        Xi = X[i:i + 1]
        _, _, cache = net.forward_cache(params, Xi)
        for j in range(p):
            v = np.zeros((1, p))
            v[0, j] = 1.0
            _, g = net.vjp_cached(params, cache, v, "embedding")
            grad_sq[i] += np.sum(g[f"{name}.weight"] ** 2) + np.sum(g[f"{name}.bias"] ** 2)
    xsq = np.sum(X.reshape(X.shape[0], -1) ** 2, axis=1)
    rhs = spec * grad_sq / (1.0 + xsq)
    return FlatnessReport(lhs, rhs, grad_sq, spec, name)
