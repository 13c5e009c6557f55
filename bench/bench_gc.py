"""Benchmarks of gcref_cuda against gcref, torch.func and JAX (not timed tests).

One run prints one table of ratios measured in that run:

  1. exact embedding GC, ReLU MLP 784-256-256-64 on 512 inputs (float64 and float32);
  2. exact embedding GC, small CNN (conv3x3 16, ReLU, maxpool 2, conv3x3 32, ReLU, maxpool 2,
     flatten, linear 64, ReLU) on 256 inputs of 3x32x32 (float64);
  3. one SGD training step of VGG-11 (width 1/4) on 3x32x32 inputs, without and with the exact
     GC penalty (float64).

For each: gcref (the reference), gcref_cuda, torch.func (``vmap(jacrev)``; case 3: autograd, and
``grad`` of a loss holding ``vmap(jacrev)`` for the GC term) and JAX (``jit(vmap(jacrev))``),
where installed. Reported: median wall time over interleaved repeats (implementations take turns,
so machine load hits them alike), peak memory (resident set of a fresh process running the
computation once, and its growth over the process before the call), the values' agreement with
gcref, and the FLOP floor: the multiply-adds of the dense reverse-mode computation
(one forward and ``p`` VJPs per example, as torch.func and JAX compute it) at the GEMM rate
measured in the same run (a large matmul in the same dtype, best of 1 thread and default threads).

Usage::

    python bench/bench_gc.py                 # all cases, writes nothing
    python bench/bench_gc.py --cases 1 2 --json bench/results.json
    python bench/bench_gc.py --quick         # smaller inputs, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

IMPLS = ("gcref", "gcref_cuda", "torch.func", "torch.func/32", "jax")


# ============================================================================ cases

def case_spec(case: str, quick: bool) -> dict:
    """Network builder arguments and sizes of a case (kept tiny by ``quick``)."""
    if case in ("1", "1f32"):
        return {"kind": "gc", "arch": "mlp", "n": 64 if quick else 512,
                "dtype": "float32" if case == "1f32" else "float64",
                "title": f"1 {'f32' if case == '1f32' else 'f64'} MLP 784-256-256-64 GC, "
                         f"n={64 if quick else 512}"}
    if case == "2":
        return {"kind": "gc", "arch": "cnn", "n": 16 if quick else 256, "dtype": "float64",
                "title": f"2 f64 small CNN 3x32x32 GC, n={16 if quick else 256}"}
    if case in ("3", "3gc"):
        gc = case == "3gc"
        n = (2 if quick else 8) if gc else (4 if quick else 32)
        return {"kind": "train", "arch": "vgg11q", "n": n, "dtype": "float64", "gc_reg": 0.1 if gc else 0.0,
                "title": f"3 f64 VGG-11/4 SGD step, batch {n}, {'GC reg' if gc else 'no GC reg'}"}
    raise ValueError(f"unknown case {case!r}")


def build_net(arch):
    from gcref.nn import zoo
    if arch == "mlp":
        return zoo.mlp([784, 256, 256, 64], num_classes=10)
    if arch == "cnn":
        return zoo.cnn((3, 32, 32), 10)                      # the project's benchmark CNN
    if arch == "vgg11q":
        return zoo.vgg("vgg11", (3, 32, 32), 10, width=0.25)
    raise ValueError(arch)


def make_inputs(spec):
    net = build_net(spec["arch"])
    params = net.check_params(net.init(0))
    rng = np.random.default_rng(1)
    X = rng.normal(size=(spec["n"],) + net.input_shape)
    y = rng.integers(0, net.num_classes, spec["n"])
    return net, params, X, y


# ============================================================================ FLOP counts

def layer_macs(net):
    """Multiply-adds of one example's forward pass through the embedding: its linear and
    convolution layers, inside chains and residual blocks (main path and shortcut) too."""
    return _macs(net.embedding, tuple(net.input_shape))


def _macs(layer, shape) -> int:
    from gcref.nn import layers as L
    from gcref.nn.containers import Residual, Sequential
    if isinstance(layer, Sequential):
        return sum(_macs(child, shp) for (_, child), shp in zip(layer.children, layer.shapes(shape)))
    if isinstance(layer, Residual):
        return sum(_macs(part, shape) for _, part in layer._parts())
    if isinstance(layer, L.Linear):
        return layer.in_features * layer.out_features
    if isinstance(layer, L.Conv2d):
        o, ho, wo = layer.out_shape(shape)
        return o * layer.in_channels * layer.kernel_size ** 2 * ho * wo
    return 0


def dense_flops(net, spec):
    """FLOPs (2 per multiply-add) of the computation as torch.func / JAX do it."""
    n, macs, p = spec["n"], layer_macs(net), net.embedding_dim
    if spec["kind"] == "gc":
        return 2.0 * n * macs * (1 + p)                     # forward + p reverse passes
    head = net.embedding_dim * net.num_classes
    plain = 2.0 * n * (macs + head) * 3                     # forward, input and weight gradients
    if spec.get("gc_reg"):
        # GC value: forward + p reverse passes; its gradient (double backprop): about 3 more
        # passes per row (JVP of 2 s_k, second-order weight terms, the backward it rides on)
        plain += 2.0 * n * macs * (1 + 4 * p)
    return plain


def gemm_rate(dtype, size=1536, repeats=3):
    """Best GEMM rate (FLOP/s) over 1 BLAS thread and the default thread count."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    c = np.empty_like(a)
    best = 0.0
    configs = [None]
    try:
        from threadpoolctl import threadpool_limits
        configs.append(threadpool_limits)
    except ImportError:
        pass
    for cfg in configs:
        ctx = cfg(limits=1, user_api="blas") if cfg else _null()
        with ctx:
            np.matmul(a, a, out=c)
            for _ in range(repeats):
                t0 = time.perf_counter()
                np.matmul(a, a, out=c)
                best = max(best, 2.0 * size ** 3 / (time.perf_counter() - t0))
    return best


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ============================================================================ implementations

