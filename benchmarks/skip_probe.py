"""Frame skipping and the t−Δ gate on real footage: what the planner decides, and what the
skips it declined would have given.

    python benchmarks/skip_probe.py --video /tmp/vql_bench/street_20min_0.1.mp4

Plans one query the way ``plan_atom`` does (pilot sample, growth, stages, the cheapest plan
without skipping, the skip notes of ``label_anchors``), then labels the anchors of every skip
in SKIPS regardless of what they cost, and fits every plan again with them: per skip the
cheapest certified plain and gated plan, its expected cost and its false-positive and
false-negative rates on the eval set (frames neither training nor fitting saw). The cheapest
certified skip plan and the plan without skipping then run warm over the whole video, side by
side, each on its own copy of the store as planning left it, with their answers compared and
audited on random frames without stored labels. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import vql
from vql.engine.cascade import run_cascade
from vql.engine.executor import Context
from vql.planner.cascade import DRIFT_MARGIN, decide, held_out, plan_sample, train_stages
from vql.planner import labelling
from vql.planner.labelling import _label, label_sample
from vql.planner.skipping import SKIPS, anchors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from queries import holds, reference_truth  # noqa: E402  (the benchmark's own judge)

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True)
    parser.add_argument("--where", default="contains('person')")
    parser.add_argument("--target", type=float, default=0.01, help="fpr = fnr target")
    parser.add_argument("--db", default="/tmp/vql_skip_probe.duckdb")
    parser.add_argument("--seed-db", help="a store to copy first (its labels are reused)")
    parser.add_argument("--audit", type=int, default=1500,
                        help="random frames without stored labels, judged by the reference through a separate path")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "skip_probe.json"))
    args = parser.parse_args(argv)
    if args.seed_db and not Path(args.db).exists():
        shutil.copy(args.seed_db, args.db)
    con = vql.connect(args.db, progress=False)
    if not con.sql("SELECT count(*) FROM vql_videos WHERE name = 'cam'").fetchall()[0][0]:
        con.sql(f"CREATE VIDEO cam FROM '{args.video}'")
    query = f"SELECT frame FROM cam WHERE {args.where} WITH (fpr := {args.target}, fnr := {args.target})"
    seen = {}
    real = labelling.plan_atom

    def recording(ctx, model, scan, atom, fpr, fnr):  # the planner's own run, and what it planned over
        seen.update(scan=scan, atom=atom, choice=real(ctx, model, scan, atom, fpr, fnr))
        return seen["choice"]

    labelling.plan_atom = recording
    t = time.perf_counter()
    con.sql("EXPLAIN " + query)
    planner_s = time.perf_counter() - t
    labelling.plan_atom = real
    scan, atom = seen["scan"], seen["atom"]
    model = con.model("centernet")
    ctx = Context(con.store, con.model, False)
    fpr = fnr = args.target
    split, why = plan_sample(scan.first, scan.last, min(fpr, fnr))
    split, why, truth, small, costs, stages, short = label_sample(ctx, model, scan, atom, split, why, fpr, fnr)
    stages = stages or train_stages(split, truth, small)
    plain = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages)
    notes = seen["choice"].skip_notes
    evaluated = np.union1d(split.fit, split.eval)
    need = sorted({int(a) for k in SKIPS for a in anchors(evaluated, scan.first, k)} - set(truth))
    t = time.perf_counter()
    _label(ctx, model, scan, atom, np.array(need, np.int64), small, truth)
    forced_label_s = time.perf_counter() - t
    forced = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages, first=scan.first, skips=SKIPS)
    every = [c for c in [forced.chosen] + forced.alternatives if c is not None and c.thresholds is not None]
    rows = []
    for k in (1,) + SKIPS:
        for gated in ((False,) if k == 1 else (False, True)):
            best = next((c for c in every if c.skip == k and (c.gate is not None) == gated), None)
            row = {"skip": k, "gated": gated, "plan": best.name if best else None}
            if best is not None:
                e_fpr, e_fnr = held_out(best, split.eval, scan.first, truth, small)
                th = best.thresholds
                row |= {"expected_ms": best.cost_per_frame * 1000, "gate_pass": th.gate_pass if gated else None,
                        "fnr_bound": th.fnr_bound, "fpr_bound": th.fpr_bound, "eval_fpr": e_fpr, "eval_fnr": e_fnr}
            rows.append(row)
    eval_y = np.array([truth[int(f)] for f in split.eval], bool)
    result = {"video": args.video, "query": query, "sample_frames": len(split.frames), "eval_frames": len(split.eval),
              "eval_positives": int(eval_y.sum()), "planner_notes": notes, "planner_choice": seen["choice"].chosen.name
              if seen["choice"].chosen else "exact", "planner_seconds (EXPLAIN, cold)": planner_s, "forced_anchor_labels": len(need),
              "forced_label_seconds": forced_label_s, "costs_ms": {k: v * 1000 for k, v in vars_of(forced.costs).items()},
              "rows": rows, "drift_margin": DRIFT_MARGIN}
    # warm runs side by side, each on its own copy of the store as planning left it (a run stores
    # the reference's labels of the frames it sends there, which would serve the other run)
    skip_best = min((c for c in every if c.skip > 1), key=lambda c: c.cost_per_frame, default=None)
    stored = set(con.store.labelled_frames(scan.info.fingerprint, model.version, scan.first, scan.last).tolist())
    con.sql("DROP RESULTS cam")
    con.close()
    warm = {}
    for label, cand in (("no skip", plain), ("skip", forced if skip_best is not None else None)):
        if cand is None or cand.chosen is None:
            continue
        if label == "skip" and cand.chosen.skip == 1:
            cand.chosen, cand.alternatives = skip_best, []
        copy = f"{args.db}.warm.duckdb"
        shutil.copy(args.db, copy)
        if Path(args.db + ".wal").exists():
            shutil.copy(args.db + ".wal", copy + ".wal")
        run_con = vql.connect(copy, progress=False)
        run_model = run_con.model("centernet")
        t = time.perf_counter()
        answer, ops = run_cascade(Context(run_con.store, run_con.model, False), scan.info, run_model,
                                  run_model.version, cand, scan.first, scan.last)
        warm[label] = {"plan": cand.chosen.name, "seconds": time.perf_counter() - t, "positives": int(answer.sum()),
                       "operators": [o.row() for o in ops], "answer": answer}
        run_con.close()
        for p in (copy, copy + ".wal"):
            Path(p).unlink(missing_ok=True)
    # the audit: frames whose answers the warm runs computed (none was labelled in the store), judged
    # by the reference read through the benchmark's own path
    rng = np.random.default_rng(7)
    pool = np.array([f for f in range(scan.first, scan.last + 1) if f not in stored], np.int64)
    audit = np.sort(rng.choice(pool, min(args.audit, len(pool)), replace=False))
    dets, _ = reference_truth(args.video, audit, model)
    judge = {f: holds(args.where, d, (scan.info.width, scan.info.height), model) for f, d in dets.items()}
    pos = [f for f in judge if judge[f]]
    neg = [f for f in judge if not judge[f]]
    result["audit"] = {"frames": len(judge), "positives": len(pos)}
    for w in warm.values():
        answer = w["answer"]
        w["audit_fnr"] = sum(not answer[f - scan.first] for f in pos) / max(1, len(pos))
        w["audit_fpr"] = sum(bool(answer[f - scan.first]) for f in neg) / max(1, len(neg))
    if len(warm) == 2:
        a, b = warm["no skip"]["answer"], warm["skip"]["answer"]
        result["warm_agreement"] = float((a == b).mean())
        result["warm_speedup_skip_over_no_skip"] = warm["no skip"]["seconds"] / warm["skip"]["seconds"]
    result["warm"] = {k: {kk: vv for kk, vv in v.items() if kk != "answer"} for k, v in warm.items()}
    Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    print(f"{query}\nsample {len(split.frames)} frames; eval {len(split.eval)} ({int(eval_y.sum())} positives); "
          f"{len(need)} anchors labelled by force in {forced_label_s:.0f} s")
    print("planner's own skip notes:\n  " + "\n  ".join(notes))
    print("| skip | gated | plan | expected ms/frame | gate passes | fnr bound | fpr bound | eval fpr | eval fnr |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["plan"] is None:
            print(f"| {r['skip']} | {r['gated']} | none certified | | | | | | |")
            continue
        gp = f"{r['gate_pass']:.0%}" if r["gate_pass"] is not None else ""
        print(f"| {r['skip']} | {r['gated']} | {r['plan']} | {r['expected_ms']:.3f} | {gp} | {r['fnr_bound']:.4f} | "
              f"{r['fpr_bound']:.4f} | {r['eval_fpr']:.4f} | {r['eval_fnr']:.4f} |")
    for label, w in result["warm"].items():
        print(f"warm {label}: {w['plan']}: {w['seconds']:.1f} s, {w['positives']} positive frames; audit "
              f"({result['audit']['frames']} frames, {result['audit']['positives']} positive) fpr {w['audit_fpr']:.4f}, "
              f"fnr {w['audit_fnr']:.4f}")
    if "warm_agreement" in result:
        print(f"answers agree on {result['warm_agreement']:.2%} of frames; skip plan "
              f"{result['warm_speedup_skip_over_no_skip']:.2f}x the speed of the plan without skipping")
    return 0


def vars_of(costs) -> dict:
    return {name: getattr(costs, name) for name in costs.__dataclass_fields__}


if __name__ == "__main__":
    raise SystemExit(main())
