"""SGD with momentum (PyTorch's convention). L2 enters the loss as ``(l2/2)||theta||^2``."""

from __future__ import annotations

import numpy as np

from .._validation import check_float

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
            if self.momentum:
                buf = g if k not in state else self.momentum * state[k] + g
                new_state[k] = buf
                g = buf
            new_params[k] = params[k] - self.lr * g
        return new_params, new_state
