"""A quick cascade probe on one composed video: cold, warm and exact-estimate times and held-out
accuracy, side by side in one run (a precursor of the full query benchmark).

    python benchmarks/cascade_probe.py --minutes 10 --presence 0.3 --target 0.05

Composes the video (vql compose's library from vtest), runs one query cold (sampling,
labelling, training, fitting, running), drops the stored results and runs it warm (the stored
plan and labels reused), estimates the exact plan from the reference's measured per-frame cost
plus decoding, and checks the answers against the reference on random frames outside the
planning sample. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import vql
from vql.engine.compose import ComposeSpec, build_library, compose
from vql.engine.video import read_frames
from vql.udfs.tfjs_detector import centernet

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VQL_SHARED", ROOT.parent / "shared"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--presence", type=float, default=0.3)
    parser.add_argument("--target", type=float, default=0.05, help="fpr = fnr target")
    parser.add_argument("--audit", type=int, default=300, help="held-out frames checked against the reference")
    parser.add_argument("--workdir", default="/tmp/vql_probe")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cascade_probe.json"))
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"street_{args.minutes:g}min_{args.presence:g}.mp4"
    model = centernet()
    if not video.exists():
        lib = build_library(SHARED / "data" / "vtest.avi", model)
        compose(lib, video, ComposeSpec(minutes=args.minutes, presence=args.presence, seed=11))
    db = work / "probe.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            p.unlink()
    query = f"SELECT frame FROM street WHERE contains('person') WITH (fpr := {args.target}, fnr := {args.target})"
    con = vql.connect(db)
    con.sql(f"CREATE VIDEO street FROM '{video}'")
    frames_total = con.sql("SELECT frames FROM vql_videos").fetchall()[0][0]

    t0 = time.perf_counter()
    con.sql("EXPLAIN " + query)  # planning alone, to know the sample
    plan_s = time.perf_counter() - t0
    sample = {r[0] for r in con.sql("SELECT frame FROM vql_labelled_frames").fetchall()}
    t1 = time.perf_counter()
    cold = con.sql(query)
    cold_s = plan_s + (time.perf_counter() - t1)
    answer = {r[0] for r in cold.fetchall()}
    plan_text = cold.metadata["plan_text"]
    con.sql("DROP RESULTS street")
    con.close()

    warm_con = vql.connect(db)
    t2 = time.perf_counter()
    warm = warm_con.sql(query)
    warm_s = time.perf_counter() - t2
    assert {r[0] for r in warm.fetchall()} == answer
    warm_con.close()

    # exact estimate: decode every frame + the reference's measured per-frame cost
    t3 = time.perf_counter()
    decoded = sum(len(i) for i, _ in read_frames(video, range(frames_total), 64))
    decode_s = time.perf_counter() - t3
    probe = [f for _, fs in read_frames(video, range(0, 32)) for f in fs]
    model.detect(probe[:8])
    t4 = time.perf_counter()
    model.detect(probe)
    ref_per_frame = (time.perf_counter() - t4) / len(probe)
    exact_s = decode_s + frames_total * ref_per_frame

    rng = np.random.default_rng(1)
    audit = np.sort(rng.choice(sorted(set(range(frames_total)) - sample), min(args.audit, frames_total - len(sample)), replace=False))
    truth = {}
    for idx, fs in read_frames(video, audit, 16):
        for f, d in zip(idx, model.detect(fs)):
            truth[int(f)] = d.count(0, 0.5) >= 1
    pos = [f for f, t in truth.items() if t]
    neg = [f for f, t in truth.items() if not t]
    fnr = sum(f not in answer for f in pos) / max(1, len(pos))
    fpr = sum(f in answer for f in neg) / max(1, len(neg))
    row = {
        "video": video.name, "frames": frames_total, "query": query, "selectivity": len(answer) / frames_total,
        "sample_frames": len(sample), "decode_fps": decoded / decode_s, "exact_s_estimated": exact_s,
        "cold_s": cold_s, "warm_s": warm_s, "speedup_cold": exact_s / cold_s, "speedup_warm": exact_s / warm_s,
        "audit_frames": len(truth), "audit_positives": len(pos), "fpr": fpr, "fnr": fnr,
        "frames_decided_by_specialized": cold.metadata.get("frames_decided_by_specialized", 0),
        "frames_sent_to_reference": cold.metadata.get("frames_sent_to_reference", 0),
        "plan": plan_text,
    }
    print(plan_text)
    print("\n| frames | sample | exact (est.) s | cold s | warm s | speed-up cold | speed-up warm | audit fpr | audit fnr |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {frames_total} | {len(sample)} | {exact_s:.0f} | {cold_s:.0f} | {warm_s:.1f} | {row['speedup_cold']:.1f}x | "
          f"{row['speedup_warm']:.1f}x | {fpr:.3f} ({len(neg)} neg) | {fnr:.3f} ({len(pos)} pos) |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
