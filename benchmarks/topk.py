"""Top-k benchmark: ``ORDER BY object_count('person') DESC LIMIT 10`` against the exact scan, cold,
side by side in one run.

    python benchmarks/topk.py --truth-db /tmp/vql_bench/hour_full.duckdb   # vtest + the composed hour
    python benchmarks/topk.py --minutes 0                                  # vtest only

Per video: the exact plan's time (vtest: run in full; the composed hour: extrapolated from the
reference's seconds per frame measured on random frames in this run plus a measured full
decode) and the exact top-10 counts (vtest: from that run; the hour: from ``--truth-db``, a vql
database where every frame of the video is labelled); then the top-k search from an empty store
at each ``miss``: its time, the speed-up, whether its counts match the exact top 10 (and each
returned frame's count the truth database's), the frames it labelled (and why), and what it
certified: at most ``bound`` of the frames it did not label count more than its last row.

Writes JSON (a list of rows) and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import cold_query, judged_bench, judged_videos, machine  # noqa: E402

K = 10
BY = "object_count('person')"
MISSES = (None, 0.001)  # None: the default


def exact_counts(db: str, video: str) -> dict[int, int]:
    """Every frame's count, from a database where every frame is labelled (read through vql)."""
    with vql.connect(db, progress=False, read_only=True) as con:
        return dict(con.sql(f"SELECT frame, {BY} FROM {video} WITH (exact)").fetchall())


def main(argv: list[str] | None = None) -> int:
    args, videos = judged_bench(__doc__, "topk", argv)
    rows = []
    for label, path, info, exact_s, how, (db, video) in judged_videos(args, videos, "topk"):
        truth = exact_counts(db, video)
        best = sorted(truth.values(), reverse=True)[:K]
        print(f"{label}: {info.frames} frames; exact {exact_s:.1f} s ({how}); exact top {K} counts {best}")
        for miss in MISSES:
            option = f" WITH (miss := {miss})" if miss else ""
            result, seconds = cold_query(args.workdir / "topk_q.duckdb", path,
                                         f"SELECT frame, {BY} AS n FROM cam ORDER BY n DESC LIMIT {K}{option}")
            returned = result.fetchall()
            (st,) = result.metadata["topk"].values()
            row = {"video": label, "frames": info.frames, "query": f"ORDER BY {BY} DESC LIMIT {K}{option}",
                   "exact_s": exact_s, "exact_plan": how, "seconds": seconds, "speedup": exact_s / seconds,
                   "exact_top": best, "returned": returned, "counts_match": [n for _, n in returned] == best,
                   "frames_true": all(truth[f] == n for f, n in returned), **st, "machine": machine("cpu")}
            rows.append(row)
            Path(args.out).write_text(json.dumps(rows, indent=1, default=float))
            print(f"  {row['query']}: counts {[n for _, n in returned]} ({'match' if row['counts_match'] else 'DIFFER'}), "
                  f"{seconds:.1f} s ({row['speedup']:.1f}x), {st['labelled']} labelled, "
                  f"bound {st['bound']} of {st['unlabelled']}", flush=True)
    print()
    print("| video | query | s | × exact | top-10 counts match | labelled (neighbours / proxy / random) | proxy s | "
          "certified: frames not labelled above the last row |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cert = "exact (every frame labelled)" if r["exact"] else \
            f"≤ {r['bound']:,} of {r['unlabelled']:,} ({r['share_bound']:.2%}) at {r['confidence']:.0%}"
        print(f"| {r['video']} | {r['query']} | {r['seconds']:.1f} | {r['speedup']:.1f} | "
              f"{'yes' if r['counts_match'] and r['frames_true'] else 'NO'} | {r['labelled']:,} ({r['neighbour_picks']} / "
              f"{r['proxy_picks']} / {r['sampled']:,}) | {r['proxy_seconds']:.1f} | {cert} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
