"""Poincaré constants and the inequality by which geometric complexity controls neural collapse.

A distribution ``Q`` on ``R^d`` satisfies a Poincaré inequality with constant ``rho(Q)`` if
``Var_Q(u) <= rho E_Q ||grad u||^2`` for every smooth scalar ``u``. Applied to each coordinate of
a vector map ``f`` and summed, ``Var_f(Q) <= rho(Q) GC(f, Q)``: the total variance of the
embedding is at most ``rho`` times its geometric complexity (Munn et al. 2024). Dividing by the
squared distance of class means turns this into ``CDNV_ij <= (rho_i GC_i + rho_j GC_j) /
(2 ||mu_i - mu_j||^2) <= rho_max G_ij``, so low GC forces neural collapse.

This module gives the constants of standard laws, a clearly labelled empirical lower bound for
data of unknown law, and a report that checks the inequality chain on given statistics. The
network wrapper (computing ``GC_c`` per class and calling :func:`poincare_inequality_from_stats`)
lives in :mod:`gcref.metrics.complexity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gcref._validation import as_float_array, as_labels, check_float
from gcref.metrics.collapse import off_diagonal_mean, pairwise_ratio

__all__ = [
    "gaussian_poincare_constant",
    "uniform_box_poincare_constant",
    "product_poincare_constant",
    "PoincareLowerBound",
    "empirical_poincare_lower_bound",
    "PoincareReport",
    "poincare_inequality_from_stats",
]



def per_class_constants(rho, k: int, name: str = "rho") -> np.ndarray:
    """Broadcast a Poincaré constant (a scalar, or one per class) to shape ``(k,)``, validated."""
    arr = as_float_array(rho, name)
    if arr.ndim == 0:
        arr = np.full(k, float(arr))
    elif arr.shape != (k,):
        raise ValueError(f"{name} must be a scalar or have shape ({k},), got {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative")
    return arr

def gaussian_poincare_constant(cov) -> float:
    """Poincaré constant of a Gaussian ``N(m, Sigma)``: ``lambda_max(Sigma)``.

    Parameters
    ----------
    cov : array_like, shape (d, d)
        Covariance matrix; must be symmetric and positive semi-definite (up to rounding).

    Returns
    -------
    float
        The largest eigenvalue of ``cov`` (0 for a point mass).

    Notes
    -----
    Gaussian Poincaré inequality (Chernoff 1981; Brascamp-Lieb 1976):
    ``Var(u(X)) <= E[grad u^T Sigma grad u] <= lambda_max(Sigma) E||grad u||^2`` for
    ``X ~ N(m, Sigma)``. The constant is optimal: the linear ``u(x) = v^T x`` with ``v`` the top
    eigenvector attains equality.
    """
    cov = as_float_array(cov, "cov", ndim=2)
    d = cov.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"cov must be square, got shape {cov.shape}")
    scale = max(float(np.max(np.abs(cov))), np.finfo(np.float64).tiny)
    tol = 1e-10 * scale
    if np.max(np.abs(cov - cov.T)) > tol:
        raise ValueError("cov must be symmetric")
    eig = np.linalg.eigvalsh((cov + cov.T) / 2.0)
    if eig[0] < -tol * d:
        raise ValueError(f"cov must be positive semi-definite, smallest eigenvalue {eig[0]:.3g}")
    return float(max(eig[-1], 0.0))


def uniform_box_poincare_constant(low, high) -> float:
    """Poincaré constant of the uniform law on the box ``prod_l [a_l, b_l]``.

    Parameters
    ----------
    low, high : array_like, shape (d,) or scalars
        Lower and upper corners, ``high >= low``.

    Returns
    -------
    float
        ``max_l (b_l - a_l)^2 / pi^2``.

    Notes
    -----
    On an interval of length ``L`` the optimal constant is ``L^2 / pi^2`` (Wirtinger's
    inequality; the first non-zero Neumann eigenvalue of ``-u''`` is ``pi^2 / L^2``, with
    eigenfunction ``cos(pi (x - a) / L)``). The uniform law on a box is the product of the
    interval laws, and a product has the largest of its factors' constants
    (:func:`product_poincare_constant`).
    """
    low = np.atleast_1d(as_float_array(low, "low"))
    high = np.atleast_1d(as_float_array(high, "high"))
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"low and high must be 1-D of the same length, got shapes "
                         f"{low.shape} and {high.shape}")
    if np.any(high < low):
        raise ValueError("high must be >= low in every coordinate")
    return float(np.max((high - low) ** 2) / np.pi ** 2)


def product_poincare_constant(constants) -> float:
    """Poincaré constant of a product measure: the largest constant of its factors.

    Parameters
    ----------
    constants : array_like, shape (r,)
        Non-negative Poincaré constants of the independent factors.

    Notes
    -----
    Tensorization of the Poincaré inequality (e.g. Ledoux 2001; Bakry, Gentil & Ledoux 2014,
    Prop. 4.3.1): ``rho(Q_1 x ... x Q_r) = max_l rho(Q_l)``.
    """
    constants = as_float_array(constants, "constants", ndim=1)
    if np.any(constants < 0):
        raise ValueError("constants must be non-negative")
    return float(np.max(constants))


@dataclass(frozen=True, eq=False)
class PoincareLowerBound:
    """An empirical LOWER bound on a Poincaré constant, not the constant itself.

    Attributes
    ----------
    value : float
        ``lambda_max`` of the sample covariance (divisor n).
    n : int
        Number of samples it was estimated from.
    direction : ndarray, shape (d,)
        Unit top eigenvector: the linear test function ``u(z) = direction . z`` attains it.
    note : str
        What the value means and does not mean.

    This class deliberately has no ``__float__``: use ``.value`` knowing it is a lower bound.
    """

    value: float
    n: int
    direction: np.ndarray
    note: str


_LOWER_BOUND_NOTE = (
    "lambda_max of the sample covariance: for ANY law, rho >= lambda_max(Cov) (take the linear "
    "test function u(z) = v.z), with equality for Gaussians. It is a lower bound on rho, not an "
    "estimate of rho for non-Gaussian data (uniform on a box: lambda_max = L^2/12 < L^2/pi^2 = "
    "rho), and as a plug-in estimate of lambda_max(Cov) it fluctuates and is biased in small "
    "samples, in a direction that depends on the law and the dimension (the divisor-n "
    "covariance shrinks it, the maximum over directions inflates it: in 1-D with n = 5 its mean "
    "is 0.8 lambda).")


def empirical_poincare_lower_bound(Z) -> PoincareLowerBound:
    """Empirical lower bound ``lambda_max(Cov(Z))`` on the Poincaré constant of Z's law.

    Parameters
    ----------
    Z : array_like, shape (n, d)
        Samples of the distribution, n >= 2.

    Returns
    -------
    PoincareLowerBound
        ``value`` (the top eigenvalue of the sample covariance with divisor n, so that its
        trace is gcref's total variance), ``n``, ``direction`` and an explanatory ``note``.

    Notes
    -----
    For any law ``Q`` and unit ``v``, the linear function ``u(z) = v^T z`` has
    ``Var_Q(u) = v^T Cov v`` and ``||grad u||^2 = 1``, so ``rho(Q) >= max_v v^T Cov v =
    lambda_max(Cov)``. Equality holds for Gaussians (:func:`gaussian_poincare_constant`). The
    sample value estimates ``lambda_max(Cov)`` with a small-sample bias of either sign: by
    convexity of ``lambda_max`` its mean is at least ``lambda_max`` of the mean sample
    covariance, which is ``(n - 1)/n Cov`` (divisor ``n``). In 1-D only the second effect
    exists (mean ``(n-1)/n lambda``, 0.8 lambda at n = 5); with many nearly equal eigenvalues
    the first dominates and it can exceed the true constant of a Gaussian. For data of
    unknown law no finite sample gives an upper bound on ``rho`` (a discrete sample's own
    Poincaré constant is infinite).
    """
    Z = as_float_array(Z, "Z", ndim=2)
    n = Z.shape[0]
    if n < 2:
        raise ValueError(f"Z: need at least 2 samples, got {n}")
    D = Z - Z.mean(axis=0)
    cov = D.T @ D / n
    eig, vec = np.linalg.eigh(cov)
    return PoincareLowerBound(value=float(max(eig[-1], 0.0)), n=n,
                              direction=vec[:, -1].copy(), note=_LOWER_BOUND_NOTE)


@dataclass(frozen=True, eq=False)
class PoincareReport:
    """The Poincaré chain ``CDNV_ij <= rhs_ij <= rho_max G_ij`` checked on given statistics.

    Attributes
    ----------
    lhs : ndarray, shape (k, k)
        ``V_ij = (Var_i + Var_j) / (2 d_ij^2)`` (CDNV), zero diagonal.
    rhs : ndarray, shape (k, k)
        ``(rho_i GC_i + rho_j GC_j) / (2 d_ij^2)``, zero diagonal.
    slack : ndarray, shape (k, k)
        ``rhs - lhs``.
    holds : bool
        ``lhs_ij <= rhs_ij (1 + rtol)`` for every pair.
    class_lhs, class_rhs, class_slack : ndarray, shape (k,)
        ``Var_c``, ``rho_c GC_c`` and their difference.
    class_holds : bool
        The per-class verdict. With standard errors (``class_stderr``, always given by
        :func:`poincare_inequality`): no class violates ``Var_c <= rho_c GC_c`` significantly,
        i.e. every ``class_z <= z_critical``, a one-sided test of family-wise level ``level``
        (Bonferroni over the ``k`` classes). Without: the point comparison
        ``Var_c <= rho_c GC_c (1 + rtol)`` (for exact or population statistics).
    class_stderr, class_z : ndarray, shape (k,), or None
        Standard error of ``Var_c - rho_c GC_c`` (``std(a - b, ddof=1) / sqrt(n_c)`` with
        ``a = ||f(x) - mu_c||^2``, ``b = rho_c ||J_f(x)||_F^2`` over the class's examples) and
        ``z_c = (Var_c - rho_c GC_c) / stderr_c`` (``0`` or ``inf`` when the difference has no
        spread, by the point comparison).
    z_critical : float or None
        ``Phi^{-1}(1 - level / k)``; a class with ``z_c`` above it is a significant violation.
    level : float
        Family-wise level of the per-class test (default 0.05).
    neural_collapse : float
        ``NC = mean_{i != j} lhs_ij``.
    rhs_mean : float
        ``mean_{i != j} rhs_ij``.
    rho_max : float
        ``max_c rho_c``.
    geometric_collapse : float
        ``mean_{i != j} (GC_i + GC_j) / (2 d_ij^2)``.
    chain_holds : bool
        ``NC <= rhs_mean <= rho_max * geometric_collapse`` (each with factor ``1 + rtol``).
    rtol : float
        Relative tolerance used for the comparisons.
    """

    lhs: np.ndarray
    rhs: np.ndarray
    slack: np.ndarray
    holds: bool
    class_lhs: np.ndarray
    class_rhs: np.ndarray
    class_slack: np.ndarray
    class_holds: bool
    neural_collapse: float
    rhs_mean: float
    rho_max: float
    geometric_collapse: float
    chain_holds: bool
    rtol: float
    class_stderr: np.ndarray | None = None
    class_z: np.ndarray | None = None
    z_critical: float | None = None
    level: float = 0.05


def _class_z(variances, class_rhs, stderr, rtol):
    """``(Var_c - rho_c GC_c) / stderr_c``; without spread the exact difference decides (0 or inf)."""
    diff = variances - class_rhs
    exact = np.where(variances <= class_rhs * (1.0 + rtol), 0.0, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(stderr > 0, diff / np.where(stderr > 0, stderr, 1.0), exact)


def poincare_inequality_from_stats(variances, gc_per_class, rho_per_class, means, *,
                                   rtol: float = 1e-9, class_stderr=None,
                                   level: float = 0.05) -> PoincareReport:
    """Check ``Var_c <= rho_c GC_c`` and the CDNV / geometric-collapse chain it implies.

    Parameters
    ----------
    variances : array_like, shape (k,)
        Total class variances ``Var_c`` of the embedding.
    gc_per_class : array_like, shape (k,)
        ``GC_c = mean_{x in D_c} ||J_f(x)||_F^2``.
    rho_per_class : float or array_like, shape (k,)
        Poincaré constants ``rho_c`` of the class-conditional INPUT laws (a scalar is used for
        every class).
    means : array_like, shape (k, p)
        Class means of the embedding.
    rtol : float
        Relative tolerance of the point comparisons (rounding, not statistics).
    class_stderr : array_like, shape (k,), optional
        Standard errors of ``Var_c - rho_c GC_c`` when both are sample means: the per-class
        verdict is then a one-sided z-test (see :class:`PoincareReport`).
    level : float in (0, 1)
        Family-wise level of that test (Bonferroni over classes).

    Returns
    -------
    PoincareReport

    Notes
    -----
    Munn et al. 2024. Poincaré for class ``c`` summed over the p coordinates of ``f``::

        Var_c = sum_l Var(f_l) <= rho_c sum_l E||grad f_l||^2 = rho_c GC_c

    hence, for every pair,

        V_ij = (Var_i + Var_j) / (2 d_ij^2) <= (rho_i GC_i + rho_j GC_j) / (2 d_ij^2)
             <= rho_max (GC_i + GC_j) / (2 d_ij^2) = rho_max G_ij

    and averaging over pairs ``i != j``: ``NC <= mean rhs <= rho_max * geometric collapse``.
    The inequality is a statement about the population class laws; with empirical ``Var_c``
    and ``GC_c`` (and a ``rho_c`` that is itself only a lower bound when the law is unknown)
    the report checks estimates, not a theorem.
    """
    means = as_float_array(means, "means", ndim=2)
    k = means.shape[0]
    variances = as_float_array(variances, "variances", shape=(k,))
    gc = as_float_array(gc_per_class, "gc_per_class", shape=(k,))
    rho = per_class_constants(rho_per_class, k, "rho_per_class")
    for name, arr in (("variances", variances), ("gc_per_class", gc), ("rho_per_class", rho)):
        if np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative")
    rtol = check_float(rtol, "rtol", minimum=0.0)
    level = check_float(level, "level", minimum=0.0, maximum=1.0, strict_min=True, strict_max=True)

    class_rhs = rho * gc
    if class_stderr is None:
        se = z = z_crit = None
        class_holds = bool(np.all(variances <= class_rhs * (1.0 + rtol)))
    else:
        se = as_float_array(class_stderr, "class_stderr", shape=(k,))
        if np.any(se < 0):
            raise ValueError("class_stderr must be non-negative")
        z = _class_z(variances, class_rhs, se, rtol)
        z_crit = NormalDist().inv_cdf(1.0 - level / k)
        class_holds = bool(np.all(z <= z_crit))
    lhs = pairwise_ratio(means, variances, values_name="variances")
    rhs = pairwise_ratio(means, class_rhs, values_name="rho_per_class * gc_per_class")
    g_pairs = pairwise_ratio(means, gc, values_name="gc_per_class")
    nc = off_diagonal_mean(lhs)
    rhs_mean = off_diagonal_mean(rhs)
    rho_max = float(rho.max())
    gcol = off_diagonal_mean(g_pairs)
    factor = 1.0 + rtol
    return PoincareReport(
        lhs=lhs, rhs=rhs, slack=rhs - lhs,
        holds=bool(np.all(lhs <= rhs * factor)),
        class_lhs=variances.copy(), class_rhs=class_rhs, class_slack=class_rhs - variances,
        class_holds=class_holds,
        neural_collapse=nc, rhs_mean=rhs_mean, rho_max=rho_max, geometric_collapse=gcol,
        chain_holds=bool(nc <= rhs_mean * factor and rhs_mean <= rho_max * gcol * factor),
        rtol=rtol, class_stderr=se, class_z=z, z_critical=z_crit, level=level)


def poincare_inequality(net, params, X, y, rho, *, output: str = "embedding",
                        rtol: float = 1e-9, level: float = 0.05, engine=None) -> PoincareReport:
    """Evaluate the Poincaré inequality for a network on data: ``Var_c <= rho_c GC_c`` per class
    and ``V_ij <= (rho_i GC_i + rho_j GC_j) / (2 ||mu_i - mu_j||^2)`` per pair (Munn et al. 2024).

    Parameters
    ----------
    net, params : the network and its parameters.
    X : ndarray, shape (n, *input_shape); y : int labels, shape (n,)
        Samples of the class-conditional laws ``Q_c``.
    rho : float, array_like of shape (k,), or "empirical"
        Poincaré constants of the class-conditional INPUT laws (known for Gaussians and uniform
        boxes, see :func:`gaussian_poincare_constant`). ``"empirical"`` uses
        ``lambda_max(Cov)`` of each class's flattened inputs, which is only a LOWER bound on
        ``rho`` (exact for Gaussians): the inequality can then fail for non-Gaussian laws.
    level : float
        Family-wise level of the per-class test (``class_holds``).
    engine : optional
        Who computes the passes (default: the reference).

    Returns
    -------
    PoincareReport
        Each side, the slack and the verdicts. Both sides of ``Var_c <= rho_c GC_c`` are sample
        means over the class's examples, of ``a = ||f(x) - mu_c||^2`` and
        ``b = rho_c ||J_f(x)||_F^2``; at population equality their difference is noise, so the
        per-class verdict is a one-sided z-test on ``mean(a - b)`` with standard error
        ``std(a - b, ddof=1) / sqrt(n_c)`` at family-wise level ``level`` (a point comparison
        would report a violation in most samples at equality). The pairwise ``holds`` and
        ``chain_holds`` remain point comparisons of the estimates.
    """
    from .collapse import centred, class_stats
    from .complexity import per_example_gc
    from ..engine import as_engine
    engine = as_engine(net, engine)
    params = engine.check_params(params)
    X = engine.check_input(X)
    y = as_labels(y, n=X.shape[0])
    Z = centred(engine.forward(params, X, output))
    stats = class_stats(Z, y)
    pe = per_example_gc(net, params, X, output=output, engine=engine)
    if isinstance(rho, str):
        if rho != "empirical":
            raise ValueError(f"rho must be a number, an array of per-class constants or 'empirical', got {rho!r}")
        flat = X.reshape(X.shape[0], -1)
        rho = np.array([empirical_poincare_lower_bound(flat[y == c]).value for c in stats.classes])
    rho = per_class_constants(rho, stats.num_classes)
    gc = np.empty(stats.num_classes)
    se = np.empty(stats.num_classes)
    for c, label in enumerate(stats.classes):
        members = y == label
        a = np.sum((Z[members] - stats.means[c]) ** 2, axis=1)
        b = rho[c] * pe[members]
        gc[c] = pe[members].mean()
        se[c] = np.std(a - b, ddof=1) / np.sqrt(a.shape[0])
    return poincare_inequality_from_stats(stats.variances, gc, rho, stats.means, rtol=rtol,
                                          class_stderr=se, level=level)
