"""Workers benchmark: the exact plan's labelling with ``SET workers = 1`` and ``= 2``, side by side
in one run.

    python benchmarks/workers.py                      # vtest
    python benchmarks/workers.py --video other.mp4

For each worker count, from an empty store: the exact count over the first half of the video
(the pool's start and the models' loading in each worker included), then over the second half
(the pool warm). The labels stored by each count are compared: they must be identical.

Writes JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import ROOT, SHARED, machine  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(SHARED / "data" / "vtest.avi"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "workers.json"))
    args = parser.parse_args(argv)
    print(f"machine: {machine('cpu')}")
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


if __name__ == "__main__":
    sys.exit(main())
