"""Checks of the metrics for ``gcref check``: estimators against exact values, inequalities on laws
whose constants are known, the NCC bound against measured errors, CDNV against an independent
computation. Listed in :mod:`gcref.checks`."""

from __future__ import annotations

import numpy as np

from ..data.synthetic import gaussian_mixture, uniform_boxes
from ..nn import zoo
from ..testing import CheckResult, relative_error
from ..metrics import (cdnv, class_stats, estimate_gc, few_shot_accuracy_features, flatness_bound,
               geometric_complexity, ncc_error_bound, ncc_predict, per_example_gc)
from ..metrics.complexity import ESTIMATORS


def _estimator_checks(seed):
    net = zoo.cnn((1, 6, 6), 3, channels=(3,), hidden=8)
    params = net.init(seed)
    X = np.random.default_rng(seed).normal(size=(20, 1, 6, 6))
    exact = geometric_complexity(net, params, X)
    out = []
    budgets = {"examples": 8, "outputs": 3, "mask": 0.3, "projection": 3}
    for method in ESTIMATORS:
        R = 100
        vals = np.array([estimate_gc(net, params, X, method=method, size=budgets[method], seed=[seed, r]).value
                         for r in range(R)])
        se = vals.std(ddof=1) / np.sqrt(R)
        z = abs(vals.mean() - exact) / max(se, 1e-12 * abs(exact))
        out.append(CheckResult(f"estimate_gc('{method}') unbiased: |MC mean - exact| / SE ({R} draws)",
                               z, 4.0, z <= 4.0))
    return out


def _poincare_checks(seed):
    """Var_c(f) <= rho_c GC_c on known laws through random nets, up to sampling error (3 SE)."""
    out = []
    laws = [("Gaussian mixture", gaussian_mixture(600, 3, 4, separation=3.0, anisotropy=4.0, seed=seed)),
            ("uniform boxes", uniform_boxes(600, 3, 4, width=2.0, seed=seed))]
    for act in ("relu", "tanh"):
        net = zoo.mlp([4, 16, 16, 5], 3, activation=act)
        params = net.init(seed)
        for label, law in laws:
            X, y = law.dataset.X, law.dataset.y
            Z = net.embed(params, X)
            pe = per_example_gc(net, params, X)
            worst = -np.inf
            for c in range(3):
                Zc = Z[y == c]
                d = np.sum((Zc - Zc.mean(0)) ** 2, axis=1) - law.poincare[c] * pe[y == c]
                # violation in standard errors of the per-sample difference (<= 3 expected)
                worst = max(worst, d.mean() / (d.std(ddof=1) / np.sqrt(d.size)))
            out.append(CheckResult(f"Poincaré Var_c <= rho_c GC_c, {label}, {act} net: max (lhs-rhs)/SE",
                                   worst, 3.0, worst <= 3.0))
    return out


def _flatness_checks(seed):
    out = []
    for act in ("relu", "tanh"):
        net = zoo.mlp([6, 10, 10, 4], 3, activation=act)
        X = np.random.default_rng(seed).normal(size=(15, 6))
        rep = flatness_bound(net, net.init(seed), X)
        viol = float(np.max((rep.lhs - rep.rhs) / rep.rhs))
        out.append(CheckResult(f"flatness ||J||^2 <= ||W||_2^2 ||grad_(W,b) f||^2/(1+||x||^2), {act}: "
                               "max (lhs-rhs)/rhs", max(viol, 0.0), 1e-12, rep.holds))
    return out


def _ncc_checks(seed):
    out = []
    # bound vs measured few-shot error, on features of random and 'trained-looking' (well separated) nets
    for label, sep in (("random features", 1.0), ("separated features", 4.0)):
        gm = gaussian_mixture(200, 5, 6, separation=sep, seed=seed)
        net = zoo.mlp([6, 20, 8], 5)
        Z = net.embed(net.init(seed), gm.dataset.X)
        y = gm.dataset.y
        shots = 5
        res = few_shot_accuracy_features(Z, y, ways=5, shots=shots, queries=15, episodes=200, seed=seed)
        err, se = 1 - res.mean, res.accuracies.std(ddof=1) / np.sqrt(res.accuracies.size)
        st = class_stats(Z, y)
        for form in ("variance", "capped"):
            b = ncc_error_bound(st.means, st.variances, shots, form=form).value
            excess = (err - 3 * se) - b
            out.append(CheckResult(f"NCC bound ({form}) >= measured 5-shot error - 3 SE, {label} "
                                   f"(error {err:.3f}, bound {b:.3g})", max(excess, 0.0), 0.0, excess <= 0.0))
    # CDNV against an independent loop
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), [5, 9, 3, 7])
    Z = rng.normal(size=(y.size, 3)) + 3 * rng.normal(size=(4, 3))[y]
    V = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                zi, zj = Z[y == i], Z[y == j]
                vi = np.mean([np.dot(z - zi.mean(0), z - zi.mean(0)) for z in zi])
                vj = np.mean([np.dot(z - zj.mean(0), z - zj.mean(0)) for z in zj])
                V[i, j] = (vi + vj) / (2 * np.dot(zi.mean(0) - zj.mean(0), zi.mean(0) - zj.mean(0)))
    err = relative_error(cdnv(Z, y), V)
    out.append(CheckResult("CDNV vs independent loop", err, 1e-12, err <= 1e-12))
    st = class_stats(Z, y)
    pred = ncc_predict(st.means, st.classes, Z)
    try:
        from sklearn.neighbors import NearestCentroid
        ref = NearestCentroid().fit(Z, y).predict(Z)
        mismatch = float(np.mean(pred != ref))
        out.append(CheckResult("NCC predictions vs scikit-learn NearestCentroid", mismatch, 0.0, mismatch == 0.0))
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        pass
    return out


def metrics_group(seed: int):
    return _estimator_checks(seed) + _poincare_checks(seed) + _flatness_checks(seed) + _ncc_checks(seed)
