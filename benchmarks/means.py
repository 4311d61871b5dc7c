"""AVG benchmark: ``SELECT AVG(object_count('person')) ... WITH (error := e)`` against the exact
average, cold, side by side in one run.

    python benchmarks/means.py --truth-db /tmp/vql_bench/hour_full.duckdb   # vtest + the composed hour
    python benchmarks/means.py --minutes 0                                  # vtest only

Per video: the exact plan's time (as in ``benchmarks/counts.py``: vtest run in full, the hour
extrapolated) and the exact average, sum and largest count (from a database where every frame is
labelled); then each estimate from an empty store, with the model's own limit on a frame's count
(CenterNet reports at most 100 objects) and with a stated ``max_count := 20`` (vtest's street
never holds that many people; fixed before any run), several times with different seeds of vql's
random order: its time, the speed-up, the interval and whether it holds the exact average.

Writes JSON (a list of rows) and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import judged_bench, judged_videos, machine, seeded_estimate  # noqa: E402

VALUE = "object_count('person')"
QUERIES = ((0.1, 20), (0.1, None))  # (relative error, max_count)


def exact_average(db: str, video: str) -> tuple[float, int, int]:
    with vql.connect(db, progress=False, read_only=True) as con:
        avg, total, most = con.sql(f"SELECT AVG({VALUE}), SUM({VALUE}), MAX({VALUE}) FROM {video} WITH (exact)"
                                   ).fetchall()[0]
    return float(avg), int(total), int(most)


def main(argv: list[str] | None = None) -> int:
    args, videos = judged_bench(__doc__, "means", argv, draws=True)
    rows = []
    for label, path, info, exact_s, how, (db, video) in judged_videos(args, videos, "means"):
        avg, total, most = exact_average(db, video)
        print(f"{label}: {info.frames} frames; exact {exact_s:.1f} s ({how}); exact average {avg:.4f}, sum {total}, "
              f"largest count {most}")
        for error, cap in QUERIES:
            for draw in range(args.draws):
                options = f"error := {error}" + (f", max_count := {cap}" if cap else "")
                r = seeded_estimate(args.workdir / "means_q.duckdb", path,
                                    f"SELECT AVG({VALUE}) FROM cam WITH ({options})", draw)
                row = {"video": label, "query": f"AVG({VALUE})", "error": error, "max_count": cap, "draw": draw,
                       "exact_s": exact_s, "exact_plan": how, "true_avg": avg, "true_sum": total, "true_max": most,
                       "speedup": exact_s / r["seconds"], "covered": r["low"] <= avg <= r["high"], **r,
                       "machine": machine("cpu")}
                rows.append(row)
                Path(args.out).write_text(json.dumps(rows, indent=1, default=float))
                print(f"  ±{error:g}, cap {r['cap']}, draw {draw}: {r['mean']:.4f} [{r['low']:.4f}, {r['high']:.4f}] "
                      f"(true {avg:.4f}), {r['seconds']:.1f} s ({row['speedup']:.1f}x), {r['sampled']} labelled",
                      flush=True)
    print()
    print("| video | query | ± | cap | draw | average [95% interval] | true | holds | labelled | s | × exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cap = f"max_count {r['max_count']}" if r["max_count"] else f"model ({r['cap']})"
        print(f"| {r['video']} | {r['query']} | {r['error']:g} | {cap} | {r['draw']} | {r['mean']:.4f} "
              f"[{r['low']:.4f}, {r['high']:.4f}] | {r['true_avg']:.4f} | {'yes' if r['covered'] else 'NO'} | "
              f"{r['sampled']:,} | {r['seconds']:.1f} | {r['speedup']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
