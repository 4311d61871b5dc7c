"""How well do the specialized CNNs separate? Each candidate architecture trained as the planner
trains it, judged on frames no choice looked at.

    python benchmarks/stages.py --db DB [--video v] [--class person] [--min-score 0.5]

``DB`` is a vql database in which a cold ``contains(...)`` query on the video labelled its
training prefix and its certification frames (e.g. the one ``benchmarks/queries.py`` leaves).
Frames follow the planner's own seeded random order (``planner/sampling.py``): each candidate is
trained (``planner/specialized.py: train``, the planner's step budget) on the training part of the
training prefix (its first third, ``sampling.Sample``; results in benchmarks/results/stages*.json
written before 7418ee4 used the first half), and scored on the frames of the order after the prefix that are labelled (the
certification frames: a uniform random sample of the rest of the scan; with ``--train-frames``
shorter than the planner's prefix, the selection frames are among them). For each, the share of
those frames whose score lies below the (k+1)-th lowest positive's (what a "no" threshold could
settle while missing k positives), and above the (k+1)-th highest negative's (what "yes" could
settle while accepting k negatives). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vql  # noqa: E402
from queries import ROOT, machine  # noqa: E402
from vql.engine.video import read_frames  # noqa: E402
from vql.engine.views import downscale  # noqa: E402
from vql.planner.sampling import Sample, permutation, training_size  # noqa: E402
from vql.planner.specialized import CANDIDATES, MIN_STEPS, PRECISIONS, Architecture, default_precision, train  # noqa: E402

MISSES = (0, 2, 5)
ACCEPTED = (0, 10)


def video_labels(con, video: str, cls: str):
    """(the video, its labels' model version, each labelled frame's best score for ``cls``: 0
    where the reference found none) from the stored labels of the one model version there."""
    info = con.store.video(video)
    if info is None:
        raise SystemExit(f"no video {video!r} in the database")
    versions = [v for (v,) in con.store.con.execute(
        "SELECT DISTINCT model_version FROM vql_labelled_frames WHERE video_fp = ?", [info.fingerprint]).fetchall()]
    if len(versions) != 1:
        raise SystemExit(f"labels of {len(versions)} model versions on this video: one expected")
    best = dict.fromkeys(con.store.labelled_frames(info.fingerprint, versions[0]).tolist(), 0.0)
    best.update(con.store.con.execute(
        "SELECT frame, max(score) FROM vql_labels WHERE video_fp = ? AND model_version = ? AND class = ? GROUP BY frame",
        [info.fingerprint, versions[0], cls]).fetchall())
    return info, versions[0], best


def frames_and_truth(con, video: str, cls: str, min_score: float, target: float, training_frames: int = 0):
    """(the video, the planner's sample of it: ``Sample`` over the training prefix, the held-out
    frames, the positive frames) from the stored labels."""
    info, version, best = video_labels(con, video, cls)
    labelled = best.keys()
    order = permutation(info.fingerprint, 0, info.frames - 1)
    n_train = training_frames or training_size(info.frames, target)[0]
    if not all(int(f) in labelled for f in order[:n_train]):
        raise SystemExit("the training prefix is not labelled: run a cold contains(...) query on this video first")
    held = []
    for f in order[n_train:]:
        if int(f) not in labelled:
            break
        held.append(int(f))
    positive = {int(f) for f, score in best.items() if score >= min_score}
    return info, Sample(order, n_train), np.array(held, np.int64), positive


def store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which store, video, predicate and training prefix (``from_store``)."""
    parser.add_argument("--db", required=True)
    parser.add_argument("--video", default="v")
    parser.add_argument("--class", dest="cls", default="person")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--target", type=float, default=0.01, help="the target the cold query ran at")
    parser.add_argument("--train-frames", type=int, default=0,
                        help="the training prefix's length, where the planner grew it (default: planner/sampling.py's)")


