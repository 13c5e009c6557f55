"""The explicit GC penalty ``GC(f_theta, batch)`` and its exact parameter gradient.

Double backprop by hand (``docs/theory.md`` §5.1 and §6). For one example and one output row ``k``::

    s_k = J(x)^T e_k                      (a VJP through the embedding)
    R_k = ||s_k||^2,     GC = (1/n) sum_x sum_k R_k

``R_k`` depends on ``theta`` only through the backward pass; holding ``s_k`` fixed,
``dR_k = 2 <s_k, d(J^T e_k)> = <e_k, dJ (2 s_k)>``, the derivative of ``<g, J u>`` with
``g = e_k`` and ``u = 2 s_k`` held fixed: exactly what each layer's ``second_order`` returns
(weight gradients of linear layers evaluated at the tangent ``u_{l-1}`` and cotangent ``g_l``;
``sigma''`` terms for smooth activations that flow back along the primal network; batch norm's
``gamma``). For piecewise-linear networks the masks and pooling choices are held fixed, which is
exact almost everywhere. The row sampling and the scaling are written here once; the passes
are the engine's (:meth:`gcref.engine.Engine.gc_rows_value_and_grad`).
"""

from __future__ import annotations

import numpy as np

from .._validation import as_generator, check_int
from ..engine import as_engine

__all__ = ["gc_penalty", "gc_penalty_and_grad", "penalty_rows"]


def gc_penalty_and_grad(net, params, X, rows=None, seed=0, *, engine=None
                        ) -> tuple[float, dict[str, np.ndarray]]:
    """``GC(f, X) = (1/n) sum_x ||J_f(x)||_F^2`` and its gradient w.r.t. every trainable parameter.

    Parameters
    ----------
    net : gcref.nn.Network
    params : dict[str, ndarray]
        Parameters (validated and converted to float64 here).
    X : ndarray, shape (n, *input_shape)
    rows : int, optional
        ``None`` (exact, every embedding row) or the number ``s`` of rows sampled without
        replacement per step, scaled by ``p/s``: an unbiased estimate of the value and gradient
        at ``s/p`` of the cost.
    seed : int or Generator
        For the sampled rows.
    engine : optional
        Who computes the passes (default: the reference); see :func:`gcref.engine.as_engine`.

    Returns
    -------
    value : float
    grads : dict[str, ndarray]
        Zero for the head (the embedding's GC does not depend on it).
    """
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    X = engine.check_input(X)
    n = X.shape[0]
    chosen, scale = penalty_rows(net.embedding_dim, rows, seed)
    value, grads = engine.gc_rows_value_and_grad(params, X, chosen)
    factor = scale / n
    return value * factor, {k: g * factor for k, g in grads.items()}


def penalty_rows(p: int, rows=None, seed=0, name: str = "rows") -> tuple[np.ndarray, float]:
    """The embedding rows of one GC-penalty evaluation and their scale: every row with scale 1
    (``rows=None``, exact), or ``s = rows`` rows drawn without replacement from ``seed`` (sorted)
    with scale ``p/s`` (unbiased). The penalty is ``(scale/n) sum_x sum_{k in rows} ||J^T e_k||^2``."""
    if rows is None:
        return np.arange(p), 1.0
    s = check_int(rows, name, minimum=1, maximum=p)
    return np.sort(as_generator(seed).choice(p, size=s, replace=False)), p / s


def gc_penalty(net, params, X) -> float:
    """The value alone (exact): ``(1/n) sum_x ||J_f(x)||_F^2``."""
    from ..metrics.complexity import geometric_complexity
    return geometric_complexity(net, params, X)
