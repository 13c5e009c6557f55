"""Agreement checks of gcref_cuda against gcref, for ``gcref check --backend cuda``.

Registers the group ``"cuda"`` (gcref_cuda with NumPy as the array module) and, where a GPU is
usable, ``"cuda-gpu"`` (the same checks with CuPy). Each row is the worst relative error of a
family of functions on one network of ``gcref.checks.small_zoo()`` in one dtype, against the
reference; tolerances: 1e-10 in float64, 1e-4 in float32 (the property tests' bounds).
"""

from __future__ import annotations

import numpy as np

from gcref_cuda import backend

from ..testing import CheckResult, relative_error
from .cases import perturbed_params, small_zoo

__all__ = ["agreement_checks", "TOLERANCES"]

TOLERANCES = {"float64": 1e-10, "float32": 1e-4}


def _estimate_error(a, b) -> float:
    if a.n != b.n or a.method != b.method:
        return np.inf
    scale = max(abs(b.value), b.stderr, 1e-300)
    return max(relative_error(a.value, b.value), abs(a.stderr - b.stderr) / scale)


def _row(label, errors, tol) -> CheckResult:
    worst = max(errors) if errors else 0.0
    return CheckResult(label, worst, tol, bool(np.isfinite(worst) and worst <= tol))


def _network_rows(net, seed, dtype_name, prefix):
    import gcref
    import gcref_cuda as gcc
    dtype, tol = np.dtype(dtype_name), TOLERANCES[dtype_name]
    params = net.check_params(perturbed_params(net, seed))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(5,) + net.input_shape)
    fnet = gcc.FastNetwork(net, dtype=dtype)
    rows = []
    errs = [relative_error(fnet.forward(params, X), net.forward(params, X)),
            relative_error(fnet.embed(params, X), net.embed(params, X))]
    for output in ("embedding", "logits"):
        errs.append(relative_error(fnet.jacobian(params, X, output), net.jacobian(params, X, output)))
        v = rng.normal(size=(X.shape[0], net.output_dim(output)))
        gx, gp = fnet.vjp(params, X, v, output)
        gx_ref, gp_ref = net.vjp(params, X, v, output)
        errs.append(relative_error(gx, gx_ref))
        errs.extend(relative_error(gp[k], gp_ref[k]) for k in gp_ref)
        t = rng.normal(size=X.shape)
        errs.append(relative_error(fnet.jvp(params, X, t, output), net.jvp(params, X, t, output)))
    rows.append(_row(f"{prefix} {net.name}: forward, embed, Jacobian, VJP, JVP", errs, tol))
    errs = [relative_error(gcc.per_example_gc(fnet, params, X, output),
                           gcref.per_example_gc(net, params, X, output))
            for output in ("embedding", "logits")]
    rows.append(_row(f"{prefix} {net.name}: exact per-example GC (embedding, logits)", errs, tol))
    errs = []
    for method, size in (("examples", 3), ("outputs", 2), ("mask", 0.4), ("projection", 3)):
        for probe in (("rademacher", "sphere") if method == "projection" else ("rademacher",)):
            errs.append(_estimate_error(
                gcc.estimate_gc(fnet, params, X, method, size, seed=seed, probe=probe, chunk_size=2),
                gcref.estimate_gc(net, params, X, method, size, seed=seed, probe=probe, chunk_size=2)))
    rows.append(_row(f"{prefix} {net.name}: GC estimators, same seed -> same value", errs, tol))
    y = rng.integers(0, net.num_classes, X.shape[0])
    o1, _, g1 = gcc.objective_and_grad(fnet, params, X[:3], y[:3], 0.01, 0.1)
    o2, _, g2 = gcref.train.objective_and_grad(net, params, X[:3], y[:3], 0.01, 0.1)
    errs = [relative_error(o1, o2)] + [relative_error(g1[k], g2[k]) for k in g2]
    rows.append(_row(f"{prefix} {net.name}: training objective and gradient (L2 + GC penalty)",
                     errs, tol))
    return rows


def _statistics_rows(seed, prefix):
    import gcref
    import gcref_cuda as gcc
    tol = TOLERANCES["float64"]
    rng = np.random.default_rng(seed)
    k, p = 12, 9
    y = np.repeat(np.arange(k), 15)
    Z = rng.normal(0, 2, size=(k, p))[y] + rng.normal(size=(y.shape[0], p)) + 100.0
    a, b = gcc.class_stats(Z, y), gcref.class_stats(Z, y)
    errs = [relative_error(a.means, b.means), relative_error(a.variances, b.variances),
            relative_error(gcc.cdnv(Z, y), gcref.cdnv(Z, y)),
            relative_error(gcc.neural_collapse(Z, y), gcref.neural_collapse(Z, y))]
    rows = [_row(f"{prefix} class stats, CDNV, NC (centred features, offset 100)", errs, tol)]
    gc = rng.uniform(0.5, 2.0, size=k)
    errs = []
    for form in ("variance", "gc", "capped", "capped_gc"):
        e = gcc.ncc_error_bound(b.means, b.variances, 5, form=form, gc_per_class=gc, rho=0.7, ways=5)
        f = gcref.ncc_error_bound(b.means, b.variances, 5, form=form, gc_per_class=gc, rho=0.7, ways=5)
        errs += [relative_error(e.value, f.value), relative_error(e.pairwise, f.pairwise)]
    rows.append(_row(f"{prefix} NCC error bound, all four forms", errs, tol))
    e = gcc.few_shot_accuracy_features(Z, y, ways=5, shots=3, queries=4, episodes=30, seed=seed)
    f = gcref.few_shot_accuracy_features(Z, y, ways=5, shots=3, queries=4, episodes=30, seed=seed)
    rows.append(_row(f"{prefix} few-shot NCC accuracy (same episodes)",
                     [relative_error(e.accuracies, f.accuracies), relative_error(e.ci95, f.ci95)], tol))
    return rows


def agreement_checks(seed: int = 0, backend_name: str = "numpy") -> list[CheckResult]:
    """Every gcref_cuda function against gcref on the small zoo, in float64 and float32."""
    out = []
    with backend.using(backend_name):
        for dtype_name in ("float64", "float32"):
            prefix = f"cuda ({backend_name}, {dtype_name})"
            for i, net in enumerate(small_zoo()):
                out.extend(_network_rows(net, seed + i, dtype_name, prefix))
        out.extend(_statistics_rows(seed, f"cuda ({backend_name}, float64)"))
    return out


def cuda_group(seed: int) -> list[CheckResult]:
    out = agreement_checks(seed, "numpy")
    if not backend.gpu_available():
        _, why = backend.cupy_status()
        out.append(CheckResult.skip("cuda (cupy): CuPy GPU not available", why))
    return out


def gpu_available() -> bool:
    return backend.gpu_available()


def cuda_gpu_group(seed: int) -> list[CheckResult]:
    return agreement_checks(seed, "cupy")