def from_store(args: argparse.Namespace):
    """``frames_and_truth`` for the options of ``store_arguments``, the store opened read-only."""
    with vql.connect(args.db, read_only=True, progress=False) as con:
        return frames_and_truth(con, args.video, args.cls, args.min_score, args.target, args.train_frames)


def small_frames(info, frames: np.ndarray, sizes) -> dict[int, dict[int, np.ndarray]]:
    out = {s: {} for s in sizes}
    for indices, batch in read_frames(info, np.sort(frames), 32):
        for s in sizes:
            for f, img in zip(indices, downscale(batch, s)):
                out[s][int(f)] = img
    return out


def separation(scores: np.ndarray, truth: np.ndarray) -> dict:
    pos, neg = np.sort(scores[truth]), np.sort(scores[~truth])[::-1]
    row = {f"no_missing_{k}": float((scores < pos[k]).mean()) if k < len(pos) else 1.0 for k in MISSES}
    row.update({f"yes_accepting_{k}": float((scores > neg[k]).mean()) if k < len(neg) else 1.0 for k in ACCEPTED})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_arguments(parser)
    parser.add_argument("--models", type=int, default=len(CANDIDATES), help="the first N of CANDIDATES")
    parser.add_argument("--only", default="", help="only the candidate of this name, e.g. cnn2x16-p32@64")
    parser.add_argument("--min-steps", type=int, default=MIN_STEPS, help="the training's least number of steps "
                        "(default: the planner's, planner/specialized.py: MIN_STEPS)")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--precisions", default="float32", help="the CNNs' precisions, comma-separated "
                        f"(of {', '.join(PRECISIONS)}; the planner's on this machine: {default_precision()})")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stages.json"))
    args = parser.parse_args(argv)
    info, sample, held, positive = from_store(args)
    train_f = sample.train
    shapes = [s for s in CANDIDATES[:args.models] if not args.only or Architecture(*s).name == args.only]
    if not shapes:
        raise SystemExit(f"no candidate named {args.only!r}")
    sizes = sorted({shape[3] for shape in shapes})
    small = small_frames(info, np.concatenate([train_f, held]), sizes)
    y_train = np.array([int(f) in positive for f in train_f])
    y_held = np.array([int(f) in positive for f in held])
    rows = []
    stacked = {s: (np.stack([small[s][int(f)] for f in train_f]), np.stack([small[s][int(f)] for f in held]))
               for s in sizes}
    runs = [(Architecture(*shape, precision=p), int(seed)) for shape in shapes
            for p in args.precisions.split(",") for seed in args.seeds.split(",")]
    for arch, seed in runs:
        x_train, x = stacked[arch.size]
        model = train(arch, x_train, y_train, seed=seed, min_steps=args.min_steps)
        t = time.perf_counter()
        scores = model.scores(x)
        per_frame = (time.perf_counter() - t) / len(x)
        rows.append({"model": arch.name, "seed": seed, "min_steps": args.min_steps,
                     "train_s": model.train_seconds, "score_ms": per_frame * 1e3,
                     **separation(scores, y_held)})
        print(json.dumps(rows[-1]), flush=True)
    head = (["model", "seed", "train s", "ms/frame"] + [f"settled 'no', {k} missed" for k in MISSES]
            + [f"settled 'yes', {k} accepted" for k in ACCEPTED])
    print(f"\n{info.path}: trained on {len(train_f)} frames ({int(y_train.sum())} positive), judged on {len(held)} "
          f"held-out frames ({int(y_held.sum())} positive); {machine('cpu')}\n")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], str(r["seed"]), f"{r['train_s']:.0f}", f"{r['score_ms']:.2f}"]
        cells += [f"{r[f'no_missing_{k}']:.1%}" for k in MISSES] + [f"{r[f'yes_accepting_{k}']:.1%}" for k in ACCEPTED]
        print("| " + " | ".join(cells) + " |")
    Path(args.out).write_text(json.dumps({"machine": machine("cpu"), "video": info.path, "train_frames": len(train_f),
                                          "held_out": len(held), "held_out_positives": int(y_held.sum()),
                                          "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
