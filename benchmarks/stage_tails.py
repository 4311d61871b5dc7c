"""Which stage of a stored cascade misses positives? Each stage of the stored plan's chosen
cascade, scored on the plan's own certification frames.

    python benchmarks/stage_tails.py --db DB [--video v] [--class person]

``DB`` is a vql database in which a cold ``contains(class)`` query (no region, over the whole
video, one test) planned a certified cascade on the video (the last such plan is read): its
stored plan names the stages (with their trained weights and background), its training prefix
and its certification sample, a piece of the planner's seeded random order
(``planner/sampling.py``). For each stage, the lowest-scored positives among the certification
frames, with the reference's best score for the class on that frame and the share of
certification frames scored below each: a "no" threshold above a positive's score misses it.
Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import ROOT  # noqa: E402
from stages import small_frames, video_labels  # noqa: E402
from vql.api import PLAN_FORMAT  # noqa: E402
from vql.planner import plan_format  # noqa: E402
from vql.planner.sampling import permutation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--video", default="v")
    parser.add_argument("--class", dest="cls", default="person")
    parser.add_argument("--lowest", type=int, default=5, help="positives listed per stage")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stage_tails.json"))
    args = parser.parse_args(argv)
    with vql.connect(args.db, read_only=True, progress=False) as con:
        info, _, best = video_labels(con, args.video, args.cls)
        whole = f"|0-{info.frames - 1}"  # plans over the whole video: the order below is the scan's
        blobs = [bytes(b) for key, b in con.store.con.execute(
            "SELECT key, plan FROM vql_plans WHERE video_fp = ? AND starts_with(key, ?) ORDER BY created",
            [info.fingerprint, f"{PLAN_FORMAT}|"]).fetchall() if key.endswith(whole)]

    def wanted(p) -> bool:  # one certified contains(class) test, its stages reading whole frames
        c = p.choices[0] if len(p.choices) == 1 else None
        return (p.certificate is not None and c is not None and c.chosen is not None
                and c.atom.predicate.function == "contains" and c.atom.predicate.class_name == args.cls
                and all(st.op.view[1] is None for st in c.chosen.stages))

    plans = [p for p in map(plan_format.loads, blobs) if wanted(p)]
    if not plans:
        raise SystemExit(f"no stored plan with a certified cascade for contains({args.cls!r}) over the whole video, "
                         f"reading whole frames: run such a cold query first")
    plan = plans[-1]
    order = permutation(info.fingerprint, 0, info.frames - 1)
    frames = np.sort(order[plan.training_frames: plan.training_frames + plan.certificate.frames])
    min_score = plan.choices[0].atom.predicate.min_score
    truth = np.array([best.get(int(f), 0.0) >= min_score for f in frames])
    stages = plan.choices[0].chosen.stages
    small = small_frames(info, frames, sorted({st.op.view[0] for st in stages}))
    rows = []
    for st in stages:
        scores = st.op.scores(np.stack([small[st.op.view[0]][int(f)] for f in frames]))
        low = np.argsort(np.where(truth, scores, np.inf))[: min(args.lowest, int(truth.sum()))]
        rows.append({"stage": st.op.name, "band": [float(st.band.low), float(st.band.high)],
                     "lowest_positives": [{"frame": int(frames[i]), "score": float(scores[i]),
                                           "reference_score": float(best.get(int(frames[i]), 0.0)),
                                           "share_below": float((scores < scores[i]).mean())} for i in low]})
    print(f"\n{info.path}: {len(frames)} certification frames ({int(truth.sum())} positive), "
          f"plan: {plan.choices[0].chosen.name}\n")
    print("| stage | lowest positives' scores (reference's score) | share of frames scored below each |\n|---|---|---|")
    for r in rows:
        low = r["lowest_positives"]
        print(f"| {r['stage']} | " + ", ".join(f"{p['score']:.4g} ({p['reference_score']:.3f})" for p in low)
              + " | " + ", ".join(f"{p['share_below']:.2%}" for p in low) + " |")
    Path(args.out).write_text(json.dumps({"video": info.path, "certification_frames": len(frames),
                                          "positives": int(truth.sum()), "plan": plan.choices[0].chosen.name,
                                          "stages": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
