"""Synthetic data with known laws: Gaussian mixtures and uniform boxes with known Poincaré
constants, and procedural images for small convolutional experiments.

Poincaré constants (docs/theory.md §2): a distribution Q has constant ``rho(Q)`` if
``Var_Q(u) <= rho * E_Q ||grad u||^2`` for every smooth scalar ``u``.

- Gaussian ``N(m, Sigma)``: ``rho = lambda_max(Sigma)`` (sharp: equality for ``u(x) = v^T x`` with
  ``v`` the top eigenvector).
- Uniform on a box ``prod_l [a_l, b_l]``: ``rho = max_l (b_l - a_l)^2 / pi^2`` (the one-dimensional
  Neumann constant ``L^2 / pi^2``, sharp for ``u = cos(pi (x_l - a_l) / L)``; a product measure has
  the largest constant of its factors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import as_generator, check_float, check_int
from .dataset import Dataset

__all__ = ["GaussianMixture", "UniformBoxes", "gaussian_mixture", "uniform_boxes",
           "procedural_images"]


def _class_names(k: int) -> tuple:
    return tuple(f"class_{c}" for c in range(k))


def _class_centres(rng: np.random.Generator, k: int, dim: int, distance: float) -> np.ndarray:
    """Class centres, shape (k, dim): pairwise distance ``distance`` exactly when ``dim >= k``
    (a randomly rotated scaled orthonormal frame), else i.i.d. Gaussian with
    ``E ||m_i - m_j||^2 = distance^2``."""
    if dim >= k:
        Q, R = np.linalg.qr(rng.standard_normal((dim, k)))
        Q = Q * np.where(np.diag(R) < 0, -1.0, 1.0)
        return (distance / math.sqrt(2.0)) * Q.T
    return rng.standard_normal((k, dim)) * (distance / math.sqrt(2.0 * dim))


def _shuffle(X, y, rng):
    perm = rng.permutation(X.shape[0])
    return X[perm], y[perm]


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A balanced mixture of Gaussians ``N(m_c, Sigma_c)`` with diagonal ``Sigma_c``, and a sample.

    Attributes
    ----------
    dataset : Dataset
        The sample: ``X`` of shape ``(n, dim)`` with ``n = k * n_per_class``, shuffled.
    means : ndarray, shape (k, dim)
        Class means ``m_c``.
    covs : ndarray, shape (k, dim, dim)
        Class covariances ``Sigma_c`` (diagonal).
    poincare : ndarray, shape (k,)
        Poincaré constants ``rho_c = lambda_max(Sigma_c)``: a Gaussian ``N(m, Sigma)`` has
        Poincaré constant ``lambda_max(Sigma)``.
    """

    dataset: Dataset
    means: np.ndarray
    covs: np.ndarray
    poincare: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n_per_class: int, seed, name: str | None = None) -> Dataset:
        """Draw a fresh balanced sample from the same mixture (e.g. a test set).

        Parameters
        ----------
        n_per_class : int
            Examples per class (>= 1).
        seed : int or numpy.random.Generator
            Randomness of the draw.
        name : str, optional
            Name of the result (default: the mixture's dataset name).

        Returns
        -------
        Dataset
            ``X`` of shape ``(k * n_per_class, dim)``, shuffled.
        """
        n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
        rng = as_generator(seed)
        std = np.sqrt(np.einsum("kii->ki", self.covs))
        return _sample_gaussians(self.means, std, n_per_class, rng,
                                 self.dataset.name if name is None else name)


@dataclass(frozen=True, eq=False)
class UniformBoxes:
    """A balanced mixture of uniform laws on axis-aligned boxes ``prod_l [a_{c,l}, b_{c,l}]``.

    Attributes
    ----------
    dataset : Dataset
        The sample: ``X`` of shape ``(n, dim)``, shuffled.
    lows, highs : ndarray, shape (k, dim)
        Box corners ``a_c`` and ``b_c``.
    poincare : ndarray, shape (k,)
        Poincaré constants ``rho_c = max_l (b_{c,l} - a_{c,l})^2 / pi^2``.
    """

    dataset: Dataset
    lows: np.ndarray
    highs: np.ndarray
    poincare: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.lows.shape[0])

    @property
    def dim(self) -> int:
        return int(self.lows.shape[1])

    @property
    def means(self) -> np.ndarray:
        """Class means (box centres), shape ``(k, dim)``."""
        return 0.5 * (self.lows + self.highs)

    @property
    def covs(self) -> np.ndarray:
        """Class covariances ``diag((b - a)^2 / 12)``, shape ``(k, dim, dim)``."""
        var = (self.highs - self.lows) ** 2 / 12.0
        return np.einsum("ki,ij->kij", var, np.eye(self.dim))

    def sample(self, n_per_class: int, seed, name: str | None = None) -> Dataset:
        """Draw a fresh balanced sample from the same boxes (see :meth:`GaussianMixture.sample`)."""
        n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
        rng = as_generator(seed)
        return _sample_boxes(self.lows, self.highs, n_per_class, rng,
                             self.dataset.name if name is None else name)


