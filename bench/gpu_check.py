"""GPU readiness check (run by ``bench/gpu_check.sh``): one script, under 8 minutes on one GPU.

Phases, each in its own process with a time limit (a phase that runs out is reported, and the
script goes on):

1. ``pytest -m gpu`` (the CuPy variants of the agreement and backend tests);
2. ``gcref check --backend cuda`` (with the ``cuda-gpu`` group where CuPy has a GPU);
3. the cases of ``bench/bench_gc.py`` (exact GC of the MLP and the small CNN, one VGG-11/4 SGD
   step with and without the exact GC penalty): ``gcref_cuda`` on the GPU against
   ``torch.func`` on the same GPU (``vmap(jacrev)``; autograd for the step), median wall time
   after a warm-up, with the values' agreement;
4. training-step throughput of VGG-13 on CIFAR-10-shaped inputs (3x32x32, 10 classes; float32):
   ``gcref_cuda.train_step`` against the same model in PyTorch on the same GPU, images/s;
5. ``bench/bench_train.py --device cuda``: ``gcref_cuda.fit`` steps (parameters kept on the GPU)
   against a plain PyTorch loop on the same GPU, float32 and float64, every case.

It writes a Markdown report (default ``validation/gpu-results.md``).

``--dry`` runs every phase on the CPU with tiny sizes (the GPU tests are then collected and
skipped, the check runs NumPy's ``cuda`` group, torch runs on the CPU): the test suite runs it
so the script cannot rot.

Usage::

    bash bench/gpu_check.sh                       # on a GPU machine
    bash bench/gpu_check.sh --dry --out /tmp/r.md # anywhere, seconds
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

#: Seconds each phase may take on a GPU machine (together under 8 minutes with start-up).
LIMITS = {"pytest": 150, "check": 90, "bench": 150, "vgg13": 60, "train": 150}
DRY_LIMITS = {"pytest": 120, "check": 120, "bench": 120, "vgg13": 120, "train": 120}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(cmd, limit, env=None):
    """``(returncode or "timeout", seconds, last lines of output)``."""
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True,
                             timeout=limit)
        code, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as err:
        code = "timeout"
        out = ((err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")) + \
              ((err.stderr or b"").decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or ""))
    return code, time.monotonic() - t0, out.strip().splitlines()[-15:]


# ---------------------------------------------------------------------------- phase 3 and 4 (workers)

def _sync(device):
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def _median_time(fn, device, repeats, budget):
    fn()                                         # warm-up (CuPy kernels, cuBLAS handles)
    _sync(device)
    times = []
    t_start = time.monotonic()
    while len(times) < repeats and (len(times) < min(2, repeats) or time.monotonic() - t_start < budget):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def worker_bench(dry: bool) -> dict:
    """Phase 3: bench_gc's cases, gcref_cuda vs torch.func on one device."""
    sys.path.insert(0, HERE)
    import numpy as np

    import bench_gc
    import gcref_cuda

    device = "cpu" if dry else "cuda"
    rows = []
    for case in ("1", "2", "3", "3gc") if dry else ("1", "1f32", "2", "3", "3gc"):
        spec = bench_gc.case_spec(case, quick=dry)
        net, params, X, y = bench_gc.make_inputs(spec)
        row = {"case": spec["title"], "backend": gcref_cuda.backend_name()}
        fast = bench_gc.impl_gcref_cuda(spec, net, params, X, y)
        row["gcref_cuda_s"], v_fast = _median_time(fast, None, 1 if dry else 5, 20)
        try:
            torch_fn = _torch_impl(bench_gc, spec, net, params, X, y, device)
            row["torch_s"], v_torch = _median_time(torch_fn, device, 1 if dry else 5, 20)
            a, b = bench_gc._value(v_fast), bench_gc._value(v_torch)
            row["value_rel_diff"] = abs(a - b) / max(abs(a), 1e-300)
        except Exception as err:  # noqa: BLE001 - e.g. no torch, or a CPU-only torch build
            row["torch_s"] = None
            row["note"] = f"torch unavailable: {type(err).__name__}: {err}"
        rows.append(row)
        del net, params, X, y
        np.random.default_rng(0)
    return {"device": device, "rows": rows}


