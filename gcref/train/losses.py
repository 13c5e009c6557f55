"""Softmax cross-entropy, the training loss."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)_c = z_c - logsumexp(z)``, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy ``L = -(1/n) sum_i log softmax(z_i)_{y_i}`` and ``dL/dz``.

    ``dL/dz_i = (softmax(z_i) - onehot(y_i)) / n``.
    """
    n, k = logits.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} for {k} logits, got range {y.min()}..{y.max()}")
    logp = log_softmax(logits)
    loss = -float(np.mean(logp[np.arange(n), y]))
    grad = np.exp(logp)
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n
