"""The ``vql`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from vql import __version__
from vql.errors import VqlError

SAMPLE_VIDEO = Path(str(resources.files("vql") / "data" / "sample.avi"))


def _read_frames(path: Path) -> tuple[list, float]:
    import cv2

    from vql.errors import VideoError

    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video: {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise VideoError(f"no frames could be decoded from {path}")
    return frames, fps


def demo(args: argparse.Namespace) -> int:
    """Run the default reference model (CenterNet) over the packaged sample clip."""
    import numpy as np

    from vql.progress import Progress
    from vql.udfs.registry import default_model
    from vql.udfs.reference import batches

    video = Path(args.video) if args.video else SAMPLE_VIDEO
    t0 = time.perf_counter()
    frames, fps = _read_frames(video)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = default_model(args.device)
    load_s = time.perf_counter() - t0
    print(f"video: {video.name} ({len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}, {fps:g} fps)")
    print(f"reference model: {model.name} (version {model.version}, {len(model.classes)} classes, on {model.device})")
    person = model.class_index("person")
    counts: list[int] = []
    t0 = time.perf_counter()
    with Progress(len(frames), "frames", "centernet: ") as progress:
        for chunk in batches(frames, 8):
            for dets in model.detect(chunk):
                counts.append(dets.count(person, args.min_score))
            progress.update(len(chunk))
    model_s = time.perf_counter() - t0
    counts_a = np.array(counts)
    print(f"\npersons per frame (score >= {args.min_score}): mean {counts_a.mean():.2f}, max {counts_a.max()} "
          f"(frame {int(counts_a.argmax())}, t = {counts_a.argmax() / (fps or 1):.1f} s)")
    print("| persons >= k | frames | share |")
    print("|---|---|---|")
    for k in (1, 2, 3, 4, 5, 6):
        n = int((counts_a >= k).sum())
        print(f"| {k} | {n} | {100 * n / len(counts):.1f}% |")
    print(f"\ntimings: decode {decode_s:.2f} s ({len(frames) / decode_s:.0f} frames/s), model load {load_s:.2f} s, "
          f"reference {model_s:.2f} s ({len(frames) / model_s:.1f} frames/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vql", description="vql: a declarative query engine for video.")
    parser.add_argument("--version", action="version", version=f"vql {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("demo", help="run the reference detector over the packaged sample clip")
    p.add_argument("--video", help="another video file instead of the packaged sample")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--min-score", type=float, default=0.5, help="detection score threshold (default 0.5)")
    p.set_defaults(run=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except VqlError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
