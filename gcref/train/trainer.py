"""The trainer: one run's state on the engine's backend and its SGD step, built once per run.

The step minimises, on the mini-batch ``B`` of step ``t``,

    J(theta) = L(theta) + (l2/2) ||theta||^2 + gc_reg * GC(f_theta, B),

``L`` the mean softmax cross-entropy (:func:`gcref.train.losses.cross_entropy_and_grad`), the L2
sum over every trainable parameter, the GC penalty's rows and scale from
:func:`gcref.train.gc_regularizer.penalty_rows`, and updates with heavy-ball SGD
(:meth:`gcref.train.optim.SGD.update`). This is the one place the objective is assembled:
:func:`gcref.train.objective_and_grad` and :func:`gcref.train.train_step` are this step on one
batch, and :func:`gcref.train.fit` steps a :class:`Trainer` between records.

What the trainer keeps on the engine's backend, in the engine's compute dtype, for the whole run
(``docs/theory.md`` §6, "The trainer"): the parameters (double-buffered, so a step that diverges
leaves the last good ones), the momentum, the training set (when it fits half the engine's
memory budget; otherwise batches are gathered on the host), and scratch of each parameter's
shape. Per step only the batch indices go to the backend and a handful of scalars come back
(loss, ``||grad L||^2`` and ``||theta||^2`` per parameter, the penalty's value); the host sees
the parameters at :meth:`Trainer.host_params` (records, checkpoints, the end). The L2 term's
``||theta||^2`` of a step is the update's ``||theta'||^2`` of the step before (one pass over each
parameter, not two).

For the reference engine the backend is host float64 NumPy, so the trainer is the readable
definition: the same float operations in the same order as the functional ``objective_and_grad``
+ ``SGD.step`` it replaced (bitwise equal histories).
"""

from __future__ import annotations

import math

import numpy as np

from .gc_regularizer import penalty_rows
from .losses import cross_entropy_and_grad
from .optim import SGD

__all__ = ["Trainer", "StepResult"]


class StepResult:
    """Host scalars of one step: ``objective``, ``parts`` (``loss``, ``l2_term``, ``gc``,
    ``grad_norm_sq``) and ``param_norm`` (``||theta'||`` after the update, every parameter)."""

    __slots__ = ("objective", "parts", "param_norm")

    def __init__(self, objective, parts, param_norm):
        self.objective, self.parts, self.param_norm = objective, parts, param_norm


