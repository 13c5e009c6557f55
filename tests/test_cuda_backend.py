"""gcref_cuda's backend selection, import guard, workspace and chunk planning."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

import gcref_cuda as gcc
from gcref.nn import zoo
from gcref_cuda import backend
from gcref_cuda.nn import FastNetwork, Rows, Workspace

GPU_REASON = "CuPy GPU not available"


@pytest.fixture
def fresh_backend(monkeypatch):
    """Backend state and CuPy probe reset around a test."""
    saved = dict(backend._state), dict(backend._cupy_cache)
    backend._cupy_cache.clear()
    yield monkeypatch
    backend._state.clear()
    backend._state.update(saved[0])
    backend._cupy_cache.clear()
    backend._cupy_cache.update(saved[1])


def _fake_cupy(available: bool):
    mod = types.ModuleType("cupy")
    mod.is_available = lambda: available
    mod.ndarray = type("ndarray", (), {})
    return mod


def test_import_without_cupy_in_a_fresh_interpreter():
    code = ("import sys; sys.modules['cupy'] = None\n"          # makes `import cupy` fail
            "import gcref_cuda, gcref.checks.cuda\n"
            "print(gcref_cuda.backend_name())")
    env = {**os.environ}
    env.pop("GCREF_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "numpy"


def test_cupy_requested_but_missing_is_a_clear_error():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import gcref_cuda\n"
            "gcref_cuda.get_xp()")
    env = {**os.environ, "GCREF_BACKEND": "cupy"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "RuntimeError" in out.stderr and "cupy backend was requested" in out.stderr
    assert "GCREF_BACKEND=numpy" in out.stderr


def test_cupy_installed_without_a_device_falls_back_to_numpy(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", _fake_cupy(False))
    fresh_backend.delenv("GCREF_BACKEND", raising=False)
    assert backend.set_backend(None) is np
    assert backend.backend_name() == "numpy"
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match="is_available"):
        backend.set_backend("cupy")


def test_cupy_whose_probe_raises_falls_back_to_numpy(fresh_backend):
    mod = _fake_cupy(True)

    def broken():
        raise OSError("libcuda.so: cannot open shared object file")
    mod.is_available = broken
    fresh_backend.setitem(sys.modules, "cupy", mod)
    fresh_backend.delenv("GCREF_BACKEND", raising=False)
    assert backend.set_backend(None) is np
    assert "libcuda" in backend.cupy_status()[1]


def test_environment_override_and_bad_names(fresh_backend):
    fresh_backend.setenv("GCREF_BACKEND", "numpy")
    assert backend.set_backend(None) is np
    fresh_backend.setenv("GCREF_BACKEND", "tpu")
    with pytest.raises(ValueError, match="GCREF_BACKEND"):
        backend.set_backend(None)
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.set_backend("jax")


def test_using_restores_the_previous_backend():
    before = backend.backend_name()
    with backend.using("numpy") as xp:
        assert xp is np
    assert backend.backend_name() == before


def test_dtype_resolution():
    with backend.using("numpy"):
        assert backend.resolve_dtype(None) == np.float64
        assert backend.resolve_dtype("float32") == np.float32
        with pytest.raises(ValueError, match="float32 or float64"):
            backend.resolve_dtype(np.int64)
        with pytest.raises(ValueError, match="float32 or float64"):
            FastNetwork(zoo.mlp([3, 2], 2), dtype=np.float16)


def test_cpu_threads_setting(monkeypatch):
    old = backend._threads["n"]
    try:
        backend.set_cpu_threads(None)
        monkeypatch.setenv("GCREF_CPU_THREADS", "3")
        assert backend.cpu_threads() == 3
        backend.set_cpu_threads(None)
        monkeypatch.setenv("GCREF_CPU_THREADS", "many")
        with pytest.raises(ValueError, match="GCREF_CPU_THREADS"):
            backend.cpu_threads()
        with pytest.raises(ValueError):
            backend.set_cpu_threads(-1)
    finally:
        backend._threads["n"] = old


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_thread_settings_agree_and_runs_repeat_bitwise(threads):
    net = zoo.cnn((2, 6, 6), 3, channels=(3, 4), hidden=6)
    params = net.init(1)
    X = np.random.default_rng(0).normal(size=(9, 2, 6, 6))
    old = backend._threads["n"]
    try:
        backend.set_cpu_threads(1)
        ref = gcc.per_example_gc(net, params, X, memory_budget=1 << 20)
        backend.set_cpu_threads(threads)
        first = gcc.per_example_gc(net, params, X, memory_budget=1 << 20)
        # other chunk shapes may round differently; the same settings repeat bit for bit
        np.testing.assert_allclose(first, ref, rtol=1e-13, atol=0)
        np.testing.assert_array_equal(gcc.per_example_gc(net, params, X, memory_budget=1 << 20), first)
    finally:
        backend._threads["n"] = old


def test_to_host_and_to_device_round_trip():
    with backend.using("numpy"):
        a = np.arange(6.0).reshape(2, 3)
        back = backend.to_host(backend.to_device(a))
        assert isinstance(back, np.ndarray) and back.dtype == np.float64
        np.testing.assert_array_equal(back, a)
        np.testing.assert_array_equal(backend.to_host(backend.to_device(a, np.float32)), a)
        assert backend.to_host(3.0) == 3.0


def test_workspace_reuses_memory_and_rows_segments():
    ws = Workspace(np)
    a = ws.get("k", (4, 5), np.float64)
    b = ws.get("k", (2, 3), np.float64)
    assert np.shares_memory(a, b) and b.flags.c_contiguous
    z = ws.get("k", (3, 3), np.float64, zero=True)
    assert not z.any()
    rows = Rows(np.array([0, 0, 0, 2, 2, 5]), np)
    assert rows.segs == [(0, 0, 3), (2, 3, 5), (5, 5, 6)]
    with pytest.raises(AssertionError, match="sorted"):
        Rows(np.array([1, 0]), np)


def test_memory_budget_validation_and_chunk_planning():
    net = zoo.cnn((3, 32, 32), 10)
    with pytest.raises(ValueError, match="at least 1 MiB"):
        FastNetwork(net, memory_budget=1000)
    with pytest.raises(TypeError, match="bytes"):
        FastNetwork(net, memory_budget="1GB")
    small = FastNetwork(net, memory_budget=1 << 24)
    big = FastNetwork(net, memory_budget=1 << 32)
    assert small.example_chunk() < big.example_chunk()
    assert small.example_chunk() * small.example_bytes() <= (1 << 24) // 2
    assert small.row_chunk() * small.row_bytes() <= (1 << 24) // 2


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason=GPU_REASON)
def test_gpu_backend_allocates():
    with backend.using("cupy") as cp:
        assert cp.asarray([1.0, 2.0]).sum().get() == 3.0
        assert backend.default_dtype() == np.float32


def test_fast_fit_never_runs_the_reference_passes(monkeypatch):
    # gcref_cuda.fit is gcref.train.fit with the fast engine: every forward and derivative pass
    # of the run (steps, records, test accuracy, target NC/GC, few-shot) is the engine's.
    import gcref
    from gcref.data import gaussian_mixture
    from gcref.nn import Network
    from gcref.nn.containers import Sequential
    src = gaussian_mixture(12, 3, 5, seed=0).dataset
    tgt = gaussian_mixture(10, 4, 5, seed=1).dataset
    net = zoo.mlp([5, 8, 6], num_classes=3)
    kw = dict(lr=0.1, batch_size=6, steps=4, gc_reg=0.1, l2=1e-3, momentum=0.5, seed=2, eval_every=2,
              test_data=src, target_data=tgt, few_shot=dict(ways=3, shots=2, queries=3, episodes=4))
    ref = gcref.train.fit(net, net.init(0), src, **kw)

    def forbidden(*args, **kwargs):
        raise AssertionError("the reference's forward pass was called during gcref_cuda.fit")

    for cls, names in ((Network, ("forward_cache", "forward", "embed", "vjp_cached", "jvp_cached",
                                  "jacobian")), (Sequential, ("forward", "vjp", "jvp", "second_order"))):
        for name in names:
            monkeypatch.setattr(cls, name, forbidden)
    with backend.using("numpy"):
        fast = gcc.fit(net, net.init(0), src, **kw)
        again = gcref.train.fit(net, net.init(0), src, engine=gcc.FastEngine, **kw)
    monkeypatch.undo()
    assert fast.history == again.history and fast.status == "completed"
    assert [r["step"] for r in fast.history] == [r["step"] for r in ref.history] == [0, 2, 4]
    for rf, rr in zip(fast.history, ref.history):
        assert rf.keys() == rr.keys()
        for key in rr:
            assert rf[key] == pytest.approx(rr[key], rel=1e-10, abs=1e-12), key
    for k in ref.params:
        np.testing.assert_allclose(fast.params[k], ref.params[k], rtol=1e-10, atol=1e-13)
    with pytest.raises(TypeError, match="chooses the engine"):
        gcc.fit(net, net.init(0), src, engine=gcc.FastEngine, **kw)


def test_check_reports_skips_apart_from_passes():
    from gcref.checks import cuda as cuda_checks
    from gcref.checks import summarize
    from gcref.testing import CheckResult
    rows = [CheckResult("a", 0.0, 1.0, True), CheckResult("b", 2.0, 1.0, False),
            CheckResult.skip("c", "no GPU")]
    assert tuple(summarize(rows)) == (1, 1, 1)
    assert [r.status for r in rows] == ["passed", "failed", "skipped"]
    assert rows[2].as_dict()["status"] == "skipped" and not rows[2] and not rows[2].failed
    with pytest.raises(ValueError, match="skipped check is not passed"):
        CheckResult("d", 0.0, 0.0, True, skipped=True)
    if not backend.gpu_available():
        out = cuda_checks.cuda_group(0)
        skipped = [r for r in out if r.skipped]
        assert len(skipped) == 1 and "GPU" in skipped[0].name
        assert summarize(out) == (len(out) - 1, 0, 1)
