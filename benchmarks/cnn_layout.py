"""The specialized CNNs' memory layout: channels-last weights (what vql uses) against the
default NCHW layout, side by side in one run, for each architecture the planner searches.

    python benchmarks/cnn_layout.py [--frames 2048] [--steps 200] [--repeats 3]

Per architecture: scoring time per frame (``TrainedModel.scores`` in batches of 64, vql's, and
of 256, its earlier default; best of 2 rounds of ``--repeats``, the layouts interleaved; and the channels-last
net fed the NCHW-contiguous input ``to_tensor`` made before, whose scores must be equal), the largest
difference between the two layouts' scores on the same weights (random ones, and the weights
``train`` left), and the seconds ``train`` takes for ``--steps`` steps on the same random frames
in each layout (which layout trains first alternates; one short training warms up first).
Writes benchmarks/results/cnn_layout.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
from vql.planner import specialized  # noqa: E402
from vql.planner.specialized import CANDIDATES, Architecture, SpecializedCNN, TrainedModel  # noqa: E402


def best_ms(fn, frames: int, repeats: int) -> float:
    """Best of ``repeats`` timings of ``fn()``, in ms per frame."""
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return min(runs) / frames * 1e3


def nchw(net: SpecializedCNN) -> SpecializedCNN:
    return net.to(memory_format=torch.contiguous_format)


CHANNELS_LAST_INPUT = TrainedModel.to_tensor  # vql's, kept while ``train_seconds`` swaps it


def nchw_tensor(model: TrainedModel, small: np.ndarray) -> torch.Tensor:
    """``to_tensor``'s input made NCHW-contiguous, as it was before."""
    return CHANNELS_LAST_INPUT(model, small).contiguous()


def nchw_input(model: TrainedModel) -> TrainedModel:
    """The same model fed NCHW-contiguous input."""
    out = copy.copy(model)
    out.to_tensor = lambda small: nchw_tensor(model, small)
    return out


def train_seconds(arch: Architecture, x: np.ndarray, y: np.ndarray, steps: int, layout) -> tuple[float, TrainedModel]:
    """The seconds ``train`` takes for ``steps`` steps with its net put in ``layout`` (an NCHW net
    fed NCHW input), and its model."""
    made = specialized.SpecializedCNN
    specialized.SpecializedCNN = lambda a: layout(made(a))
    if layout is nchw:
        TrainedModel.to_tensor = nchw_tensor
    try:
        model = specialized.train(arch, x, y, min_steps=steps, max_steps=steps)
    finally:
        specialized.SpecializedCNN = made
        TrainedModel.to_tensor = CHANNELS_LAST_INPUT
    return model.train_seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cnn_layout.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for shape in CANDIDATES:
        arch = Architecture(*shape)
        x = rng.integers(0, 256, (args.frames, arch.size, arch.size, 3), dtype=np.uint8)
        y = rng.random(args.frames) < 0.1
        torch.manual_seed(0)
        last = TrainedModel(arch, SpecializedCNN(arch), x.mean(axis=0, dtype=np.float32), 0.0)
        first = nchw_input(TrainedModel(arch, nchw(copy.deepcopy(last.net)), last.mean, 0.0))
        gap = float(np.abs(first.scores(x[:256]) - last.scores(x[:256])).max())
        old_input = nchw_input(last)
        input_gap = float(np.abs(old_input.scores(x) - last.scores(x)).max())
        score = {}
        for batch, variants in ((64, (("nchw", first), ("channels_last", last), ("nchw_input", old_input))),
                                (256, (("nchw", first), ("channels_last", last)))):
            for name, m in variants * 2:  # interleaved, best of both rounds, every variant as often
                ms = best_ms(lambda: m.scores(x, batch), len(x), args.repeats)
                score[name, batch] = min(score.get((name, batch), ms), ms)
        if not rows:
            train_seconds(arch, x, y, 20, nchw)  # warm-up: the process's first backward passes
        layouts = [("nchw", nchw), ("channels_last", lambda net: net)]
        runs = {name: train_seconds(arch, x, y, args.steps, put) for name, put in layouts[::1 - 2 * (len(rows) % 2)]}
        train_s = {name: seconds for name, (seconds, _) in runs.items()}
        trained = runs["channels_last"][1]
        trained_nchw = nchw_input(TrainedModel(arch, nchw(copy.deepcopy(trained.net)), trained.mean, 0.0))
        trained_gap = float(np.abs(trained.scores(x[:256]) - trained_nchw.scores(x[:256])).max())
        rows.append({"arch": arch.name, "score_ms_nchw": score["nchw", 64], "score_ms_channels_last": score["channels_last", 64],
                     "score_speedup": score["nchw", 64] / score["channels_last", 64],
                     "score_ms_nchw_input": score["nchw_input", 64], "max_score_difference_input": input_gap,
                     "score_ms_nchw_256": score["nchw", 256], "score_ms_channels_last_256": score["channels_last", 256],
                     "max_score_difference": gap, "max_score_difference_trained": trained_gap,
                     "train_s_nchw": train_s["nchw"], "train_s_channels_last": train_s["channels_last"],
                     "train_speedup": train_s["nchw"] / train_s["channels_last"]})
    out = {"machine": machine("cpu"), "threads": torch.get_num_threads(), "frames": args.frames, "steps": args.steps,
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['machine']}; scoring: best of 2 x {args.repeats}; training: {args.steps} steps of 64\n")
    print("| arch | score ms/frame NCHW @64 | channels-last @64 | × | NCHW @256 | channels-last @256 "
          "| max score diff (random, trained) | train s NCHW | channels-last | × |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['score_ms_nchw']:.3f} | {r['score_ms_channels_last']:.3f} | {r['score_speedup']:.2f} "
              f"| {r['score_ms_nchw_256']:.3f} | {r['score_ms_channels_last_256']:.3f} "
              f"| {r['max_score_difference']:.1e}, {r['max_score_difference_trained']:.1e} "
              f"| {r['train_s_nchw']:.1f} | {r['train_s_channels_last']:.1f} | {r['train_speedup']:.2f} |")
    print("\n| arch | channels-last net, NCHW input ms/frame @64 | channels-last input | × | max score diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['score_ms_nchw_input']:.3f} | {r['score_ms_channels_last']:.3f} "
              f"| {r['score_ms_nchw_input'] / r['score_ms_channels_last']:.2f} | {r['max_score_difference_input']:.1e} |")


if __name__ == "__main__":
    main()
