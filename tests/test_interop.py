"""gcref.interop.torch: from_torch / to_torch against PyTorch and torch.func (float64).

Measured for every zoo network (through ``to_torch``) and for torchvision-structured VGG-11,
ResNet-18 (ImageNet and CIFAR stems) and ResNet-50 written here by hand (torchvision is not
needed): the converted gcref network's logits, embedding, full input Jacobian and GC equal
``torch.func`` (``vmap(jacrev)``) on the original module to <= 1e-12 relative, and
``to_torch(from_torch(m))`` reproduces ``m``'s outputs bitwise.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.func import jacrev, vmap  # noqa: E402

import gcref  # noqa: E402
from gcref.checks import perturbed_params, small_zoo  # noqa: E402
from gcref.interop.torch import UnsupportedModuleError, from_torch, to_torch  # noqa: E402
from gcref.nn import zoo  # noqa: E402

pytestmark = pytest.mark.torch

RTOL = 1e-12


# ------------------------------------------------------------------- torchvision, by hand
# The classes below copy torchvision's structure, parameter names and forward (torchvision
# 0.2x, models/vgg.py and models/resnet.py), with the channel counts scaled by ``base / 64``.

class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVResNet(nn.Module):
    def __init__(self, block, layers, num_classes=10, base=64, groups=1, cifar_stem=False):
        super().__init__()
        self.inplanes = base
        self.base = base
        self.groups = groups
        if cifar_stem:      # the common CIFAR variant: 3x3 stride-1 stem, max-pool removed
            self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, 2 * base, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * base, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * base, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * base * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        kw = {"groups": self.groups} if block is TVBottleneck else {}
        layers = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, **kw))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class TVVGG(nn.Module):
    def __init__(self, cfg, base=64, hidden=4096, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = v * base // 64
                layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """float64, evaluation mode, He-scaled weights and batch-norm statistics off 0/1 (so every
    parameter matters)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=g, dtype=t.dtype))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.2 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            elif t.ndim == 1:                                   # batch-norm gamma
                t.copy_(0.8 + 0.5 * torch.rand(t.shape, generator=g, dtype=t.dtype))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * (2.0 / fan_in) ** 0.5)
    return model


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def tv_vgg11():
    return randomize(TVVGG(VGG11, base=4, hidden=24, num_classes=5), 0), (3, 32, 32), "classifier.6"


def tv_resnet18(stem="imagenet"):
    m = TVResNet(TVBasicBlock, [2, 2, 2, 2], num_classes=5, base=4, cifar_stem=stem == "cifar")
    return randomize(m, 1), (3, 32, 32) if stem == "imagenet" else (3, 12, 12), "fc"


def tv_resnet50():
    return randomize(TVResNet(TVBottleneck, [3, 4, 6, 3], num_classes=5, base=4), 2), (3, 32, 32), "fc"


# ------------------------------------------------------------------------- measurement

def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0.0 else float(np.linalg.norm(a - b) / scale)


def torch_embedding(model, head_path):
    """The module's embedding function: a copy whose head is replaced by the identity."""
    if hasattr(model, "embed"):
        return model.embed
    m = copy.deepcopy(model)
    parent, _, leaf = head_path.rpartition(".")
    setattr(m.get_submodule(parent) if parent else m, leaf, nn.Identity())
    return m


def measure(model, input_shape, head_path, n=3, seed=0):
    """Relative errors of the converted gcref network against torch (``torch.func`` for the
    Jacobian), and whether the round trip reproduces the outputs bitwise."""
    net, params = from_torch(model, input_shape)
    assert net.head_name == head_path
    X = np.random.default_rng(seed).normal(size=(n,) + tuple(input_shape))
    Xt = torch.from_numpy(X)
    emb = torch_embedding(model, head_path)
    with torch.no_grad():
        logits_t, z_t = model(Xt).numpy(), emb(Xt).numpy()
    jac_t = vmap(jacrev(lambda x: emb(x[None])[0]))(Xt).detach().numpy().reshape(n, net.embedding_dim, -1)
    gc_t = (jac_t ** 2).sum(axis=(1, 2))
    jac = net.jacobian(params, X)
    errors = {
        "logits": rel(net.forward(params, X), logits_t),
        "embedding": rel(net.embed(params, X), z_t),
        "jacobian": rel(jac, jac_t),
        "per-example GC": rel(gcref.per_example_gc(net, params, X), gc_t),
        "GC": rel(gcref.geometric_complexity(net, params, X), gc_t.mean()),
    }
    again = to_torch(net, params)
    with torch.no_grad():
        bitwise = torch.equal(again(Xt), model(Xt))
    return net, params, errors, bitwise