class Trainer:
    """A run's parameters, momentum and data on ``engine``'s backend, and its step.

    Parameters
    ----------
    engine : gcref.engine.Engine
        Built for the run's network; supplies the backend (``xp``, ``dtype``, ``to_backend``,
        ``to_host``) and the passes (``step_passes``, ``step_gc_rows``).
    params, state : dict
        Validated host parameters (buffers included) and the momentum (``{}`` before the first
        step); copied to the backend in the compute dtype.
    X, y : ndarray
        The validated training set (host float64 inputs, int labels).
    optimizer : SGD
    l2, gc_reg, gc_rows : as in :func:`gcref.train.fit`.
    """

    def __init__(self, engine, params, state, X, y, optimizer: SGD, *, l2=0.0, gc_reg=0.0,
                 gc_rows=None):
        self.engine = engine
        self.net = engine.net
        self.xp = engine.xp
        self.optimizer = optimizer
        self.l2, self.gc_reg, self.gc_rows = l2, gc_reg, gc_rows
        self.trainable = list(self.net.param_names)
        to_b = engine.to_backend
        self.P = {k: to_b(v) for k, v in params.items()}
        self.B = {k: to_b(v) for k, v in state.items()}
        self._tmp = {k: self.xp.empty_like(self.P[k]) for k in self.trainable}
        self._next = self._bnext = None             # the update's buffers, made at the first step
        self.n = X.shape[0]
        dtype = engine.dtype
        budget = getattr(engine, "memory_budget", None)
        self._on_backend = budget is None or X.size * dtype.itemsize <= budget // 2
        self.X = to_b(X) if self._on_backend else X
        self.y = to_b(y, np.int64) if self._on_backend else np.asarray(y, dtype=np.int64)
        self._sq = self._sq_norms(self.P)           # ||theta||^2 per trainable parameter
        self.last_logits = None                     # the logits of the last batch (backend)

    # ---------------------------------------------------------------- host views
    def host_params(self, dtype=None) -> dict:
        """The parameters as host arrays (compute dtype, or ``dtype``), in the run's key order."""
        return {k: np.array(self.engine.to_host(v), dtype=dtype) for k, v in self.P.items()}

    def host_state(self, dtype=None) -> dict:
        """The momentum as host arrays (``{}`` before the first step without momentum)."""
        return {k: np.array(self.engine.to_host(v), dtype=dtype) for k, v in self.B.items()}

    # ---------------------------------------------------------------- the step
    def batch(self, idx):
        """The backend batch ``(X[idx], y[idx])`` for host indices ``idx``."""
        if self._on_backend:
            i = self.engine.to_backend(np.asarray(idx), np.int64)
            return self.X[i], self.y[i]
        return self.engine.to_backend(self.X[idx]), self.engine.to_backend(self.y[idx], np.int64)

    def _sq_norms(self, P) -> dict:
        """``{k: ||P[k]||^2}`` (host floats) for every trainable parameter, in one transfer."""
        xp = self.xp
        vals = xp.empty(len(self.trainable), dtype=np.float64)
        for i, k in enumerate(self.trainable):
            vals[i] = xp.sum(xp.multiply(P[k], P[k], out=self._tmp[k]))
        host = self.engine.to_host(vals)
        return {k: float(host[i]) for i, k in enumerate(self.trainable)}

    def objective_and_grads(self, Xb, yb, gc_seed=0):
        """``(objective, parts, grads)`` at the current parameters on a backend batch: the
        objective's value and parts as host floats, ``grads`` (backend, compute dtype) the
        gradient of the whole objective, in the engine's key order."""
        xp, engine = self.xp, self.engine
        logits, pullback = engine.step_passes(self.P, Xb)
        self.last_logits = logits
        loss, dlogits = cross_entropy_and_grad(logits, yb)
        grads = pullback(dlogits)
        sums = xp.empty(len(grads) + 1, dtype=np.float64)
        sums[0] = loss
        for i, (k, g) in enumerate(grads.items(), 1):
            sums[i] = xp.sum(xp.multiply(g, g, out=self._tmp[k]))
        host = engine.to_host(sums)
        loss_h = float(host[0])
        parts = {"loss": loss_h, "grad_norm_sq": float(sum(host[1:])), "gc": None}
        objective = loss_h
        if self.l2:
            parts["l2_term"] = 0.5 * self.l2 * sum(self._sq[k] for k in self.trainable)
            objective += parts["l2_term"]
            for k, g in grads.items():
                g += xp.multiply(self.P[k], self.l2, out=self._tmp[k])
        if self.gc_reg:
            chosen, scale = penalty_rows(self.net.embedding_dim, self.gc_rows, gc_seed, "gc_rows")
            value, ggc = engine.step_gc_rows(self.P, Xb, chosen)
            factor = scale / Xb.shape[0]
            parts["gc"] = float(value) * factor
            objective += self.gc_reg * parts["gc"]
            for k, g in grads.items():
                gk = ggc[k]
                gk *= factor
                gk *= self.gc_reg
                g += gk
        return objective, parts, grads

    def step(self, idx, gc_seed=0, max_param_norm=math.inf) -> StepResult:
        """One SGD step on the batch ``idx`` (host indices). The update is kept only if the
        objective is finite and ``||theta'|| <= max_param_norm``; otherwise the parameters and
        momentum stay those before the step (the result says why)."""
        Xb, yb = self.batch(idx)
        objective, parts, grads = self.objective_and_grads(Xb, yb, gc_seed)
        opt = self.optimizer
        if self._next is None:
            self._next = {k: self.xp.empty_like(self.P[k]) for k in self.trainable}
            self._bnext = {k: self.xp.empty_like(self.P[k]) for k in self.trainable} \
                if opt.momentum else {}
        for k, g in grads.items():
            opt.update(self.P[k], g, self.B.get(k), self._next[k], self._bnext.get(k), self._tmp[k])
        new_sq = self._sq_norms({k: self._next[k] if k in grads else self.P[k] for k in self.trainable})
        norm = math.sqrt(sum(new_sq.values()))
        if math.isfinite(objective) and math.isfinite(norm) and norm <= max_param_norm:
            for k in grads:
                self.P[k], self._next[k] = self._next[k], self.P[k]
                if opt.momentum:
                    if k not in self.B:
                        self.B[k] = self.xp.empty_like(self.P[k])
                    self.B[k], self._bnext[k] = self._bnext[k], self.B[k]
            self._sq = new_sq
        return StepResult(objective, parts, norm)
