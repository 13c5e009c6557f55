"""Designed feature sets shared by the CDNV/NC, Papyan and NCC cases: exact-variance designs,
simplex ETF means, quantized deviations (exact in float64 at a large offset)."""

from __future__ import annotations

import numpy as np

OFFSET = 1e8

def _quantized(rng, shape, step=2.0 ** -20):
    return np.round(rng.normal(size=shape) / step) * step


def _design(means, sigmas, counts, rng=None, quantize=False):
    """Class c: ``counts[c]`` points ``mu_c + d`` with deviations of zero mean, built as ``[A; -A]``
    (exact zero sum). Without ``rng``: ``d = ±sigma_c sqrt(p) e_l`` scaled so ``Var_c = sigma_c^2``
    exactly (counts = 2p); with ``rng``: Gaussian ``A`` (optionally quantized to 2^-20)."""
    Z, y = [], []
    p = means.shape[1]
    for c, (mu, s, m) in enumerate(zip(means, sigmas, counts)):
        if rng is None:
            A = s * np.eye(p)                            # ±s e_l: ||d||^2 = s^2, Var_c = s^2
        else:
            A = _quantized(rng, (m // 2, p)) if quantize else rng.normal(size=(m // 2, p))
            A = s * A
        Z.append(mu + np.concatenate([A, -A]))
        y.append(np.full(2 * A.shape[0], c))
    return np.concatenate(Z), np.concatenate(y)


def _etf(k, p, radius=1.0):
    """k vertices of a simplex ETF in R^p (p >= k - 1), norm ``radius``: rows of (k, p)."""
    M = np.eye(k) - np.ones((k, k)) / k                  # centred standard basis
    Q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(p, p)))
    U, _, _ = np.linalg.svd(M)                           # orthonormal basis of the centred span
    V = M @ U[:, :k - 1]                                 # (k, k-1) coordinates in that span
    V = V / np.linalg.norm(V, axis=1, keepdims=True) * radius
    return V @ Q[:k - 1]                                 # embed into R^p by an orthonormal map


