"""Video files: probing, a content fingerprint, and decoding frames in a background thread.

Decoding is the ceiling of every scan (``../shared/notes/measurements.md``: ~850 frames/s for
vtest on these machines), so the reader decodes in its own thread while the model runs, and
frames that are not needed are only ``grab()``-ed (decoded, never converted), or skipped with a
seek when the gap is long enough to pay for one.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vql.errors import VideoError

# A seek costs about half a keyframe interval of decoding: only seek over longer gaps.
SEEK_GAP = 200


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: str
    fps: float
    frames: int
    width: int
    height: int
    fingerprint: str


def fingerprint(path: Path) -> str:
    """A content id: size plus hashes of the first and last MiB (fast on long files)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoError(f"video file not found: {path}")
    if not path.is_file():
        raise VideoError(f"not a video file: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video (unreadable or not a video): {path}")
    return cap


def probe(path: str | Path) -> VideoInfo:
    """Read a video's frame rate, length and size, decoding one frame to prove it is readable."""
    path = Path(path).expanduser().resolve()
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise VideoError(f"no frame could be decoded from {path} (corrupt or unsupported codec)")
    if fps <= 0 or fps > 1000:
        raise VideoError(f"{path}: the container reports no usable frame rate ({fps})")
    if frames <= 0:
        frames = count_frames(path)
    return VideoInfo(str(path), fps, frames, int(frame.shape[1]), int(frame.shape[0]), fingerprint(path))


def count_frames(path: Path) -> int:
    cap = _open(path)
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read_frames(
    path: str | Path, frames: Sequence[int], batch_size: int = 16, queue_size: int = 4
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Yield (frame indices, BGR frames) batches of the wanted frames, in increasing order.

    Decoding runs in a background thread, ``queue_size`` batches ahead. Frames past the end of
    the file are silently absent (the container's frame count can overstate).
    """
    wanted = np.unique(np.asarray(frames, dtype=np.int64))
    path = Path(path)
    if len(wanted) == 0:
        return
    cap = _open(path)
    out: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def decode() -> None:
        try:
            cv2.setNumThreads(1)
            position = 0
            batch_idx: list[int] = []
            batch: list[np.ndarray] = []
            for target in wanted:
                if target - position > SEEK_GAP:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, int(target))
                    position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                while position < target:
                    if not cap.grab():
                        raise EOFError
                    position += 1
                ok, frame = cap.read()
                if not ok:
                    raise EOFError
                position += 1
                batch_idx.append(int(target))
                batch.append(frame)
                if len(batch) == batch_size:
                    out.put((np.array(batch_idx), batch))
                    batch_idx, batch = [], []
                if stop.is_set():
                    return
            raise EOFError
        except EOFError:
            if batch_idx:
                out.put((np.array(batch_idx), batch))
            out.put(None)
        except Exception as e:  # handed to the consumer
            out.put(e)
        finally:
            cap.release()

    thread = threading.Thread(target=decode, name="vql-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise VideoError(f"decoding {path} failed: {item}") from item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def decode_costs(path: str | Path, start: int = 0, n: int = 100) -> tuple[float, float]:
    """Measured seconds per frame of a full read (decode + convert) and of a grab (decode
    only), on ``n`` frames each from ``start``: the two frame kinds of a scan.

    """
    cap = _open(Path(path))
    try:
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        cap.grab()  # the first frame after opening or seeking carries their cost
        t0 = time.perf_counter()
        reads = sum(cap.read()[0] for _ in range(n))
        t1 = time.perf_counter()
        grabs = sum(cap.grab() for _ in range(n))
        t2 = time.perf_counter()
    finally:
        cap.release()
    return (t1 - t0) / max(1, reads), (t2 - t1) / max(1, grabs)
