"""from_torch on modules written the way people write them: their ``forward`` traced (torch.fx).

A gallery (issue 18): a LeNet whose forward uses ``F.*`` and ``view``, a ResNet-style network
whose blocks do ``out += identity`` with a downsample branch, an MLP looping over an
``nn.ModuleList`` (with the new leaves: BatchNorm1d, LeakyReLU, ELU, Softplus, Sigmoid), a
model whose head is followed by ``log_softmax``, and a residual connection written at the top
level of a forward. Each converts and equals the float64 module on its outputs, the input
Jacobians of the embedding and of the logits (``torch.func.jacrev``) and GC, to 1e-12 relative;
the fast backend agrees with the reference on the converted network; ``to_torch`` gives the
outputs back bitwise. Each refused case (concatenation, data-dependent control flow, an
unsupported op, shared weights, ...) names its graph node and source line.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import jacrev, vmap  # noqa: E402

import gcref  # noqa: E402
import gcref_cuda as gcc  # noqa: E402
from gcref.interop.torch import UnsupportedModuleError, from_torch, to_torch  # noqa: E402

pytestmark = pytest.mark.torch

RTOL = 1e-12


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0.0 else float(np.linalg.norm(a - b) / scale)


def randomize(model, seed):
    """float64, evaluation mode, batch-norm statistics and biases off 0/1 (every one matters)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=g, dtype=t.dtype))
            elif name.endswith(("running_mean", "bias")) or (name.endswith("weight") and t.ndim == 1):
                t.copy_(0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype) + (t.ndim == 1) * 1.0
                        * name.endswith("weight"))
    return model


# ------------------------------------------------------------------------------ the gallery

class LeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), (2, 2))
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return F.relu(out)


class SmallResNet(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.block1 = Block(4, 4)
        self.block2 = Block(4, 6, stride=2)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        out = self.block2(self.block1(out))
        out = F.adaptive_avg_pool2d(out, 1)
        out = torch.flatten(out, 1)
        return self.fc(out)


class MLP(nn.Module):
    def __init__(self, sizes=(6, 8, 8, 5), num_classes=3):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])
        self.acts = nn.ModuleList([nn.LeakyReLU(0.1), nn.ELU(0.8), nn.Softplus(1.5)])
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x):
        for layer, norm, act in zip(self.layers, self.norms, self.acts):
            x = act(norm(layer(x)))
        x = torch.sigmoid(x)
        return self.head(x)


class LogSoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.Tanh())
        self.fc = nn.Linear(9, 5)

    def forward(self, x):
        x = F.silu(self.body(x))
        return F.log_softmax(self.fc(x), dim=1)


class TopLevelResidual(nn.Module):
    """A residual connection written in the model's own forward: its modules share no parent."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 5)
        self.fc2 = nn.Linear(5, 5)
        self.skip = nn.Linear(5, 5, bias=False)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = self.fc2(F.gelu(self.fc1(x)))
        h = h + self.skip(x)
        return self.out(F.leaky_relu(h, 0.2))


class Functional(nn.Module):
    """The other functional spellings: F.elu, F.softplus, F.silu, torch.relu, Tensor methods,
    F.avg_pool2d, reshape via x.shape[0], Tensor.flatten, contiguous, a residual over a pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.fc1 = nn.Linear(12, 7)
        self.fc2 = nn.Linear(7, 7)
        self.cls = nn.Linear(7, 3)

    def forward(self, x):
        x = F.elu(self.conv(x), alpha=0.5)
        x = x + torch.relu(self.conv2(x)).sigmoid()
        x = F.avg_pool2d(x, 2).contiguous()
        x = x.reshape(x.shape[0], -1).tanh()
        x = F.softplus(self.fc1(x), beta=2.0)
        x = torch.add(F.silu(self.fc2(x)), x).flatten(1)
        return self.cls(x)


def _without(model, head):
    m = copy.deepcopy(model)
    setattr(m, head, nn.Identity())
    return m


