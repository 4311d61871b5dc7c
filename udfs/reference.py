"""The interface every reference model implements, and the detections it returns.

A reference model is the detector whose answers define the truth of a query. Each one has a
``name``, its ``classes``, the ``device`` it runs on, a stable ``version`` id (a hash of its
weights and of everything that changes its output: the label cache is keyed by it), and a batched
``detect(frames)``: OpenCV BGR frames (H×W×3 uint8, any size) in, one :class:`Detections` per
frame out, boxes in the frame's own pixel coordinates.
"""

from __future__ import annotations

import difflib
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vql.errors import ModelError

if TYPE_CHECKING:  # torch is imported when a model is loaded, so that start-up stays fast
    import torch

# Detections below this score are not returned: the label cache keeps everything above it, so
# queries may ask for any ``min_score`` at or above it without calling the model again.
SCORE_FLOOR = 0.2


@dataclass(frozen=True, slots=True)
class Detections:
    """One frame's detections: ``boxes`` [K, 4] x1, y1, x2, y2 in frame pixels, ``scores`` [K],
    ``classes`` [K] indices into the model's class list. Sorted by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @staticmethod
    def from_arrays(boxes, scores, classes, floor: float = SCORE_FLOOR) -> Detections:
        """Build from raw arrays, keeping scores ≥ ``floor``, sorted by descending score."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        classes = np.asarray(classes).reshape(-1).astype(np.int32)
        keep = scores >= floor
        order = np.argsort(-scores[keep], kind="stable")
        return Detections(boxes[keep][order], scores[keep][order], classes[keep][order])

    def count(self, class_index: int, min_score: float = 0.5, region: tuple[float, float, float, float] | None = None,
              frame_size: tuple[int, int] | None = None) -> int:
        """Objects of a class scoring ≥ ``min_score`` whose box centre lies in ``region``
        (x0, y0, x1, y1 as fractions of the frame; ``frame_size`` is (width, height))."""
        mask = (self.classes == class_index) & (self.scores >= min_score)
        if region is not None:
            if frame_size is None:
                raise ValueError("a region needs the frame size")
            w, h = frame_size
            cx = (self.boxes[:, 0] + self.boxes[:, 2]) / 2 / w
            cy = (self.boxes[:, 1] + self.boxes[:, 3]) / 2 / h
            x0, y0, x1, y1 = region
            mask &= (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
        return int(mask.sum())


class ReferenceModel(ABC):
    """A batched object detector used as the source of truth."""

    name: str
    classes: tuple[str, ...]
    device: torch.device
    max_objects: int | None = None  # the most detections it reports on one frame, where its design fixes it

    @property
    @abstractmethod
    def version(self) -> str:
        """A stable id of everything that determines the output (weights, preprocessing)."""

    @abstractmethod
    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in a batch of BGR uint8 frames; one result per frame."""

    def class_index(self, name: str) -> int:
        """The index of a class name, or a :class:`ModelError` suggesting close names."""
        try:
            return self.classes.index(name)
        except ValueError:
            close = difflib.get_close_matches(name, self.classes, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ModelError(f"model {self.name!r} has no class {name!r}{hint}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} version={self.version} device={self.device}>"


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class names, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"labels file not found: {path}")
    labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not labels:
        raise ModelError(f"labels file is empty: {path}")
    return labels


def check_frames(frames: Sequence[np.ndarray]) -> None:
    """Raise :class:`ModelError` unless every frame is an H×W×3 uint8 array."""
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise ModelError(f"frame {i}: expected an H×W×3 uint8 BGR array, got shape {shape} dtype {dtype}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``'auto'``: CUDA when available, else the CPU; an explicit device is checked."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ModelError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for, but torch sees no CUDA device here")
    return dev


def runtime(device: torch.device, precision: str) -> str:
    """What of the runtime changes a model's output, for its version: the device type and the
    numeric precision (the label cache is keyed by the version, so labels computed in fp16 on
    CUDA are never taken for the CPU's fp32 ones).

    >>> import torch
    >>> runtime(torch.device("cuda", 1), "fp16"), runtime(torch.device("cpu"), "fp32")
    ('cuda:fp16', 'cpu:fp32')
    """
    return f"{device.type}:{precision}"


def fingerprint(parts: Iterable[str | bytes | Path]) -> str:
    """A short hex digest of strings, bytes and file contents, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with part.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        elif isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def batches(items: Sequence, size: int) -> Iterable[Sequence]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