def impl_gcref(spec, net, params, X, y):
    import gcref
    if spec["kind"] == "gc":
        return lambda: gcref.per_example_gc(net, params, X)
    from gcref.train import SGD, train_step
    opt = SGD(0.01, momentum=0.9)
    return lambda: train_step(net, params, {}, X, y, opt, 5e-4, spec["gc_reg"])[2]


def impl_gcref_cuda(spec, net, params, X, y):
    import gcref_cuda as gcc
    fnet = gcc.FastNetwork(net, dtype=spec["dtype"])
    if spec["kind"] == "gc":
        return lambda: gcc.per_example_gc(fnet, params, X)
    from gcref.train import SGD
    opt = SGD(0.01, momentum=0.9)
    return lambda: gcc.train_step(fnet, params, {}, X, y, opt, 5e-4, spec["gc_reg"])[2]


def _torch_model(net, params, dtype):
    """The torch modules of a gcref network (``gcref.interop.torch.to_torch``: same names and
    parameters): the whole network and its embedding, in the case's dtype."""
    import torch

    from gcref.interop.torch import to_torch
    tdt = torch.float64 if dtype == "float64" else torch.float32
    model = to_torch(net, params).to(tdt)             # built in float64: no float32 rounding
    embed = to_torch(net, params, output="embedding").to(tdt)
    return model, embed, tdt


def impl_torch(spec, net, params, X, y, chunk=None, device="cpu"):
    import torch
    from torch.func import functional_call, grad, jacrev, vmap
    model, embed, tdt = _torch_model(net, params, spec["dtype"])
    model, embed = model.to(device), embed.to(device)
    Xt = torch.as_tensor(X, dtype=tdt, device=device)
    if spec["kind"] == "gc":
        eparams = {k: v.detach() for k, v in embed.named_parameters()}

        def f(x):
            return functional_call(embed, eparams, (x[None],))[0]
        jac = vmap(jacrev(f), chunk_size=chunk)

        def run():
            with torch.no_grad():
                J = jac(Xt)
                return (J ** 2).reshape(J.shape[0], -1).sum(1).cpu().numpy()
        return run
    yt = torch.as_tensor(y, device=device)
    names = [k for k, _ in model.named_parameters()]
    embed_names = [k for k, _ in embed.named_parameters()]   # the same keys, head left out
    l2, gc_reg, lr = 5e-4, spec["gc_reg"], 0.01

    def loss_fn(prm):
        logits = functional_call(model, prm, (Xt,))
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss = loss + 0.5 * l2 * sum((v ** 2).sum() for v in prm.values())
        if gc_reg:
            eprm = {k: prm[k] for k in embed_names}

            def f(x):
                return functional_call(embed, eprm, (x[None],))[0]
            J = vmap(jacrev(f), chunk_size=chunk)(Xt)
            loss = loss + gc_reg * (J ** 2).sum() / Xt.shape[0]
        return loss

    def run():
        prm = {k: v.detach().clone() for k, v in model.named_parameters()}
        g = grad(loss_fn)(prm)
        with torch.no_grad():
            for k in names:                     # plain SGD step (momentum buffer = g at step 1)
                prm[k] -= lr * g[k]
        return float(loss_fn({k: v.detach() for k, v in model.named_parameters()}))
    return run