def _zoo_nets():
    nets = small_zoo() + [
        zoo.resnet50((3, 6, 6), 3, width=1 / 32),
        zoo.resnet18((3, 16, 16), 3, width=1 / 32, stem="imagenet"),
        zoo.resnet50((3, 16, 16), 3, width=1 / 32, stem="imagenet"),
        zoo.mlp([6, 7, 5], 3, activation="gelu"),
        zoo.cnn((2, 6, 6), 3, channels=(3,), hidden=4, activation="silu"),
    ]
    return nets


@pytest.mark.parametrize("net", _zoo_nets(), ids=lambda n: n.name)
def test_zoo_network_round_trip_matches_torch_func(net):
    params = perturbed_params(net, 3)
    model = to_torch(net, params)
    net2, params2, errors, bitwise = measure(model, net.input_shape, net.head_name)
    assert [(n, layer.describe()) for n, layer in net2.layers()] == \
        [(n, layer.describe()) for n, layer in _flat_layers(net)]
    assert set(params2) == set(params) and all(np.array_equal(params2[k], params[k]) for k in params)
    for what, err in errors.items():
        assert err <= RTOL, f"{net.name} {what}: {err:.2e}"
    assert bitwise


def _flat_layers(net):
    from gcref.interop.torch import _leaves
    return _leaves(net.embedding.children) + [(net.head_name, net.head)]


TORCHVISION = {
    "vgg11": tv_vgg11,
    "resnet18": tv_resnet18,
    "resnet18-cifar-stem": lambda: tv_resnet18("cifar"),
    "resnet50": tv_resnet50,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_structured_models_match_torch_func(name):
    model, shape, head = TORCHVISION[name]()
    net, params, errors, bitwise = measure(model, shape, head, n=2)
    for what, err in errors.items():
        assert err <= RTOL, f"{name} {what}: {err:.2e}"
    assert bitwise
    state = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(params) == state                          # every parameter, the same names
    # the same network as the zoo's where the zoo has it (ImageNet stems, same widths)
    if name in ("resnet18", "resnet50"):
        ref = getattr(zoo, name)(shape, 5, width=4 / 64, stem="imagenet")
        kinds = [type(layer).__name__ for _, layer in ref.layers()]
        assert [type(layer).__name__ for _, layer in net.layers()] == kinds
        assert ref.param_specs() == net.param_specs()


def test_resnet_blocks_convert_to_gcref_blocks():
    model, shape, _ = tv_resnet50()
    net, _ = from_torch(model, shape)
    blocks = dict(net.layers())
    assert isinstance(blocks["layer1.0"], gcref.nn.Bottleneck)
    assert blocks["layer1.0"].downsample is not None and blocks["layer1.1"].downsample is None
    assert blocks["layer2.0"].describe() == "Bottleneck(16, 8, stride=2)"
    assert blocks["maxpool"].describe() == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    model, shape, _ = tv_vgg11()
    net, _ = from_torch(model, shape)
    names = [n for n, _ in net.layers()]
    assert names[-9:] == ["avgpool", "flatten", "classifier.0", "classifier.1", "classifier.2",
                          "classifier.3", "classifier.4", "classifier.5", "classifier.6"]


# ------------------------------------------------------------------------- the layers alone

@pytest.mark.parametrize("module,shape", [
    (nn.AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),            # windows that do not divide
    (nn.AdaptiveAvgPool2d((4, 4)), (2, 8, 8)),            # windows that divide
    (nn.AdaptiveAvgPool2d((5, None)), (1, 3, 4)),         # more outputs than inputs; None keeps W
    (nn.MaxPool2d(3, 2, 1), (2, 7, 6)),                   # padded
    (nn.MaxPool2d(2, 1, 1), (1, 4, 5)),
    (nn.MaxPool2d(3), (1, 7, 7)),
    (nn.AvgPool2d(2, 1), (2, 4, 4)),
    (nn.Dropout(0.3), (2, 3, 3)),
    (nn.GELU(), (2, 3, 3)),
    (nn.SiLU(), (2, 3, 3)),
    (nn.BatchNorm2d(2, eps=1e-3), (2, 3, 3)),
    (nn.Conv2d(2, 3, 3, 2, padding="valid"), (2, 7, 7)),
    (nn.Conv2d(2, 3, 5, padding="same"), (2, 6, 6)),
])
def test_each_layer_matches_torch(module, shape):
    """Each layer inside a tiny chain: values and Jacobian as torch.func, round trip bitwise."""
    import math
    dummy = nn.Sequential(module, nn.Flatten())
    randomize(dummy, 4)
    with torch.no_grad():
        width = dummy(torch.zeros((1,) + shape, dtype=torch.float64)).shape[1]
    model = randomize(nn.Sequential(module, nn.Flatten(), nn.Linear(width, 2)), 4)
    _, _, errors, bitwise = measure(model, shape, "2", n=2, seed=math.prod(shape))
    for what, err in errors.items():
        assert err <= RTOL, f"{module} {what}: {err:.2e}"
    assert bitwise


def test_max_pool_ties_and_padding_route_like_torch():
    """Ties (ReLU zeros) go to the first maximal cell in row-major order, padded cells never win:
    the gcref Jacobian equals torch's exactly, including where every real cell is negative."""
    model = randomize(nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(8, 2)), 5)
    X = np.zeros((3, 2, 3, 4))
    X[1] = -1.0                                              # all ties at 0 after the ReLU
    X[2] = np.random.default_rng(0).normal(size=(2, 3, 4))
    net, params = from_torch(model, (2, 3, 4), embedding="2")
    emb = nn.Sequential(*list(model)[:3])
    jac_t = vmap(jacrev(lambda x: emb(x[None])[0]))(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(net.jacobian(params, X), jac_t.reshape(3, 8, -1))
    raw = randomize(nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(8, 2)), 5)
    net, params = from_torch(raw, (2, 3, 4))
    X = -np.abs(np.random.default_rng(1).normal(size=(2, 2, 3, 4))) - 1.0      # all negative
    with torch.no_grad():                                   # the pooled values, exactly
        np.testing.assert_array_equal(net.embed(params, X), raw[:2](torch.from_numpy(X)).numpy())


