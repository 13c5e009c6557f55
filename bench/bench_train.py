"""Training throughput: ``gcref_cuda.fit`` against a plain PyTorch loop (a benchmark, not a test).

For each case, the same network (``gcref.interop.torch.to_torch`` of the gcref network: same
parameters), the same batches (step ``t`` draws ``default_rng([seed, t]).choice(n, batch)``, as
``fit`` does), SGD with momentum 0.9 and weight decay 5e-4 (``l2`` in gcref: the same update),
float32 and float64:

* **gcref_cuda**: ``gcref_cuda.fit(..., dtype=...)``, progress off, no record between the first
  and last step; the time per step is measured between the calls of its progress callback after
  step 1 and after the last step before the final record (so neither the set-up nor the records
  are counted).
* **torch**: ``model(X)``, ``nn.CrossEntropyLoss``, ``loss.backward()``, ``torch.optim.SGD``
  (``foreach`` default), torch's default threads; the GC case adds ``gc_reg`` times the mean
  ``||J_f(x)||_F^2`` computed with ``torch.func.vmap(jacrev)`` inside the loss (double backward).

The implementations take turns (round robin, ``--rounds``), so machine load hits them alike; the
table reports the median time per step and gcref_cuda's time over torch's, with the FLOP floor:
the multiply-adds of forward + backward (3x the forward, 2 FLOPs each; the GC case adds a forward
and ``p`` VJPs plus about 3 passes per row for the penalty's gradient) at the GEMM rate measured
in the same run.

Usage::

    python bench/bench_train.py                       # every case, prints the table
    python bench/bench_train.py --cases mlp cnn --json bench/train-cpu.json
    python bench/bench_train.py --quick               # a smoke run (tiny step counts)
    python bench/bench_train.py --device cuda         # on a GPU (bench/gpu_check.sh runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench_gc import gemm_rate, layer_macs  # noqa: E402  (same folder)

CASES = {
    "mlp": dict(title="MLP 784-256-128-64 -> 64 classes", batch=64, steps=200, gc_reg=0.0),
    "cnn": dict(title="small CNN 1x28x28, channels 8-16-32", batch=64, steps=30, gc_reg=0.0),
    "vgg": dict(title="VGG-11 width 1/8, 3x32x32", batch=64, steps=15, gc_reg=0.0),
    # lr 1e-3: the zoo ResNet (batch norm in evaluation mode) diverges at 0.01 on these inputs
    "resnet": dict(title="ResNet-18 width 1/4, 3x32x32", batch=64, steps=6, gc_reg=0.0, lr=1e-3),
    "mlp_gc": dict(title="MLP 784-256-128-64 + exact GC penalty 0.01", batch=32, steps=30, gc_reg=0.01),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def build(case):
    from gcref.nn import zoo
    if case in ("mlp", "mlp_gc"):
        return zoo.mlp([784, 256, 128, 64], num_classes=64), (784,)
    if case == "cnn":
        return zoo.cnn((1, 28, 28), 10, channels=(8, 16, 32), hidden=64), (1, 28, 28)
    if case == "vgg":
        return zoo.vgg("vgg11", (3, 32, 32), 10, width=0.125), (3, 32, 32)
    if case == "resnet":
        return zoo.resnet18((3, 32, 32), 10, width=0.25), (3, 32, 32)
    raise ValueError(case)


def data(shape, k, n=1024):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n,) + shape), rng.integers(0, k, n)


def batches(n, batch, steps, seed=0):
    return [np.random.default_rng([seed, t]).choice(n, size=batch, replace=False)
            for t in range(1, steps + 1)]


def time_gcref_cuda(net, X, y, spec, dtype, steps):
    import gcref_cuda
    marks = {}

    def progress(step, total, rec):
        if step == 1 or step == total - 1:
            marks[step] = time.perf_counter()

    gcref_cuda.fit(net, net.init(0), (X, y), lr=spec.get("lr", LR), batch_size=spec["batch"], steps=steps,
                   l2=WEIGHT_DECAY, momentum=MOMENTUM, gc_reg=spec["gc_reg"], eval_every=10 ** 9,
                   eval_size=16, progress=progress, dtype=dtype)
    return (marks[steps - 1] - marks[1]) / (steps - 2)


def time_torch(net, X, y, spec, dtype, steps, device="cpu"):
    """Seconds per step of the plain PyTorch loop (``None`` without torch)."""
    try:
        import torch
        from torch.func import functional_call, jacrev, vmap
    except ImportError:
        return None

    from gcref.interop.torch import to_torch
    tdt = torch.float64 if dtype == "float64" else torch.float32
    params = net.init(0)
    model = to_torch(net, params).to(tdt).to(device)
    Xt, yt = torch.as_tensor(X, dtype=tdt, device=device), torch.as_tensor(y, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.get("lr", LR), momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    lossf = torch.nn.CrossEntropyLoss()
    gc_reg = spec["gc_reg"]
    if gc_reg:
        embed = to_torch(net, params, output="embedding").to(tdt).to(device)
        # share the parameters: the embedding's are the model's own tensors
        shared = dict(model.named_parameters())
        enames = [k for k, _ in embed.named_parameters()]
    idx = [torch.as_tensor(i, device=device) for i in batches(X.shape[0], spec["batch"], steps)]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    t1 = None
    for t, i in enumerate(idx, 1):
        xb, yb = Xt[i], yt[i]
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xb), yb)
        if gc_reg:
            eprm = {k: shared[k] for k in enames}

            def f(x):
                return functional_call(embed, eprm, (x[None],))[0]
            J = vmap(jacrev(f))(xb)
            loss = loss + gc_reg * (J ** 2).sum() / xb.shape[0]
        loss.backward()
        opt.step()
        if t == 1:
            sync()
            t1 = time.perf_counter()
        if t == steps - 1:
            sync()
            return (time.perf_counter() - t1) / (steps - 2)


def flop_floor(net, spec, rate):
    macs = layer_macs(net) + net.embedding_dim * net.num_classes
    flops = 2.0 * spec["batch"] * macs * 3
    if spec["gc_reg"]:
        flops += 2.0 * spec["batch"] * layer_macs(net) * (1 + 4 * net.embedding_dim)
    return flops / rate


def run(cases, rounds, quick, device="cpu", threads=None):
    import gcref_cuda
    if threads:                      # both sides on the same number of threads
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads)    # applied from here on (kept for the whole run)
        from gcref_cuda.backend import set_cpu_threads
        set_cpu_threads(threads)             # and gcref_cuda's training shards
    try:
        import torch
        torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
        version = torch.__version__
    except ImportError:
        version = None
    out = {"rounds": rounds, "cases": {}, "torch": version, "device": device, "threads": threads,
           "gcref_cuda_backend": gcref_cuda.backend_name()}
    for case in cases:
        spec = dict(CASES[case])
        steps = 4 if quick else spec["steps"]
        net, shape = build(case)
        X, y = data(shape, net.num_classes)
        res = {}
        for dtype in ("float32", "float64"):
            times = {"gcref_cuda": [], "torch": []}
            rates = []
            time_torch(net, X, y, spec, dtype, 4, device)          # warm-up (allocator, kernels)
            for _ in range(rounds):
                rates.append(gemm_rate(np.float32 if dtype == "float32" else np.float64, size=768))
                times["gcref_cuda"].append(time_gcref_cuda(net, X, y, spec, dtype, steps))
                times["torch"].append(time_torch(net, X, y, spec, dtype, steps, device))
            med = {k: (statistics.median(v) if None not in v else None) for k, v in times.items()}
            rate = statistics.median(rates)
            ratio = med["gcref_cuda"] / med["torch"] if med["torch"] else None
            res[dtype] = {"median_s": med, "all_s": times, "ratio": ratio,
                          "gemm_gflops": rate / 1e9, "floor_s": flop_floor(net, spec, rate)}
            print(f"{case:7s} {dtype}: gcref_cuda {med['gcref_cuda'] * 1e3:8.2f} ms  torch "
                  f"{_ms(med['torch'])} ms  ratio {_f(ratio)}  "
                  f"floor {res[dtype]['floor_s'] * 1e3:.2f} ms", file=sys.stderr, flush=True)
        out["cases"][case] = {"spec": spec, "results": res}
    return out


def _ms(v):
    return "-" if v is None else f"{v * 1e3:.2f}"


def _f(v):
    return "-" if v is None else f"{v:.2f}"


def format_table(out) -> str:
    lines = ["| case | dtype | gcref_cuda ms/step | torch ms/step | gcref_cuda / torch | x FLOP floor |",
             "|---|---|---|---|---|---|"]
    for case, c in out["cases"].items():
        for dtype, r in c["results"].items():
            m = r["median_s"]
            lines.append(f"| {c['spec']['title']}, batch {c['spec']['batch']} | {dtype} | "
                         f"{_ms(m['gcref_cuda'])} | {_ms(m['torch'])} | {_f(r['ratio'])} | "
                         f"{m['gcref_cuda'] / r['floor_s']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, help="CPU threads for both (torch.set_num_threads and "
                    "BLAS); default: torch's 2, gcref_cuda's own choice")
    ap.add_argument("--device", default="cpu", help="torch's device (gcref_cuda uses CuPy where a GPU is usable)")
    args = ap.parse_args(argv)
    out = run(args.cases, args.rounds, args.quick, args.device, args.threads)
    print(format_table(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
