"""Softmax cross-entropy, the training loss."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy", "log_softmax", "cross_entropy_and_grad"]


def _xp(a):
    """The array module of ``a`` (NumPy, or CuPy for a CuPy array) without importing CuPy."""
    return np if isinstance(a, np.ndarray) else __import__(type(a).__module__.split(".")[0])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)_c = z_c - logsumexp(z)``, stable for large logits."""
    xp = _xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def cross_entropy_and_grad(logits, y):
    """``(L, dL/dz)`` as arrays of the logits' backend and dtype (``L`` 0-d): the formula of
    :func:`softmax_cross_entropy` without validation or a host conversion (``y`` validated,
    an integer array on the same backend). The training step calls this."""
    xp = _xp(logits)
    n = logits.shape[0]
    rows = xp.arange(n)
    logp = log_softmax(logits)
    loss = -(xp.sum(logp[rows, y]) / n)              # the float ops of mean(), bitwise
    grad = xp.exp(logp)
    grad[rows, y] -= 1.0
    grad /= n
    return loss, grad


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy ``L = -(1/n) sum_i log softmax(z_i)_{y_i}`` and ``dL/dz``.

    ``dL/dz_i = (softmax(z_i) - onehot(y_i)) / n``.
    """
    n, k = logits.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} for {k} logits, got range {y.min()}..{y.max()}")
    loss, grad = cross_entropy_and_grad(logits, y)
    return float(loss), grad
