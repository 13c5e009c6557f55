"""Upper bounds on the expected few-shot error of the nearest-class-mean classifier.

Setting (``docs/theory.md`` section 3, with the full proof): class ``c`` has a feature law
with mean ``mu_c`` and total variance ``Var_c``. An episode uses ``k`` classes; the NCC centres
``mu_hat_c`` are means of ``m`` independent shots per class, and the query is an independent
draw from a uniformly chosen class. Ties count as errors. For a query of class ``i``,

    P(i -> j) <= b_ij = C (2 Var_i + (Var_i + Var_j) / m) / ||mu_i - mu_j||^2,

with ``C = 2`` proved (and optimal for this form) and used by default; ``C = 4``
(``LOOSE_CONSTANT``, the constant of the looser norm-based argument) is also a valid bound,
available through ``constant=``. A union bound over ``j`` and the average over query classes give

    variance form:  E[err] <= (1/k) sum_i sum_{j != i} b_ij = 2 C (k - 1) (1 + 1/m) NC
                    (= 8 (k - 1)(1 + 1/m) NC for C = 4,  4 (k - 1)(1 + 1/m) NC for C = 2)
    GC form:        Var_c -> rho_c GC_c (Poincaré), i.e. NC -> mean_{i != j} (rho_i GC_i +
                    rho_j GC_j) / (2 ||mu_i - mu_j||^2)
    capped form:    E[err] <= mean_i min(1, sum_{j != i} min(1, b_ij))

All three are upper bounds on the expected error (for constant >= 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gcref._validation import as_float_array, check_float, check_int
from gcref.metrics.collapse import (COINCIDING_MEANS_RTOL, ClassStats, check_means_values,
                                    off_diagonal_mean, pairwise_ratio)
from gcref.metrics.poincare import per_class_constants

__all__ = [
    "LOOSE_CONSTANT",
    "DESIGN_CONSTANT",
    "TIGHT_CONSTANT",
    "NCCErrorBound",
    "ncc_pairwise_terms",
    "ncc_error_bound",
    "ncc_error_bound_from_stats",
]

#: The pairwise constant of the norm-based argument (Cauchy-Schwarz on norms, docs/theory.md
#: section 3, "Comparison with the constant 4"): valid, not tight. Not the default.
LOOSE_CONSTANT = 4.0
#: Deprecated alias of :data:`LOOSE_CONSTANT` (its first name).
DESIGN_CONSTANT = LOOSE_CONSTANT
#: The smallest pairwise constant for which gcref proves the bound (docs/theory.md, Thm 2);
#: no smaller constant works for the form ``(2 Var_i + (Var_i + Var_j)/m) / d^2`` (Prop. 3).
TIGHT_CONSTANT = 2.0

_FORMS = ("variance", "gc", "capped", "capped_gc")


@dataclass(frozen=True, eq=False)
class NCCErrorBound:
    """An upper bound on the expected NCC few-shot error, with its ingredients.

    Attributes
    ----------
    value : float
        The bound on ``E[error]`` (may exceed 1 for the uncapped forms).
    form : str
        ``"variance"``, ``"gc"``, ``"capped"`` or ``"capped_gc"``.
    constant : float
        Pairwise constant ``C``.
    shots : int
        ``m``, support examples per class.
    ways : int
        Classes per episode (``k`` when every episode uses all classes).
    num_classes : int
        Number of classes ``k`` the statistics describe.
    pairwise : ndarray, shape (k, k)
        ``b_ij = C (2 s_i + (s_i + s_j)/m) / ||mu_i - mu_j||^2`` (``s = Var`` or ``rho GC``),
        zero diagonal; row ``i`` bounds the errors of class-``i`` queries towards each ``j``.
    per_class : ndarray, shape (k,)
        Bound on the error rate of class-``i`` queries; ``value = mean(per_class)``.
    closed_form : float or None
        ``2 C (ways - 1)(1 + 1/m) * NC`` (variance form) or the same with the GC-side pair
        mean (GC form), computed independently of ``pairwise``; ``None`` for capped forms.
    proven : bool
        ``constant >= TIGHT_CONSTANT``: the value is a proven upper bound on the expected error
        when the inputs are the population means and variances (for the GC forms, when each
        ``rho_c`` is a valid Poincaré constant of class ``c``'s input law).
    """

    value: float
    form: str
    constant: float
    shots: int
    ways: int
    num_classes: int
    pairwise: np.ndarray
    per_class: np.ndarray
    closed_form: float | None
    proven: bool


def ncc_pairwise_terms(means, spreads, shots: int, *, constant: float = TIGHT_CONSTANT,
                       spreads_name: str = "variances") -> np.ndarray:
    """Pairwise error terms ``b_ij = C (2 s_i + (s_i + s_j)/m) / ||mu_i - mu_j||^2``.

    Parameters
    ----------
    means : array_like, shape (k, p)
        Class means.
    spreads : array_like, shape (k,)
        ``s_c = Var_c`` (variance form) or ``rho_c GC_c`` (GC form), non-negative.
    shots : int
        ``m >= 1``.
    constant : float
        ``C > 0``.

    Returns
    -------
    ndarray, shape (k, k)
        ``b_ij`` for ``i != j`` (not symmetric), zero diagonal.

    Notes
    -----
    ``P(query of class i is assigned to j) <= b_ij`` for ``C >= 2``; see ``docs/theory.md``.
    Distances are computed from difference vectors; coinciding means raise ``ValueError``.
    """
    means, s = check_means_values(means, spreads, spreads_name)
    k = means.shape[0]
    m = check_int(shots, "shots", minimum=1)
    C = check_float(constant, "constant", minimum=0.0, strict_min=True)
    norms = np.sqrt(np.sum(means * means, axis=1))
    b = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            diff = means[i] - means[j]
            d2 = float(diff @ diff)
            if d2 == 0.0 or np.sqrt(d2) <= COINCIDING_MEANS_RTOL * max(norms[i], norms[j]):
                raise ValueError(f"means: class means {i} and {j} coincide; the NCC bound is "
                                 "undefined")
            b[i, j] = C * (2.0 * s[i] + (s[i] + s[j]) / m) / d2
    if not np.all(np.isfinite(b)):
        raise ValueError("the NCC bound's pairwise terms overflowed; rescale the features")
    return b


def ncc_error_bound(means, variances, shots: int, *, form: str = "variance",
                    constant: float = TIGHT_CONSTANT, gc_per_class=None, rho=None,
                    ways: int | None = None) -> NCCErrorBound:
    """Upper bound on the expected few-shot NCC error from class means and spreads.

    Parameters
    ----------
    means : array_like, shape (k, p)
        Class means ``mu_c`` of the embedding (population values; plug-in estimates give an
        estimate of the bound).
    variances : array_like, shape (k,) or None
        Total class variances ``Var_c``; needed for ``"variance"`` and ``"capped"``, ignored
        by the GC forms (pass ``None``).
    shots : int
        ``m``, support examples per class.
    form : {"variance", "gc", "capped", "capped_gc"}
        ``"variance"``: ``mean_i (w-1)/(k-1) sum_{j != i} b_ij`` ``= 2 C (w-1)(1+1/m) NC``.
        ``"gc"``: the same with ``Var_c`` replaced by ``rho_c GC_c`` (valid because
        ``Var_c <= rho_c GC_c``).
        ``"capped"``: ``mean_i min(1, (w-1)/(k-1) sum_{j != i} min(1, b_ij))`` with variance
        terms; ``"capped_gc"``: the same with GC terms. Always ``<= 1``.
    constant : float
        Pairwise constant ``C`` (default 2, ``TIGHT_CONSTANT``: proved and optimal, see
        ``docs/theory.md`` section 3; ``LOOSE_CONSTANT = 4`` is the looser norm-based
        constant). Values below 2 give ``proven=False``.
    gc_per_class : array_like, shape (k,), optional
        ``GC_c`` for the GC forms.
    rho : float or array_like, shape (k,), optional
        Poincaré constants ``rho_c`` of the class input laws, for the GC forms.
    ways : int, optional
        Classes per episode ``w`` (default ``k``). With ``w < k`` the bound is on the error of
        an episode whose ``w`` classes are drawn uniformly among the ``k``.

    Returns
    -------
    NCCErrorBound

    Notes
    -----
    Proof (``docs/theory.md``): for a class-``i`` query ``z`` with ``u = z - mu_i`` and centre
    errors ``e_c = mu_hat_c - mu_c``, choosing ``j`` forces
    ``||mu_i - mu_j|| <= ||u - e_i|| + ||u - e_j||``; Markov on the square,
    ``(a + b)^2 <= 2 a^2 + 2 b^2`` and the independence of query and shots
    (``E||u - e_i||^2 = Var_i (1 + 1/m)``, ``E||u - e_j||^2 = Var_i + Var_j/m``) give
    ``P(i -> j) <= 2 (2 Var_i + (Var_i + Var_j)/m) / ||mu_i - mu_j||^2``. Summing over
    ``j != i`` (union bound) and averaging over ``i`` gives the variance form; since
    ``sum_{i != j} 2 Var_i / d_ij^2 = sum_{i != j} (Var_i + Var_j) / d_ij^2``, it equals
    ``2 C (k - 1)(1 + 1/m) NC``. For a random ``w``-subset of the classes, each ``j != i`` is
    in the episode with probability ``(w-1)/(k-1)`` (Jensen moves this inside the cap).
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    means = as_float_array(means, "means", ndim=2)
    k = means.shape[0]
    if k < 2:
        raise ValueError(f"means: need at least 2 classes, got {k}")
    m = check_int(shots, "shots", minimum=1)
    C = check_float(constant, "constant", minimum=0.0, strict_min=True)
    w = k if ways is None else check_int(ways, "ways", minimum=2, maximum=k)

    if form in ("variance", "capped"):
        if variances is None:
            raise ValueError(f"form={form!r} needs variances")
        spreads = as_float_array(variances, "variances", shape=(k,))
        name = "variances"
    else:
        if gc_per_class is None or rho is None:
            raise ValueError(f"form={form!r} needs gc_per_class and rho")
        gc = as_float_array(gc_per_class, "gc_per_class", shape=(k,))
        rho_arr = per_class_constants(rho, k, "rho")
        if np.any(gc < 0):
            raise ValueError("gc_per_class must be non-negative")
        spreads = rho_arr * gc
        name = "rho * gc_per_class"

    b = ncc_pairwise_terms(means, spreads, m, constant=C, spreads_name=name)
    inclusion = (w - 1) / (k - 1)          # P(j is in the episode | i is), j != i
    if form in ("variance", "gc"):
        per_class = inclusion * b.sum(axis=1)
        # Independent closed form: 2 C (w-1)(1+1/m) * mean_{i != j} (s_i + s_j)/(2 d_ij^2).
        pair_mean = off_diagonal_mean(pairwise_ratio(means, spreads, values_name=name))
        closed = 2.0 * C * (w - 1) * (1.0 + 1.0 / m) * pair_mean
    else:
        per_class = np.minimum(1.0, inclusion * np.minimum(1.0, b).sum(axis=1))
        closed = None
    return NCCErrorBound(value=float(np.mean(per_class)), form=form, constant=C, shots=m,
                         ways=w, num_classes=k, pairwise=b, per_class=per_class,
                         closed_form=None if closed is None else float(closed),
                         proven=bool(C >= TIGHT_CONSTANT))


def ncc_error_bound_from_stats(stats: ClassStats, shots: int, **kwargs) -> NCCErrorBound:
    """:func:`ncc_error_bound` with means and variances taken from a :class:`ClassStats`."""
    if not isinstance(stats, ClassStats):
        raise TypeError(f"stats must be a ClassStats, got {type(stats).__name__}")
    return ncc_error_bound(stats.means, stats.variances, shots, **kwargs)
