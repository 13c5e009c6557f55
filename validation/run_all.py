"""Run every claim script at one scale, then write ``results/summary.json`` and the README table.

    python validation/run_all.py --scale small                 # CPU, 7-13 min on 2 cores
    python validation/run_all.py --scale paper --data-root DATA --backend cuda   # GPU, hours
    python validation/run_all.py --scale medium --claims 1 --backend cuda   # about an hour on 2 CPU cores
    python validation/run_all.py --scale smoke                  # seconds (what the tests run), in a temporary folder
    python validation/run_all.py --scale small --protocol fixed-budget   # the ablation: claims 1, 3, 4, 5 at a fixed budget

Every option but ``--claims``, ``--no-readme`` and ``--table-only`` is passed on to each script
(see ``validation/common.py``); ``--table-only`` runs nothing and rebuilds the index and the
table from the JSON files already there (after re-running one claim alone). Each scale writes
its own folder (``common.default_out``: small ``results/``, medium ``results/medium/``, paper
``results/paper/``; smoke and ``--tiny`` a temporary folder, never the committed results). At
``--scale small`` (all claims) and ``--scale medium`` with the default ``--out``, the table
between the scale's ``results-table`` markers of ``validation/README.md`` is rewritten from the
JSON files, so the README always shows what the committed scripts measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import common  # validation/ is on sys.path when a script runs (python validation/...)
import reporting  # noqa: E402

SCRIPTS = {1: "claim1_hyperparams", 2: "claim2_sampled_gc", 3: "claim3_ncc_bound", 4: "claim4_transfer",
           5: "claim5_gc_regularization", 6: "claim6_inequalities"}
README = common.HERE / "README.md"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _measured(s: dict) -> str:
    stat = s.get("statistic") or {}
    value = stat.get("value")
    if value is None:
        return ""
    out = f"{stat.get('name', '')}: **{reporting.fmt(value)}**"
    unc = s.get("uncertainty") or {}
    extra = []
    if "p_value_permutation" in unc:
        extra.append(f"permutation p = {reporting.fmt(unc['p_value_permutation'], 2)}")
    if unc.get("ci95_bootstrap"):
        lo, hi = unc["ci95_bootstrap"]
        extra.append(f"bootstrap 95% CI [{reporting.fmt(lo, 2)}, {reporting.fmt(hi, 2)}]")
    if "final_gc_bound_range_over_seeds" in unc:
        lo, hi = unc["final_gc_bound_range_over_seeds"]
        extra.append(f"range over seeds [{reporting.fmt(lo)}, {reporting.fmt(hi)}]; NCC test error "
                     f"{reporting.fmt(stat.get('ncc_test_error'))}")
    if "coverage_2se_range" in unc:
        lo, hi = unc["coverage_2se_range"]
        extra.append(f"+-2 s.e. coverage {reporting.fmt(lo, 2)}-{reporting.fmt(hi, 2)}")
    if "max_z_of_violation" in unc:
        extra.append(f"largest z of Var - rho GC: {reporting.fmt(unc['max_z_of_violation'], 3)} "
                     f"(violation if > {reporting.fmt(unc['z_threshold'])})")
    return out + (f" ({'; '.join(extra)})" if extra else "")


def table(summaries: list[dict]) -> str:
    """The Markdown table of the claims' summaries (one row per claim), then each claim's reason."""
    lines = ["| # | claim (paper) | setting | measured statistic | verdict | time |",
             "|---|---|---|---|---|---|"]
    for s in summaries:
        verdict = s["verdict"]
        if s.get("parts"):
            n_ok = sum(p.get("verdict") == "reproduced" for p in s["parts"])
            verdict += f" ({n_ok}/{len(s['parts'])} parts)"
        if s.get("setting_verdicts"):
            verdict += "; per setting: " + "; ".join(f"{v['setting']}: {v['verdict']}" for v in s["setting_verdicts"])
        lines.append(f"| {s['claim']} | {_cell(s['title'])} ({_cell(s['paper'])}) | {_cell(s['setting'])} | "
                     f"{_cell(_measured(s))} | **{_cell(verdict)}** | {s['runtime_s']:.0f} s |")
    lines.append("")
    lines += [f"- **Claim {s['claim']}** ({s['verdict']}): {s['reason']}" for s in summaries]
    return "\n".join(lines)


def _markers(scale: str, protocol: str = "converged"):
    """The README markers of a scale's table (``small``, converged protocol: the original ones;
    the fixed-budget ablation: ``results-table[-<scale>]-fixed-budget``)."""
    name = "results-table" + ("" if scale == "small" else f"-{scale}") + \
        ("-fixed-budget" if protocol == "fixed-budget" else "")
    if name == "results-table":
        return START, END
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def update_readme(summaries, scale: str, protocol: str = "converged"):
    if not README.exists():
        return False
    text = README.read_text()
    start, end = _markers(scale, protocol)
    if start not in text or end not in text:
        return False
    how = f"--scale {scale}" + (" --protocol fixed-budget" if protocol == "fixed-budget" else "")
    block = (f"{start}\n<!-- written by validation/run_all.py {how}; do not edit by hand -->\n"
             f"{table(summaries)}\n{end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    reporting.atomic_write_text(README, head + block + tail)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", default=None,
                    help="comma list of claims to run (default all; with --protocol fixed-budget "
                         "the claims whose runs depend on the protocol: 1,3,4,5)")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: rebuild summary.json (and the README table) from the claimN.json "
                         "files already in --out")
    known, rest = ap.parse_known_args(argv)
    args = common.parse_args(rest, claim=0, description="")
    fixed = args.protocol == "fixed-budget"
    if known.claims is None:
        known.claims = ",".join(map(str, common.PROTOCOL_CLAIMS if fixed else sorted(SCRIPTS)))
    claims = [int(c) for c in known.claims.split(",") if c.strip()]
    unknown = [c for c in claims if c not in SCRIPTS]
    if unknown:
        raise SystemExit(f"--claims: unknown claim(s) {unknown}; valid: {sorted(SCRIPTS)}")
    out = Path(args.out)
    summaries, failures = [], []
    t_all = time.time()
    for c in claims:
        if known.table_only:
            summaries.append(json.loads((out / f"claim{c}.json").read_text()))
            continue
        module = importlib.import_module(SCRIPTS[c])
        t0 = time.time()
        print(f"=== claim {c}: {module.TITLE} ({args.scale})", flush=True)
        try:
            summaries.append(module.main(rest))
        except SystemExit as err:           # e.g. a missing --data-root at paper scale
            failures.append({"claim": c, "error": str(err)})
            summaries.append(reporting.not_run_summary(
                argparse.Namespace(**{**vars(args), "claim": c}), c, module.TITLE, module.PAPER, str(err)))
        except Exception as err:            # noqa: BLE001 - keep going, report at the end
            traceback.print_exc()
            failures.append({"claim": c, "error": f"{type(err).__name__}: {err}"})
        print(f"=== claim {c}: done in {time.time() - t0:.0f} s", flush=True)
    total = sum(s["runtime_s"] for s in summaries) if known.table_only else time.time() - t_all
    index = {"scale": args.scale, "protocol": args.protocol, "backend": args.backend, "total_runtime_s": total,
             "claims": [{"claim": s["claim"], "title": s["title"], "verdict": s["verdict"],
                         "runtime_s": s["runtime_s"], "json": f"claim{s['claim']}.json",
                         "figure": s.get("figure", "")} for s in summaries],
             "failures": failures, "versions": reporting.versions()}
    reporting.write_json(out / "summary.json", index)
    print(table(summaries))
    print(f"total {total:.0f} s; results in {out}")
    # the README shows the committed results: the small scale's full table, the medium scale's
    # claims (those that have a medium configuration), each from its default folder
    every = set(common.PROTOCOL_CLAIMS) if fixed else set(SCRIPTS)
    if (not known.no_readme and args.scale in ("small", "medium") and not args.tiny
            and out.resolve() == common.default_out(args.scale, protocol=args.protocol).resolve()
            and (set(claims) == every or args.scale == "medium")):
        if update_readme(summaries, args.scale, args.protocol):
            print(f"updated the table in {README}")
    if failures:
        print(json.dumps(failures, indent=2), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
