"""NCC classifier and few-shot episodes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcref.metrics.ncc import (
    Episode, FewShotResult, few_shot_accuracy, few_shot_accuracy_features, few_shot_episodes,
    ncc_accuracy, ncc_fit, ncc_predict,
)


def clusters(seed, k, per_class, p, sep=50.0):
    rng = np.random.default_rng(seed)
    centres = sep * rng.normal(size=(k, p))
    y = np.repeat(np.arange(k), per_class)
    return centres[y] + rng.normal(size=(y.size, p)), y


def test_fit_and_predict_hand_made():
    Z = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    centres, classes = ncc_fit(Z, [3, 3, 8, 8])
    np.testing.assert_array_equal(classes, [3, 8])
    np.testing.assert_array_equal(centres, [[1.0, 0.0], [11.0, 10.0]])
    pred = ncc_predict(centres, classes, [[0.0, 1.0], [9.0, 9.0], [5.9, 5.0], [6.1, 5.0]])
    np.testing.assert_array_equal(pred, [3, 8, 3, 8])


def test_ties_go_to_lowest_index():
    centres = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    classes = np.array([5, 2, 9])
    # (0, -5) is equidistant from the first two centres (exact in float64).
    assert ncc_predict(centres, classes, [[0.0, -5.0]])[0] == 5
    assert ncc_predict(centres[[1, 0, 2]], classes[[1, 0, 2]], [[0.0, -5.0]])[0] == 2
    # The origin is equidistant from all three.
    assert ncc_predict(centres, classes, [[0.0, 0.0]])[0] == 5


def test_predict_blocks_match_single_pass():
    rng = np.random.default_rng(0)
    centres, classes = rng.normal(size=(7, 30)), np.arange(7)
    Z = rng.normal(size=(40_000, 30))                     # more rows than one block
    dist2 = ((Z[:, None, :] - centres[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ncc_predict(centres, classes, Z), np.argmin(dist2, axis=1))


def test_matches_sklearn_nearest_centroid():
    NearestCentroid = pytest.importorskip("sklearn.neighbors").NearestCentroid
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[rng.integers(0, 5, 300)]
    y = rng.integers(0, 4, 300) * 3 + 1
    Zt = rng.normal(size=(200, 5))
    ref = NearestCentroid().fit(Z, y)
    centres, classes = ncc_fit(Z, y)
    np.testing.assert_allclose(centres, ref.centroids_, rtol=1e-12)
    np.testing.assert_array_equal(ncc_predict(centres, classes, Zt), ref.predict(Zt))


def test_ncc_accuracy_values_and_errors():
    Z, y = clusters(2, 4, 20, 3)
    assert ncc_accuracy(Z, y, Z, y) == 1.0
    assert ncc_accuracy(Z, y, Z, (y + 1) % 4) == 0.0
    with pytest.raises(ValueError, match="class 9 does not occur"):
        ncc_accuracy(Z, y, Z[:2], [0, 9])
    with pytest.raises(ValueError, match="features"):
        ncc_predict(np.zeros((2, 3)), [0, 1], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="distinct"):
        ncc_predict(np.zeros((2, 3)), [1, 1], np.zeros((4, 3)))


@given(st.integers(0, 1000), st.integers(2, 6), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 5))
def test_episodes_structure_and_reproducibility(seed, ways, shots, queries, episodes):
    rng = np.random.default_rng(seed)
    num_classes = ways + int(rng.integers(0, 3))
    sizes = rng.integers(shots + queries, shots + queries + 5, size=num_classes)
    labels = rng.permutation(np.arange(num_classes) * 7 - 3)
    y = rng.permutation(np.repeat(labels, sizes))
    eps = few_shot_episodes(y, ways, shots, queries, episodes, seed)
    again = few_shot_episodes(y, ways, shots, queries, episodes, np.random.default_rng(seed))
    assert len(eps) == episodes
    for e, f in zip(eps, again):
        assert isinstance(e, Episode)
        for a, b in zip(e, f):
            np.testing.assert_array_equal(a, b)
        support, query, classes = e
        assert support.shape == (ways, shots) and query.shape == (ways, queries)
        assert classes.shape == (ways,) and np.all(np.diff(classes) > 0)
        assert set(classes.tolist()) <= set(labels.tolist())
        np.testing.assert_array_equal(y[support], np.repeat(classes[:, None], shots, axis=1))
        np.testing.assert_array_equal(y[query], np.repeat(classes[:, None], queries, axis=1))
        all_idx = np.concatenate([support.ravel(), query.ravel()])
        assert np.unique(all_idx).size == all_idx.size   # support and query disjoint


def test_episodes_differ_across_seeds_and_cover_classes():
    y = np.repeat(np.arange(10), 30)
    a = few_shot_episodes(y, 5, 5, 15, 50, seed=0)
    b = few_shot_episodes(y, 5, 5, 15, 50, seed=1)
    assert any(not np.array_equal(e.support_idx, f.support_idx) for e, f in zip(a, b))
    drawn = np.concatenate([e.classes for e in a])
    counts = np.bincount(drawn, minlength=10)
    assert counts.sum() == 250 and counts.min() > 5      # each class ~ 25 times


def test_episode_errors():
    y = np.repeat([0, 1, 4], [10, 10, 6])
    with pytest.raises(ValueError, match="class 4 has 6 examples"):
        few_shot_episodes(y, 2, 2, 5, 3, seed=0)
    with pytest.raises(ValueError, match="ways=4 exceeds"):
        few_shot_episodes(y, 4, 1, 1, 3, seed=0)
    with pytest.raises(ValueError, match="ways"):
        few_shot_episodes(y, 1, 1, 1, 3, seed=0)
    with pytest.raises(TypeError, match="seed"):
        few_shot_episodes(y, 2, 1, 1, 3, seed=None)
    with pytest.raises(TypeError, match="shots"):
        few_shot_episodes(y, 2, 1.5, 1, 3, seed=0)


def test_few_shot_accuracy_separated_clusters():
    Z, y = clusters(3, 8, 25, 6)
    res = few_shot_accuracy_features(Z, y, ways=5, shots=5, queries=15, episodes=30, seed=0)
    assert isinstance(res, FewShotResult)
    assert res.mean == 1.0 and res.ci95 == 0.0
    assert res.accuracies.shape == (30,)
    assert (res.ways, res.shots, res.queries, res.episodes) == (5, 5, 15, 30)


def test_few_shot_accuracy_recomputed_by_hand():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(6), 20)
    Z = rng.normal(size=(120, 3)) + 0.8 * np.eye(3)[y % 3] + 0.3 * (y // 3)[:, None]
    res = few_shot_accuracy_features(Z, y, ways=3, shots=2, queries=4, episodes=25, seed=9)
    manual = []
    for support, query, classes in few_shot_episodes(y, 3, 2, 4, 25, seed=9):
        centres = np.array([Z[s].mean(axis=0) for s in support])
        correct = 0
        for c, row in zip(classes, query):
            for qi in row:
                d = [np.sum((Z[qi] - m) ** 2) for m in centres]
                correct += classes[int(np.argmin(d))] == c
        manual.append(correct / 12)
    np.testing.assert_allclose(res.accuracies, manual, rtol=0, atol=1e-15)
    assert res.mean == pytest.approx(np.mean(manual))
    assert res.ci95 == pytest.approx(1.96 * np.std(manual, ddof=1) / np.sqrt(25))
    assert 0 < res.mean < 1


class LinearNet:
    """A stand-in network: embed(params, X) = X @ params['w'] (counts embedded rows)."""

    def __init__(self):
        self.rows = 0

    def embed(self, params, X):
        self.rows += X.shape[0]
        return np.asarray(X).reshape(X.shape[0], -1) @ params["w"]


def test_few_shot_accuracy_network_wrapper():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(7), 30)
    X = rng.normal(size=(210, 2, 3)) + np.eye(6)[y % 6].reshape(-1, 2, 3)
    params = {"w": rng.normal(size=(6, 4))}
    net = LinearNet()
    res = few_shot_accuracy(net, params, X, y, ways=4, shots=3, queries=5, episodes=6, seed=2,
                            batch_size=16)
    ref = few_shot_accuracy_features(X.reshape(210, -1) @ params["w"], y, ways=4, shots=3,
                                     queries=5, episodes=6, seed=2)
    np.testing.assert_allclose(res.accuracies, ref.accuracies, rtol=0, atol=1e-15)
    assert res.mean == ref.mean and res.ci95 == pytest.approx(ref.ci95)
    assert net.rows <= 6 * 4 * 8                         # only the examples episodes use
    with pytest.raises(ValueError, match="episodes"):
        few_shot_accuracy(net, params, X, y, episodes=1)


# ---------------------------------------------------------------- huge features (issue 19)
def _noisy_three_classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    Z = rng.normal(size=(180, 4)) + 2.5 * np.eye(4)[y]
    return Z, y


@pytest.mark.parametrize("scale", [1e160, 1e200, 2.0 ** 1000, 1e300])
def test_ncc_on_huge_features_equals_the_unscaled_result_without_overflow(scale):
    import warnings
    Z, y = _noisy_three_classes()
    truth = ncc_accuracy(Z, y, Z, y)
    assert 0.8 < truth < 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no RuntimeWarning: nothing overflowed
        assert ncc_accuracy(Z * scale, y, Z * scale, y) == truth
        assert np.array_equal(ncc_predict(*ncc_fit(Z * scale, y), Z * scale),
                              ncc_predict(*ncc_fit(Z, y), Z))
        res = few_shot_accuracy_features(Z * scale, y, ways=3, shots=5, queries=10, episodes=20, seed=1)
    ref = few_shot_accuracy_features(Z, y, ways=3, shots=5, queries=10, episodes=20, seed=1)
    assert np.array_equal(res.accuracies, ref.accuracies)


def test_few_shot_accuracy_of_a_network_on_huge_inputs():
    Z, y = _noisy_three_classes()
    params = {"w": np.eye(4)}
    kw = dict(ways=3, shots=5, queries=10, episodes=20, seed=1)
    ref = few_shot_accuracy(LinearNet(), params, Z, y, **kw)
    res = few_shot_accuracy(LinearNet(), params, Z * 1e200, y, **kw)
    assert np.array_equal(res.accuracies, ref.accuracies) and res.mean > 0.8


def test_class_means_that_overflow_raise_naming_z():
    Z, y = _noisy_three_classes()
    Z = np.abs(Z) / np.abs(Z).max() * 1.7e308          # finite, but sums of it overflow
    with pytest.raises(ValueError, match="Z: the class means overflow"):
        ncc_fit(Z, y)
    with pytest.raises(ValueError, match="Z: the support means overflow"):
        few_shot_accuracy_features(Z, y, ways=3, shots=5, queries=10, episodes=3)