def impl_jax(spec, net, params, X, y):
    import jax
    import jax.numpy as jnp
    if spec["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    from gcref.nn import layers as L
    dt = jnp.float64 if spec["dtype"] == "float64" else jnp.float32
    layers = list(net.embedding.children)
    jp = {k: jnp.asarray(v, dtype=dt) for k, v in params.items()}

    def f(prm, x):                              # one example, gcref layouts
        h = x[None]
        for name, layer in layers:
            if isinstance(layer, L.Linear):
                h = h @ prm[f"{name}.weight"].T + prm[f"{name}.bias"]
            elif isinstance(layer, L.Conv2d):
                q = layer.padding
                h = jax.lax.conv_general_dilated(h, prm[f"{name}.weight"], (layer.stride,) * 2,
                                                 ((q, q), (q, q)),
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h = h + prm[f"{name}.bias"][None, :, None, None]
            elif isinstance(layer, L.ReLU):
                h = jnp.maximum(h, 0)
            elif isinstance(layer, L.MaxPool2d):
                k, s = layer.kernel_size, layer.stride
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")
            elif isinstance(layer, L.Flatten):
                h = h.reshape(h.shape[0], -1)
            else:
                raise TypeError(type(layer).__name__)
        return h[0]

    Xj = jnp.asarray(X, dtype=dt)
    if spec["kind"] != "gc":
        return None
    gc = jax.jit(lambda prm, X: jnp.sum(jax.vmap(jax.jacrev(f, argnums=1), (None, 0))(prm, X) ** 2,
                                        axis=tuple(range(1, 1 + 1 + len(net.input_shape)))))
    return lambda: np.asarray(gc(jp, Xj).block_until_ready())


def make_impl(name, spec, net, params, X, y):
    if name == "gcref":
        return impl_gcref(spec, net, params, X, y)
    if name == "gcref_cuda":
        return impl_gcref_cuda(spec, net, params, X, y)
    if name == "torch.func":
        return impl_torch(spec, net, params, X, y)
    if name == "torch.func/32":
        return impl_torch(spec, net, params, X, y, chunk=32)
    if name == "jax":
        return impl_jax(spec, net, params, X, y)
    raise ValueError(name)


def available(name, spec):
    if name.startswith("torch"):
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return not (name == "torch.func/32" and spec["n"] <= 32)
    if name == "jax":
        if spec["kind"] != "gc":
            return False
        try:
            import jax  # noqa: F401
        except ImportError:
            return False
    return True


def _value(out):
    return float(np.mean(out)) if not np.isscalar(out) else float(out)


# ============================================================================ workers

def worker_time(case, impls, repeats, quick, budget_s):
    """Time implementations on one case, taking turns; JSON to stdout."""
    spec = case_spec(case, quick)
    net, params, X, y = make_inputs(spec)
    runs, values = {}, {}
    for name in impls:
        fn = make_impl(name, spec, net, params, X, y)
        if fn is None:
            continue
        t0 = time.perf_counter()
        values[name] = _value(fn())                 # warm-up (and JAX's compile)
        runs[name] = {"fn": fn, "times": [], "first": time.perf_counter() - t0}
    rates = []
    for r in range(repeats):
        rates.append(gemm_rate(np.dtype(spec["dtype"]), repeats=2))   # same conditions as the runs
        for name, run in runs.items():
            # a slow implementation gets fewer repeats (at least two timed runs)
            if r >= 2 and sum(run["times"]) > budget_s:
                continue
            t0 = time.perf_counter()
            run["fn"]()
            run["times"].append(time.perf_counter() - t0)
    out = {name: {"times": run["times"], "first": run["first"], "value": values[name]}
           for name, run in runs.items()}
    out["__gemm_rates__"] = rates
    out["__loadavg__"] = os.getloadavg()
    json.dump(out, sys.stdout)


def worker_memory(case, impl, quick):
    """Peak resident memory of one run in a fresh process (and tracemalloc for NumPy code)."""
    spec = case_spec(case, quick)
    net, params, X, y = make_inputs(spec)
    fn = make_impl(impl, spec, net, params, X, y)
    rss_before = _current_rss()
    traced = None
    if impl.startswith("gcref"):
        import tracemalloc
        tracemalloc.start()
        fn()
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        fn()
    json.dump({"peak_rss": _peak_rss(), "rss_before": rss_before, "traced_peak": traced}, sys.stdout)


def _current_rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss():
    """High-water mark of this process's resident memory (``VmHWM``; ``ru_maxrss`` would also
    count the parent's memory copied at fork, which Linux keeps across exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(args, timeout):
    cmd = [sys.executable, os.path.abspath(__file__)] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ============================================================================ report

def run_all(cases, repeats, quick, timeout, budget_s):
    rates = {dt: gemm_rate(np.dtype(dt)) for dt in ("float64", "float32")}
    results = {"gemm_rate": rates, "cases": {}, "env": _environment()}
    for case in cases:
        spec = case_spec(case, quick)
        impls = [i for i in IMPLS if available(i, spec)]
        print(f"... case {spec['title']}: {', '.join(impls)}", file=sys.stderr, flush=True)
        load_before = os.getloadavg()
        timing = _child(["--worker-time", case, "--impls", *impls, "--repeats", str(repeats),
                         "--budget", str(budget_s)] + (["--quick"] if quick else []), timeout)
        rates_in_run = timing.pop("__gemm_rates__")
        load_after = timing.pop("__loadavg__")
        memory = {}
        for impl in timing:
            try:
                memory[impl] = _child(["--worker-memory", case, "--impls", impl]
                                      + (["--quick"] if quick else []), timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                memory[impl] = {"error": str(err)[-300:]}
        net = build_net(spec["arch"])
        flops = dense_flops(net, spec)
        rate = statistics.median(rates_in_run)
        results["cases"][case] = {"spec": spec, "timing": timing, "memory": memory, "flops": flops,
                                  "gemm_rate": rate, "gemm_rates": rates_in_run,
                                  "floor_s": flops / rate, "loadavg": [load_before, load_after]}
    return results


def _environment():
    import platform
    env = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
           "machine": platform.machine()}
    for mod in ("torch", "jax"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            env[mod] = None
    try:
        from gcref_cuda import backend
        env["gcref_cuda_backend"] = backend.backend_name()
        env["gcref_cuda_cpu_threads"] = backend.cpu_threads()
    except Exception as err:  # pragma: no cover
        env["gcref_cuda_backend"] = repr(err)
    return env


def format_table(results) -> str:
    lines = []
    r64, r32 = results["gemm_rate"]["float64"], results["gemm_rate"]["float32"]
    lines.append(f"GEMM rate at the start: float64 {r64 / 1e9:.1f} GFLOP/s, float32 {r32 / 1e9:.1f} "
                 f"GFLOP/s; each case's floor uses the median rate measured between its rounds.")
    head = (f"| {'case':<42} | {'implementation':<14} | {'median s':>9} | {'x gcref_cuda':>12} | "
            f"{'peak RSS MB':>11} | {'+RSS MB':>8} | {'value rel.diff':>14} |")
    lines.append(head)
    lines.append("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for case, res in results["cases"].items():
        t = res["timing"]
        fast = statistics.median(t["gcref_cuda"]["times"]) if "gcref_cuda" in t else math.nan
        ref_value = t.get("gcref_cuda", next(iter(t.values())))["value"]
        first = True
        for impl in IMPLS:
            if impl not in t:
                continue
            med = statistics.median(t[impl]["times"]) if t[impl]["times"] else math.nan
            mem = res["memory"].get(impl, {})
            peak = mem.get("peak_rss", math.nan) / 2 ** 20
            grow = (mem.get("peak_rss", math.nan) - mem.get("rss_before", math.nan)) / 2 ** 20
            diff = abs(t[impl]["value"] - ref_value) / max(abs(ref_value), 1e-300)
            title = res["spec"]["title"] if first else ""
            lines.append(f"| {title:<42} | {impl:<14} | {med:9.3f} | {med / fast:12.2f} | "
                         f"{peak:11.0f} | {grow:8.0f} | {diff:14.1e} |")
            first = False
        lines.append(f"| {'':<42} | {'FLOP floor':<14} | {res['floor_s']:9.3f} | "
                     f"{res['floor_s'] / fast:12.2f} | {'':>11} | {'':>8} | "
                     f"{res['flops'] / 1e9:10.1f} GF |")
        la = res.get("loadavg", [[math.nan] * 3] * 2)
        lines.append(f"| {'':<42} | {'(GEMM, load)':<14} | {res['gemm_rate'] / 1e9:6.1f} GF/s at median; "
                     f"load avg {la[0][0]:.1f} -> {la[1][0]:.1f} |")
    return "\n".join(lines)


def targets(results) -> list[str]:
    out = []

    def med(case, impl):
        t = results["cases"].get(case, {}).get("timing", {}).get(impl)
        return statistics.median(t["times"]) if t and t["times"] else None

    def status(ok):
        return "MET" if ok else "MISSED"

    for case, label in (("1", "case 1 (f64)"), ("1f32", "case 1 (f32)")):
        fast, jax_t = med(case, "gcref_cuda"), med(case, "jax")
        torch_t = min([v for v in (med(case, "torch.func"), med(case, "torch.func/32")) if v] or [None]) \
            if any((med(case, "torch.func"), med(case, "torch.func/32"))) else None
        if fast and jax_t and case == "1":
            out.append(f"{label}: gcref_cuda / JAX = {fast / jax_t:.2f} (target <= 0.8): {status(fast / jax_t <= 0.8)}")
        if fast and torch_t and case == "1":
            out.append(f"{label}: gcref_cuda / torch.func = {fast / torch_t:.2f} (target <= 0.5): "
                       f"{status(fast / torch_t <= 0.5)}")
    if "2" in results["cases"]:
        res = results["cases"]["2"]
        fast = med("2", "gcref_cuda")
        tts = [v for v in (med("2", "torch.func"), med("2", "torch.func/32")) if v]
        if fast and tts:
            out.append(f"case 2: gcref_cuda / best torch.func = {fast / min(tts):.2f} (target <= 0.5): "
                       f"{status(fast / min(tts) <= 0.5)}")
        mem = res["memory"].get("gcref_cuda", {}).get("peak_rss")
        if mem:
            out.append(f"case 2: gcref_cuda peak RSS = {mem / 2 ** 30:.2f} GB (target < 2 GB): "
                       f"{status(mem < 2 * 2 ** 30)}")
        if fast:
            ratio = fast / res["floor_s"]
            out.append(f"case 2: gcref_cuda / FLOP floor = {ratio:.2f} (target <= 3): {status(ratio <= 3)}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["1", "1f32", "2", "3", "3gc"],
                    help="cases: 1 (MLP f64), 1f32 (MLP f32), 2 (CNN), 3 (VGG step), 3gc (VGG step + GC)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds of timed runs after which a slow implementation stops repeating")
    ap.add_argument("--quick", action="store_true", help="small inputs (smoke test)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per child process, seconds")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--worker-time", metavar="CASE")
    ap.add_argument("--worker-memory", metavar="CASE")
    ap.add_argument("--impls", nargs="+", default=list(IMPLS))
    args = ap.parse_args(argv)
    if args.worker_time:
        return worker_time(args.worker_time, args.impls, args.repeats, args.quick, args.budget)
    if args.worker_memory:
        return worker_memory(args.worker_memory, args.impls[0], args.quick)
    results = run_all(args.cases, args.repeats, args.quick, args.timeout, args.budget)
    table = format_table(results)
    print(table)
    print()
    for line in targets(results):
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**results, "table": table, "targets": targets(results)}, fh, indent=2,
                      default=str)


if __name__ == "__main__":
    main()
