"""A cascade pass's decoding in one thread or in two (``engine/video.py: read_frames(readers=...)``),
side by side in one run.

    python benchmarks/readers.py --video PATH [--start 5000] [--frames 6000]
                                 [--db DB --name v --query SQL] [--rounds 3] [--out PATH]

Two measurements, the settings alternating, ``--rounds`` times each; the table keeps each one's
median and range:

- *decoding*: ``read_frames`` of ``--frames`` consecutive frames from ``--start``, in batches of 64,
  nothing else done with them (ms per frame);
- *warm pass* (with ``--db``): the stored plan of ``--query`` over video ``--name`` run again after
  ``DROP RESULTS`` in a new session, on a copy of ``--db`` (labels and plan reused, as the query
  benchmark's warm runs), with ``READERS`` at 1 and at 2: seconds, CPU seconds of the process, the
  cores that makes, and the rows, which must be the same in both.

The composed hour's run: ``--video /tmp/vql_bench/street_60min_0.1_seed1.mp4 --db
/tmp/vql_bench/composed_60_min_seed_1_q.duckdb --query "SELECT frame FROM v WHERE
contains('person') WITH (fpr := 0.05, fnr := 0.05)"`` after ``queries.py --minutes 60`` (its
store then holds the 5% plans). Writes ``--out`` (default ``benchmarks/results/readers.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
import vql  # noqa: E402
from vql.engine import video  # noqa: E402

READERS = (1, 2)


def decode(path: str, frames: np.ndarray, readers: int) -> float:
    """Milliseconds per frame to read ``frames`` with ``readers`` threads."""
    t = time.perf_counter()
    n = sum(len(idx) for idx, _ in video.read_frames(path, frames, 64, readers=readers))
    assert n == len(frames)
    return (time.perf_counter() - t) / n * 1000


def warm(db: Path, name: str, query: str, readers: int) -> tuple[float, float, list]:
    """(seconds, CPU seconds, sorted rows) of the stored plan run again with ``readers`` at most."""
    video.READERS = readers
    con = vql.connect(db, progress=False)
    try:
        con.sql(f"DROP RESULTS {name}")
        c0, t = os.times(), time.perf_counter()
        rows = sorted(con.sql(query).fetchall())
        seconds, c1 = time.perf_counter() - t, os.times()
    finally:
        con.close()
    return seconds, (c1.user - c0.user) + (c1.system - c0.system), rows


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--start", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=6000)
    parser.add_argument("--db", help="a vql database whose store holds a plan for --query")
    parser.add_argument("--name", default="v", help="the video's name in --db")
    parser.add_argument("--query", default="SELECT frame FROM v WHERE contains('person') WITH (fpr := 0.05, fnr := 0.05)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "readers.json"))
    args = parser.parse_args()
    frames = np.arange(args.start, args.start + args.frames)
    dec: dict[int, list[float]] = {r: [] for r in READERS}
    runs: dict[int, list[tuple[float, float]]] = {r: [] for r in READERS}
    answers: dict[int, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = None
        if args.db:
            db = Path(tmp) / "copy.duckdb"
            shutil.copy(args.db, db)
        for _ in range(args.rounds):
            for r in READERS:
                dec[r].append(decode(args.video, frames, r))
                if db is not None:
                    seconds, cpu, rows = warm(db, args.name, args.query, r)
                    runs[r].append((seconds, cpu))
                    if answers.setdefault(r, rows) != rows:
                        raise AssertionError("a warm run's rows differ from its first")
    if len(answers) == len(READERS) and answers[1] != answers[2]:
        raise AssertionError("the warm runs' rows differ between one and two readers")
    result = {"machine": machine("cpu"), "cores": os.cpu_count(), "video": args.video, "frames": args.frames,
              "start": args.start, "rounds": args.rounds, "query": args.query if db else None,
              "rows": len(answers.get(1, [])) if db else None,
              "decode_ms_per_frame": {r: spread(v) for r, v in dec.items()},
              "warm_s": {r: spread([s for s, _ in v]) for r, v in runs.items()} if db else None,
              "warm_cores": {r: spread([c / s for s, c in v]) for r, v in runs.items()} if db else None}
    print("| readers | decoding ms/frame | warm pass s | cores busy |\n|---|---|---|---|")
    for r in READERS:
        d = result["decode_ms_per_frame"][r]
        line = f"| {r} | {d['median']:.3f} [{d['min']:.3f}, {d['max']:.3f}] |"
        if db:
            w, c = result["warm_s"][r], result["warm_cores"][r]
            line += f" {w['median']:.2f} [{w['min']:.2f}, {w['max']:.2f}] | {c['median']:.2f} |"
        else:
            line += " — | — |"
        print(line)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
