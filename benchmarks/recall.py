"""Recall benchmark: ``SELECT frame FROM cam WHERE ... WITH (recall := r)`` against the exact scan,
cold, side by side in one run.

    python benchmarks/recall.py --truth-db /tmp/vql_bench/hour_full.duckdb   # vtest + the composed hour
    python benchmarks/recall.py --minutes 0                                  # vtest only

Per video: the exact plan's time (vtest: run in full; the composed hour: extrapolated from the
reference's seconds per frame measured on random frames in this run plus a measured full
decode) and the exact answer (vtest: from that run; the hour: from ``--truth-db``, a vql
database where every frame of the video is labelled); then each selection from an empty store:
its time, the speed-up, the reference calls, and the audit against the exact answer (recall and
precision over every frame of the video), next to the recall vql certified and the precision
interval it reported.

Writes JSON (a list of rows) and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import cold_query, judged_bench, judged_videos, machine  # noqa: E402

QUERIES = (("contains('person')", 0.9), ("object_count('person') >= 2", 0.9))  # (WHERE, recall)


def exact_answers(db: str, video: str) -> dict[str, set[int]]:
    with vql.connect(db, progress=False, read_only=True) as con:
        return {w: {r[0] for r in con.sql(f"SELECT frame FROM {video} WHERE {w} WITH (exact)").fetchall()}
                for w, _ in QUERIES}


def main(argv: list[str] | None = None) -> int:
    args, videos = judged_bench(__doc__, "recall", argv)
    rows = []
    for label, path, info, exact_s, how, (db, video) in judged_videos(args, videos, "recall"):
        truth = exact_answers(db, video)
        print(f"{label}: {info.frames} frames; exact {exact_s:.1f} s ({how}); true frames "
              f"{ {w: len(t) for w, t in truth.items()} }")
        for where, recall in QUERIES:
            sql = f"SELECT frame FROM cam WHERE {where} WITH (recall := {recall})"
            result, seconds = cold_query(args.workdir / "recall_q.duckdb", path, sql)
            returned = {r[0] for r in result.fetchall()}
            (st,) = result.metadata["recall"].values()
            true = truth[where]
            hit = len(returned & true)
            row = {"video": label, "frames": info.frames, "query": f"WHERE {where} WITH (recall := {recall})",
                   "exact_s": exact_s, "exact_plan": how, "seconds": seconds, "speedup": exact_s / seconds,
                   "true_frames": len(true), "returned": len(returned),
                   "audit_recall": hit / max(len(true), 1), "audit_precision": hit / max(len(returned), 1),
                   **st, "machine": machine("cpu")}
            rows.append(row)
            Path(args.out).write_text(json.dumps(rows, indent=1, default=float))
            print(f"  {row['query']}: recall {row['audit_recall']:.3f} (certified >= {st['recall_bound']:.3f}), "
                  f"precision {row['audit_precision']:.3f} (reported {st['precision']:.3f} [{st['precision_low']:.3f}, "
                  f"{st['precision_high']:.3f}]), {st['labelled']} labelled, {seconds:.1f} s ({row['speedup']:.1f}x)",
                  flush=True)
    print()
    print("| video | query | reference calls | returned (true frames) | recall: audit / certified ≥ | precision: audit "
          "/ reported [95%] | s | × exact |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['video']} | {r['query']} | {r['labelled']:,} | {r['returned']:,} ({r['true_frames']:,}) | "
              f"{r['audit_recall']:.3f} / {r['recall_bound']:.3f} | {r['audit_precision']:.3f} / {r['precision']:.3f} "
              f"[{r['precision_low']:.3f}, {r['precision_high']:.3f}] | {r['seconds']:.1f} | {r['speedup']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
