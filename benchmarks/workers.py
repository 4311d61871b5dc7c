"""Workers benchmark: ``SET workers = 1`` against ``= 2``, side by side in one run.

    python benchmarks/workers.py                      # vtest: exact labelling
    python benchmarks/workers.py --video other.mp4
    python benchmarks/workers.py --warm-db DB --query "SELECT ..." [--query ...]

Exact labelling: for each worker count, from an empty store, the exact count over the first
half of the video (the pool's start and the models' loading in each worker included), then over
the second half (the pool warm). The labels stored by each count are compared: they must be
identical.

Warm cascades (``--warm-db``: a database whose stored plans and labels answer the queries, e.g.
one benchmarks/queries.py left): each query runs on a fresh copy of it in a new session, with 1
and 2 workers alternately, ``--repeats`` times each; the median times, the answers (identical),
and the cores one process keeps busy (CPU seconds / wall seconds: what a second worker can add
on this machine is at most cores / that). Beside them, the decoding ceiling
(``queries.decode_ceiling``): the video's frames read by 1 and by 2 processes, each its half.

Writes JSON and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import ROOT, SHARED, decode_ceiling, machine  # noqa: E402
from vql.engine.video import probe  # noqa: E402

LABELS = "SELECT frame, class_id, score, x1, y1, x2, y2 FROM vql_labels ORDER BY frame, class_id, score, x1"


def run(path: str, count: int) -> tuple[dict, list]:
    half = probe(path).frames // 2
    with vql.connect(None, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{path}'")
        con.sql(f"SET workers = {count}")
        times = {}
        for name, where in (("cold", f"frame < {half}"), ("warm", f"frame >= {half}")):
            t = time.perf_counter()
            con.sql(f"SELECT COUNT(*) FROM cam WHERE contains('person') AND {where} WITH (exact)").fetchall()
            times[name] = time.perf_counter() - t
        return {"workers": count, "cold_s": times["cold"], "warm_s": times["warm"], "frames": 2 * half}, \
            con.duckdb.execute(LABELS).fetchall()


def warm(db: str, query: str, count: int | str) -> tuple[float, float, list]:
    """One warm run of ``query`` on a copy of ``db`` with ``count`` workers (or ``"ray"``: as Ray
    tasks on the Ray this process started): (seconds, cores this process kept busy, the rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copy(db, Path(tmp) / "warm.duckdb")
        with vql.connect(copy, progress=False) as con:
            con.sql("SET executor = 'ray'" if count == "ray" else f"SET workers = {count}")
            cpu, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            rows = con.sql(query).fetchall()
            seconds, end = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return seconds, (end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime) / seconds, sorted(rows)


def warm_rows(db: str, queries: list[str], repeats: int, with_ray: bool) -> list[dict]:
    counts = (1, 2, "ray") if with_ray else (1, 2)
    rows = []
    for query in queries:
        times: dict = {c: [] for c in counts}
        answers, busy = {}, []
        for _ in range(repeats):
            for count in counts:
                seconds, cores, got = warm(db, query, count)
                times[count].append(seconds)
                answers.setdefault(count, got)
                if count == 1:
                    busy.append(cores)
                print(f"  warm, workers {count}: {seconds:.1f} s ({query})", flush=True)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        ray_s = statistics.median(times["ray"]) if with_ray else None
        rows.append({"query": query, "one_worker_s": one, "two_workers_s": two, "ratio": one / two,
                     "ray_s": ray_s, "ray_vs_two_workers": two / ray_s if ray_s else None,
                     "times": {str(k): v for k, v in times.items()},
                     "identical_answers": all(a == answers[1] for a in answers.values()),
                     "cores_busy_one_process": statistics.median(busy),
                     "ratio_bound": (os.cpu_count() or 1) / statistics.median(busy), "answer_rows": len(answers[1])})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(SHARED / "data" / "vtest.avi"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "workers.json"))
    parser.add_argument("--warm-db", help="a database whose stored plans and labels answer --query (warm cascades)")
    parser.add_argument("--query", action="append", default=[], help="a query to run warm (repeatable)")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per worker count (alternating)")
    parser.add_argument("--ray", action="store_true", help="also run the warm queries as Ray tasks on a local Ray "
                        "(started first, on this machine's cores; pip install 'vql[ray]')")
    args = parser.parse_args(argv)
    print(f"machine: {machine('cpu')}")
    if args.warm_db:
        with vql.connect(args.warm_db, read_only=True, progress=False) as con:
            (video,) = con.duckdb.execute("SELECT path FROM vql_videos LIMIT 1").fetchone()
        if args.ray:
            from vql.engine.ray_backend import start

            start("local")
        rows = warm_rows(args.warm_db, args.query, args.repeats, args.ray)
        frames = probe(video).frames
        measured = decode_ceiling(video, frames, 2)
        fps = {1: measured["decode_fps"], 2: measured["decode_fps_parallel"]}
        for r in rows:
            r.update(machine=machine("cpu"), video=video, frames=frames, decode_fps_1=fps[1], decode_fps_2=fps[2],
                     warm_fps_2=frames / r["two_workers_s"], ceiling_fraction=frames / r["two_workers_s"] / fps[2])
        Path(args.out).write_text(json.dumps(rows, indent=1))
        print(f"\ndecoding ceiling ({frames} frames of {video}): 1 process {fps[1]:.0f} frames/s, 2 processes "
              f"{fps[2]:.0f} frames/s ({fps[2] / fps[1]:.2f}x)\n")
        print("| query | 1 worker s | 2 workers s | × 1 worker | cores one process keeps busy | bound on × | "
              "2 workers frames/s | × decoding ceiling | Ray-local s | Ray / 2 workers (throughput) | answers identical |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ray_cols = (f"{r['ray_s']:.1f} | {r['ray_vs_two_workers']:.2f}" if r["ray_s"] else "- | -")
            print(f"| `{r['query']}` | {r['one_worker_s']:.1f} | {r['two_workers_s']:.1f} | {r['ratio']:.2f} | "
                  f"{r['cores_busy_one_process']:.2f} | {r['ratio_bound']:.2f} | {r['warm_fps_2']:.0f} | "
                  f"{r['ceiling_fraction']:.2f} | {ray_cols} | {'yes' if r['identical_answers'] else 'NO'} |")
        return 0
    rows, labels = [], []
    for count in (1, 2):
        row, stored = run(args.video, count)
        rows.append(row)
        labels.append(stored)
        print(f"  workers {count}: first half {row['cold_s']:.1f} s (pool start included), second half "
              f"{row['warm_s']:.1f} s", flush=True)
    for row in rows:
        row.update(cold_ratio=rows[0]["cold_s"] / row["cold_s"], warm_ratio=rows[0]["warm_s"] / row["warm_s"],
                   identical_labels=labels[0] == labels[rows.index(row)], machine=machine("cpu"))
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print()
    print("| workers | first half s (pool start) | × 1 worker | second half s (warm) | × 1 worker | labels identical |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['cold_s']:.1f} | {r['cold_ratio']:.2f} | {r['warm_s']:.1f} | "
              f"{r['warm_ratio']:.2f} | {'yes' if r['identical_labels'] else 'NO'} |")
    return 0


if __name__ == "__main__":  # worker processes re-import this module
    sys.exit(main())
