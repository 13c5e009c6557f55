"""SGD with momentum (PyTorch's convention). L2 enters the loss as ``(l2/2)||theta||^2``."""

from __future__ import annotations

import numpy as np

from .._validation import check_float
from .losses import _xp

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent with heavy-ball momentum, as ``torch.optim.SGD``.

    ``b <- mu b + g`` (``b = g`` at the first step), ``theta <- theta - lr b``, where ``g`` is the
    gradient of the full objective (L2 included by the caller). With ``momentum = 0`` this is
    plain SGD. ``weight_decay`` adds ``wd * theta`` to ``g`` (the same as an L2 term
    ``(wd/2)||theta||^2`` in the loss).
    """

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr = check_float(lr, "lr", minimum=0.0, strict_min=True)
        self.momentum = check_float(momentum, "momentum", minimum=0.0, maximum=1.0, strict_max=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", minimum=0.0)

    def init_state(self, params: dict) -> dict:
        return {}

    def step(self, params: dict, grads: dict, state: dict) -> tuple[dict, dict]:
        """Return ``(new_params, new_state)``; inputs are not modified. Only keys in ``grads``
        are updated (buffers such as batch-norm statistics are left alone)."""
        new_params = dict(params)
        new_state = dict(state)
        for k, g in grads.items():
            if self.weight_decay:
                g = g + self.weight_decay * params[k]
            new_params[k] = np.empty_like(params[k])
            if self.momentum:
                new_state[k] = np.empty_like(g)
            self.update(params[k], g, state.get(k), new_params[k], new_state.get(k))
        return new_params, new_state

    def update(self, p, g, buf, p_out, buf_out, tmp=None):
        """One parameter's update, written into ``p_out`` (and ``buf_out`` with momentum):
        ``b' = mu b + g`` (``b' = g`` when ``buf`` is None), ``p' = p - lr b'``. Arrays of any
        backend (NumPy or CuPy) in any float dtype; ``tmp`` is scratch of ``p``'s shape. The
        one definition of the update, used by :meth:`step` and the trainer."""
        if self.momentum:
            if buf is None:
                buf_out[...] = g
            else:
                _mul(buf, self.momentum, buf_out)
                buf_out += g
            g = buf_out
        tmp = _mul(g, self.lr, tmp)
        _sub(p, tmp, p_out)


def _mul(a, s, out):
    return a * s if out is None else _xp(a).multiply(a, s, out=out)


def _sub(a, b, out):
    return _xp(a).subtract(a, b, out=out)