def _torch_impl(bench_gc, spec, net, params, X, y, device):
    """``bench_gc.impl_torch`` (the same torch programs as the CPU benchmark) on ``device``."""
    return bench_gc.impl_torch(spec, net, params, X, y, device=device)


def worker_vgg13(dry: bool) -> dict:
    """Phase 4: VGG-13 training-step throughput on 3x32x32 inputs, 10 classes, float32."""
    import numpy as np

    import gcref_cuda
    from gcref.nn import zoo
    from gcref.train import SGD

    width, batch, gc_batch = (0.0625, 4, 1) if dry else (1.0, 128, 8)
    device = "cpu" if dry else "cuda"
    net = zoo.vgg("vgg13", (3, 32, 32), 10, width=width)
    params = net.check_params(net.init(0))
    rng = np.random.default_rng(0)
    out = {"device": device, "width": width, "dtype": "float32", "rows": []}
    fnet = gcref_cuda.FastNetwork(net, dtype="float32")
    opt = SGD(0.01, momentum=0.9)
    for gc_reg, n in ((0.0, batch), (0.1, gc_batch)):
        X = rng.normal(size=(n, 3, 32, 32))
        y = rng.integers(0, 10, n)
        state = opt.init_state(params)

        def step():
            return gcref_cuda.train_step(fnet, params, state, X, y, opt, 5e-4, gc_reg)[2]
        t_fast, _ = _median_time(step, None, 1 if dry else 5, 20)
        row = {"gc_reg": gc_reg, "batch": n, "gcref_cuda_img_s": n / t_fast}
        try:
            row["torch_img_s"] = n / _torch_vgg_step_time(net, params, X, y, gc_reg, device,
                                                          1 if dry else 5)
        except Exception as err:  # noqa: BLE001 - e.g. no torch, or a CPU-only torch build
            row["torch_img_s"] = None
            row["note"] = f"torch unavailable: {type(err).__name__}: {err}"
        out["rows"].append(row)
    return out


def _torch_vgg_step_time(net, params, X, y, gc_reg, device, repeats):
    sys.path.insert(0, HERE)
    import bench_gc
    spec = {"kind": "train", "dtype": "float32", "gc_reg": gc_reg}
    fn = _torch_impl(bench_gc, spec, net, params, X, y, device)
    return _median_time(fn, device, repeats, 20)[0]


# ---------------------------------------------------------------------------- report