GALLERY = {
    # name: (model, input shape, embedding function, logits function, output from logits)
    "lenet": lambda m: ((1, 20, 20), _without(m, "fc3"), m, None),
    "resnet": lambda m: ((3, 6, 6), _without(m, "fc"), m, None),
    "mlp-modulelist": lambda m: ((6,), _without(m, "head"), m, None),
    "log_softmax-head": lambda m: ((3, 2, 2), lambda x: F.silu(m.body(x)),
                                   lambda x: m.fc(F.silu(m.body(x))), lambda z: F.log_softmax(z, 1)),
    "top-level-residual": lambda m: ((5,), _without(m, "out"), m, None),
    "functional": lambda m: ((2, 4, 4), _without(m, "cls"), m, None),
}
MODELS = {"lenet": LeNet, "resnet": SmallResNet, "mlp-modulelist": MLP,
          "log_softmax-head": LogSoftmaxNet, "top-level-residual": TopLevelResidual,
          "functional": Functional}


@pytest.mark.parametrize("name", list(GALLERY))
def test_gallery_converts_and_equals_the_module(name):
    model = randomize(MODELS[name](), seed=len(name))
    shape, embed_t, logits_t, after = GALLERY[name](model)
    net, params = from_torch(model, shape)
    X = np.random.default_rng(1).normal(size=(4,) + shape)
    Xt = torch.from_numpy(X)
    with torch.no_grad():
        out_t = model(Xt)
        z_t = embed_t(Xt)
    logits = net.forward(params, X)
    out = logits if after is None else after(torch.from_numpy(logits)).numpy()
    assert rel(out, out_t.numpy()) <= RTOL
    assert rel(net.embed(params, X), z_t.numpy()) <= RTOL
    jac_t = vmap(jacrev(lambda x: embed_t(x[None])[0]))(Xt).detach().numpy()
    jac_t = jac_t.reshape(4, net.embedding_dim, -1)
    assert rel(net.jacobian(params, X), jac_t) <= RTOL
    jl_t = vmap(jacrev(lambda x: logits_t(x[None])[0]))(Xt).detach().numpy().reshape(4, net.num_classes, -1)
    assert rel(net.jacobian(params, X, output="logits"), jl_t) <= RTOL
    gc_t = (jac_t ** 2).sum(axis=(1, 2)).mean()
    gc = gcref.geometric_complexity(net, params, X)
    assert rel(gc, gc_t) <= RTOL
    # the fast backend on the converted network (new leaves, traced residuals)
    fnet = gcc.FastNetwork(net, dtype=np.float64)
    assert rel(fnet.jacobian(params, X, "embedding"), jac_t) <= RTOL
    assert rel(gcc.geometric_complexity(net, params, X, dtype=np.float64), gc) <= RTOL
    # and back: the gcref network as a torch module gives the module's outputs bitwise
    with torch.no_grad():
        back = to_torch(net, params)(Xt)
        back = back if after is None else after(back)
    assert torch.equal(back, out_t)


def test_gallery_layers_and_names():
    net, params = from_torch(randomize(LeNet(), 0), (1, 20, 20))
    assert [(n, type(layer).__name__) for n, layer in net.layers()] == [
        ("conv1", "Conv2d"), ("relu", "ReLU"), ("max_pool2d", "MaxPool2d"), ("conv2", "Conv2d"),
        ("relu_1", "ReLU"), ("max_pool2d_1", "MaxPool2d"), ("view", "Flatten"), ("fc1", "Linear"),
        ("relu_2", "ReLU"), ("fc2", "Linear"), ("relu_3", "ReLU"), ("fc3", "Linear")]
    assert set(params) == {k for k in LeNet().state_dict()}
    net, params = from_torch(randomize(SmallResNet(), 0), (3, 6, 6))
    blocks = dict(net.layers())
    assert isinstance(blocks["block1"], gcref.nn.Residual) and blocks["block1"].shortcut is None
    assert [n for n, _ in blocks["block2"].shortcut.children] == ["downsample.0", "downsample.1"]
    state = {k for k in SmallResNet().state_dict() if not k.endswith("num_batches_tracked")}
    assert set(params) == state                          # the state_dict keys, unchanged
    top = randomize(TopLevelResidual(), 0)
    net, params = from_torch(top, (5,))
    assert [n for n, _ in net.layers()] == ["add", "leaky_relu", "out"]
    # named by its graph node, the residual's keys carry 'add.'; the values are the module's
    assert set(params) == {"add.fc1.weight", "add.fc1.bias", "add.fc2.weight", "add.fc2.bias",
                           "add.skip.weight", "out.weight", "out.bias"}
    np.testing.assert_array_equal(params["add.skip.weight"], top.skip.weight.detach().numpy())


