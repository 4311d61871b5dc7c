"""A stand-in reference for tests that count what the reference is asked: a bright patch in the
top-left corner is a "person"; and small synthetic clips to go with it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import vql
from vql.udfs.reference import Detections, ReferenceModel

W, H = 96, 64


class Patches(ReferenceModel):
    """Sees a "person" where the 8×8 top-left corner is bright; nothing else."""

    name, classes, device = "centernet", ("person", "car"), "cpu"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def version(self) -> str:
        return "patches-1"

    def detect(self, frames):
        self.calls += len(frames)
        out = []
        for f in frames:
            if f[1:7, 1:7].min() > 180:
                out.append(Detections.from_arrays([[0, 0, 8, 8]], [0.9], [0]))
            else:
                out.append(Detections.empty())
        return out


def clip(path: Path, n: int, marked, blobs=()) -> str:
    """A static textured scene of ``n`` frames; the corner patch in ``marked`` frames, a large dark
    blob (what a difference proxy notices, the stand-in reference does not) in ``blobs``."""
    rng = np.random.default_rng(0)
    scene = rng.integers(90, 140, (H, W, 3), dtype=np.uint8)
    marked, blobs = set(marked), set(blobs)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(n):
        frame = scene.copy()
        if i in marked:
            frame[:8, :8] = 255
        if i in blobs:
            frame[20:60, 40:90] = 10
        writer.write(frame)
    writer.release()
    return str(path)


def session(path: str) -> tuple[vql.Connection, Patches]:
    con = vql.connect(None, progress=False)
    model = Patches()
    con._models["centernet"] = model  # the stand-in reference, under the default model's name
    con.sql(f"CREATE VIDEO cam FROM '{path}'")
    return con, model
