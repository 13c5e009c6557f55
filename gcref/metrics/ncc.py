"""Nearest-class-mean (NCC) classifier and few-shot evaluation on embedding features.

The transfer-learning protocol of Galanti et al. 2022 and Munn et al. 2024: embed the target
data with the frozen source network, then for each episode pick ``ways`` classes, take ``shots``
labelled examples per class to form class centres, and classify ``queries`` further examples per
class by their nearest centre. Few-shot accuracy is the mean episode accuracy with a 95%
confidence half-width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gcref._validation import as_float_array, as_generator, as_labels, check_int

__all__ = [
    "NCCModel",
    "ncc_fit",
    "ncc_predict",
    "ncc_accuracy",
    "Episode",
    "few_shot_episodes",
    "FewShotResult",
    "summarize_episodes",
    "few_shot_accuracy_features",
    "few_shot_accuracy",
]

# Rows of Z processed at once in ncc_predict, so the (rows, k, p) difference block stays small.
_PREDICT_BLOCK_ELEMENTS = 1 << 22


class NCCModel(NamedTuple):
    """A fitted nearest-class-mean classifier; unpacks as ``centres, classes = ncc_fit(Z, y)``.

    Attributes
    ----------
    centres : ndarray, shape (k, p)
        Class means, row ``c`` for label ``classes[c]``.
    classes : ndarray of int64, shape (k,)
        The labels, ascending.
    """

    centres: np.ndarray
    classes: np.ndarray


def ncc_fit(Z, y) -> NCCModel:
    """Fit an NCC: the mean feature of each class.

    Parameters
    ----------
    Z : array_like, shape (n, p)
        Features.
    y : array_like of int, shape (n,)
        Labels. A class may have a single example (its centre is that example).

    Returns
    -------
    NCCModel
        ``(centres (k, p), classes (k,))`` with classes ascending.

    Notes
    -----
    ``mu_hat_c = (1/n_c) sum_{x in D_c} f(x)`` (docs/theory.md §1).
    """
    Z = as_float_array(Z, "Z", ndim=2)
    y = as_labels(y, "y", n=Z.shape[0])
    classes = np.unique(y)
    centres = _class_means(Z, [y == c for c in classes], "Z")
    return NCCModel(centres=centres, classes=classes)


def _class_means(Z, members, name) -> np.ndarray:
    """The mean of ``Z[m]`` for each selection ``m`` of ``members``, stacked; ``ValueError``
    naming ``name`` if a sum overflows (features near the largest float)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite_means(np.stack([Z[m].mean(axis=0) for m in members]), Z, name, "class")


def _finite_means(centres, Z, name, what) -> np.ndarray:
    if not np.all(np.isfinite(centres)):
        raise ValueError(f"{name}: the {what} means overflow (features up to "
                         f"{float(np.max(np.abs(Z))):.3g}); rescale the features")
    return centres


