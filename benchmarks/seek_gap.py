"""Sparse labelling with the seek gap measured on the video (``engine/video.py: seek_gap``, what
vql uses for samples) against the fixed default (``SEEK_GAP``), side by side in one run.

    python benchmarks/seek_gap.py --video PATH [--frames 240] [--spacings 30,8] [--rounds 2]

The loop is the sample pass's: ``read_frames`` in batches of 16 (decoding in its thread, grabbing
or seeking over the gaps) and the reference (CenterNet) on every batch. The frames are drawn
uniformly at random, one per ``spacing`` frames on average (30: the training prefix of the hour
at a 5% target; 8: its certification sample at 1%), from a stretch of the video. Per gap and
spacing: wall seconds per frame, the reference's seconds per frame and the wait for decoded
frames; the settings alternate, ``--rounds`` times each, and the table keeps each one's median.
Writes benchmarks/results/seek_gap.json.
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


def one_pass(path: str, frames: np.ndarray, model, gap: int) -> tuple[float, float, float]:
    """(wall, reference, waiting for frames), seconds per frame."""
    ref = 0.0
    t0 = time.perf_counter()
    for _, batch in read_frames(path, frames, 16, seek_gap=gap):
        t1 = time.perf_counter()
        model.detect(batch)
        ref += time.perf_counter() - t1
    wall = time.perf_counter() - t0
    return wall / len(frames), ref / len(frames), (wall - ref) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, default=240, help="frames labelled per pass")
    parser.add_argument("--spacings", default="30,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seek_gap.json"))
    args = parser.parse_args()
    total = video.probe(args.video).frames
    read, grab = video.decode_costs(args.video, start=total // 3, n=min(60, total // 4))
    seek = video.seek_cost(args.video, total)
    measured = video.seek_gap(args.video, total, (read, grab))
    model = default_model()
    model.detect([np.zeros((576, 768, 3), np.uint8)] * 8)  # warm-up
    rng = np.random.default_rng(args.seed)
    settings = {f"default ({video.SEEK_GAP})": video.SEEK_GAP, f"measured ({measured})": measured}
    rows = []
    for spacing in [int(s) for s in args.spacings.split(",")]:
        span = min(total, args.frames * spacing)
        start = int(rng.integers(0, total - span + 1))
        frames = np.sort(rng.choice(np.arange(start, start + span), args.frames, replace=False))
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in settings}
        for r in range(args.rounds):
            for name, gap in list(settings.items())[:: 1 - 2 * (r % 2)]:  # which runs first alternates
                runs[name].append(one_pass(args.video, frames, model, gap))
        med = {name: [statistics.median(x[i] for x in v) * 1e3 for i in range(3)] for name, v in runs.items()}
        (d_wall, d_ref, d_wait), (m_wall, m_ref, m_wait) = med.values()
        rows.append({"spacing": spacing, "frames": [start, start + span - 1],
                     "default_ms": {"wall": d_wall, "reference": d_ref, "wait": d_wait},
                     "measured_ms": {"wall": m_wall, "reference": m_ref, "wait": m_wait},
                     "speedup": d_wall / m_wall, "runs": runs})
    out = {"machine": machine("cpu"), "video": args.video, "video_frames": total, "seek_gap_measured": measured,
           "seek_gap_default": video.SEEK_GAP,
           "costs_ms": {"seek_and_read": None if seek is None else seek * 1e3, "read": read * 1e3, "grab": grab * 1e3},
           "frames_per_pass": args.frames, "rounds": args.rounds, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['machine']}; {Path(args.video).name} ({total} frames), {args.frames} random frames per pass, "
          f"median of {args.rounds} alternating rounds; seek gap measured {measured}, default {video.SEEK_GAP} "
          f"(ms: seek and read {(seek or float('nan')) * 1e3:.2f}, read {read * 1e3:.2f}, grab {grab * 1e3:.2f})\n")
    print("| one frame per | wall ms/frame, default gap | measured gap | × | reference ms/frame, default "
          "| measured | waiting ms/frame, default | measured |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, m = r["default_ms"], r["measured_ms"]
        print(f"| {r['spacing']} | {d['wall']:.1f} | {m['wall']:.1f} | {r['speedup']:.2f} | {d['reference']:.1f} "
              f"| {m['reference']:.1f} | {d['wait']:.1f} | {m['wait']:.1f} |")


if __name__ == "__main__":
    main()
