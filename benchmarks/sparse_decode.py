"""Labelling sparse frames: does decoding beside the reference cost more than its own work?

    python benchmarks/sparse_decode.py --video PATH [--frames 256] [--spacings 1,13,30] [--rounds 2]

Planning labels a random sample of the scan (one frame in 13 of the composed hour for its
training prefix at a 1% target, one in 30 at 5%), and its reference ran slower per frame than
the exact plan's on consecutive frames. This measures whether that is contention (the decoder's
thread stalling the reference's threads) or the decoding work itself (grabbing, or seeking over,
the frames between sample frames), with the same frames read three ways, the settings
alternating ``--rounds`` times:

- *beside*: ``engine/video.py: read_frames``, decoding in its thread, batches of 16 queued
  ahead, the reference (CenterNet, every torch thread) on each batch as it comes: what vql does;
- *alternately*: its decoding in this thread (``decode_batches``): a batch decoded, then
  scored, then the next decoded: nothing runs beside the reference;
- *decode only*: the frames read, nothing scored.

All three grab gaps up to the seek gap measured on the video and seek over longer ones, as vql's
reads do. Writes benchmarks/results/sparse_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
from vql.engine import video  # noqa: E402
from vql.engine.video import read_frames  # noqa: E402
from vql.udfs.registry import default_model  # noqa: E402


def one_pass(path: str, frames: np.ndarray, gap: int, model, mode: str) -> dict:
    """Seconds per frame: wall, and the reference's own."""
    source = (read_frames(path, frames, 16, seek_gap=gap) if mode == "beside" else
              video.decode_batches(Path(path), np.unique(frames), 16, gap))
    ref = 0.0
    t0 = time.perf_counter()
    for _, batch in source:
        if model is not None:
            t1 = time.perf_counter()
            model.detect(batch)
            ref += time.perf_counter() - t1
    wall = time.perf_counter() - t0
    return {"wall": wall / len(frames), "reference": ref / len(frames)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, default=256, help="frames labelled per pass")
    parser.add_argument("--spacings", default="1,13,30")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sparse_decode.json"))
    args = parser.parse_args()
    total = video.probe(args.video).frames
    gap = video.seek_gap(args.video, total)
    model = default_model()
    model.detect([np.zeros((576, 768, 3), np.uint8)] * 8)  # warm-up
    rng = np.random.default_rng(args.seed)
    rows = []
    for spacing in [int(s) for s in args.spacings.split(",")]:
        span = min(total, args.frames * spacing)
        start = int(rng.integers(0, total - span + 1))
        frames = (np.arange(start, start + args.frames) if spacing == 1 else
                  np.sort(rng.choice(np.arange(start, start + span), args.frames, replace=False)))
        runs: dict[str, list[dict]] = {"beside": [], "alternately": [], "decode only": []}
        for r in range(args.rounds):
            for mode in list(runs)[:: 1 - 2 * (r % 2)]:  # which runs first alternates
                runs[mode].append(one_pass(args.video, frames, gap, None if mode == "decode only" else model, mode))
        med = {mode: {k: statistics.median(x[k] for x in v) * 1e3 for k in ("wall", "reference")}
               for mode, v in runs.items()}
        rows.append({"spacing": spacing, "frames": [start, start + span - 1], "median_ms": med, "runs": runs})
    out = {"machine": machine("cpu"), "video": args.video, "video_frames": total, "seek_gap": gap,
           "frames_per_pass": args.frames, "rounds": args.rounds, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['machine']}; {Path(args.video).name} ({total} frames), {args.frames} frames per pass, median of "
          f"{args.rounds} alternating rounds; seek gap {gap}\n")
    print("| one frame per | wall ms/frame, beside | alternately | reference's own, beside | alternately "
          "| decode only | alternately − (reference's own + decode only) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        b, a, d = (r["median_ms"][m] for m in ("beside", "alternately", "decode only"))
        print(f"| {r['spacing']} | {b['wall']:.1f} | {a['wall']:.1f} | {b['reference']:.1f} | {a['reference']:.1f} "
              f"| {d['wall']:.1f} | {a['wall'] - a['reference'] - d['wall']:+.1f} |")


if __name__ == "__main__":
    main()
