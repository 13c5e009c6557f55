"""What exact GC costs per example on a CPU, per architecture (the README's table).

For each network: seconds per example of the exact embedding GC (``||J_f(x)||_F^2``: one
forward pass and ``p`` reverse passes, ``p`` the embedding width) with the reference
(``gcref.per_example_gc``) and with ``gcref_cuda.per_example_gc`` on NumPy, median of a few
runs on ``n`` random inputs. Each measurement runs in its own process with a time limit.

Usage::

    python bench/gc_cost.py                       # prints a Markdown table
    python bench/gc_cost.py --archs mlp cnn --json bench/gc-cost-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: name -> (description, zoo call, input shape, examples timed)
NETWORKS = {
    "mlp": ("MLP 64-128-128-32 (digits 8x8, the lab default)", "mlp", (1, 8, 8), 256),
    "cnn-mnist": ("small CNN, 1x28x28 (MNIST)", "cnn", (1, 28, 28), 32),
    "cnn-cifar": ("small CNN, 3x32x32 (CIFAR)", "cnn", (3, 32, 32), 32),
    "vgg11": ("VGG-11, 3x32x32, width 1", "vgg11", (3, 32, 32), 1),
    "vgg13": ("VGG-13, 3x32x32, width 1", "vgg13", (3, 32, 32), 1),
    "resnet18": ("ResNet-18, 3x32x32, width 1", "resnet18", (3, 32, 32), 1),
}


def build(name):
    from gcref.nn import zoo
    _, arch, shape, _ = NETWORKS[name]
    if arch == "mlp":
        return zoo.mlp([64, 128, 128, 32], num_classes=10, input_shape=shape)
    if arch == "cnn":
        return zoo.cnn(shape, 10)
    if arch == "resnet18":
        return zoo.resnet18(shape, 10)
    return zoo.vgg(arch, shape, 10)


def worker(name, impl, repeats):
    import numpy as np
    sys.path.insert(0, ROOT)
    net = build(name)
    params = net.check_params(net.init(0))
    n = NETWORKS[name][3]
    X = np.random.default_rng(1).normal(size=(n,) + net.input_shape)
    if impl == "gcref":
        import gcref
        fn = lambda: gcref.per_example_gc(net, params, X)  # noqa: E731
    else:
        import gcref_cuda
        fnet = gcref_cuda.FastNetwork(net, dtype="float64")
        fn = lambda: gcref_cuda.per_example_gc(fnet, params, X)  # noqa: E731
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"net": name, "impl": impl, "n": n, "embedding_dim": net.embedding_dim,
            "num_params": net.num_params(), "s_per_example": statistics.median(times) / n,
            "repeats": repeats}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=list(NETWORKS))
    ap.add_argument("--impls", nargs="+", default=["gcref", "gcref_cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1], args.repeats)))
        return 0
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for name in args.archs:
        for impl in args.impls:
            try:
                res = subprocess.run([sys.executable, __file__, "--worker", name, impl,
                                      "--repeats", str(args.repeats)], capture_output=True, text=True,
                                     env=env, timeout=args.timeout)
                line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
                row = json.loads(line[-1][7:]) if line else {"net": name, "impl": impl, "error": res.stderr[-300:]}
            except subprocess.TimeoutExpired:
                row = {"net": name, "impl": impl, "error": f"over {args.timeout:.0f} s"}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| network | embedding p | parameters | gcref s/example | gcref_cuda (NumPy) s/example |")
    print("|---|---:|---:|---:|---:|")
    for name in args.archs:
        r = {row["impl"]: row for row in rows if row["net"] == name}
        any_row = next(iter(r.values()))
        cell = lambda impl: (f"{r[impl]['s_per_example']:.3g}" if impl in r and "s_per_example" in r[impl]  # noqa: E731
                             else r.get(impl, {}).get("error", "-")[:30])
        print(f"| {NETWORKS[name][0]} | {any_row.get('embedding_dim', '-')} | {any_row.get('num_params', '-')} | "
              f"{cell('gcref')} | {cell('gcref_cuda')} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
