"""Class statistics, CDNV, neural collapse, geometric collapse and Papyan's NC1-NC4.

All functions take embedding features ``Z`` of shape ``(n, p)`` (rows are ``f(x)``) and integer
labels ``y`` of shape ``(n,)``, never a network; the network wrappers live in
:mod:`gcref.metrics.complexity`. Everything is float64 and follows the formula sheet of
``docs/theory.md`` (section 1).

Convention table
----------------
Published numbers for "the same" quantity differ by constant factors because papers and their
code make different small choices. gcref pins each choice below; the right-hand columns say what
the other sources do, so a user can convert. (The same table, with more words, is in
``docs/conventions.md``.)

=================  =============================  ===========================  ====================
choice             gcref                          Galanti 2022 / Munn 2024     Papyan 2020 (+ code)
=================  =============================  ===========================  ====================
class variance     SUM over the p dims of         same: E||f - mu_c||^2        tr(Sigma_W): sum
                   E||f - mu_c||^2                                             over dims
variance divisor   n_c (ddof=0)                   n_c (expectation)            N for Sigma_W
per-dim means      never (some third-party code   --                           --
                   averages over dims: same
                   ratio only if it does so for
                   Var AND ||dmu||^2)
CDNV               (Var_i + Var_j)/(2 d_ij^2)     same, factor 1/2             --
distance           SQUARED Euclidean, from the    squared                      --
                   difference vector
NC aggregate       mean over pairs i != j         Avg_{i != j}                 --
                   (ordered = unordered)
geometric          (GC_i + GC_j)/(2 d_ij^2),      Munn 2024: same              --
collapse           mean over pairs i != j
global mean        UNWEIGHTED mean of class       --                           unweighted (muG)
                   means
Sigma_W            (1/N) sum over all samples     --                           same (Sw /= N)
NC1                tr(Sigma_W Sigma_B^+)/k        --                           paper /k; code plots
                                                                               tr(Sw Sb^+), no /k
NC2 std            ddof=0                         --                           torch.std, ddof=1
NC2 angles         std of cos AND                 --                           paper: std of cos;
                   mean |cos + 1/(k-1)|                                        code: mean |.|
NC3                ||W^T/||W|| - M/||M|| ||_F^2,  --                           same
                   M centred class means
NC4                argmax(W z + b), bias          --                           same (net's own
                   counted, vs NCC                                             argmax)
=================  =============================  ===========================  ====================

Galanti et al.'s released code could not be inspected when gcref was written; the column gives
the paper's definitions. Munn et al. 2024 adopt Galanti's CDNV and define geometric collapse by
the same pairwise formula with GC in place of the variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gcref._validation import as_float_array, as_labels, check_float

__all__ = [
    "ClassStats",
    "class_stats",
    "pairwise_ratio",
    "off_diagonal_mean",
    "cdnv_from_stats",
    "cdnv",
    "neural_collapse_from_stats",
    "neural_collapse",
    "geometric_collapse_pairs",
    "geometric_collapse_from_stats",
    "papyan_nc",
    "COINCIDING_MEANS_RTOL",
    "centred",
    "check_class_counts",
]

#: Two class means closer than this fraction of their norm are treated as coinciding: the
#: rounding error of a float64 mean (about 1e-15 of its norm) would then be a sizeable part of
#: the distance, so any ratio divided by it is meaningless.
COINCIDING_MEANS_RTOL = 1e-11


@dataclass(frozen=True, eq=False)
class ClassStats:
    """Per-class statistics of embedding features.

    Attributes
    ----------
    classes : ndarray of int64, shape (k,)
        The distinct labels, ascending. Row ``c`` of every other field belongs to ``classes[c]``.
    means : ndarray, shape (k, p)
        Class means ``mu_c = mean_{x in D_c} f(x)``.
    variances : ndarray, shape (k,)
        Total within-class variances ``Var_c = mean_{x in D_c} ||f(x) - mu_c||^2`` (summed over
        the p feature dimensions, divisor ``n_c``).
    counts : ndarray of int64, shape (k,)
        Class sizes ``n_c``.
    """

    classes: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    counts: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of classes k."""
        return int(self.classes.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension p."""
        return int(self.means.shape[1])


def _freeze(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def class_stats(Z, y) -> ClassStats:
    """Class means, total variances and counts of features ``Z`` grouped by labels ``y``.

    Parameters
    ----------
    Z : array_like, shape (n, p)
        Embedding features, one row per example. Finite real numbers.
    y : array_like of int, shape (n,)
        Class labels (integers; integral floats such as ``3.0`` are accepted).

    Returns
    -------
    ClassStats
        ``classes`` (k,), ``means`` (k, p), ``variances`` (k,), ``counts`` (k,); classes sorted.

    Raises
    ------
    ValueError
        If ``Z`` and ``y`` differ in length, ``Z`` has NaN/Inf, or a class has fewer than 2
        examples (its variance would be a meaningless 0).
    TypeError
        If ``y`` holds non-integer labels.

    Notes
    -----
    Formula sheet (``docs/theory.md`` section 1; Galanti et al. 2022, Munn et al. 2024)::

        mu_c  = (1/n_c) sum_{x in D_c} f(x)
        Var_c = (1/n_c) sum_{x in D_c} ||f(x) - mu_c||^2      (sum over the p dimensions)

    Computed in two passes (mean first, then squared deviations), never as
    ``E||f||^2 - ||mu||^2``, which loses every digit when the features carry a large offset.
    """
    Z = as_float_array(Z, "Z", ndim=2)
    y = as_labels(y, "y", n=Z.shape[0])
    classes, counts = np.unique(y, return_counts=True)
    check_class_counts(classes, counts)
    k, p = classes.shape[0], Z.shape[1]
    means = np.empty((k, p))
    variances = np.empty(k)
    for c, label in enumerate(classes):
        Zc = Z[y == label]
        means[c] = Zc.mean(axis=0)                       # pass 1
        dev = Zc - means[c]                              # pass 2
        variances[c] = np.mean(np.sum(dev * dev, axis=1))
    return ClassStats(classes=_freeze(classes), means=_freeze(means),
                      variances=_freeze(variances), counts=_freeze(counts.astype(np.int64)))


def check_class_counts(classes, counts) -> None:
    """Raise unless every class has at least 2 examples (a one-example variance is a meaningless 0)."""
    small = classes[counts < 2]
    if small.size:
        raise ValueError(
            f"y: class {int(small[0])} has {int(counts[counts < 2][0])} example(s); a class "
            "variance needs at least 2 examples per class")


def centred(Z, name: str = "Z") -> np.ndarray:
    """Features minus their global mean row, ``Z - mean_x f(x)``, float64 ``(n, p)``.

    Every pairwise quantity of this module (CDNV, NC, geometric collapse, Papyan's NC1-NC3) is
    invariant to a common shift of the features, but class means of raw features carry an
    absolute rounding error of about ``1e-16 |offset|``: with an offset of 1e8 and class-mean
    gaps of 1e-2 that is 1e-6 of NC, and with an offset of 1e12 and gaps of 0.1 the means look
    coincident. The subtraction ``f(x) - z_bar`` is exact for features near the offset (Sterbenz)
    and leaves a common shift that cancels in every difference, so the statistics of the centred
    features keep the digits the data has. The network-level functions and ``evaluate`` take
    class statistics of centred features; :func:`class_stats` itself returns raw means.
    """
    Z = as_float_array(Z, name, ndim=2)
    return Z - Z.mean(axis=0)


def check_means_values(means, values, values_name: str):
    means = as_float_array(means, "means", ndim=2)
    k = means.shape[0]
    if k < 2:
        raise ValueError(f"means: need at least 2 classes for a pairwise ratio, got {k}")
    values = as_float_array(values, values_name, shape=(k,))
    if np.any(values < 0):
        raise ValueError(f"{values_name} must be non-negative, got min {values.min()!r}")
    return means, values


def pairwise_ratio(means, values, *, rtol: float = COINCIDING_MEANS_RTOL,
                   values_name: str = "values") -> np.ndarray:
    """The pairwise ratio ``(values_i + values_j) / (2 ||mu_i - mu_j||^2)`` with zero diagonal.

    This is the one formula behind CDNV (values = class variances) and geometric collapse
    (values = per-class GC), so both share its checks.

    Parameters
    ----------
    means : array_like, shape (k, p)
        Class means, k >= 2.
    values : array_like, shape (k,)
        Non-negative per-class values.
    rtol : float
        Means with ``||mu_i - mu_j|| <= rtol * max(||mu_i||, ||mu_j||)`` count as coinciding.
    values_name : str
        Name used for ``values`` in error messages.

    Returns
    -------
    ndarray, shape (k, k)
        Symmetric matrix ``R`` with ``R[i, j] = (values[i] + values[j]) / (2 d_ij^2)`` for
        ``i != j`` and ``R[i, i] = 0``.

    Raises
    ------
    ValueError
        If two means coincide (exactly, or to within ``rtol`` of their norm, where float64
        rounding makes the distance meaningless), or the ratio overflows.

    Notes
    -----
    ``d_ij^2 = sum_l (mu_il - mu_jl)^2`` is computed from the difference vector directly (one
    row of differences at a time), so it is exact up to rounding of the difference; the Gram
    expansion ``||mu_i||^2 + ||mu_j||^2 - 2 <mu_i, mu_j>`` would cancel catastrophically.
    Source: Galanti et al. 2022 (CDNV), Munn et al. 2024 (geometric collapse).
    """
    means, values = check_means_values(means, values, values_name)
    rtol = check_float(rtol, "rtol", minimum=0.0)
    k = means.shape[0]
    norms = np.sqrt(np.sum(means * means, axis=1))
    ratio = np.zeros((k, k))
    others = ~np.eye(k, dtype=bool)
    for i in range(k):
        diff = means[i] - means                          # (k, p), exact differences
        dist2 = np.sum(diff * diff, axis=1)              # (k,)
        scale = np.maximum(norms[i], norms)
        bad = others[i] & ((dist2 == 0.0) | (np.sqrt(dist2) <= rtol * scale))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"means: class means {i} and {j} coincide (||mu_i - mu_j|| = "
                f"{np.sqrt(dist2[j]):.3g}, mean norm {scale[j]:.3g}); the pairwise ratio "
                "is undefined")
        j = others[i]
        ratio[i, j] = (values[i] + values[j]) / (2.0 * dist2[j])
    if not np.all(np.isfinite(ratio)):
        raise ValueError(f"the pairwise ratio of {values_name} overflowed; rescale the features")
    return ratio


def off_diagonal_mean(matrix) -> float:
    """Mean of the off-diagonal entries of a square ``(k, k)`` matrix, k >= 2.

    Notes
    -----
    ``mean_{i != j} R_ij = (1 / (k (k - 1))) sum_{i != j} R_ij``: the mean over ordered pairs.
    For a symmetric matrix (CDNV, geometric collapse) it equals the mean over unordered pairs
    ``i < j``.
    """
    R = as_float_array(matrix, "matrix", ndim=2)
    k = R.shape[0]
    if R.shape[1] != k:
        raise ValueError(f"matrix must be square, got shape {R.shape}")
    if k < 2:
        raise ValueError(f"matrix must be at least 2 x 2, got shape {R.shape}")
    return float((R.sum() - np.trace(R)) / (k * (k - 1)))


def cdnv_from_stats(means, variances) -> np.ndarray:
    """CDNV matrix from class means ``(k, p)`` and total variances ``(k,)``.

    Returns
    -------
    ndarray, shape (k, k)
        ``V_ij = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``, zero diagonal.

    Notes
    -----
    Class-distance normalized variance, Galanti et al. 2022 (Def. 1). See :func:`pairwise_ratio`.
    """
    return pairwise_ratio(means, variances, values_name="variances")


def cdnv(Z, y) -> np.ndarray:
    """Class-distance normalized variance matrix of features ``Z`` (n, p) with labels ``y`` (n,).

    Returns
    -------
    ndarray, shape (k, k)
        ``V_ij = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` for the sorted classes, zero diagonal.

    Raises
    ------
    ValueError
        One class only, a class with fewer than 2 examples, coinciding class means, NaN/Inf
        features, or ``len(Z) != len(y)``.

    Notes
    -----
    Galanti et al. 2022::

        Var_c = (1/n_c) sum_{x in D_c} ||f(x) - mu_c||^2
        V_ij  = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)

    The value is invariant to a common shift, scaling and rotation of the features; it is
    computed from the :func:`centred` features so that a large common offset costs no digits.
    """
    stats = class_stats(centred(Z), y)
    if stats.num_classes < 2:
        raise ValueError(f"y: CDNV needs at least 2 classes, got {stats.num_classes}")
    return cdnv_from_stats(stats.means, stats.variances)


def neural_collapse_from_stats(means, variances) -> float:
    """NC = mean over pairs ``i != j`` of the CDNV, from means ``(k, p)`` and variances ``(k,)``."""
    return off_diagonal_mean(cdnv_from_stats(means, variances))


def neural_collapse(Z, y) -> float:
    """Neural collapse of features ``Z`` (n, p) with labels ``y`` (n,): the mean pairwise CDNV.

    Notes
    -----
    Galanti et al. 2022, Munn et al. 2024::

        NC = (1 / (k (k - 1))) sum_{i != j} V_ij

    (ordered pairs; equal to the mean over unordered pairs since ``V`` is symmetric).
    Small NC means collapsed, well-separated classes.
    """
    return off_diagonal_mean(cdnv(Z, y))


def geometric_collapse_pairs(means, gc_per_class) -> np.ndarray:
    """Pairwise geometric collapse ``G_ij = (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)``, (k, k).

    Parameters
    ----------
    means : array_like, shape (k, p)
        Class means of the embedding.
    gc_per_class : array_like, shape (k,)
        ``GC_c = GC(f, D_c) = mean_{x in D_c} ||J_f(x)||_F^2``, same class order as ``means``.

    Notes
    -----
    Munn et al. 2024. The network-level function
    ``gcref.metrics.complexity.geometric_collapse`` computes ``GC_c`` and calls this formula.
    """
    return pairwise_ratio(means, gc_per_class, values_name="gc_per_class")


def geometric_collapse_from_stats(means, gc_per_class) -> float:
    """Geometric collapse: the mean over pairs ``i != j`` of :func:`geometric_collapse_pairs`."""
    return off_diagonal_mean(geometric_collapse_pairs(means, gc_per_class))


# --------------------------------------------------------------------------------------------
# Papyan et al. 2020: NC1-NC4
# --------------------------------------------------------------------------------------------

def _cosine_stats(V: np.ndarray, name: str) -> tuple[float, float, float]:
    """Equinorm and equiangularity of the columns of ``V`` (p, k), already centred."""
    k = V.shape[1]
    norms = np.sqrt(np.sum(V * V, axis=0))
    if np.any(norms <= COINCIDING_MEANS_RTOL * norms.max()):
        raise ValueError(f"{name}: a centred column has zero norm (a class mean equals the "
                         "global mean), so its angles are undefined")
    equinorm = float(np.std(norms) / np.mean(norms))
    U = V / norms
    iu = np.triu_indices(k, 1)
    cos = (U.T @ U)[iu]                                  # unordered pairs i < j
    equiangle = float(np.std(cos))
    max_angle = float(np.mean(np.abs(cos + 1.0 / (k - 1))))
    return equinorm, equiangle, max_angle


def papyan_nc(Z, y, W=None, b=None) -> dict:
    """Papyan, Han & Donoho's neural-collapse measures NC1-NC4, with their conventions pinned.

    Parameters
    ----------
    Z : array_like, shape (n, p)
        Penultimate features.
    y : array_like of int, shape (n,)
        Labels, at least 2 classes with at least 2 examples each.
    W : array_like, shape (K, p), optional
        Linear head weight in PyTorch layout ``(out, in)``; row ``c`` scores class label ``c``,
        so every label must lie in ``0..K-1``. Needed for NC3 and NC4.
    b : array_like, shape (K,), optional
        Head bias (zero if omitted); used by NC4. Requires ``W``.

    Returns
    -------
    dict
        ``"NC1"``: ``tr(Sigma_W Sigma_B^+) / k``.
        ``"NC2_equinorm"``: ``std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||``.
        ``"NC2_equiangle"``: std of ``cos(mu_i - mu_G, mu_j - mu_G)`` over pairs ``i < j``.
        ``"NC2_maxangle"``: mean over pairs of ``|cos + 1/(k-1)|`` (0 for a simplex ETF).
        With ``W``: ``"NC2_W_equinorm"``, ``"NC2_W_equiangle"``, ``"NC2_W_maxangle"`` (same on
        the rows ``w_c`` of the head, uncentred, as in Papyan et al.), ``"NC3"`` and ``"NC4"``.

    Notes
    -----
    Papyan et al. 2020 (PNAS), with gcref's pinned conventions (``n`` = N examples, k classes)::

        mu_c    = mean_{x in D_c} z                  class means
        mu_G    = (1/k) sum_c mu_c                   UNWEIGHTED mean of class means
        Sigma_W = (1/N) sum_c sum_{x in D_c} (z - mu_c)(z - mu_c)^T   (sample-weighted)
        Sigma_B = (1/k) sum_c (mu_c - mu_G)(mu_c - mu_G)^T
        NC1     = tr(Sigma_W Sigma_B^+) / k
        NC2     equinorm  = std_c(||mu_c - mu_G||) / mean_c(||mu_c - mu_G||)    (std: ddof=0)
                equiangle = std_{i<j}(cos_ij),  maxangle = mean_{i<j} |cos_ij + 1/(k-1)|
        NC3     = || W_y^T / ||W_y||_F - M / ||M||_F ||_F^2,  M = [mu_c - mu_G]_c  (p, k),
                  W_y = rows of W for the classes present
        NC4     = (1/N) sum_x 1[ argmax_c (W z + b)_c  !=  argmin_c ||z - mu_c|| ]

    NC4 uses the network's own prediction (argmax over all K rows, bias included; ties to the
    lowest index) against the nearest-class-mean prediction on the uncentred means (ties to the
    lowest label). ``Sigma_B^+`` is the pseudo-inverse on the (at most k-1 dimensional) span of
    the centred means; NC1 is computed as ``(1/N) ||D U S^-1||_F^2`` from the thin SVD
    ``M = U S V^T`` and the centred features ``D``, which equals ``tr(Sigma_W Sigma_B^+) / k``
    without forming a p x p matrix. Papyan et al.'s public code plots ``tr(Sw Sb^+)`` without
    the ``1/k`` and uses ``torch.std`` (ddof=1) for NC2; see the module's convention table.
    """
    Z = as_float_array(Z, "Z", ndim=2)
    y = as_labels(y, "y", n=Z.shape[0])
    Zc = centred(Z)                                      # NC1-NC3 and NCC are shift-invariant
    stats = class_stats(Zc, y)
    k, p = stats.num_classes, stats.dim
    if k < 2:
        raise ValueError(f"y: Papyan's NC measures need at least 2 classes, got {k}")
    n = Z.shape[0]
    mu_G = stats.means.mean(axis=0)                      # unweighted mean of class means
    M = (stats.means - mu_G).T                           # (p, k) centred class means

    # NC1 = tr(Sigma_W Sigma_B^+)/k with Sigma_B = M M^T / k and Sigma_W = D^T D / N.
    U, S, _ = np.linalg.svd(M, full_matrices=False)
    if S[0] == 0.0:
        raise ValueError("Z: all class means coincide, Sigma_B = 0 and NC1 is undefined")
    rank = int(np.sum(S > S[0] * max(p, k) * np.finfo(np.float64).eps))
    rank = min(rank, k - 1)                              # centred means span <= k-1 dims
    U, S = U[:, :rank], S[:rank]
    index = np.searchsorted(stats.classes, y)
    D = Zc - stats.means[index]                          # within-class deviations (n, p)
    proj = (D @ U) / S                                   # (n, rank)
    out = {"NC1": float(np.sum(proj * proj) / n)}

    eqn, eqa, mxa = _cosine_stats(M, "means")
    out.update(NC2_equinorm=eqn, NC2_equiangle=eqa, NC2_maxangle=mxa)

    if W is None:
        if b is not None:
            raise ValueError("b was given without W; NC4 needs the head weight W")
        return out
    W = as_float_array(W, "W", ndim=2)
    K = W.shape[0]
    if W.shape[1] != p:
        raise ValueError(f"W must have shape (K, {p}) to match Z's {p} features, got {W.shape}")
    if stats.classes[0] < 0 or stats.classes[-1] >= K:
        raise ValueError(f"y: labels must index the rows of W (0..{K - 1}), got labels "
                         f"{int(stats.classes[0])}..{int(stats.classes[-1])}")
    b = np.zeros(K) if b is None else as_float_array(b, "b", shape=(K,))
    Wy = W[stats.classes]                                # (k, p) rows of the classes present
    eqn, eqa, mxa = _cosine_stats(Wy.T, "W")
    out.update(NC2_W_equinorm=eqn, NC2_W_equiangle=eqa, NC2_W_maxangle=mxa)

    norm_W = np.linalg.norm(Wy)
    if norm_W == 0.0:
        raise ValueError("W: the rows for the classes present are all zero; NC3 is undefined")
    diff = Wy.T / norm_W - M / np.linalg.norm(M)
    out["NC3"] = float(np.sum(diff * diff))

    net_pred = np.argmax(Z @ W.T + b, axis=1)            # network's own label (bias counted)
    dist2 = np.empty((n, k))
    for c in range(k):
        dev = Zc - stats.means[c]
        dist2[:, c] = np.sum(dev * dev, axis=1)
    ncc_pred = stats.classes[np.argmin(dist2, axis=1)]
    out["NC4"] = float(np.mean(net_pred != ncc_pred))
    return out
