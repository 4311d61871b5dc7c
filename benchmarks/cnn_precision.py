"""The specialized CNNs in float32 against bfloat16: training and scoring speed, side by side.

    python benchmarks/cnn_precision.py [--rounds 3]

For each CNN the planner trains (``planner/cascade.py: TRAINED``), in rounds (the precision that
runs first alternating): the
training's seconds per step (``planner/specialized.py: train``, batches of 64, on 2 threads) and
the scoring's ms/frame (``TrainedModel.scores``, batches of 64) on 1 and 2 threads, on random
frames (speed does not depend on content). Medians over rounds, with their range. How well the
models separate in each precision is ``benchmarks/stages.py --precisions float32,bfloat16``'s
question, on real labels. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
from vql.planner.cascade import TRAINED  # noqa: E402
from vql.planner.specialized import CANDIDATES, PRECISIONS, Architecture, default_precision, train  # noqa: E402


def one_round(shape: tuple, precision: str, steps: int, frames: int) -> dict:
    arch = Architecture(*shape, precision=precision)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (max(frames, 64 * steps), arch.size, arch.size, 3), dtype=np.uint8)
    y = rng.random(len(x)) < 0.1
    torch.set_num_threads(2)
    train(arch, x[:128], y[:128], min_steps=2, min_epochs=1, max_steps=2)  # warm-up
    model = train(arch, x[:64 * steps], y[:64 * steps], min_steps=steps, min_epochs=1, max_steps=steps)
    row = {"train_ms_per_step": model.train_seconds / steps * 1e3}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model.scores(x[:128])  # warm-up
        t = time.perf_counter()
        model.scores(x[:frames])
        row[f"score_ms_{threads}_threads"] = (time.perf_counter() - t) / frames * 1e3
    torch.set_num_threads(2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="training steps timed per round (the planner's least)")
    parser.add_argument("--frames", type=int, default=2048, help="frames scored per round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cnn_precision.json"))
    args = parser.parse_args(argv)
    runs: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for shape in CANDIDATES[:TRAINED]:
            for precision in list(PRECISIONS)[::1 if r % 2 == 0 else -1]:  # which runs first alternates
                runs.setdefault((Architecture(*shape).name, precision), []).append(
                    one_round(shape, precision, args.steps, args.frames))
    keys = ("train_ms_per_step", "score_ms_1_threads", "score_ms_2_threads")
    rows = [{"model": name, "precision": precision,
             **{k: float(np.median([r[k] for r in rs])) for k in keys},
             **{f"{k}_range": [float(min(r[k] for r in rs)), float(max(r[k] for r in rs))] for k in keys}}
            for (name, precision), rs in runs.items()]
    for r in rows:
        fp32 = next(o for o in rows if o["model"] == r["model"] and o["precision"] == "float32")
        r.update({f"{k}_x_float32": fp32[k] / r[k] for k in keys})
    print(f"\n{machine('cpu')}; medians of {args.rounds} alternating rounds [range]; the planner's precision "
          f"here: {default_precision()}\n")
    print("| model | precision | training ms/step (2 threads) | scoring ms/frame, 1 thread | scoring ms/frame, 2 threads "
          "| speed-up over float32: training, scoring 1, scoring 2 |\n|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]:.1f} [{r[k + '_range'][0]:.1f}, {r[k + '_range'][1]:.1f}]" if k.startswith("train")
                 else f"{r[k]:.3f} [{r[k + '_range'][0]:.3f}, {r[k + '_range'][1]:.3f}]" for k in keys]
        gains = ", ".join(f"{r[k + '_x_float32']:.2f}x" for k in keys)
        print(f"| {r['model']} | {r['precision']} | " + " | ".join(cells) + f" | {gains} |")
    Path(args.out).write_text(json.dumps({"machine": machine("cpu"), "torch": torch.__version__, "rounds": args.rounds,
                                          "steps": args.steps, "frames": args.frames, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
