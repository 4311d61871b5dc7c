"""LIMIT benchmark: a LIMIT without ORDER BY over model tests against the exact scan, cold, side by
side in one run.

    python benchmarks/limits.py                         # vtest + the composed 60-minute video
    python benchmarks/limits.py --minutes 0             # vtest only

Per video: the exact plan's time (vtest: run in full, the reference on every frame; the composed
video: extrapolated from the reference's seconds per frame measured on random frames in this run
plus a measured full decode), then each query from an empty store: its time, the speed-up over
exact, the frames the proxy scored and the reference labelled, and every returned row judged by
the reference outside vql's store (on vtest: by the exact run's answer). Each query also runs
with the proxy turned off (uniform random order), to show what the proxy buys.

Writes JSON (a list of rows) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import (ROOT, SHARED, cold_query, composed_video, decode_ceiling, exact_plan, holds,  # noqa: E402
                     machine, reference_truth)
from vql.engine import search  # noqa: E402
from vql.engine.video import probe  # noqa: E402
from vql.udfs.tfjs_detector import centernet  # noqa: E402

QUERIES = (  # (WHERE, LIMIT, gap)
    ("contains('person')", 10, 0),
    ("object_count('person') >= 2", 10, 0),
    ("contains('person')", 10, 300),
)


def run_limit(db: Path, path: str, where: str, limit: int, gap: int, proxy: bool) -> dict:
    """One query from an empty store: its rows and what the search did."""
    saved = search.Search.polarity
    if not proxy:
        search.Search.polarity = lambda self: 0
    try:
        options = f" WITH (gap := {gap})" if gap else ""
        result, seconds = cold_query(db, path, f"SELECT frame FROM cam WHERE {where} LIMIT {limit}{options}")
    finally:
        search.Search.polarity = saved
    (stats,) = result.metadata["search"].values()
    return {"seconds": seconds, "frames": sorted(r[0] for r in result.fetchall()), **stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=60, help="length of the composed video (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--presence", type=float, default=0.1)
    parser.add_argument("--skip-vtest", action="store_true")
    parser.add_argument("--workdir", default="/tmp/vql_bench")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "limits.json"))
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = centernet()
    videos = [] if args.skip_vtest else [("vtest", str(SHARED / "data" / "vtest.avi"))]
    if args.minutes:
        videos.append((f"composed {args.minutes} min, seed {args.seed}",
                       composed_video(work, args.minutes, args.seed, args.presence)))
    rows = []
    print(f"machine: {machine('cpu')}")
    for label, path in videos:
        info = probe(path)
        size = (info.width, info.height)
        ceiling = decode_ceiling(path, info.frames)
        exact_answers = None
        db = work / "limits_exact.duckdb" if info.frames <= 2000 else None  # short: exact in full, through vql
        exact_s, how = exact_plan(path, info.frames, ceiling["decode_fps"], model, db)
        if db is not None:
            with vql.connect(db, progress=False) as con:
                exact_answers = {w: {r[0] for r in con.sql(f"SELECT frame FROM cam WHERE {w} WITH (exact)").fetchall()}
                                 for w, _, _ in QUERIES}
        print(f"{label}: {info.frames} frames; exact {exact_s:.1f} s ({how}); decoding {ceiling['decode_fps']:.0f} frames/s")
        for where, limit, gap in QUERIES:
            for proxy in (True, False):
                r = run_limit(work / "limits_q.duckdb", path, where, limit, gap, proxy)
                if exact_answers is not None:
                    true = sum(f in exact_answers[where] for f in r["frames"])
                else:
                    dets, _ = reference_truth(path, np.array(r["frames"], np.int64), model)
                    true = sum(holds(where, dets[f], size, model) for f in r["frames"])
                spaced = all(b - a >= gap for a, b in zip(r["frames"], r["frames"][1:]))
                row = {"video": label, "frames": info.frames, "query": f"WHERE {where} LIMIT {limit}"
                       + (f" WITH (gap := {gap})" if gap else ""), "order": "proxy" if proxy else "random",
                       "exact_s": exact_s, "exact": how, "speedup": exact_s / r["seconds"], "rows": len(r["frames"]),
                       "rows_true": int(true), "spaced": spaced, **{k: v for k, v in r.items() if k != "frames"},
                       "returned": r["frames"], "machine": machine("cpu")}
                rows.append(row)
                Path(args.out).write_text(json.dumps(rows, indent=1))
                print(f"  {row['query']} [{row['order']}]: {r['seconds']:.1f} s ({row['speedup']:.0f}x), "
                      f"{row['rows_true']}/{row['rows']} true, {r['labelled']} labelled, {r['scored']} scored", flush=True)
    print()
    print("| video | query | order | s | × exact | rows true | labelled (true) | random picks | proxy scored | proxy s | reference s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['video']} | {r['query']} | {r['order']} | {r['seconds']:.1f} | {r['speedup']:.0f} | "
              f"{r['rows_true']}/{r['rows']} | {r['labelled']} ({r['labelled_true']}) | {r['random_picks']} | "
              f"{r['scored']} | {r['proxy_seconds']:.1f} | {r['reference_seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
