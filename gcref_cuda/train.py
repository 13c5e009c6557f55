"""Training with L2 and explicit GC regularization on the fast backend (``gcref.train``'s twins).

Each function is the ``gcref.train`` function of the same name run with a
:class:`gcref_cuda.FastEngine` (``dtype``, ``memory_budget``): the objective

    J(theta) = L(theta) + (l2/2) ||theta||^2 + gc_reg * GC(f_theta, batch),

the row sampling of the GC penalty, the optimizer step, ``evaluate`` and the ``fit`` loop are
written once, in ``gcref.train``; the engine computes the passes (the GC penalty's exact gradient
batched over (example, row) pairs, see ``docs/theory.md`` §5.1, §5.3-5.4 and §6).
Parameters stay host dicts (``gcref.train.SGD`` and the checkpoint files are shared); values are
returned on the host.
"""

from __future__ import annotations

from gcref import train as _reference
from gcref.train.optim import SGD

from .backend import to_host
from .fast_engine import FastEngine

__all__ = ["gc_penalty_and_grad", "objective_and_grad", "train_step", "evaluate", "fit", "SGD"]


def gc_penalty_and_grad(net, params, X, rows=None, seed=0, *, dtype=None, memory_budget=None):
    """``GC(f, X)`` and its exact gradient for every trainable parameter (host):
    ``gcref.train.gc_penalty_and_grad`` with the fast engine (same ``rows`` draws)."""
    engine = FastEngine(net, dtype, memory_budget)
    return _reference.gc_penalty_and_grad(engine.net, params, X, rows, seed, engine=engine)


def objective_and_grad(net, params, X, y, l2: float = 0.0, gc_reg: float = 0.0, gc_rows=None,
                       seed=0, *, dtype=None, memory_budget=None):
    """``(objective, parts, grads)`` of ``L + (l2/2)||theta||^2 + gc_reg GC`` on a batch:
    ``gcref.train.objective_and_grad`` with the fast engine."""
    engine = FastEngine(net, dtype, memory_budget)
    return _reference.objective_and_grad(engine.net, params, X, to_host(y), l2, gc_reg, gc_rows, seed,
                                         engine=engine)


def train_step(net, params, state, X, y, optimizer: SGD, l2=0.0, gc_reg=0.0, gc_rows=None, seed=0,
               *, dtype=None, memory_budget=None):
    """One optimizer step, ``(params, state, objective, parts)``: ``gcref.train.train_step``
    with the fast engine."""
    engine = FastEngine(net, dtype, memory_budget)
    return _reference.train_step(engine.net, params, state, X, to_host(y), optimizer, l2, gc_reg,
                                 gc_rows, seed, engine=engine)


def evaluate(net, params, X, y, gc_method="exact", gc_size=None, seed=0, *, dtype=None,
             memory_budget=None) -> dict:
    """Accuracy, GC (exact or estimated), NC and geometric collapse: ``gcref.train.evaluate``
    with the fast engine (undefined metrics are ``None`` with the reason)."""
    engine = FastEngine(net, dtype, memory_budget)
    return _reference.evaluate(engine.net, params, X, to_host(y), gc_method, gc_size, seed,
                               engine=engine)


def fit(net, params, data, *, dtype=None, memory_budget=None, **kwargs):
    """``gcref.train.fit`` with every pass on this backend: the reference loop (same arguments,
    batches, draws, checkpoint and ``history.jsonl`` files, :class:`FitResult`) run with
    ``engine=FastEngine(net, dtype, memory_budget)``. Runs are independent (no shared state)."""
    if "engine" in kwargs:
        raise TypeError("gcref_cuda.fit chooses the engine; call gcref.train.fit(..., engine=...) "
                        "to pass your own")
    engine = FastEngine(net, dtype, memory_budget)
    return _reference.fit(engine.net, params, data, engine=engine, **kwargs)
