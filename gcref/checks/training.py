"""Checks of training for ``gcref check``: the exact GC-penalty gradient and the regularized
objective's gradient against finite differences, and an SGD step against a hand computation."""

from __future__ import annotations

import numpy as np

from ..metrics.complexity import geometric_complexity
from .cases import perturbed_params, small_zoo
from ..testing import CheckResult, check_gradient, relative_error
from ..train.fit import objective_and_grad
from ..train.gc_regularizer import gc_penalty_and_grad
from ..train.optim import SGD


def training_group(seed: int):
    out = []
    for i, net in enumerate(small_zoo()):
        params = net.check_params(perturbed_params(net, seed + i))
        rng = np.random.default_rng(seed + i)
        X = rng.normal(size=(3,) + net.input_shape)
        names = net.param_names
        out.append(check_gradient(lambda pp: geometric_complexity(net, {**params, **pp}, X),
                                  lambda pp: gc_penalty_and_grad(net, {**params, **pp}, X)[1],
                                  {k: params[k] for k in names}, seed=seed,
                                  name=f"{net.name}: GC-penalty gradient (double backprop) vs FD"))
        y = rng.integers(0, net.num_classes, 3)
        out.append(check_gradient(lambda pp: objective_and_grad(net, {**params, **pp}, X, y, 0.01, 0.1)[0],
                                  lambda pp: objective_and_grad(net, {**params, **pp}, X, y, l2=0.01,
                                                                gc_reg=0.1)[2],
                                  {k: params[k] for k in names}, seed=seed,
                                  name=f"{net.name}: L + l2/2||θ||² + λ·GC gradient vs FD"))
    opt = SGD(lr=0.1, momentum=0.9, weight_decay=0.01)
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    p1, s1 = opt.step(p, g, {})
    p2, _ = opt.step(p1, g, s1)
    b1 = g["w"] + 0.01 * p["w"]
    b2 = 0.9 * b1 + g["w"] + 0.01 * p1["w"]
    err = relative_error(p2["w"], p1["w"] - 0.1 * b2)
    out.append(CheckResult("SGD momentum + weight decay step vs hand computation", err, 1e-15, err <= 1e-15))
    return out
