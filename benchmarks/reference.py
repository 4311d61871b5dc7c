"""Frames/s of the CenterNet reference model by batch size, device and precision.

    python benchmarks/reference.py                      # CPU (2 threads), batches 1, 8, 32, 128
    python benchmarks/reference.py --device cuda        # CUDA: fp32, fp16, bf16

Two rates per row: ``model`` (the graph alone, on inputs already resized, as frames/s) and
``detect`` (BGR frames in, detections out: resizing, upload, the graph, decoding). On CUDA,
half-precision rows also report how far they land from the TensorFlow golden vectors (rows
scoring ≥ 0.3) and whether that is within the stated looser tolerance. Prints a markdown table
and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vql.udfs.tfjs_detector import CENTERNET_DIR, TfjsDetector

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VQL_SHARED", ROOT.parent / "shared"))
# Looser tolerances stated for reduced precision (fp32 must meet the golden test's 1 px / 1e-3).
TOLERANCE = {"fp32": (1.0, 1e-3), "fp16": (2.0, 1e-2), "bf16": (4.0, 3e-2)}


def load_frames(n: int) -> list[np.ndarray]:
    """The first n frames of vtest.avi (or of the packaged sample), repeated if needed."""
    path = SHARED / "data" / "vtest.avi"
    if not path.is_file():
        path = ROOT / "vql" / "data" / "sample.avi"
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return [frames[i % len(frames)] for i in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, batch: int, min_frames: int, device: torch.device) -> float:
    """Frames/s of ``fn`` (one call = one batch) after two warm-up calls."""
    fn()
    fn()
    sync(device)
    calls = max(2, -(-min_frames // batch))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return calls * batch / (time.perf_counter() - start)


def golden_error(model: TfjsDetector) -> dict[str, float] | None:
    path = SHARED / "models" / "centernet" / "golden_vtest.npz"
    if not path.is_file():
        return None
    gold = np.load(path)
    rows = model.run(torch.from_numpy(gold["inputs_rgb_512"]))
    box_err = score_err = 0.0
    for got, want in zip(rows, gold["detections"]):
        for row in want[want[:, 4] >= 0.3]:
            same = got[got[:, 5] == row[5]]
            if not len(same):
                return {"box_px": float("inf"), "score": float("inf")}
            near = same[np.argmin(np.abs(same[:, :4] - row[:4]).sum(axis=1))]
            box_err = max(box_err, float(np.abs(near[:4] - row[:4]).max()))
            score_err = max(score_err, float(abs(near[4] - row[4])))
    return {"box_px": box_err, "score": score_err}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,8,32,128; CUDA adds 256)")
    parser.add_argument("--precisions", default=None, help="comma-separated (default fp32 on CPU; fp32,fp16,bf16 on CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--min-frames", type=int, default=None, help="frames timed per row (default 32 CPU, 1024 CUDA)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reference.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    if cuda:
        torch.backends.cudnn.benchmark = True
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,8,32,128,256" if cuda else "1,8,32,128")).split(",")]
    precisions = (args.precisions or ("fp32,fp16,bf16" if cuda else "fp32")).split(",")
    min_frames = args.min_frames or (1024 if cuda else 32)
    device = torch.device(args.device)
    frames = load_frames(max(batch_sizes))
    machine = {
        "device": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "cpu_threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    rows = []
    print(f"# CenterNet reference on {machine['device']} ({args.device}, torch {torch.__version__}, {args.threads} CPU threads)\n")
    print("| device | precision | batch | model frames/s | detect frames/s | golden max box err (px) | golden max score err | within tolerance |")
    print("|---|---|---|---|---|---|---|---|")
    for precision in precisions:
        model = TfjsDetector(CENTERNET_DIR / "centernet.json", name="centernet", device=args.device,
                             precision=precision, max_batch=max(batch_sizes))
        err = golden_error(model)
        box_tol, score_tol = TOLERANCE[precision]
        ok = None if err is None else (err["box_px"] <= box_tol and err["score"] <= score_tol)
        for batch in batch_sizes:
            chunk = frames[:batch]
            inputs = model.preprocess(chunk).to(device)
            model_fps = rate(lambda: model.model(inputs.to(model.model.dtype)), batch, min_frames, device)
            detect_fps = rate(lambda: model.detect(chunk), batch, min(min_frames, 4 * batch), device)
            row = {
                "device": args.device, "precision": precision, "batch": batch,
                "model_fps": round(model_fps, 2), "detect_fps": round(detect_fps, 2),
                "golden_box_err_px": None if err is None else round(err["box_px"], 4),
                "golden_score_err": None if err is None else round(err["score"], 6),
                "tolerance": {"box_px": box_tol, "score": score_tol}, "within_tolerance": ok,
                "machine": machine,
            }
            rows.append(row)
            e_box = "-" if err is None else f"{err['box_px']:.3f}"
            e_score = "-" if err is None else f"{err['score']:.5f}"
            print(f"| {args.device} | {precision} | {batch} | {model_fps:.1f} | {detect_fps:.1f} | {e_box} | {e_score} | {ok} |",
                  flush=True)
        if cuda:
            torch.cuda.empty_cache()
    best = max(rows, key=lambda r: r["model_fps"])
    print(f"\nbest: {best['model_fps']:.1f} frames/s ({best['precision']}, batch {best['batch']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