# ------------------------------------------------------------------------- bad input

def test_unsupported_module_names_its_path_and_the_supported_set():
    model, shape, _ = tv_resnet50()
    model.layer3[1].conv2 = nn.Conv2d(16, 16, 3, 1, 1, groups=2, bias=False).double()
    with pytest.raises(UnsupportedModuleError,
                       match=r"layer3\.1\.conv2: Conv2d with groups=2 is not supported.*Linear, Conv2d"):
        from_torch(model, shape)
    with pytest.raises(UnsupportedModuleError, match=r"^1: LSTM .*not supported"):
        from_torch(nn.Sequential(nn.Flatten(), nn.LSTM(3, 3)), (3,))
    with pytest.raises(UnsupportedModuleError, match=r"0: Conv2d with dilation=\(2, 2\)"):
        from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.Flatten(), nn.Linear(1, 1)), (1, 5, 5))
    with pytest.raises(UnsupportedModuleError, match=r"0: GELU with approximate='tanh'"):
        from_torch(nn.Sequential(nn.GELU("tanh"), nn.Linear(3, 1)), (3,))
    with pytest.raises(UnsupportedModuleError, match=r"0: MaxPool2d with ceil_mode=True"):
        from_torch(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(4, 1)), (1, 3, 3))

    class Custom(nn.Module):                                # its own forward: traced
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(self.a(x) + x)

    class Concat(Custom):                                   # concatenation: no gcref layer
        def forward(self, x):
            return self.b(torch.cat([self.a(x), x], 1)[:, :3])

    custom = randomize(Custom(), 2)
    net, params = from_torch(custom, (3,))                  # a residual connection, then the head
    X = np.random.default_rng(0).normal(size=(4, 3))
    with torch.no_grad():
        assert rel(net.forward(params, X), custom(torch.from_numpy(X)).numpy()) <= RTOL
    with pytest.raises(UnsupportedModuleError, match=r"graph node 'cat' \(test_interop.py:\d+: "
                                                     r"return self.b\(torch.cat.*torch.cat"):
        from_torch(Concat(), (3,))


def test_train_mode_warns_and_converts_the_evaluation_function():
    model, shape, _ = tv_resnet18("cifar")
    model.train()
    with pytest.warns(UserWarning, match="training mode.*evaluation-mode function"):
        net, params = from_torch(model, shape)
    assert model.training                                   # the module itself is left alone
    X = np.random.default_rng(0).normal(size=(2,) + shape)
    model.eval()
    with torch.no_grad():
        assert rel(net.forward(params, X), model(torch.from_numpy(X)).numpy()) <= RTOL


def test_float32_parameters_are_converted_exactly():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    model = randomize(model, 6).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net, params = from_torch(model, (2, 4, 4))
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert params[key].dtype == np.float64
        np.testing.assert_array_equal(params[key], value.double().numpy())
    X = np.random.default_rng(0).normal(size=(2, 2, 4, 4))
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(X)).numpy()  # the float64 function of the same values
    assert rel(net.forward(params, X), ref) <= RTOL


