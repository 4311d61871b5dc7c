"""Video files: probing, a content fingerprint, and decoding frames in a background thread.

Decoding is the ceiling of every scan (``../shared/notes/measurements.md``: ~850 frames/s for
vtest on these machines), so the reader decodes in its own thread while the model runs, and
frames that are not needed are only ``grab()``-ed (decoded, never converted), or skipped with a
seek when the gap is long enough to pay for one.
"""

from __future__ import annotations

import hashlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vql.errors import VideoError

# A seek costs about half a keyframe interval of decoding: only seek over longer gaps. The
# default where nothing was measured; sparse reads pass the gap measured on their video (seek_gap).
SEEK_GAP = 200
HASH_CHUNK = 1 << 20
# Decoding threads of a scan whose batches need not come in frame order (a cascade's pass,
# ``read_frames(readers=...)``), at most the cores there are. Each decodes consecutive pieces of
# the wanted frames from its own capture, with one FFmpeg thread: on the 2-core machine two such
# readers decoded the composed hour 1.84x as fast as one (0.245 against 0.45 ms/frame; one
# capture with FFmpeg's own two threads gained nothing). More readers are unmeasured.
READERS = 2
PIECES_PER_READER = 4  # taken in turn by whichever reader is free, so that they finish together
MIN_PIECE = 256  # wanted frames: shorter pieces would pay a seek and an opened capture for little
GRAB_SHARE = 0.5  # a grab's cost against a read's (measurements.md: ~1,850 against ~850 frames/s)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """A registered video: where it is, its shape, and its identity.

    ``fingerprint`` is a hash of the whole file's content: labels, plans and results are keyed
    by it. ``size`` and ``mtime_ns`` are what the file looked like when it was hashed; a query
    re-stats the file and re-hashes it when either changed (:func:`verify`). ``frames`` is the
    number of frames the file holds (its demuxed packets), which may be fewer than the container
    claims; ``note`` says so. ``seekable`` is False for such a damaged file: frames are then
    numbered by decoding from the start, never by a seek (which would number them by the
    container's index, and disagree).
    """

    path: str
    fps: float
    frames: int
    width: int
    height: int
    fingerprint: str
    size: int = -1
    mtime_ns: int = -1
    note: str = ""
    seekable: bool = True


def content_hash(path: Path) -> str:
    """The sha256 of the whole file (128 bits, hex): about a second per GB, next to minutes of
    decoding."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise VideoError(f"cannot read video file {path}: {e.strerror or e}") from e
    return digest.hexdigest()[:32]


def legacy_fingerprint(path: Path) -> str:
    """Schema 1's content id (size and the first and last MiB), only to migrate older databases."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def file_state(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of the file; VideoError when it is gone."""
    try:
        st = Path(path).stat()
    except FileNotFoundError as e:
        raise VideoError(f"video file not found: {path}") from e
    except OSError as e:
        raise VideoError(f"cannot read video file {path}: {e.strerror or e}") from e
    return st.st_size, st.st_mtime_ns


def _open(path: Path, threads: int | None = None):
    """An opened capture of ``path``; ``threads``: FFmpeg's decoding threads (None: OpenCV's choice)."""
    import cv2  # imported when a file is opened, so that start-up stays fast

    file_state(path)
    if not path.is_file():
        raise VideoError(f"not a video file: {path}")
    cap = None
    if threads is not None:  # FFmpeg's threads are an FFmpeg option: any other backend opens as by default
        cap = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
        if not cap.isOpened() or cap.getBackendName() != "FFMPEG":
            cap.release()
            cap = None
    if cap is None:
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video (unreadable or not a video): {path}")
    return cap


def stored_frames(path: Path) -> tuple[int, str]:
    """The frames the file really holds (its video packets, demuxed without decoding: ~ms per
    thousand frames) and a note on what looks wrong with their timestamps, if anything."""
    import av  # PyAV: demuxing only

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = [p.pts for p in container.demux(stream) if p.size]
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise VideoError(f"cannot read the video stream of {path}: {e}") from e
    known = sorted(p for p in pts if p is not None)
    note = ""
    if len(known) > 2:
        steps = np.diff(np.asarray(known, np.int64))
        step = float(np.median(steps))
        gaps = np.flatnonzero(steps > 1.5 * step) if step > 0 else np.zeros(0, int)
        if len(gaps):
            note = (f"timestamps jump after frame {int(gaps[0])} ({len(gaps)} gaps): frames may be missing, "
                    "and ts = frame / fps is approximate there")
    return len(pts), note


def probe(path: str | Path) -> VideoInfo:
    """Read a video's frame rate, length and size, hash its content, count the frames it holds
    (the container's count can overstate: a truncated or damaged file keeps its header) and
    decode one frame to prove it is readable."""
    try:
        path = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop, '~user' without a home
        raise VideoError(f"cannot resolve video file path {str(path)!r}: {e}") from e
    import cv2

    size, mtime = file_state(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise VideoError(f"no frame could be decoded from {path} (corrupt or unsupported codec)")
    if not 0 < fps <= 1000:
        raise VideoError(f"{path}: the container reports no usable frame rate ({fps})")
    frames, note = stored_frames(path)
    seekable = True
    if claimed > 0 and frames != claimed:
        seekable = False
        note = "; ".join(filter(None, [
            f"the container says {claimed} frames but the file holds {frames} (truncated or damaged, or an "
            f"inaccurate container): vql uses {frames}, numbered in decoding order (frame numbers after a "
            "damaged part may not match time)", note]))
    if frames <= 0:
        raise VideoError(f"{path}: the file holds no video frames")
    digest = content_hash(path)
    if file_state(path) != (size, mtime):
        raise VideoError(f"{path} changed while it was being registered; try again")
    return VideoInfo(str(path), fps, frames, int(frame.shape[1]), int(frame.shape[0]), digest, size, mtime, note,
                     seekable)


def verify(name: str, info: VideoInfo) -> VideoInfo:
    """The registered video, checked against its file: the same (possibly with a newer mtime,
    when the content hash is unchanged), or a VideoError saying what changed. The file is
    re-hashed only when its size or modification time differ from the registered ones."""
    size, mtime = file_state(Path(info.path))
    if (size, mtime) == (info.size, info.mtime_ns):
        return info
    if size == info.size and content_hash(Path(info.path)) == info.fingerprint:
        return replace(info, mtime_ns=mtime)
    what = f"its size went from {info.size} to {size} bytes" if size != info.size else "its content differs"
    raise VideoError(
        f"video {name} changed since it was registered ({info.path}: {what}); its labels and results belong to "
        f"the old content. Register the new content with CREATE OR REPLACE VIDEO {name} FROM '{info.path}'"
    )


def default_readers() -> int:
    """Decoding threads for a scan that takes its batches in any order: READERS, at most the cores
    this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        cores = os.cpu_count() or 1
    return max(1, min(READERS, cores))


def pieces(wanted: np.ndarray, readers: int, gap: int) -> list[np.ndarray]:
    """``wanted`` (sorted, distinct) cut into consecutive pieces of about equal decoding work, for
    ``readers`` threads to take in turn: PIECES_PER_READER per reader, MIN_PIECE frames or more
    on average (one piece, the whole, where ``readers`` is 1 or the frames are too few; never an
    empty one). A frame weighs one read plus GRAB_SHARE of the frames grabbed before it (gaps up
    to ``gap``; longer ones are sought over).

    >>> [len(p) for p in pieces(np.arange(4096), 2, 50)]
    [512, 512, 512, 512, 512, 512, 512, 512]
    >>> w = np.concatenate([np.arange(0, 1024), np.arange(1024, 4096, 3)])   # a sparse second part
    >>> [int(p[0]) for p in pieces(w, 2, 50)][:4], len(pieces(w[:600], 2, 50)), len(pieces(w, 1, 50))
    ([0, 383, 767, 1216], 2, 1)
    """
    n = min(readers * PIECES_PER_READER, len(wanted) // MIN_PIECE)
    if readers <= 1 or n <= 1:
        return [wanted]
    grabbed = np.minimum(np.diff(wanted, prepend=wanted[0] - 1) - 1, gap)
    work = np.cumsum(1.0 + GRAB_SHARE * grabbed)
    cuts = np.unique(np.searchsorted(work, work[-1] * np.arange(1, n) / n, side="right"))
    return np.split(wanted, cuts[(cuts > 0) & (cuts < len(wanted))])


def read_frames(
    source: VideoInfo | str | Path, frames: Sequence[int], batch_size: int = 16, queue_size: int = 4,
    seek_gap: int | None = None, readers: int = 1) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Yield (frame indices, BGR frames) batches of the wanted frames, in increasing order (with
    ``readers`` over 1: see below).

    Every wanted frame arrives, or a VideoError names the first one that cannot be decoded.
    Frames are numbered by decoding order from the start: a seek is only trusted when the
    decoder reports the requested position afterwards (else the file is decoded forward from
    its start), and a video registered as not seekable is never sought. Given a registered
    :class:`VideoInfo`, the file is re-stat-ed before each batch: a file that changes during a
    scan is a VideoError, never a mix of two contents. Decoding runs in background threads,
    ``queue_size`` batches ahead. Gaps of more than ``seek_gap`` frames (default SEEK_GAP; the
    measured one of the video: :func:`seek_gap`) are sought over, shorter ones grabbed.

    With ``readers`` over 1, for a caller that takes batches in any order: on a seekable video,
    up to that many threads decode consecutive pieces of the wanted frames (:func:`pieces`), each
    from its own capture with one FFmpeg thread. Every wanted frame still arrives once; batches
    come in increasing order within a piece, the pieces interleaved, and a VideoError names the
    first frame of its piece that cannot be decoded. A piece past the start begins with a seek,
    trusted as above: callers ask for several readers only where seeks were seen to land
    (``engine/executor.py: pass_readers``), as sparse reads already rely on.
    """
    wanted = np.unique(np.asarray(frames, dtype=np.int64))
    info = source if isinstance(source, VideoInfo) else None
    path = Path(info.path if info else source)
    if len(wanted) == 0:
        return
    if wanted[0] < 0 or (info is not None and wanted[-1] >= info.frames):
        raise VideoError(f"{path}: frames {int(wanted[0])}..{int(wanted[-1])} asked, the video has "
                         f"{info.frames if info else 'no negative'} frames")
    state = (info.size, info.mtime_ns) if info is not None and info.size >= 0 else None
    gap = SEEK_GAP if seek_gap is None else seek_gap
    seekable = info is None or info.seekable
    parts = pieces(wanted, readers, gap) if seekable else [wanted]
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for part in parts:
        todo.put(part)
    n_threads = max(1, min(readers, len(parts)))
    out: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def check_unchanged() -> None:
        if state is not None and file_state(path) != state:
            raise VideoError(f"{path} changed during the scan; nothing decoded after the change was used")

    def decode() -> None:
        try:
            while not stop.is_set():
                try:
                    part = todo.get_nowait()
                except queue.Empty:
                    break
                for item in decode_batches(path, part, batch_size, gap, seekable, check_unchanged, stop.is_set,
                                           threads=1 if n_threads > 1 else None):
                    out.put(item)
            if not stop.is_set():
                out.put(None)
        except Exception as e:  # handed to the consumer
            out.put(e)

    threads = [threading.Thread(target=decode, name=f"vql-decode-{i}", daemon=True) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = out.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, VideoError):
                raise item
            if isinstance(item, Exception):
                raise VideoError(f"decoding {path} failed: {item}") from item
            yield item
    finally:
        stop.set()
        while any(thread.is_alive() for thread in threads):
            try:
                out.get_nowait()
            except queue.Empty:
                for thread in threads:
                    thread.join(0.05 / len(threads))


def decode_batches(path: Path, wanted: np.ndarray, batch_size: int, gap: int, seekable: bool = True,
                   check: Callable[[], None] = lambda: None,
                   stop: Callable[[], bool] = lambda: False,
                   threads: int | None = None) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """``read_frames``' decoding, in the caller's thread: (frame indices, BGR frames) batches of
    ``wanted`` (sorted, distinct), grabbing gaps up to ``gap`` frames and seeking over longer ones
    where ``seekable`` (a seek is trusted only when the decoder then reports the frame asked; else
    decoding restarts from the start and seeks no more). ``check()`` runs before each batch is
    handed out; decoding ends early once ``stop()``. ``threads``: FFmpeg's (None: OpenCV's choice)."""
    import cv2

    cv2.setNumThreads(1)
    cap = _open(path, threads)
    try:
        position, seek = 0, seekable
        batch_idx: list[int] = []
        batch: list[np.ndarray] = []
        for target in wanted:
            if seek and target - position > gap:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(target))
                if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == target:
                    position = int(target)
                else:  # an inexact seek: decode forward from the start instead, and seek no more
                    seek = False
                    cap.release()
                    cap = _open(path, threads)
                    position = 0
            while position < target:
                if stop():
                    return
                if not cap.grab():
                    raise VideoError(f"{path}: frame {position} could not be decoded (the file ends or is "
                                     f"damaged there); frame {int(target)} was asked")
                position += 1
            ok, frame = cap.read()
            if not ok or frame is None:
                raise VideoError(f"{path}: frame {int(target)} could not be decoded (the file ends or is "
                                 "damaged there)")
            position += 1
            batch_idx.append(int(target))
            batch.append(frame)
            if len(batch) == batch_size:
                check()
                yield np.array(batch_idx), batch
                batch_idx, batch = [], []
            if stop():
                return
        if batch_idx:
            check()
            yield np.array(batch_idx), batch
    finally:
        cap.release()


def decode_costs(path: str | Path, start: int = 0, n: int = 100) -> tuple[float, float]:
    """Measured seconds per frame of a full read (decode + convert) and of a grab (decode
    only), on ``n`` frames each from ``start``: the two frame kinds of a scan.

    """
    import cv2

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


def seek_cost(path: str | Path, frames: int, seeks: int = 6) -> float | None:
    """Seconds per seek and read, over ``seeks`` seeks spread over the video's ``frames`` frames;
    None where the video is too short to measure or a seek fails or lands elsewhere."""
    import cv2

    if frames < 4 * seeks:
        return None
    cap = _open(Path(path))
    try:
        cap.read()
        spent = 0.0
        for i in range(seeks):
            target = int((i + 0.37) * frames / seeks)
            t = time.perf_counter()
            cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            landed = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == target
            ok = cap.read()[0]
            spent += time.perf_counter() - t
            if not (landed and ok):
                return None
    except cv2.error:  # a backend that cannot seek: measured as "no seek"
        return None
    finally:
        cap.release()
    return spent / seeks


def seek_gap(path: str | Path, frames: int, costs: tuple[float, float] | None = None) -> int:
    """The gap, in frames, past which a seek costs less than grabbing the frames between: (a
    seek and read − a read) / a grab (:func:`seek_cost`; ``costs``: (read, grab) seconds per
    frame as :func:`decode_costs` measures them, measured here when not given). On the composed
    hour (MPEG-4) 28-30 frames, on vtest about 140 (``benchmarks/results/seek_gap*.json``). A video
    too short to measure, or whose seeks fail, gets SEEK_GAP.
    """
    seek = seek_cost(path, frames)
    if seek is None:
        return SEEK_GAP
    read, grab = costs if costs is not None else decode_costs(path, start=frames // 3, n=min(60, frames // 4))
    return max(1, math.ceil((seek - read) / max(grab, 1e-6)))