def test_training_mode_module_is_traced_in_evaluation_mode_and_left_alone():
    model = randomize(LeNet(), 3).train()
    with pytest.warns(UserWarning, match="training mode"):
        pass_through = nn.Sequential(model, nn.Dropout(0.1))
        net, _ = from_torch(pass_through, (1, 20, 20))
    assert model.training and all(m.training for m in model.modules())
    assert net.head_name == "0.fc3"

    class EvalDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(F.dropout(torch.tanh(self.fc(x)), 0.3, training=self.training))

    m = randomize(EvalDropout(), 1).train()
    with pytest.warns(UserWarning, match="training mode.*reads self.training"):  # no module shows it
        net, params = from_torch(m, (4,))
    assert m.training and [type(layer).__name__ for _, layer in net.layers()] == \
        ["Linear", "Tanh", "Dropout", "Linear"]


# ------------------------------------------------------------------------------ refused cases

class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(4, 2)

    def forward(self, x):
        z = torch.cat([self.a(x), self.b(x)], dim=1)
        return self.head(z)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.fc(x)


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = torch.erf(x)
        return self.fc(x)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.fc(torch.tanh(self.fc(x))))


class ThreeWay(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.a(x) + self.b(x) + x)


class SoftmaxInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(F.softmax(self.fc(x), dim=1))


