"""Many cameras: one query over a video set against the same query on each camera alone.

    python benchmarks/cameras.py                       # 8 composed cameras of 3 minutes, 5%
    python benchmarks/cameras.py --cameras 4 --minutes 2 --target 0.01

Composes ``--cameras`` videos from vtest (seeds 1..N, not timed; reused when present in
``--workdir``), registers them as one set (``CREATE VIDEO cams FROM '.../cam_*.mp4'``), and runs
``SELECT video, frame FROM cams WHERE contains('person') WITH (fpr := t, fnr := t)`` from an empty
store. Then, each camera alone, from its own empty store: ``SELECT frame FROM cam WHERE
contains('person')`` with the same targets. It reports the set's time against the sum of the
cameras' times, whether every camera's answer through the set equals its answer alone, and per
camera the plan that ran and the certified bounds.

Writes JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import ROOT, SHARED, machine  # noqa: E402
from vql.engine.compose import ComposeSpec, build_library, compose  # noqa: E402
from vql.udfs.tfjs_detector import centernet  # noqa: E402


def cameras(workdir: Path, count: int, minutes: float) -> list[Path]:
    paths = [workdir / f"cam_{minutes:g}min_seed{seed}.mp4" for seed in range(1, count + 1)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"composing {len(missing)} cameras (not timed)", file=sys.stderr)
        library = build_library(SHARED / "data" / "vtest.avi", centernet())
        for p in missing:
            compose(library, p, ComposeSpec(minutes=minutes, presence=0.1, seed=int(p.stem.split("seed")[1])))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "vql_cameras"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cameras.json"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = cameras(workdir, args.cameras, args.minutes)
    pattern = str(workdir / f"cam_{args.minutes:g}min_seed*.mp4")
    target = f"WITH (fpr := {args.target}, fnr := {args.target})"
    print(f"machine: {machine('cpu')}")
    with tempfile.TemporaryDirectory() as tmp:
        with vql.connect(str(Path(tmp) / "set.duckdb"), progress=False) as con:
            con.sql(f"CREATE VIDEO cams FROM '{pattern}'")
            members = con.store.video_set("cams")[1]
            t = time.perf_counter()
            result = con.sql(f"SELECT video, frame FROM cams WHERE contains('person') {target}")
            set_s = time.perf_counter() - t
            through_set: dict[str, set[int]] = {m: set() for m in members}
            for video, frame in result.fetchall():
                through_set[video].add(frame)
            summary = {row["video"]: row for row in json.loads(con.duckdb.execute(
                "SELECT predicates FROM vql_queries ORDER BY query_id DESC LIMIT 1").fetchone()[0])}
        rows = []
        for member, path in zip(members, sorted(paths, key=str)):
            with vql.connect(str(Path(tmp) / f"{member}.duckdb"), progress=False) as con:
                con.sql(f"CREATE VIDEO cam FROM '{path}'")
                t = time.perf_counter()
                alone = {f for (f,) in con.sql(f"SELECT frame FROM cam WHERE contains('person') {target}").fetchall()}
                seconds = time.perf_counter() - t
            s = summary[member]
            rows.append({"camera": member, "path": str(path), "alone_s": seconds, "frames_true_alone": len(alone),
                         "frames_true_in_set": len(through_set[member]), "equal": alone == through_set[member],
                         "strategy": s["query_strategy"], "fpr_bound": s["fpr_bound"], "fnr_bound": s["fnr_bound"],
                         "confidence": s["confidence"]})
            print(f"  {member}: alone {seconds:.1f} s, {len(alone)} frames, equal {alone == through_set[member]}",
                  flush=True)
    total = sum(r["alone_s"] for r in rows)
    out = {"machine": machine("cpu"), "cameras": args.cameras, "minutes": args.minutes, "target": args.target,
           "set_s": set_s, "cameras_alone_s": total, "all_equal": all(r["equal"] for r in rows), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\nset of {args.cameras}: {set_s:.1f} s; the cameras one by one: {total:.1f} s; every camera's answer "
          f"equal: {'yes' if out['all_equal'] else 'NO'}\n")
    print("| camera | strategy | frames true (set / alone) | equal | fpr bound | fnr bound | alone s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['camera']} | {r['strategy']} | {r['frames_true_in_set']} / {r['frames_true_alone']} | "
              f"{'yes' if r['equal'] else 'NO'} | {r['fpr_bound']:.4f} | {r['fnr_bound']:.4f} | {r['alone_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
