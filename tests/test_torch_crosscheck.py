"""Cross-check against PyTorch (optional: torch is not a dependency of gcref).

``gcref.interop.torch.to_torch`` builds the torch module of a gcref network, loaded with
``load_state_dict(strict=True)`` from gcref's parameter dict (the same names and layouts); it must
give the same logits, embeddings and input Jacobians in float64.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gcref.checks import perturbed_params, small_zoo  # noqa: E402
from gcref.interop.torch import to_torch  # noqa: E402
from gcref.nn import zoo  # noqa: E402

pytestmark = pytest.mark.torch


NETS = small_zoo() + [zoo.vgg("vgg11", (3, 32, 32), 10, width=0.25),
                      zoo.resnet18((3, 16, 16), 10, width=0.125),
                      zoo.mlp([64, 128, 128, 32], num_classes=10, input_shape=(1, 8, 8))]


@pytest.mark.parametrize("net", NETS, ids=lambda n: n.name)
def test_same_function_as_pytorch(net):
    params = perturbed_params(net, 0)
    model = to_torch(net, params)
    X = np.random.default_rng(1).normal(size=(4,) + net.input_shape)
    with torch.no_grad():
        logits_t = model(torch.from_numpy(X)).numpy()
        emb_t = model.embed(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(net.forward(params, X), logits_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.embed(params, X), emb_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("net", small_zoo()[:5], ids=lambda n: n.name)
def test_same_jacobian_as_torch_func(net):
    from torch.func import jacrev, vmap
    params = perturbed_params(net, 0)
    model = to_torch(net, params)
    X = np.random.default_rng(2).normal(size=(3,) + net.input_shape)
    jt = vmap(jacrev(lambda x: model.embed(x[None])[0]))(torch.from_numpy(X)).detach().numpy()
    jt = jt.reshape(3, net.embedding_dim, -1)
    np.testing.assert_allclose(net.jacobian(params, X), jt, rtol=1e-11, atol=1e-13)
