"""The leaves added for custom PyTorch modules: LeakyReLU, Sigmoid, ELU, Softplus (elementwise:
``s``, ``s'``, ``s''``) and BatchNorm1d (evaluation mode).

Values against closed forms at chosen points, and against PyTorch's float64 modules (value, first
and second derivative by autograd) where torch is installed. The layer battery
(``tests/test_nn.py``, ``gcref check``) and the per-op agreement of the fast backend
(``tests/test_cuda_ops.py``) pick them up through ``gcref.nn.__all__``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gcref import nn
from gcref.testing import check_layer


def _derivatives(layer, x):
    y, cache = layer.forward({}, x)
    d = layer.jvp({}, cache, np.ones_like(x))
    _, d2 = layer.second_order({}, cache, np.ones_like(x), np.ones_like(x))
    return y, d, d2


def test_closed_forms():
    x = np.array([-2.0, 0.0, 3.0])
    y, d, d2 = _derivatives(nn.LeakyReLU(0.2), x)
    np.testing.assert_array_equal(y, [-0.4, 0.0, 3.0])
    np.testing.assert_array_equal(d, [0.2, 0.2, 1.0])            # the slope at the kink, as torch
    assert d2 is None                                            # piecewise linear: no s''
    y, d, d2 = _derivatives(nn.Sigmoid(), np.array([0.0]))
    assert (y[0], d[0], d2[0]) == (0.5, 0.25, 0.0)
    y, d, d2 = _derivatives(nn.ELU(2.0), np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(y, [2 * (math.exp(-1) - 1), 0.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(d, [2 * math.exp(-1), 2.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(d2, [2 * math.exp(-1), 0.0, 0.0], rtol=1e-15)   # torch's at 0
    y, d, d2 = _derivatives(nn.Softplus(2.0, threshold=4.0), np.array([0.0, 1.0, 3.0, 1000.0]))
    np.testing.assert_allclose(y, [math.log(2) / 2, math.log1p(math.exp(2)) / 2, 3.0, 1000.0],
                               rtol=1e-15)
    sig = 1 / (1 + math.exp(-2))
    np.testing.assert_allclose(d, [0.5, sig, 1.0, 1.0], rtol=1e-15)   # linear above the threshold
    np.testing.assert_allclose(d2, [0.5, 2 * sig * (1 - sig), 0.0, 0.0], rtol=1e-15)
    assert np.all(np.isfinite(_derivatives(nn.ELU(), np.array([800.0, -800.0]))[0]))


def test_batchnorm1d_is_the_affine_map_of_its_statistics():
    bn = nn.BatchNorm1d(3, eps=0.5)
    p = {"weight": np.array([1.0, 2.0, -1.0]), "bias": np.array([0.0, 1.0, 2.0]),
         "running_mean": np.array([1.0, 0.0, -1.0]), "running_var": np.array([0.5, 3.5, 1.5])}
    x = np.array([[2.0, 4.0, 1.0]])
    y, _ = bn.forward(p, x)
    np.testing.assert_allclose(y, [[1.0, 2 * 4 / 2 + 1, -1 * 2 / math.sqrt(2) + 2]], rtol=1e-15)
    assert bn.describe() == "BatchNorm1d(3, eps=0.5)"
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expects inputs of shape \(3,\)"):
        bn.out_shape((3, 4))
    with pytest.raises(ValueError, match="BatchNorm1d running_var"):
        bn.forward({**p, "running_var": np.array([-1.0, 1, 1])}, x)


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="negative_slope"):
        nn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="beta must be nonzero"):
        nn.Softplus(0.0)
    with pytest.raises(ValueError, match="alpha must be finite"):
        nn.ELU(float("inf"))


@pytest.mark.parametrize("layer,shape", [(nn.LeakyReLU(0.3), (2, 3, 3)), (nn.Sigmoid(), (5,)),
                                         (nn.ELU(), (2, 2, 3)), (nn.Softplus(0.5, 3.0), (6,)),
                                         (nn.BatchNorm1d(4), (4,))])
def test_battery_passes_beyond_the_examples(layer, shape):
    assert check_layer(layer, shape, seed=3).passed


@pytest.mark.parametrize("name,args", [("LeakyReLU", (0.05,)), ("Sigmoid", ()), ("ELU", (1.3,)),
                                       ("Softplus", (1.7, 5.0))])
def test_activations_equal_torch(name, args):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-12.0, 12.0, 2401), np.random.default_rng(0).normal(size=500)])
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = getattr(torch.nn, name)(*args)(t)
    (dt,) = torch.autograd.grad(yt.sum(), t, create_graph=True)
    d2t = torch.autograd.grad(dt.sum(), t, allow_unused=True)[0] if dt.requires_grad else None
    y, d, d2 = _derivatives(getattr(nn, name)(*args), x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d, dt.detach().numpy(), rtol=1e-14, atol=1e-15)
    d2 = np.zeros_like(x) if d2 is None else d2                   # piecewise linear: s'' = 0
    np.testing.assert_allclose(d2, 0.0 if d2t is None else d2t.numpy(), rtol=1e-13, atol=1e-15)


def test_batchnorm1d_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    m = torch.nn.BatchNorm1d(4, eps=1e-3).double().eval()
    with torch.no_grad():
        for buf in (m.weight, m.bias, m.running_mean):
            buf.copy_(torch.from_numpy(rng.normal(size=4)))
        m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2, size=4)))
    p = {k: v.numpy() for k, v in m.state_dict().items() if k != "num_batches_tracked"}
    x = rng.normal(size=(7, 4))
    y, _ = nn.BatchNorm1d(4, eps=1e-3).forward(p, x)
    np.testing.assert_allclose(y, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-14, atol=1e-15)
