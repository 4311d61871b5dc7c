"""The matching segments of a query's answer as one video (``vql clip``).

Runs of matching frames closer than ``gap`` seconds are merged into one segment, each segment
widened by ``margin`` seconds on both sides (within the video) and overlapping ones merged
again; the segments' frames are decoded and written one after the other, each stamped with its
source frame number and time (PyAV, as ``engine/compose.py`` writes video).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vql.errors import VqlError


class ClipError(VqlError):
    """Bad clip arguments, nothing to write, or an output that cannot be written."""


@dataclass(frozen=True, slots=True)
class Segment:
    first: int  # frames, inclusive, margins included
    last: int
    matches: int  # matching frames inside

    def row(self, fps: float) -> dict:
        return {"from_s": round(self.first / fps, 3), "to_s": round((self.last + 1) / fps, 3),
                "first_frame": self.first, "last_frame": self.last, "frames": self.last - self.first + 1,
                "matching_frames": self.matches}


def segments(frames, fps: float, total: int, gap: float = 2.0, margin: float = 1.0) -> list[Segment]:
    """Segments covering the matching ``frames`` of a ``total``-frame video at ``fps``.

    >>> segments([10, 11, 12, 25, 80], fps=10, total=100, gap=2.0, margin=0.5)
    [Segment(first=5, last=30, matches=4), Segment(first=75, last=85, matches=1)]
    """
    if gap < 0 or margin < 0:
        raise ClipError(f"gap and margin must be at least 0 seconds, got {gap:g} and {margin:g}")
    frames = np.unique(np.asarray(frames, np.int64))
    if not len(frames):
        return []
    join, pad = int(round(gap * fps)), int(round(margin * fps))
    out: list[list[int]] = []
    for f in frames:
        if out and f - out[-1][1] <= join:
            out[-1][1], out[-1][2] = int(f), out[-1][2] + 1
        else:
            out.append([int(f), int(f), 1])
    merged: list[list[int]] = []
    for first, last, n in out:
        first, last = max(0, first - pad), min(total - 1, last + pad)
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1], merged[-1][2] = max(merged[-1][1], last), merged[-1][2] + n
        else:
            merged.append([first, last, n])
    return [Segment(*m) for m in merged]


def write_clip(info, parts: list[Segment], out: str | Path, progress: bool | None = None) -> Path:
    """Write the segments' frames of a registered video (``VideoInfo``) to ``out``, stamped
    ``frame N · ts S``; returns the path."""
    from fractions import Fraction

    import av
    import cv2

    from vql.engine.compose import check_output
    from vql.engine.video import read_frames
    from vql.progress import Progress

    if not parts:
        raise ClipError("no frame matched: no clip to write")
    try:
        out = check_output(out)
    except VqlError as e:
        raise ClipError(str(e)) from e
    frames = np.concatenate([np.arange(s.first, s.last + 1) for s in parts])
    try:
        container = av.open(str(out), "w")
    except Exception as e:  # PyAV raises its own error types
        raise ClipError(f"cannot write {out}: {e}") from e
    width, height = info.width - info.width % 2, info.height - info.height % 2  # yuv420p needs even sizes
    with container, Progress(len(frames), "frames", f"writing {Path(out).name}", enabled=progress) as bar:
        stream = container.add_stream("mpeg4", rate=Fraction(info.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000
        scale = max(0.4, height / 720)
        for indices, batch in read_frames(info, frames):
            for frame, image in zip(indices, batch):
                image = np.ascontiguousarray(image[:height, :width])
                text = f"frame {int(frame)}  ts {frame / info.fps:.1f} s"
                for color, thick in (((0, 0, 0), 4), ((255, 255, 255), 1)):
                    cv2.putText(image, text, (8, int(28 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick,
                                cv2.LINE_AA)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                    container.mux(packet)
            bar.update(len(indices))
        for packet in stream.encode():
            container.mux(packet)
    return out
