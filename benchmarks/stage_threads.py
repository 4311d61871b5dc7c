"""The cascade pass's cheap stages beside the decoding thread: a specialized CNN scoring on all
of torch's threads, or on one fewer (``engine/cascade.py: beside_decoding``, what vql does),
side by side in one run.

    python benchmarks/stage_threads.py [--video PATH] [--start 0] [--frames 795] [--shares 1.0,0.43]
                                       [--rounds 3] [--out PATH]

vtest by default (``benchmarks/results/stage_threads.json``); the composed hour's run was
``--video street_60min_0.1_seed1.mp4 --start 5000 --frames 4000 --out
benchmarks/results/stage_threads_hour.json``.

The loop is the cascade pass's: ``read_frames`` in batches of 64 (decoding in its thread),
``downscale`` to 64x64, then the pooled CNN the planner picks on the composed hour
(cnn2x16-p32@64, random weights: its cost does not depend on them) on a share of each batch (the
share a difference detector passes on to it; 0.43 on the hour at 5%). Per setting and share:
seconds of the whole pass per frame read, and of the CNN per frame it scored; the settings
alternate, ``--rounds`` times each, and the table keeps each one's median. Writes ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
from vql.engine.cascade import beside_decoding  # noqa: E402
from vql.engine.video import read_frames  # noqa: E402
from vql.engine.views import downscale  # noqa: E402
from vql.planner.specialized import Architecture, SpecializedCNN, TrainedModel  # noqa: E402

SETTINGS = {"all threads": contextlib.nullcontext, "one fewer (vql)": beside_decoding}


def one_pass(video: str, frames: np.ndarray, model: TrainedModel, share: float, setting) -> tuple[float, float]:
    """(pass seconds per frame read, CNN seconds per frame scored)."""
    cnn = 0.0
    scored = 0
    t0 = time.perf_counter()
    for _, batch in read_frames(video, frames, 64):
        small = downscale(batch, 64)
        k = max(1, round(len(small) * share))
        t1 = time.perf_counter()
        with setting():
            model.scores(small[:k])
        cnn += time.perf_counter() - t1
        scored += k
    return (time.perf_counter() - t0) / len(frames), cnn / scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "vtest.avi"))
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=795)
    parser.add_argument("--shares", default="1.0,0.43")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stage_threads.json"))
    args = parser.parse_args()
    arch = Architecture(2, 16, 32, 64, "pool")
    model = TrainedModel(arch, SpecializedCNN(arch), np.full((64, 64, 3), 128, np.float32), 0.0)
    frames = np.arange(args.start, args.start + args.frames)
    model.scores(np.zeros((64, 64, 64, 3), np.uint8))  # warm-up
    rows = []
    for share in [float(s) for s in args.shares.split(",")]:
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
        for r in range(args.rounds):
            order = list(SETTINGS.items())[:: 1 - 2 * (r % 2)]  # which runs first alternates
            for name, setting in order:
                runs[name].append(one_pass(args.video, frames, model, share, setting))
        med = {name: (statistics.median(p for p, _ in v), statistics.median(c for _, c in v)) for name, v in runs.items()}
        (all_pass, all_cnn), (fewer_pass, fewer_cnn) = med["all threads"], med["one fewer (vql)"]
        rows.append({"share_scored": share, "pass_ms_all_threads": all_pass * 1e3, "pass_ms_one_fewer": fewer_pass * 1e3,
                     "pass_speedup": all_pass / fewer_pass, "cnn_ms_all_threads": all_cnn * 1e3,
                     "cnn_ms_one_fewer": fewer_cnn * 1e3, "runs": {k: v for k, v in runs.items()}})
    out = {"machine": machine("cpu"), "threads": torch.get_num_threads(), "video": args.video,
           "frames": [args.start, args.start + args.frames - 1], "rounds": args.rounds, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['machine']}; {Path(args.video).name} frames {args.start}..{args.start + args.frames - 1}, "
          f"median of {args.rounds} alternating rounds\n")
    print("| share scored | pass ms/frame, all threads | one fewer (vql) | × | CNN ms/scored frame, all | one fewer |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['share_scored']:.2f} | {r['pass_ms_all_threads']:.3f} | {r['pass_ms_one_fewer']:.3f} "
              f"| {r['pass_speedup']:.2f} | {r['cnn_ms_all_threads']:.3f} | {r['cnn_ms_one_fewer']:.3f} |")


if __name__ == "__main__":
    main()