class WrongView(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(x.view(-1, 6))


class PreActivation(nn.Module):
    """A pre-activation block with an in-place ReLU on the tensor the shortcut also reads: torch's
    shortcut sees the overwritten values, the traced graph would not."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        out = self.fc(F.relu(x, inplace=True))
        return self.head(out + x)


@pytest.mark.parametrize("model,shape,pattern", [
    (Concat(), (3,), r"graph node 'cat' \(test_interop_trace.py:\d+: z = torch.cat\(\[self.a\(x\), "
                     r"self.b\(x\)\], dim=1\)\): torch.cat .*not supported"),
    (DataDependent(), (3,), r"module: DataDependent's forward cannot be traced at "
                            r"test_interop_trace.py:\d+: if x.sum\(\) > 0:"),
    (Unsupported(), (3,), r"graph node 'erf' \(test_interop_trace.py:\d+: x = torch.erf\(x\)\): "
                          r"torch.erf is not supported.*F.relu"),
    (Shared(), (3,), r"graph node 'fc_1' \(test_interop_trace.py:\d+: .*\): module 'fc' is "
                     r"called twice; shared weights"),
    (ThreeWay(), (3,), r"graph node '(b|add|add_1)' .*test_interop_trace.py:\d+: "
                       r"return self.head\(self.a\(x\) \+ self.b\(x\) \+ x\)"),
    (SoftmaxInside(), (3,), r"softmax.*before the head 'head' is not supported"),
    (PreActivation(), (3,), r"graph node 'relu' \(test_interop_trace.py:\d+: .*\): "
                            r"torch.nn.functional.relu in place on 'x'"),
    (WrongView(), (3, 4), r"graph node 'view' \(test_interop_trace.py:\d+: .*\): a view to "
                          r"\(batch, 6\) where each example has 12 values"),
])
def test_refused_cases_name_their_node_and_line(model, shape, pattern):
    with pytest.raises(UnsupportedModuleError, match=pattern):
        from_torch(model, shape)


def test_modules_of_your_own_inside_a_sequential_keep_their_paths():
    model = randomize(nn.Sequential(Block(2, 3, stride=2), Block(3, 3), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten(), nn.Linear(3, 2)), 5)
    net, params = from_torch(model, (2, 5, 5))
    assert [n for n, _ in net.layers()] == ["0", "0.relu_1", "1", "1.relu_1", "2", "3", "4"]
    assert set(params) == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    X = np.random.default_rng(0).normal(size=(3, 2, 5, 5))
    with torch.no_grad():
        assert rel(net.forward(params, X), model(torch.from_numpy(X)).numpy()) <= RTOL


# ------------------------------------------------------------------------------ embedding=, one Linear

class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Sequential(nn.Linear(4, 6), nn.ReLU()), nn.Linear(6, 6),
                                  nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x):
        return self.body(x)


def test_embedding_never_drops_layers_after_the_head():
    model = randomize(Nested(), 0)
    # the case: embedding="0.1" of a nested chain made body.1 the head and dropped the rest
    seq = model.body
    with pytest.raises(ValueError, match=r"embedding='0.1': its head would be '1', and '2' "
                                         r"\(ReLU\(\)\), '3' \(Linear\(6, 3.*would differ"):
        from_torch(seq, (4,), embedding="0.1")
    with pytest.raises(ValueError, match=r"embedding='body.0.1': its head would be 'body.1'"):
        from_torch(model, (4,), embedding="body.0.1")
    net, params = from_torch(model, (4,), embedding="body.2")          # the default's embedding
    assert net.head_name == "body.3" and net.num_classes == 3
    X = np.random.default_rng(0).normal(size=(3, 4))
    with torch.no_grad():
        assert rel(net.forward(params, X), model(torch.from_numpy(X)).numpy()) <= RTOL


def test_a_single_linear_converts_with_the_identity_embedding():
    lin = randomize(nn.Sequential(nn.Linear(4, 3)), 0)
    net, params = from_torch(lin, (4,))
    assert [n for n, _ in net.layers()] == ["input", "0"] and net.embedding_dim == 4
    X = np.random.default_rng(0).normal(size=(5, 4))
    with torch.no_grad():
        assert rel(net.forward(params, X), lin(torch.from_numpy(X)).numpy()) <= RTOL
    np.testing.assert_array_equal(net.embed(params, X), X)              # f(x) = x
    assert rel(gcref.geometric_complexity(net, params, X), 4.0) <= RTOL  # ||I||_F^2 = d
    bare = randomize(nn.Linear(4, 3), 1)
    net, params = from_torch(bare, (4,))
    assert net.head_name == "linear" and set(params) == {"linear.weight", "linear.bias"}
    np.testing.assert_array_equal(params["linear.weight"], bare.weight.detach().numpy())
    with pytest.raises(ValueError, match=r"input_shape=\(2, 4\) does not fit module: layer '0': "
                                         r"Linear\(4, 3\) expects inputs of shape \(4,\)"):
        from_torch(nn.Sequential(nn.Linear(4, 3)), (2, 4))


def test_softmax_modules_after_the_head_are_dropped_and_documented():
    model = randomize(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.LogSoftmax(1)), 2)
    net, params = from_torch(model, (4,))
    assert net.head_name == "2"
    X = np.random.default_rng(0).normal(size=(3, 4))
    with torch.no_grad():
        out = model(torch.from_numpy(X)).numpy()
    logits = net.forward(params, X)
    assert rel(torch.log_softmax(torch.from_numpy(logits), 1).numpy(), out) <= RTOL
    np.testing.assert_array_equal(logits.argmax(1), out.argmax(1))
    with pytest.raises(UnsupportedModuleError, match=r"LogSoftmax with dim=0"):
        from_torch(nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(0)), (4,))


# ------------------------------------------------------------------------------ the new leaves

@pytest.mark.parametrize("module,shape", [
    (nn.LeakyReLU(0.2), (2, 3, 3)), (nn.Sigmoid(), (5,)), (nn.ELU(0.7), (2, 3, 3)),
    (nn.Softplus(2.0, threshold=1.0), (6,)),            # both sides of the threshold are hit
    (nn.BatchNorm1d(5, eps=1e-3), (5,)),
])
def test_each_new_leaf_matches_torch_both_ways(module, shape):
    """Each new leaf inside a tiny chain: values and embedding Jacobian as torch.func, and the
    round trip (to_torch) bitwise."""
    width = int(np.prod(shape))
    model = randomize(nn.Sequential(module, nn.Flatten(), nn.Linear(width, 2)), 4)
    net, params = from_torch(model, shape)
    X = np.random.default_rng(3).normal(size=(4,) + shape)
    Xt = torch.from_numpy(X)
    emb = model[:2]
    with torch.no_grad():
        assert rel(net.forward(params, X), model(Xt).numpy()) <= RTOL
    jac_t = vmap(jacrev(lambda x: emb(x[None])[0]))(Xt).detach().numpy().reshape(4, width, -1)
    assert rel(net.jacobian(params, X), jac_t) <= RTOL
    with torch.no_grad():
        assert torch.equal(to_torch(net, params)(Xt), model(Xt))