def _sample_gaussians(means, std, n_per_class, rng, name) -> Dataset:
    k, dim = means.shape
    X = np.empty((k * n_per_class, dim))
    for c in range(k):
        X[c * n_per_class:(c + 1) * n_per_class] = (
            means[c] + std[c] * rng.standard_normal((n_per_class, dim)))
    y = np.repeat(np.arange(k, dtype=np.int64), n_per_class)
    X, y = _shuffle(X, y, rng)
    return Dataset(X, y, _class_names(k), name)


def _sample_boxes(lows, highs, n_per_class, rng, name) -> Dataset:
    k, dim = lows.shape
    X = np.empty((k * n_per_class, dim))
    for c in range(k):
        X[c * n_per_class:(c + 1) * n_per_class] = rng.uniform(lows[c], highs[c],
                                                                size=(n_per_class, dim))
    y = np.repeat(np.arange(k, dtype=np.int64), n_per_class)
    X, y = _shuffle(X, y, rng)
    return Dataset(X, y, _class_names(k), name)


def gaussian_mixture(n_per_class: int, num_classes: int, dim: int, *, separation: float = 3.0,
                     scale: float = 1.0, anisotropy: float = 1.0, seed) -> GaussianMixture:
    """Sample a balanced Gaussian mixture whose Poincaré constants are known exactly.

    Class ``c`` is ``N(m_c, Sigma_c)``. The means are drawn from ``seed``: when
    ``dim >= num_classes`` they form a randomly rotated orthogonal frame with every pair exactly
    ``separation * scale`` apart; otherwise they are i.i.d. Gaussian with
    ``E ||m_i - m_j||^2 = (separation * scale)^2``. ``Sigma_c`` is diagonal with entries drawn
    uniformly from ``[scale^2 / anisotropy, scale^2]`` (all equal to ``scale^2`` when
    ``anisotropy == 1``). A Gaussian ``N(m, Sigma)`` has Poincaré constant ``lambda_max(Sigma)``,
    returned as ``poincare``.

    Parameters
    ----------
    n_per_class : int
        Examples per class (>= 1); ``n = num_classes * n_per_class``.
    num_classes : int
        Number of classes ``k`` (>= 1).
    dim : int
        Input dimension (>= 1).
    separation : float
        Distance between class means in units of ``scale`` (>= 0).
    scale : float
        Largest per-coordinate standard deviation (> 0).
    anisotropy : float
        Ratio of the largest to the smallest possible variance (>= 1).
    seed : int or numpy.random.Generator
        Randomness of the means, covariances and sample.

    Returns
    -------
    GaussianMixture
        ``dataset`` (``X`` shape ``(n, dim)``, shuffled), ``means`` ``(k, dim)``, ``covs``
        ``(k, dim, dim)``, ``poincare`` ``(k,)``.
    """
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    separation = check_float(separation, "separation", minimum=0.0)
    scale = check_float(scale, "scale", minimum=0.0, strict_min=True)
    anisotropy = check_float(anisotropy, "anisotropy", minimum=1.0)
    rng = as_generator(seed)

    means = _class_centres(rng, num_classes, dim, separation * scale)
    var = rng.uniform(scale ** 2 / anisotropy, scale ** 2, size=(num_classes, dim))
    if anisotropy == 1.0:
        var[:] = scale ** 2
    covs = np.einsum("ki,ij->kij", var, np.eye(dim))
    poincare = var.max(axis=1)
    ds = _sample_gaussians(means, np.sqrt(var), n_per_class, rng, "gaussian_mixture")
    return GaussianMixture(ds, means, covs, poincare)


def uniform_boxes(n_per_class: int, num_classes: int, dim: int, *, width: float = 1.0,
                  separation: float = 3.0, anisotropy: float = 1.0, seed) -> UniformBoxes:
    """Sample a balanced mixture of uniform laws on boxes, with known Poincaré constants.

    Box centres are placed like the means of :func:`gaussian_mixture` at distance
    ``separation * width``; side lengths are drawn uniformly from ``[width / anisotropy, width]``
    (all equal to ``width`` when ``anisotropy == 1``). The uniform law on
    ``prod_l [a_l, b_l]`` has Poincaré constant ``max_l (b_l - a_l)^2 / pi^2``.

    Parameters
    ----------
    n_per_class, num_classes, dim : int
        Examples per class, number of classes ``k`` and input dimension (each >= 1).
    width : float
        Largest side length (> 0).
    separation : float
        Distance between box centres in units of ``width`` (>= 0).
    anisotropy : float
        Ratio of the largest to the smallest possible side length (>= 1).
    seed : int or numpy.random.Generator
        Randomness of the boxes and the sample.

    Returns
    -------
    UniformBoxes
        ``dataset`` (``X`` shape ``(n, dim)``, shuffled), ``lows``/``highs`` ``(k, dim)``,
        ``poincare`` ``(k,)``.
    """
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    width = check_float(width, "width", minimum=0.0, strict_min=True)
    separation = check_float(separation, "separation", minimum=0.0)
    anisotropy = check_float(anisotropy, "anisotropy", minimum=1.0)
    rng = as_generator(seed)

    centres = _class_centres(rng, num_classes, dim, separation * width)
    sides = rng.uniform(width / anisotropy, width, size=(num_classes, dim))
    if anisotropy == 1.0:
        sides[:] = width
    lows = centres - sides / 2.0
    highs = centres + sides / 2.0
    poincare = (highs - lows).max(axis=1) ** 2 / math.pi ** 2
    ds = _sample_boxes(lows, highs, n_per_class, rng, "uniform_boxes")
    return UniformBoxes(ds, lows, highs, poincare)


