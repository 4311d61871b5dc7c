"""How well do the difference detectors separate, by metric, frame size and grid? Judged on
frames no choice looked at.

    python benchmarks/detectors.py --db DB [--video v] [--class person] [--min-score 0.5]

``DB`` is a vql database in which a cold ``contains(...)`` query on the video labelled its
training prefix and certification frames (as for ``benchmarks/stages.py``). The background is
fitted as the planner fits it (the median of the negatives among the prefix's training part,
``planner/sampling.py: Sample``); each detector scores the prefix's selection part and the
labelled frames after the prefix (held out). Per
detector: on the held-out frames, the share whose score lies below the (k+1)-th lowest
positive's (what a "no" threshold could settle while missing k positives), and the held-out
positives scoring below the lowest selection positive (what a threshold placed on the
selection frames would miss: the tail the certification sample meets). Prints a markdown table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import ROOT, machine  # noqa: E402
from stages import from_store, separation, small_frames, store_arguments  # noqa: E402
from vql.engine.difference import DETECTORS, background  # noqa: E402

SIZES = (32, 64)
GRIDS = (4, 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_arguments(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detectors.json"))
    args = parser.parse_args(argv)
    info, sample, held, positive = from_store(args)
    train, select = sample.train, sample.select
    small = small_frames(info, np.concatenate([train, select, held]), SIZES)
    y_train = np.array([int(f) in positive for f in train])
    y_sel = np.array([int(f) in positive for f in select])
    y_held = np.array([int(f) in positive for f in held])
    rows = []
    for size in SIZES:
        stack = {name: np.stack([small[size][int(f)] for f in frames]) for name, frames in
                 (("train", train), ("select", select), ("held", held))}
        negatives = stack["train"][~y_train]
        bg = background(negatives if len(negatives) >= 10 else stack["train"])  # as the planner does
        for metric, fn in DETECTORS.items():
            for grid in (GRIDS if metric != "full-mse" else (1,)):
                def score(x):
                    return fn(x, bg) if metric == "full-mse" else fn(x, bg, grid)
                s_sel, s_held = score(stack["select"]), score(stack["held"])
                low = float(s_sel[y_sel].min()) if y_sel.any() else np.inf
                rows.append({"detector": f"{metric}@{size}" + (f" grid {grid}" if grid > 1 else ""),
                             **separation(s_held, y_held), "held_positives": int(y_held.sum()),
                             "held_frames": len(held), "held_positives_below_selection_min": int((y_held & (s_held < low)).sum()),
                             "lowest_held_over_lowest_selection": float(s_held[y_held].min() / max(low, 1e-9))
                             if y_held.any() else float("nan")})
    out = {"machine": machine("cpu"), "video": str(info.path), "selection_frames": len(select),
           "selection_positives": int(y_sel.sum()), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['machine']}; {len(select)} selection frames ({int(y_sel.sum())} positives), "
          f"{len(held)} held-out frames ({int(y_held.sum())} positives)\n")
    print("| detector | held-out 'no' missing 0 | missing 2 | missing 5 | held-out positives below the lowest "
          "selection positive | lowest held-out / lowest selection positive |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['no_missing_0']:.3f} | {r['no_missing_2']:.3f} | {r['no_missing_5']:.3f} "
              f"| {r['held_positives_below_selection_min']} | {r['lowest_held_over_lowest_selection']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