def ncc_predict(centres, classes, Z) -> np.ndarray:
    """Predict the label of the nearest centre for each row of ``Z``.

    Parameters
    ----------
    centres : array_like, shape (k, p)
        Class centres.
    classes : array_like of int, shape (k,)
        Label of each centre.
    Z : array_like, shape (n, p)
        Features to classify.

    Returns
    -------
    ndarray of int64, shape (n,)
        ``classes[argmin_c ||z - centres[c]||]``; exact ties go to the lowest index ``c``.

    Notes
    -----
    Squared distances are computed from the differences ``z - mu_c`` directly (no Gram-matrix
    expansion), so symmetric configurations give exact ties and the tie rule is meaningful.
    """
    centres = as_float_array(centres, "centres", ndim=2)
    k, p = centres.shape
    classes = as_labels(classes, "classes", n=k)
    if np.unique(classes).shape[0] != k:
        raise ValueError("classes must be distinct")
    Z = as_float_array(Z, "Z", ndim=2)
    if Z.shape[1] != p:
        raise ValueError(f"Z has {Z.shape[1]} features but the centres have {p}")
    n = Z.shape[0]
    rows = max(1, _PREDICT_BLOCK_ELEMENTS // max(1, k * p))
    index = np.empty(n, dtype=np.int64)
    for start in range(0, n, rows):
        dist2 = _squared_distances(Z[start:start + rows], centres)
        index[start:start + rows] = np.argmin(dist2, axis=1)    # first minimum: lowest index
    return classes[index]


def _squared_distances(block, centres) -> np.ndarray:
    """``||z_i - mu_c||^2`` of each row of ``block`` (rows, p) to each centre (k, p), from the
    differences.

    Where a difference or its square overflows (features near ``sqrt(max float) ~ 1e154``), both
    sides are first multiplied by the power of two ``2^-e`` that brings the largest magnitude
    into ``[1/2, 1)``: an exact scaling (no rounding, barring underflow of entries ``2^1022``
    times smaller than the largest), so the nearest centres are those of the unscaled features.
    Finite inputs never give a distance built on an overflow; inputs that do not overflow take
    the first path only, unchanged.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        diff = block[:, None, :] - centres[None, :, :]          # (rows, k, p)
        dist2 = np.sum(diff * diff, axis=2)
    if np.all(np.isfinite(dist2)):
        return dist2
    largest = max(float(np.max(np.abs(block))), float(np.max(np.abs(centres))))
    scale = math.ldexp(1.0, -math.frexp(largest)[1])
    diff = (block * scale)[:, None, :] - (centres * scale)[None, :, :]
    return np.sum(diff * diff, axis=2)


def ncc_accuracy(Z_train, y_train, Z_test, y_test) -> float:
    """Accuracy of the NCC fitted on ``(Z_train, y_train)`` and evaluated on ``(Z_test, y_test)``.

    Parameters
    ----------
    Z_train : array_like, shape (n_train, p)
    y_train : array_like of int, shape (n_train,)
    Z_test : array_like, shape (n_test, p)
    y_test : array_like of int, shape (n_test,)
        Every test label must occur in ``y_train``.

    Returns
    -------
    float
        Fraction of test points whose nearest training class mean has their label.
    """
    centres, classes = ncc_fit(Z_train, y_train)
    Z_test = as_float_array(Z_test, "Z_test", ndim=2)
    y_test = as_labels(y_test, "y_test", n=Z_test.shape[0])
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        raise ValueError(f"y_test: class {int(unseen[0])} does not occur in y_train")
    return float(np.mean(ncc_predict(centres, classes, Z_test) == y_test))


class Episode(NamedTuple):
    """One few-shot episode; unpacks as ``support_idx, query_idx, classes``.

    Attributes
    ----------
    support_idx : ndarray of int64, shape (ways, shots)
        Row ``c`` indexes the support examples of ``classes[c]``.
    query_idx : ndarray of int64, shape (ways, queries)
        Row ``c`` indexes the query examples of ``classes[c]``; disjoint from the support.
    classes : ndarray of int64, shape (ways,)
        The episode's labels, ascending.
    """

    support_idx: np.ndarray
    query_idx: np.ndarray
    classes: np.ndarray


def few_shot_episodes(y, ways: int, shots: int, queries: int, episodes: int,
                      seed=0) -> list[Episode]:
    """Draw few-shot episodes (k-way, m-shot, q queries per class), reproducibly from ``seed``.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Labels of the pool to draw from.
    ways : int
        Classes per episode, 2 <= ways <= number of classes in ``y``.
    shots : int
        Support examples per class (>= 1).
    queries : int
        Query examples per class (>= 1).
    episodes : int
        Number of episodes (>= 1).
    seed : int or numpy.random.Generator

    Returns
    -------
    list of Episode
        ``(support_idx (ways, shots), query_idx (ways, queries), classes (ways,))`` per episode.

    Raises
    ------
    ValueError
        If a class of ``y`` has fewer than ``shots + queries`` examples (the message names it),
        or ``ways`` exceeds the number of classes.

    Notes
    -----
    Per episode: ``ways`` classes uniformly without replacement (then sorted); per class,
    ``shots + queries`` distinct examples uniformly without replacement, the first ``shots``
    being the support. Every class must be able to host an episode, so the check covers all
    classes, not only those drawn.
    """
    y = as_labels(y, "y")
    ways = check_int(ways, "ways", minimum=2)
    shots = check_int(shots, "shots", minimum=1)
    queries = check_int(queries, "queries", minimum=1)
    episodes = check_int(episodes, "episodes", minimum=1)
    rng = as_generator(seed)
    labels, counts = np.unique(y, return_counts=True)
    if ways > labels.shape[0]:
        raise ValueError(f"ways={ways} exceeds the {labels.shape[0]} classes in y")
    need = shots + queries
    for label, count in zip(labels, counts):
        if count < need:
            raise ValueError(f"y: class {int(label)} has {int(count)} examples, fewer than "
                             f"shots + queries = {shots} + {queries} = {need}")
    members = [np.flatnonzero(y == label) for label in labels]
    out = []
    for _ in range(episodes):
        chosen = np.sort(rng.choice(labels.shape[0], size=ways, replace=False))
        support = np.empty((ways, shots), dtype=np.int64)
        query = np.empty((ways, queries), dtype=np.int64)
        for row, c in enumerate(chosen):
            picked = rng.choice(members[c], size=need, replace=False)
            support[row], query[row] = picked[:shots], picked[shots:]
        out.append(Episode(support_idx=support, query_idx=query, classes=labels[chosen].copy()))
    return out


@dataclass(frozen=True, eq=False)
class FewShotResult:
    """Few-shot NCC accuracy over episodes.

    Attributes
    ----------
    mean : float
        Mean episode accuracy.
    ci95 : float
        95% confidence half-width ``1.96 * std(accuracies, ddof=1) / sqrt(episodes)``.
    accuracies : ndarray, shape (episodes,)
        Accuracy of each episode.
    ways, shots, queries, episodes : int
        The protocol.
    """

    mean: float
    ci95: float
    accuracies: np.ndarray
    ways: int
    shots: int
    queries: int
    episodes: int


def _episode_accuracy(Z: np.ndarray, episode: Episode) -> float:
    support_idx, query_idx, classes = episode
    with np.errstate(over="ignore", invalid="ignore"):
        centres = _finite_means(Z[support_idx].mean(axis=1), Z, "Z", "support")   # (ways, p)
    labels = np.repeat(classes, query_idx.shape[1])
    pred = ncc_predict(centres, classes, Z[query_idx.reshape(-1)])
    return float(np.mean(pred == labels))


def summarize_episodes(accuracies: np.ndarray, ways, shots, queries, episodes) -> FewShotResult:
    """The few-shot result of per-episode accuracies: their mean and ``ci95 = 1.96 s / sqrt(E)``
    (``s`` the sample standard deviation, ddof=1); both backends report through it."""
    ci95 = float(1.96 * np.std(accuracies, ddof=1) / np.sqrt(episodes))
    return FewShotResult(mean=float(np.mean(accuracies)), ci95=ci95, accuracies=accuracies,
                         ways=ways, shots=shots, queries=queries, episodes=episodes)


def few_shot_accuracy_features(Z, y, ways: int = 5, shots: int = 5, queries: int = 15,
                               episodes: int = 100, seed=0) -> FewShotResult:
    """Few-shot NCC accuracy on embedded features.

    Parameters
    ----------
    Z : array_like, shape (n, p)
        Embedded target examples.
    y : array_like of int, shape (n,)
        Target labels.
    ways, shots, queries : int
        Episode protocol (see :func:`few_shot_episodes`).
    episodes : int
        Number of episodes, >= 2 (the confidence interval needs a standard deviation).
    seed : int or numpy.random.Generator

    Returns
    -------
    FewShotResult

    Notes
    -----
    Per episode the NCC centres are the means of the ``shots`` support features of each class
    and the accuracy is over all ``ways * queries`` queries (q per class, so classes weigh
    equally). ``ci95 = 1.96 * s / sqrt(E)`` with the sample standard deviation ``s`` (ddof=1)
    of the E episode accuracies; much few-shot code uses ``np.std`` (ddof=0), smaller by
    ``sqrt((E-1)/E)``.
    """
    Z = as_float_array(Z, "Z", ndim=2)
    y = as_labels(y, "y", n=Z.shape[0])
    episodes = check_int(episodes, "episodes", minimum=2)
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    acc = np.array([_episode_accuracy(Z, e) for e in eps])
    return summarize_episodes(acc, ways, shots, queries, episodes)


def few_shot_accuracy(net, params, X, y, ways: int = 5, shots: int = 5, queries: int = 15,
                      episodes: int = 100, seed=0, *, batch_size: int = 1024) -> FewShotResult:
    """Few-shot NCC accuracy of a network's embedding ``net.embed(params, X)``.

    Parameters
    ----------
    net : object with ``embed(params, X) -> (n, p)``
        The (frozen) source network.
    params : dict[str, ndarray]
        Its parameters.
    X : array_like, shape (n, ...)
        Target inputs.
    y : array_like of int, shape (n,)
        Target labels.
    ways, shots, queries, episodes, seed
        As in :func:`few_shot_accuracy_features`.
    batch_size : int
        Examples embedded per call to ``net.embed``.

    Returns
    -------
    FewShotResult
        Identical to ``few_shot_accuracy_features(net.embed(params, X), y, ...)``.

    Notes
    -----
    The episodes depend only on ``y`` and ``seed``, so only the examples some episode uses are
    embedded (the embedding is per-example: no batch statistics).
    """
    X = np.asarray(X)
    if X.ndim < 1:
        raise ValueError("X must have a leading example axis")
    y = as_labels(y, "y", n=X.shape[0])
    episodes = check_int(episodes, "episodes", minimum=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    used = np.unique(np.concatenate([np.concatenate([e.support_idx.ravel(), e.query_idx.ravel()])
                                     for e in eps]))
    blocks = [np.asarray(net.embed(params, X[used[s:s + batch_size]]))
              for s in range(0, used.shape[0], batch_size)]
    Z_used = as_float_array(np.concatenate(blocks, axis=0), "net.embed(params, X)", ndim=2)
    if Z_used.shape[0] != used.shape[0]:
        raise ValueError("net.embed returned a different number of rows than inputs")
    Z = np.zeros((X.shape[0], Z_used.shape[1]))
    Z[used] = Z_used
    acc = np.array([_episode_accuracy(Z, e) for e in eps])
    return summarize_episodes(acc, ways, shots, queries, episodes)
