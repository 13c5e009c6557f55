"""Results that can be trusted after a kill, a crash or a mistake (issue 11).

Folder locks (two writers), stale temporaries, checkpoints bound to their settings, "finished"
verified from the files, another grid into a sweep folder, killed sweeps (the parent alone, and
the parent with its workers) that leave nothing writing and resume bitwise, sweeps on Dask and
Ray, and clear errors for unreadable parameter and IDX files.
"""

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from gcref import lab
from gcref.nn import load_params
from gcref.nn.params_io import FolderLock, FolderLocked, clean_stale_temporaries
from gcref.train import load_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
TINY = {"steps": 20, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}
# Long enough (a few seconds a run on a busy CPU) to be killed in the middle.
LONG = {"steps": 300, "eval_every": 10, "eval_size": 64, "hidden": [16, 8], "batch_size": 16}
GRID = {"lr": [0.05, 0.2]}
LONG_CLI = ["--steps", "300", "--eval-every", "10", "--eval-size", "64", "--hidden", "16,8",
            "--batch-size", "16", "--param", "lr=0.05,0.2", "--seeds", "0", "--n-jobs", "2",
            "--l2", "0.005", "--until-train-acc", "0"]      # LONG: the lab's defaults, a fixed budget


def _files(folder):
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder``."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def _group_alive(pgid):
    """Pids of the live (non-zombie) processes of a process group (read from /proc)."""
    alive = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d))
    return alive


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for(cond, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _records(run_dir):
    try:
        with open(os.path.join(run_dir, "history.jsonl")) as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0


def _same_runs(a_dir, b_dir, names):
    """Two sweep folders hold bitwise the same runs (histories and final parameters)."""
    for name in names:
        assert load_history(os.path.join(a_dir, name)) == load_history(os.path.join(b_dir, name))
        pa = load_params(os.path.join(a_dir, name, "params.npz"))
        pb = load_params(os.path.join(b_dir, name, "params.npz"))
        assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def _summary_without_paths(summary):
    out = json.loads(json.dumps(summary, default=str))
    out.pop("dir", None)
    out.pop("skipped", None)
    out.pop("ran", None)
    for r in out["runs"]:
        r.pop("wall_time_s", None)
    return out


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory):
    """The uninterrupted LONG sweep, run in this process."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    summary = lab.run_sweep(LONG, GRID, seeds=[0], out_dir=out, backend="sequential", n_jobs=1)
    assert summary["counts"]["completed"] == 2
    return out, summary


# ---------------------------------------------------------------------------- locks

def _hold_lock(folder):
    code = ("import sys, time; from gcref.nn.params_io import FolderLock; "
            "FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, env=ENV)
    assert p.stdout.readline().strip() == b"locked"
    p.stdout.close()
    return p


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    from typer.testing import CliRunner
    from gcref.cli import app

    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        with pytest.raises(FolderLocked, match=f"being written by process {holder.pid} on"):
            lab.run_training(TINY, folder)
        res = CliRunner().invoke(app, ["train", "--steps", "20", "--hidden", "16,8", "--out", str(folder)])
        assert res.exit_code == 2
        text = " ".join(res.stderr.split())
        assert text.startswith("Error:") and f"process {holder.pid}" in text
        assert not (folder / "history.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    s = lab.run_training(TINY, folder)          # a killed holder released the lock at once
    assert s["status"] == "completed"


def test_two_concurrent_writers_one_run_folder(tmp_path):
    folder = tmp_path / "run"
    code = ("import sys, json, time; from gcref import lab; "       # >= 2 s: 300 steps of >= 6 ms
            "s = lab.run_training(json.loads(sys.argv[1]), sys.argv[2], "
            "progress=lambda *a: time.sleep(0.006)); print(s['status'])")
    first = subprocess.Popen([sys.executable, "-c", code, json.dumps(LONG), str(folder)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        _wait_for(lambda: _records(folder) >= 1, 60, "the first writer's history")
        with pytest.raises(FolderLocked, match=f"process {first.pid}"):
            lab.run_training(LONG, folder)
        # another thread of this process is refused too
        with FolderLock(tmp_path / "other"):
            errors = []
            t = threading.Thread(target=lambda: errors.append(
                pytest.raises(FolderLocked, FolderLock(tmp_path / "other").acquire)))
            t.start()
            t.join()
            assert errors and "another thread" in str(errors[0].value)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0 and out.strip() == b"completed", err
    finally:
        first.kill()
        first.wait()
    done, reason = lab.verify_finished(folder, lab.as_config(LONG))
    assert done is not None, reason
    assert lab.run_training(LONG, folder)["skipped"]


def test_stale_temporaries_are_removed_when_a_folder_is_opened(tmp_path):
    folder = tmp_path / "run"
    lab.run_training(TINY, folder)
    stale = [".gcref-tmp-abc123-history.jsonl", ".tmp-k2j3config.json"]
    for name in stale:
        (folder / name).write_text("partial")
    (folder / "notes.txt").write_text("mine")          # not gcref's naming: kept
    lab.run_training(TINY, folder)                     # skipped, but the folder was opened
    assert not any((folder / n).exists() for n in stale) and (folder / "notes.txt").exists()
    (folder / stale[0]).write_text("partial")
    lab.run_training(TINY, folder, overwrite=True)
    assert not (folder / stale[0]).exists()
    assert clean_stale_temporaries(tmp_path / "missing") == []


# ---------------------------------------------------------------------------- bound checkpoints

class _Stop(Exception):
    pass


def _interrupt_at(n):
    def progress(step, steps, rec):
        if step == n:
            raise _Stop
    return progress


def test_mismatched_resume_is_refused_saying_what_differs(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(_Stop):
        lab.run_training(TINY, folder, progress=_interrupt_at(15))
    os.unlink(folder / "config.json")                   # the case: nothing else to compare
    with pytest.raises(ValueError, match=r"checkpoint.npz was made with other settings \(lr: 0.05 in "
                                         r"the checkpoint, 0.2 now\)"):
        lab.run_training(dict(TINY, lr=0.2), folder)
    # the same settings resume, bitwise as the uninterrupted run
    resumed = lab.run_training(TINY, folder)
    assert resumed["resumed_from"] == 10
    full = lab.run_training(TINY, tmp_path / "full")
    assert resumed["final"] == full["final"]
    a, b = load_params(folder / "params.npz"), load_params(tmp_path / "full" / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_fit_refuses_a_checkpoint_past_its_steps(tmp_path):
    from gcref import zoo
    from gcref.data import gaussian_mixture
    from gcref.train import fit
    data = gaussian_mixture(20, 3, 5, separation=2.0, seed=0).dataset
    net = zoo.mlp([5, 8, 4], num_classes=3)
    kw = dict(lr=0.1, batch_size=8, eval_every=4, eval_size=30, progress=False)
    fit(net, net.init(0), data, steps=12, out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="checkpoint at step 12, past steps=8"):
        fit(net, net.init(0), data, steps=8, out_dir=tmp_path, resume=True, **kw)
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.1 in the checkpoint, 0.3 now\)"):
        fit(net, net.init(0), data, steps=12, out_dir=tmp_path, resume=True, **{**kw, "lr": 0.3})


def test_finished_means_the_files_agree(tmp_path):
    folder = tmp_path / "run"
    first = lab.run_training(TINY, folder)
    cfg = lab.as_config(TINY)
    assert lab.verify_finished(folder, cfg)[0] is not None
    assert lab.verify_finished(folder, cfg.replace(lr=0.3))[0] is None

    # done.json that does not match the history: not finished; resumed from the checkpoint (at
    # the last step) and rewritten, with the same numbers
    done = json.loads((folder / "done.json").read_text())
    (folder / "done.json").write_text(json.dumps(dict(done, steps=16)))
    assert lab.run_summary(folder)["status"] == "unfinished"
    assert "not finished" in lab.run_summary(folder)["message"]
    again = lab.run_training(TINY, folder)
    assert not again["skipped"] and again["final"] == first["final"]

    # a history cut back behind the checkpoint (a laggard writer, before locks): the checkpoint
    # does not vouch for it, so the run is trained again from step 0, to the same numbers
    lines = (folder / "history.jsonl").read_text().splitlines(keepends=True)
    (folder / "history.jsonl").write_text("".join(lines[:-1]))
    assert lab.verify_finished(folder, cfg)[0] is None
    again = lab.run_training(TINY, folder)
    assert again["redone"].endswith("history.jsonl is not the history checkpoint.npz was written "
                                    "with (records up to step 20): trained again from step 0")
    assert again["resumed_from"] is None and again["final"] == first["final"]
    assert lab.run_training(TINY, folder, overwrite=True)["final"] == first["final"]


# ---------------------------------------------------------------------------- sweeps

def test_other_grid_into_a_sweep_folder_is_refused(tmp_path):
    out = tmp_path / "s"
    lab.run_sweep(TINY, {"lr": [0.05, 0.2]}, seeds=[0], out_dir=out, backend="sequential")
    before = (out / "summary.json").read_bytes()
    with pytest.raises(ValueError, match=r"holds a sweep over other runs \(swept lr: \[0.05, 0.2\] "
                                         r"there, \[0.05, 0.1\] now\)"):
        lab.run_sweep(TINY, {"lr": [0.05, 0.1]}, seeds=[0], out_dir=out, backend="sequential")
    with pytest.raises(ValueError, match="other runs"):
        lab.run_sweep(dict(TINY, l2=0.0), {"lr": [0.05, 0.2]}, seeds=[0], out_dir=out, backend="sequential")
    assert (out / "summary.json").read_bytes() == before
    s = lab.run_sweep(TINY, {"lr": [0.05, 0.1]}, seeds=[0], out_dir=out, backend="sequential",
                      overwrite=True)
    assert [r["name"] for r in s["runs"]] == ["lr=0.05_seed=0", "lr=0.1_seed=0"] and s["ran"] == 2


def _start_cli_sweep(out, backend, *extra):
    return subprocess.Popen([sys.executable, "-m", "gcref.cli", "sweep", *LONG_CLI,
                             "--parallel-backend", backend, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)


def _kill_and_check_quiet(proc, out, who, run_names, settle=10.0, workers_exit=True):
    """Kill the sweep (``who``: "parent" or "group") once it has written, and check that nothing
    is written afterwards. With ``workers_exit``, its worker processes must also exit within
    ``settle`` seconds (local pools); else (cluster engines, whose processes outlive a driver for
    a while) the folder is watched after ``settle`` seconds. Returns the seconds waited."""
    _wait_for(lambda: proc.poll() is None and any(_records(out / n) >= 2 for n in run_names), 90,
              "the sweep's first records")
    assert proc.poll() is None and not (out / "summary.json").exists(), "the sweep ended before the kill"
    if who == "parent":
        os.kill(proc.pid, signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    t_kill = time.time()
    proc.wait()
    try:
        t0 = time.monotonic()
        if workers_exit:
            _wait_for(lambda: not _group_alive(proc.pid), settle, "the workers to exit")
        else:
            time.sleep(settle)
        exit_s = time.monotonic() - t0
        snap = _files(out)
        time.sleep(1.5)
        assert _files(out) == snap, "something wrote into the sweep folder after the kill"
        late = {p: m for p, (_, m) in snap.items() if m / 1e9 > t_kill + 1.0}
        assert not late, f"written after the kill: {late}"
        assert not (out / "summary.json").exists()
    finally:
        _kill_group(proc.pid)
    return exit_s


@pytest.mark.slow
@pytest.mark.parametrize("who", ["parent", "group"])
def test_killed_sweep_writes_nothing_more_and_resumes_bitwise(tmp_path, who, reference_sweep):
    ref_dir, ref = reference_sweep
    out = tmp_path / "sweep"
    names = ["lr=0.05_seed=0", "lr=0.2_seed=0"]
    proc = _start_cli_sweep(out, "loky")
    _kill_and_check_quiet(proc, out, who, names)
    again = lab.run_sweep(LONG, GRID, seeds=[0], out_dir=out, backend="sequential")
    assert again["counts"]["completed"] == 2 and again["ran"] >= 1
    assert _summary_without_paths(again) == _summary_without_paths(ref)
    _same_runs(out, ref_dir, names)


@pytest.mark.slow
def test_dask_local_cluster_sweep_equals_local_and_kill_is_quiet(tmp_path, reference_sweep):
    distributed = pytest.importorskip("distributed")
    ref_dir, ref = reference_sweep
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        s = lab.run_sweep(LONG, GRID, seeds=[0], out_dir=tmp_path / "dask", backend="dask",
                          dask_scheduler=cluster.scheduler_address, n_jobs=2)
    assert _summary_without_paths(s) == _summary_without_paths(ref)
    assert _summary_without_paths(json.loads((tmp_path / "dask" / "summary.json").read_text())) == \
        _summary_without_paths(json.loads((ref_dir / "summary.json").read_text()))
    _same_runs(tmp_path / "dask", ref_dir, ["lr=0.05_seed=0", "lr=0.2_seed=0"])
    # the parent (which started its own local cluster) killed: its workers write nothing more
    out = tmp_path / "killed"
    proc = _start_cli_sweep(out, "dask")
    _kill_and_check_quiet(proc, out, "parent", ["lr=0.05_seed=0", "lr=0.2_seed=0"], settle=3.0,
                          workers_exit=False)


@pytest.mark.slow
def test_ray_sweep_equals_local_and_kill_is_quiet(tmp_path, reference_sweep):
    pytest.importorskip("ray")
    ref_dir, ref = reference_sweep
    code = ("import json, sys; from gcref import lab; "
            "s = lab.run_sweep(json.loads(sys.argv[1]), {'lr': [0.05, 0.2]}, seeds=[0], "
            "out_dir=sys.argv[2], backend='ray', n_jobs=2)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(LONG), str(tmp_path / "ray")],
                            env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        _kill_group(proc.pid)
    s = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert _summary_without_paths(s) == _summary_without_paths(json.loads((ref_dir / "summary.json").read_text()))
    _same_runs(tmp_path / "ray", ref_dir, ["lr=0.05_seed=0", "lr=0.2_seed=0"])
    out = tmp_path / "killed"
    proc = _start_cli_sweep(out, "ray")
    _kill_and_check_quiet(proc, out, "parent", ["lr=0.05_seed=0", "lr=0.2_seed=0"], settle=3.0,
                          workers_exit=False)


# ---------------------------------------------------------------------------- clear errors

def test_load_params_says_what_the_file_is(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.npz is empty \(0 bytes\); expected a .npz parameter archive"):
        load_params(empty)
    npy = tmp_path / "w.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match=r"w.npy is a .npy file \(a single array\); expected a .npz"):
        load_params(npy)
    good = tmp_path / "p.npz"
    np.savez(good, w=np.arange(1000.0))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(ValueError, match=r"cut.npz is not a readable .npz parameter file \(truncated"):
            load_params(cut)
        gc.collect()                      # a leaked handle would warn (as an error) here
    pickled = tmp_path / "p.pkl"
    pickled.write_bytes(b"\x80\x04\x95...")
    with pytest.raises(ValueError, match="not a zip archive"):
        load_params(pickled)


def test_idx_header_with_an_absurd_size_names_the_file(tmp_path):
    from gcref.data.files import read_idx
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + (2**32 - 1).to_bytes(4, "big") * 3 + b"\x00" * 16)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: IDX size mismatch \(truncated\)"):
        read_idx(path)