def test_bad_arguments_name_the_argument():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        from_torch("model", (12,))
    with pytest.raises(TypeError, match="input_shape"):
        from_torch(model, 12)
    with pytest.raises(ValueError, match="input_shape entry"):
        from_torch(model, (3, 0, 4))
    with pytest.raises(ValueError, match=r"input_shape=\(3, 4, 5\) does not fit module.*'1'.*Linear\(12"):
        from_torch(model, (3, 4, 5))
    with pytest.raises(ValueError, match="embedding='nope' names no module"):
        from_torch(model, (12,), embedding="nope")
    with pytest.raises(ValueError, match="embedding='3': the module after it is nothing"):
        from_torch(model, (12,), embedding="3")
    with pytest.raises(TypeError, match="embedding must be a module path"):
        from_torch(model, (12,), embedding=1)
    with pytest.raises(ValueError, match=r"module has no nn.Linear"):
        from_torch(nn.Sequential(nn.ReLU()), (3,))
    with pytest.raises(ValueError, match=r"'2' \(ReLU\(\)\) comes after the last Linear '1'"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU()), (12,))
    net, params = from_torch(model, (12,))
    with pytest.raises(TypeError, match="net must be a gcref.nn.Network"):
        to_torch(model, params)
    with pytest.raises(ValueError, match="output must be"):
        to_torch(net, params, output="features")
    with pytest.raises(ValueError, match="missing keys"):
        to_torch(net, {k: v for k, v in params.items() if k != "1.bias"})


def test_embedding_argument_ends_the_network_at_that_module():
    model, shape, _ = tv_vgg11()
    # the output of classifier.1 (ReLU) as the embedding would make classifier.3 the head and
    # leave classifier.4-6 out: the logits would not be the module's, so it is refused (issue 18)
    with pytest.raises(ValueError, match=r"embedding='classifier.1': its head would be "
                                         r"'classifier.3', and 'classifier.4' \(ReLU\(\)\), "
                                         r"'classifier.6' \(Linear.*would differ"):
        from_torch(model, shape, embedding="classifier.1")
    # the output of classifier.4 (ReLU) is the embedding; the dropout after it is kept (identity)
    net, params = from_torch(model, shape, embedding="classifier.4")
    assert net.head_name == "classifier.6" and net.layers()[-2][0] == "classifier.5"
    X = np.random.default_rng(0).normal(size=(2,) + shape)
    with torch.no_grad():
        z = model.classifier[:5](torch.flatten(model.avgpool(model.features(torch.from_numpy(X))), 1))
        logits = model(torch.from_numpy(X))
    assert rel(net.embed(params, X), z.numpy()) <= RTOL
    assert rel(net.forward(params, X), logits.numpy()) <= RTOL
    default, _ = from_torch(model, shape, embedding="classifier.4")   # the same as the default
    assert default.head_name == "classifier.6"
    model, shape, _ = tv_resnet18()
    net, _ = from_torch(model, shape, embedding="avgpool")            # flatten joins the embedding
    assert net.head_name == "fc"
    with pytest.raises(ValueError, match="inside the block 'layer4.1'"):
        from_torch(model, shape, embedding="layer4.1.conv2")
    with pytest.raises(ValueError, match="embedding='layer3': the module after it is layer4.0"):
        from_torch(model, shape, embedding="layer3")


def test_to_torch_embedding_module_has_the_embedding_parameters_only():
    net = zoo.vgg("vgg11", (3, 8, 8), 4, width=1 / 32, hidden=6)
    params = perturbed_params(net, 0)
    f = to_torch(net, params, output="embedding")
    assert set(f.state_dict()) == set(params) - {"classifier.2.weight", "classifier.2.bias"}
    X = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    with torch.no_grad():
        assert torch.equal(f(torch.from_numpy(X)), to_torch(net, params).embed(torch.from_numpy(X)))
    assert next(f.parameters()).dtype == torch.float64 and not f.training


def test_gcref_does_not_import_torch():
    code = ("import sys, gcref, gcref.interop, gcref.nn, gcref_cuda; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_gives_a_clear_import_error():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import gcref.interop.torch\nexcept ImportError as e:\n"
            "    assert 'needs PyTorch' in str(e), e\nelse:\n    raise SystemExit('no error')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_convert_section_runs():
    """Every Python snippet of the README's "Convert a PyTorch model" subsection runs as written."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("### Convert a PyTorch model")
    end = min([i for i in (text.find("\n## ", start), text.find("\n### ", start + 1)) if i != -1]
              + [len(text)])
    snippets = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    assert snippets
    for code in snippets:
        exec(compile(code, "README.md (Convert a PyTorch model)", "exec"), {})
