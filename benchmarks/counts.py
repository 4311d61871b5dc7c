"""COUNT benchmark: ``SELECT COUNT(*) ... WITH (error := e)`` against the exact count, cold, side by
side in one run.

    python benchmarks/counts.py --truth-db /tmp/vql_bench/hour_full.duckdb   # vtest + the composed hour
    python benchmarks/counts.py --minutes 0                                  # vtest only

Per video: the exact plan's time (vtest: run in full; the composed hour: extrapolated from the
reference's seconds per frame measured on random frames in this run plus a measured full
decode) and the exact count (vtest: from that run; the hour: from ``--truth-db``, a vql database
where every frame of the video is labelled, e.g. by an earlier exact query); then each count
from an empty store, several times with different seeds of vql's random order: its time, the
speed-up, the interval and whether it holds the exact count.

Writes JSON (a list of rows) and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import judged_bench, judged_videos, machine, seeded_estimate  # noqa: E402

QUERIES = (("contains('person')", 0.1), ("object_count('person') >= 2", 0.25))  # (WHERE, relative error)


def exact_counts(db: str, video: str) -> dict[str, int]:
    with vql.connect(db, progress=False, read_only=True) as con:
        return {w: con.sql(f"SELECT COUNT(*) FROM {video} WHERE {w} WITH (exact)").fetchall()[0][0] for w, _ in QUERIES}


def main(argv: list[str] | None = None) -> int:
    args, videos = judged_bench(__doc__, "counts", argv, draws=True)
    rows = []
    for label, path, info, exact_s, how, (db, video) in judged_videos(args, videos, "counts"):
        truth = exact_counts(db, video)
        print(f"{label}: {info.frames} frames; exact {exact_s:.1f} s ({how}); exact counts {truth}")
        for where, error in QUERIES:
            for draw in range(args.draws):
                r = seeded_estimate(args.workdir / "counts_q.duckdb", path,
                                    f"SELECT COUNT(*) FROM cam WHERE {where} WITH (error := {error})", draw)
                row = {"video": label, "frames": info.frames, "query": f"COUNT(*) WHERE {where}", "error": error,
                       "draw": draw, "exact_s": exact_s, "exact_plan": how, "true_count": truth[where],
                       "speedup": exact_s / r["seconds"], "covered": r["low"] <= truth[where] <= r["high"],
                       **r, "machine": machine("cpu")}
                rows.append(row)
                Path(args.out).write_text(json.dumps(rows, indent=1, default=float))
                print(f"  {row['query']} ±{error:g} draw {draw}: {r['count']} [{r['low']}, {r['high']}] "
                      f"(true {truth[where]}), {r['seconds']:.1f} s ({row['speedup']:.1f}x), "
                      f"{r['pilot'] + r['sampled']} labelled", flush=True)
    print()
    print("| video | query | ± | draw | count [95% interval] | true | holds | labelled | s | × exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['video']} | {r['query']} | {r['error']:g} | {r['draw']} | {r['count']:,} [{r['low']:,}, "
              f"{r['high']:,}] | {r['true_count']:,} | {'yes' if r['covered'] else 'NO'} | "
              f"{r['pilot'] + r['sampled']:,} | {r['seconds']:.1f} | {r['speedup']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