def _environment(dry):
    env = {"python": platform.python_version(), "machine": platform.machine(), "dry": dry}
    try:
        import numpy
        env["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import gcref_cuda
        env["gcref_cuda_backend"] = gcref_cuda.backend_name()
        status = getattr(gcref_cuda, "cupy_status", None)
        if status is not None:
            env["cupy"] = str(status())
    except Exception as err:  # noqa: BLE001 - reported
        env["gcref_cuda_backend"] = f"error: {err}"
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"
    except ImportError:
        env["torch"] = "not installed"
    return env


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    return f"{v}{unit}"


def report(results, path, dry):
    lines = ["# GPU readiness results", "",
             "Written by `bash bench/gpu_check.sh`" + (" --dry (CPU, tiny sizes: not GPU figures)" if dry else "")
             + f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "## Environment", ""]
    for k, v in results["environment"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Phases", "", "| phase | exit | seconds | last line |", "|---|---|---:|---|"]
    for name in ("pytest", "check", "bench", "vgg13", "train"):
        ph = results["phases"].get(name, {})
        last = (ph.get("tail") or [""])[-1].replace("|", "/")[:100]
        lines.append(f"| {name} | {ph.get('code')} | {_fmt(ph.get('seconds'))} | {last} |")
    bench = results.get("bench")
    if bench:
        lines += ["", f"## bench_gc cases: gcref_cuda vs torch.func on the same device ({bench['device']})",
                  "", "| case | gcref_cuda s | torch s | torch / gcref_cuda | value rel. diff |",
                  "|---|---:|---:|---:|---:|"]
        for r in bench["rows"]:
            ratio = r["torch_s"] / r["gcref_cuda_s"] if r.get("torch_s") else None
            lines.append(f"| {r['case']} | {_fmt(r['gcref_cuda_s'])} | {_fmt(r.get('torch_s'))} | "
                         f"{_fmt(ratio)} | {_fmt(r.get('value_rel_diff'))} |")
    vgg = results.get("vgg13")
    if vgg:
        lines += ["", f"## VGG-13 training step, 3x32x32, 10 classes, {vgg['dtype']}, width {vgg['width']} "
                  f"({vgg['device']})", "", "| GC penalty | batch | gcref_cuda images/s | torch images/s |",
                  "|---:|---:|---:|---:|"]
        for r in vgg["rows"]:
            lines.append(f"| {r['gc_reg']} | {r['batch']} | {_fmt(r['gcref_cuda_img_s'])} | "
                         f"{_fmt(r.get('torch_img_s'))} |")
    train = results.get("train")
    if train:
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import bench_train
        lines += ["", f"## Training steps: gcref_cuda.fit ({train['gcref_cuda_backend']}) vs a PyTorch loop "
                  f"({train['device']}), bench/bench_train.py", "", bench_train.format_table(train)]
    lines += ["", f"Total: {results['total_s']:.0f} s.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes (for the tests)")
    ap.add_argument("--out", default=os.path.join(ROOT, "validation", "gpu-results.md"))
    ap.add_argument("--worker", choices=("bench", "vgg13"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        fn = worker_bench if args.worker == "bench" else worker_vgg13
        print("RESULT " + json.dumps(fn(args.dry)))
        return 0
    limits = DRY_LIMITS if args.dry else LIMITS
    py = sys.executable
    t0 = time.monotonic()
    results = {"environment": _environment(args.dry), "phases": {}}
    env = _env()
    if args.dry:
        env["GCREF_BACKEND"] = "numpy"
        env["GCREF_HYPOTHESIS_EXAMPLES"] = "2"
    tests = ["tests/test_cuda_agreement.py", "tests/test_cuda_backend.py"] if args.dry else ["tests"]
    train_json = os.path.abspath(args.out) + ".train.json"
    phases = [
        ("pytest", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *tests]),
        ("check", [py, "-m", "gcref.cli", "check", "--backend", "cuda", "--failures-only"]
         + (["--group", "cuda"] if args.dry else [])),
        ("bench", [py, os.path.join(HERE, "gpu_check.py"), "--worker", "bench"] + (["--dry"] if args.dry else [])),
        ("vgg13", [py, os.path.join(HERE, "gpu_check.py"), "--worker", "vgg13"] + (["--dry"] if args.dry else [])),
        ("train", [py, os.path.join(HERE, "bench_train.py"), "--json", train_json]
         + (["--quick", "--rounds", "1", "--cases", "mlp", "mlp_gc"] if args.dry
            else ["--rounds", "2", "--device", "cuda"])),
    ]
    failed = False
    for name, cmd in phases:
        print(f"gpu_check: {name} ...", flush=True)
        code, secs, tail = _run(cmd, limits[name], env)
        results["phases"][name] = {"code": code, "seconds": secs, "tail": tail}
        ok_codes = (0, 5) if name == "pytest" else (0,)         # 5: no test selected
        failed |= code not in ok_codes
        for line in tail:
            if line.startswith("RESULT "):
                results[name] = json.loads(line[len("RESULT "):])
                tail[:] = [f"measured ({len(results[name]['rows'])} rows)"]
        print(f"gpu_check: {name} exit {code} in {secs:.0f} s", flush=True)
    if os.path.exists(train_json):
        with open(train_json) as fh:
            results["train"] = json.load(fh)
        os.unlink(train_json)
    results["total_s"] = time.monotonic() - t0
    report(results, args.out, args.dry)
    print(f"gpu_check: wrote {args.out} ({results['total_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
