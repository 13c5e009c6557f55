"""Cross-check against PyTorch (optional: torch is not a dependency of gcref).

A torch module with the same layers is built from a gcref network, loaded with
``load_state_dict(strict=True)`` from gcref's parameter dict (the same names and layouts), and must
give the same logits, embeddings and input Jacobians in float64.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from gcref.checks import perturbed_params, small_zoo  # noqa: E402
from gcref.nn import layers as L  # noqa: E402
from gcref.nn import zoo  # noqa: E402

pytestmark = pytest.mark.torch


class TorchBlock(nn.Module):
    def __init__(self, b: L.BasicBlock):
        super().__init__()
        self.conv1 = nn.Conv2d(b.in_channels, b.out_channels, 3, b.stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(b.out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(b.out_channels, b.out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(b.out_channels)
        self.downsample = None
        if b.downsample is not None:
            self.downsample = nn.Sequential(
                nn.Conv2d(b.in_channels, b.out_channels, 1, b.stride, bias=False),
                nn.BatchNorm2d(b.out_channels))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def torch_layer(layer):
    if isinstance(layer, L.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, L.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, bias=layer.bias)
    if isinstance(layer, L.ReLU):
        return nn.ReLU()
    if isinstance(layer, L.Tanh):
        return nn.Tanh()
    if isinstance(layer, L.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, L.AvgPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, L.Flatten):
        return nn.Flatten()
    if isinstance(layer, L.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features, eps=layer.eps)
    if isinstance(layer, L.BasicBlock):
        return TorchBlock(layer)
    raise TypeError(layer)


class TorchNet(nn.Module):
    """Registers every layer under its dotted gcref name ("features.0" -> self.features[0])."""

    def __init__(self, net):
        super().__init__()
        self.order = []
        for name, layer in net.layers():
            parent = self
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(parent, part) or getattr(parent, part) is None:
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            module = torch_layer(layer)
            parent.add_module(leaf, module)
            self.order.append(module)

    def forward(self, x, embedding=False):
        for module in (self.order[:-1] if embedding else self.order):
            x = module(x)
        return x


def to_torch(net, params):
    model = TorchNet(net).double().eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}
    for k in model.state_dict():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(0)
    model.load_state_dict(state, strict=True)
    return model


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
        emb_t = model(torch.from_numpy(X), embedding=True).numpy()
    np.testing.assert_allclose(net.forward(params, X), logits_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.embed(params, X), emb_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("net", small_zoo()[:5], ids=lambda n: n.name)
def test_same_jacobian_as_torch_func(net):
    from torch.func import jacrev, vmap
    params = perturbed_params(net, 0)
    model = to_torch(net, params)
    X = np.random.default_rng(2).normal(size=(3,) + net.input_shape)
    jt = vmap(jacrev(lambda x: model(x[None], embedding=True)[0]))(torch.from_numpy(X)).detach().numpy()
    jt = jt.reshape(3, net.embedding_dim, -1)
    np.testing.assert_allclose(net.jacobian(params, X), jt, rtol=1e-11, atol=1e-13)
