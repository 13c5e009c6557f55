"""``bench/gpu_check.sh --dry``: the GPU readiness script runs end to end on the CPU (so it cannot
rot before a GPU machine is at hand) and writes its report."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "gpu-results.md"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", os.path.join(REPO, "bench", "gpu_check.sh"), "--dry", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    text = out.read_text()
    for phase in ("| pytest | 0 |", "| check | 0 |", "| bench | 0 |", "| vgg13 | 0 |"):
        assert phase in text, text
    assert "## bench_gc cases" in text and "## VGG-13 training step" in text
    assert "(cpu)" in text and "--dry" in text
    # every bench row measured gcref_cuda, and PyTorch where it is installed, and they agree
    has_torch = importlib.util.find_spec("torch") is not None
    rows = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")
            or line.startswith("| 3 ")]
    assert len(rows) == 4
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0, line
        if has_torch:
            assert float(cells[2]) > 0 and float(cells[4]) < 1e-6, line
        else:
            assert cells[2] == "-" and cells[4] == "-", line
    assert not (tmp_path / "gpu-results.md.tmp").exists()


@pytest.mark.parametrize("arch", ["mlp", "cnn", "vgg11", "resnet18"])
def test_bench_flop_count_matches_torch_modules(arch):
    """The benchmarks' FLOP floor counts every linear and convolution layer's multiply-adds, inside
    residual blocks too: equal to a count over the exported PyTorch module's Conv2d/Linear calls."""
    torch = pytest.importorskip("torch")
    from gcref import zoo
    from gcref.interop.torch.convert import to_torch
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        from bench_gc import layer_macs
    finally:
        sys.path.pop(0)
    net = {"mlp": lambda: zoo.mlp([784, 64, 32], num_classes=10), "cnn": lambda: zoo.cnn(),
           "vgg11": lambda: zoo.vgg("vgg11", width=0.125), "resnet18": lambda: zoo.resnet18(width=0.25)}[arch]()
    module = to_torch(net, net.init(0))
    count = []

    def hook(mod, inputs, out):
        if isinstance(mod, torch.nn.Conv2d):
            count.append(out[0].numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
        else:
            count.append(mod.in_features * mod.out_features)
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    module.eval()(torch.zeros((1,) + tuple(net.input_shape), dtype=torch.float64))
    assert layer_macs(net) == sum(count) - net.embedding_dim * net.num_classes > 0
