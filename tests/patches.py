"""A stand-in reference for tests that count what the reference is asked: a bright 8×8 patch in
the top row is a "person" (the first at the top-left corner, up to :data:`SLOTS` side by side);
and small synthetic clips to go with it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

import vql
from vql.udfs.reference import Detections, ReferenceModel

W, H = 96, 64
SLOTS = W // 12  # patches side by side along the top row, 12 pixels apart


class Patches(ReferenceModel):
    """Sees a "person" where an 8×8 patch of the top row (at x = 12 i) is bright; nothing else."""

    name, classes, device = "centernet", ("person", "car"), "cpu"
    max_objects = SLOTS  # one patch per slot of the top row

    def __init__(self) -> None:
        self.calls = 0

    @property
    def version(self) -> str:
        return "patches-1"

    def detect(self, frames):
        self.calls += len(frames)
        out = []
        for f in frames:
            slots = [i for i in range(SLOTS) if f[1:7, 12 * i + 1:12 * i + 7].min() > 180]
            if slots:
                out.append(Detections.from_arrays([[12 * i, 0, 12 * i + 8, 8] for i in slots], [0.9] * len(slots),
                                                  [0] * len(slots)))
            else:
                out.append(Detections.empty())
        return out


def clip(path: Path, n: int, marked, blobs=(), counts: dict[int, int] | None = None) -> str:
    """A static textured scene of ``n`` frames; the corner patch in ``marked`` frames (``counts``:
    frame -> that many patches, side by side), a large dark blob (what a difference proxy notices,
    the stand-in reference does not) in ``blobs``."""
    rng = np.random.default_rng(0)
    scene = rng.integers(90, 140, (H, W, 3), dtype=np.uint8)
    marked, blobs = set(marked), set(blobs)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(n):
        frame = scene.copy()
        for slot in range(1 if i in marked else 0 if counts is None else counts.get(i, 0)):
            frame[:8, 12 * slot:12 * slot + 8] = 255
        if i in blobs:
            frame[20:60, 40:90] = 10
        writer.write(frame)
    writer.release()
    return str(path)


def logged(con: vql.Connection) -> list[dict]:
    """The last query's rows of the query log (``vql_queries.predicates``): one per model test."""
    (predicates,) = con.duckdb.execute("SELECT predicates FROM vql_queries ORDER BY query_id DESC LIMIT 1").fetchone()
    return json.loads(predicates)


def session(path: str) -> tuple[vql.Connection, Patches]:
    con = vql.connect(None, progress=False)
    model = Patches()
    con._models["centernet"] = model  # the stand-in reference, under the default model's name
    con.sql(f"CREATE VIDEO cam FROM '{path}'")
    return con, model