def _pattern_grid(num_classes: int, size: int):
    """Class-specific stripe angle (radians) and frequency (cycles per image), shape (k,) each."""
    n_freq = max(1, min(3, round(math.sqrt(num_classes / 3.0))))
    n_ang = math.ceil(num_classes / n_freq)
    hi = min(0.3 * size, 6.0)
    lo = min(1.5, hi)
    freqs = np.linspace(lo, hi, n_freq) if n_freq > 1 else np.array([0.5 * (lo + hi)])
    c = np.arange(num_classes)
    angles = np.pi * (c % n_ang) / n_ang
    return angles, freqs[c // n_ang], n_ang, n_freq


def procedural_images(n_per_class: int, num_classes: int = 10, size: int = 16, channels: int = 1,
                      *, noise: float = 0.1, seed) -> Dataset:
    """Procedural stripe images: each class has its own stripe orientation and frequency.

    Class ``c`` gets a fixed angle ``theta_c`` and frequency ``f_c`` (cycles per image) on a grid of
    orientations times up to three frequencies. Each sample draws its own phase (a random shift of
    the stripes), a small jitter of angle (30% of the angular spacing) and of frequency (+-12%), a
    contrast in ``[0.2, 0.45]``, a brightness in ``[0.35, 0.65]`` and, when ``channels > 1``, a
    per-channel gain in ``[0.5, 1]``; then Gaussian pixel noise of standard deviation ``noise`` is
    added and pixels are clipped to ``[0, 1]``:
    ``x[ch, i, j] = clip(b + a g_ch sin(2 pi f (j cos theta + i sin theta) / size + phi) + eps)``.

    The random phase averages the stripes out of every class mean, so classes are not linearly
    separable in pixel space (nearest class mean on pixels is near chance), while orientation and
    frequency are plain in the Fourier magnitude: a small CNN learns them.

    Parameters
    ----------
    n_per_class : int
        Examples per class (>= 1).
    num_classes : int
        Number of classes ``k`` (>= 1).
    size : int
        Image height and width (>= 4).
    channels : int
        Number of channels ``C`` (>= 1).
    noise : float
        Standard deviation of the additive pixel noise (>= 0).
    seed : int or numpy.random.Generator
        Randomness of the per-sample parameters and noise (class patterns do not depend on it).

    Returns
    -------
    Dataset
        ``X`` of shape ``(k * n_per_class, C, size, size)`` in ``[0, 1]``, shuffled.
    """
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    size = check_int(size, "size", minimum=4)
    channels = check_int(channels, "channels", minimum=1)
    noise = check_float(noise, "noise", minimum=0.0)
    rng = as_generator(seed)

    angles, freqs, n_ang, _ = _pattern_grid(num_classes, size)
    n = num_classes * n_per_class
    y = np.repeat(np.arange(num_classes, dtype=np.int64), n_per_class)
    theta = angles[y] + rng.uniform(-0.3, 0.3, n) * (np.pi / n_ang)
    freq = freqs[y] * rng.uniform(0.88, 1.12, n)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    contrast = rng.uniform(0.2, 0.45, n)
    bright = rng.uniform(0.35, 0.65, n)
    gain = rng.uniform(0.5, 1.0, (n, channels)) if channels > 1 else np.ones((n, 1))

    ii, jj = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                         indexing="ij")
    ii -= (size - 1) / 2.0
    jj -= (size - 1) / 2.0
    proj = (np.cos(theta)[:, None, None] * jj + np.sin(theta)[:, None, None] * ii)
    wave = np.sin(2.0 * np.pi * freq[:, None, None] * proj / size + phase[:, None, None])
    X = (bright[:, None, None, None]
         + (contrast[:, None] * gain)[:, :, None, None] * wave[:, None, :, :])
    if noise > 0:
        X = X + noise * rng.standard_normal(X.shape)
    X = np.clip(X, 0.0, 1.0)
    X, y = _shuffle(X, y, rng)
    return Dataset(X, y, tuple(f"stripes_{c}" for c in range(num_classes)), "procedural")
