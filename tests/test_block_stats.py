"""Statistics that respect how the runs were made (issue 31; issue 29 item 2): each run counted
once, seeds as permutation blocks, exact p where the blocks are small, Monte Carlo p-values with
their error, an auditable matched fit, and verdict lines that state a direction only at p < 0.05."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from gcref import lab
from gcref.lab import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
import verdicts  # noqa: E402


def _brute_force(x, y, blocks):
    """rho_w of every within-block permutation of y (all prod n_b! of them), by direct ranking."""
    idx = [np.flatnonzero(blocks == b) for b in np.unique(blocks)]
    out = []
    for perms in itertools.product(*[itertools.permutations(i) for i in idx]):
        yp = y.copy()
        for i, p in zip(idx, perms):
            yp[i] = y[list(p)]
        out.append(stats.block_spearman(x, yp, blocks))
    return np.array(out)


@pytest.mark.parametrize("seed", range(3))
def test_exact_block_p_equals_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    blocks = np.repeat([0, 1, 2], [3, 4, 3])
    x = rng.normal(size=10)
    y = x + rng.normal(size=10) + 5 * blocks            # a strong seed effect
    if seed == 2:
        y[:2] = y[0]                                     # a tie: average ranks
    res = stats.block_permutation_test(x, y, blocks)
    null = _brute_force(x, y, blocks)                    # 6 * 24 * 6 = 864 permutations
    assert null.size == 864 and res.method == "exact" and res.mc_error == 0.0
    count = np.count_nonzero(np.abs(null) >= abs(res.rho) - 1e-12)
    assert res.p_value == pytest.approx(count / 864, abs=1e-12)
    # the smallest |rho_w| with p < 0.05 over the same 864
    levels = np.unique(np.round(np.abs(null), 12))
    ok = [v for v in levels if np.count_nonzero(np.abs(null) >= v - 1e-12) / 864 < 0.05]
    assert res.detectable_rho == pytest.approx(min(ok), abs=1e-12)


def test_rho_within_blocks_ignores_seed_effects_and_averages_the_blocks():
    rng = np.random.default_rng(4)
    blocks = np.repeat([0, 1, 2], 5)
    x, y = rng.normal(size=15), rng.normal(size=15)
    per_block = [stats.spearman_rho(x[blocks == b], y[blocks == b]) for b in range(3)]
    assert stats.block_spearman(x, y, blocks) == pytest.approx(np.mean(per_block), abs=1e-14)
    shifted = stats.block_spearman(x + 10 * blocks, y + 7 * blocks, blocks)
    assert shifted == stats.block_spearman(x, y, blocks)
    assert stats.block_spearman(x, y) == stats.spearman_rho(x, y)      # one block: Spearman


def test_a_seed_effect_is_not_an_association():
    """Pooled over seeds, x and y rise together only because one seed is higher in both: today's
    pooled test calls it significant; within seeds it is not."""
    rng = np.random.default_rng(0)
    blocks = np.repeat([0, 1, 2], 8)
    x = rng.normal(size=24) + 4 * blocks
    y = rng.normal(size=24) + 4 * blocks
    pooled = stats.spearman_test(x, y, seed=0)
    assert pooled.rho > 0.7 and pooled.p_value < 0.001
    within = stats.spearman_test(x, y, blocks=blocks, seed=0)
    assert within.p_value > 0.05 and within.blocks == 3 and within.method == "exact"
    assert within.pooled_rho == pooled.rho
    assert verdicts.direction_verdict(within, +1)["direction"] == "inconclusive"


def test_monte_carlo_p_is_seeded_and_within_its_error_of_the_exact_one():
    rng = np.random.default_rng(1)
    blocks = np.repeat([0, 1], 7)
    x = rng.normal(size=14)
    y = x + 2 * rng.normal(size=14)
    exact = stats.block_permutation_test(x, y, blocks)
    mc = stats.block_permutation_test(x, y, blocks, seed=3, exact_max_n=1)
    assert mc.method == "permutation" and mc.rho == exact.rho
    assert abs(mc.p_value - exact.p_value) < 4 * mc.mc_error
    assert stats.block_permutation_test(x, y, blocks, seed=3, exact_max_n=1) == mc
    assert stats.block_permutation_test(x, y, blocks, seed=np.random.default_rng(3), exact_max_n=1) == mc


def test_a_monte_carlo_p_at_the_threshold_draws_more_and_is_borderline():
    """alpha set to the exact p: Monte Carlo cannot decide; B doubles up to the maximum and the
    test says borderline (its verdict could flip by Monte Carlo error)."""
    rng = np.random.default_rng(2)
    blocks = np.repeat([0, 1], 6)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    exact = stats.block_permutation_test(x, y, blocks)
    mc = stats.block_permutation_test(x, y, blocks, alpha=exact.p_value, exact_max_n=1,
                                      n_permutations=1000, max_permutations=8000)
    assert mc.n_permutations == 8000 and mc.borderline
    t = stats.CorrelationTest(mc.rho, mc.p_value, (0.0, 1.0), 12, mc.n_permutations, 0, borderline=True)
    assert verdicts.direction_verdict(t, +1) == {"verdict": "not reproduced", "direction": "borderline"}
    far = stats.block_permutation_test(x, y, blocks, alpha=0.5 if exact.p_value < 0.3 else 0.01, exact_max_n=1,
                                       n_permutations=1000, max_permutations=8000)
    assert far.n_permutations == 1000 and not far.borderline


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="blocks"):
        stats.block_permutation_test([1, 2, 3], [1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="alpha"):
        stats.block_permutation_test([1, 2, 3], [1, 2, 3], alpha=0)
    with pytest.raises(TypeError, match="seed"):
        stats.block_permutation_test([1, 2, 3], [1, 2, 3], seed=None)
    with pytest.raises(ValueError, match="expected_sign"):
        stats.direction(0.5, 0.01, 2)


def test_detectable_rho_of_one_block_matches_the_exact_table():
    """n = 6: |rho| >= 0.886 has p = 0.033 (0.829 has p = 0.058); n = 3 never reaches 0.05."""
    r = stats.block_permutation_test(range(6), [1, 3, 2, 5, 4, 6])
    assert r.detectable_rho == pytest.approx(31 / 35, abs=1e-14)
    assert stats.block_permutation_test([1, 2, 3], [1, 3, 2]).detectable_rho is None


# ------------------------------------------------------------------ runs counted once, seeds
def _record(lr, batch, seed, status="converged", gc=1.0, nc=1.0, epoch=10.0, history=()):
    return {"hp": {"lr": lr, "batch_size": batch, "seed": seed}, "seed": seed, "status": status,
            "final": {"gc": gc, "nc": nc, "epoch": epoch}, "history": list(history)}


def test_the_base_point_shared_by_sweeps_counts_once():
    rng = np.random.default_rng(0)
    lr_sweep = [_record(lr, 32, s, gc=rng.random(), nc=rng.random()) for lr in (0.01, 0.05, 0.2) for s in (0, 1)]
    batch_sweep = [_record(0.05, b, s, gc=rng.random(), nc=rng.random()) for b in (8, 32, 128) for s in (0, 1)]
    for r in batch_sweep:                   # the base point (lr 0.05, batch 32) is one run per seed
        if r["hp"]["batch_size"] == 32:
            r["final"] = next(q["final"] for q in lr_sweep if q["hp"] == r["hp"])
    pooled = lr_sweep + batch_sweep
    distinct = verdicts.distinct_runs(pooled)
    assert len(pooled) == 12 and len(distinct) == 10
    t = verdicts.correlate(pooled, lambda r: r["final"]["gc"], lambda r: r["final"]["nc"], seed=0)
    ref = stats.spearman_test([r["final"]["gc"] for r in distinct], [r["final"]["nc"] for r in distinct],
                              blocks=[r["seed"] for r in distinct], seed=0)
    assert t.n == 10 and t.blocks == 2 and t == ref


def test_epochs_to_the_criterion_leave_capped_runs_out():
    recs = [_record(0.01, 32, 0, epoch=40.0), _record(0.01, 32, 1, epoch=60.0),
            _record(0.01, 32, 2, status="cap", epoch=200.0), _record(0.2, 32, 0, status="cap", epoch=200.0)]
    e = verdicts.epochs_to_criterion(recs, lambda r: r["hp"]["lr"])
    assert e == {"0.01": {"median": 50.0, "converged": 2, "cap": 1}, "0.2": {"median": None, "converged": 0, "cap": 1}}


def test_matched_fit_records_where_each_run_is_read_and_marks_one_read_far_below_the_level():
    """The level is 0.2 (run 0's lowest loss); run 2's records jump from 0.6 to 0.05: read there,
    it is marked far below and left out of the tests; the audit rows keep it."""
    def hist(losses, ncs):
        return [{"step": 10 * i, "epoch": float(i), "train_loss": l, "nc": n, "gc": n}
                for i, (l, n) in enumerate(zip(losses, ncs))]
    recs = [_record(0.01, 32, 0, history=hist([1.0, 0.5, 0.2], [3.0, 2.0, 1.0])),
            _record(0.05, 32, 0, history=hist([0.9, 0.19, 0.1], [2.5, 0.8, 0.5])),
            _record(0.2, 32, 0, history=hist([0.8, 0.6, 0.05], [2.0, 1.5, 0.1])),
            _record(0.1, 32, 0, history=hist([0.7, 0.18, 0.1], [2.0, 0.6, 0.4]))]
    mf = verdicts.matched_fit_tests(recs, lambda r, _row: r["hp"]["lr"], ("nc",), -1, "lr")
    assert mf["level"] == 0.2 and mf["far_below"] == 1 and mf["n"] == 3
    rows = dict(enumerate(mf["rows"]))
    assert [(r["step"], r["train_loss"]) for r in rows.values()] == [(20, 0.2), (10, 0.19), (20, 0.05), (10, 0.18)]
    assert [r["far_below"] for r in rows.values()] == [False, False, True, False]
    assert rows[2]["ratio"] == pytest.approx(0.25)
    assert mf["tests"][0]["n"] == 3


# ---------------------------------------------------------------- verdict lines (issue 29, 2)
def test_a_verdict_line_states_a_direction_only_at_p_below_005():
    weak = stats.spearman(range(6), [3, 1, 6, 2, 5, 4])          # rho = +0.09 (made small)
    line = stats.describe_association(weak, "source GC and target NC", +1)
    assert weak["pvalue"] > 0.05
    assert line.startswith("measured: no clear association between source GC and target NC at n = 6")
    assert "move" not in line and f"p = {weak['pvalue']:.2g}" in line
    assert "the smallest |rho| detectable at n = 6: 0.89" in line
    strong = stats.spearman(range(8), [1, 2, 3, 4, 5, 6, 8, 7])
    assert stats.describe_association(strong, "GC and NC", +1).startswith("measured: GC and NC move together, as the paper expects")
    assert "against the paper's direction" in stats.describe_association(strong, "GC and NC", -1)
    tiny = stats.spearman([1, 2, 3], [1, 2, 3])
    assert "no |rho| reaches p < 0.05 at n = 3" in stats.describe_association(tiny, "GC and NC", +1)


def test_the_transfer_table_does_not_call_an_insignificant_rho_a_direction(capsys):
    """The issue's case: rho = -0.09 over 6 runs (p = 0.92) was printed as 'move oppositely'."""
    from gcref.lab import commands
    gcs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    tnc = [4.0, 2.0, 6.0, 5.0, 1.0, 3.0]
    corr = {"gc_vs_target_nc": {"x": "gc", "y": "target_nc", **lab.spearman(gcs, tnc)}}
    assert corr["gc_vs_target_nc"]["rho"] < 0 and corr["gc_vs_target_nc"]["pvalue"] > 0.5
    runs = [{"name": f"lr={i}", "settings": {"lr": i}, "status": "completed", "epochs": 1.0,
             "final": {"gc": g, "nc": 1.0, "target_nc": t, "few_shot_accuracy": 0.5, "few_shot_ci95": 0.01}}
            for i, (g, t) in enumerate(zip(gcs, tnc))]
    summary = {"kind": "transfer", "dir": "x", "runs": runs, "correlations": corr, "base_config": {},
               "counts": {"completed": 6, "diverged": 0, "error": 0}}
    commands._print_sweep(summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "oppositely" not in out and "no clear association between source GC and target NC at n = 6" in out
