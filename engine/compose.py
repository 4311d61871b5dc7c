"""Long fixed-camera videos composed from real footage.

From a source clip (default: vtest.avi) the composer takes

1. the *plate*: the per-pixel median of a frame sample, an empty view of the scene (checked
   with the reference: it must find no object on it);
2. *cut-outs*: the reference's person boxes, each with a foreground mask from its difference
   to the plate (thresholded, closed, feathered), and a *depth model*: box height as a linear
   function of the foot's y position, fitted on the same boxes;

and writes a video of any length: the plate with cut-outs walking along straight paths that enter
and leave the picture, scaled by the depth model, at a requested presence rate (share of frames
with someone in view) with occasional groups, under slow lighting drift and sensor noise.
Everything is drawn from one seed; frames are composed and encoded one at a time (memory does not
grow with length). A side file (``OUT.placements.csv``) records what was placed in each frame.
The truth for queries remains the reference's output on the composed frames, never this record.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vql.engine.video import probe, read_frames
from vql.errors import VqlError
from vql.progress import Progress
from vql.udfs.reference import ReferenceModel

CODECS = {"mpeg4": "mpeg4", "h264": "libx264"}


class ComposeError(VqlError):
    """Bad composer arguments or an unusable source."""


@dataclass(frozen=True, slots=True)
class Cutout:
    image: np.ndarray  # h×w×3 uint8 BGR
    alpha: np.ndarray  # h×w float32 in [0, 1]
    class_name: str
    source_frame: int


@dataclass(frozen=True, slots=True)
class Library:
    """What a source clip provides: the plate, cut-outs and the depth model."""

    plate: np.ndarray
    fps: float
    cutouts: tuple[Cutout, ...]
    depth: tuple[float, float]  # height = depth[0] + depth[1] * foot_y (pixels)
    walk_band: tuple[float, float]  # foot y range seen in the source
    plate_objects: int  # reference detections (score ≥ 0.5) on the plate

    def height_at(self, foot_y: float) -> float:
        return max(12.0, self.depth[0] + self.depth[1] * foot_y)


@dataclass(frozen=True, slots=True)
class Track:
    track_id: int
    cutout: int
    start: int
    end: int
    foot_from: tuple[float, float]
    foot_to: tuple[float, float]

    def foot(self, frame: int) -> tuple[float, float]:
        t = (frame - self.start) / max(1, self.end - self.start)
        return (self.foot_from[0] + t * (self.foot_to[0] - self.foot_from[0]),
                self.foot_from[1] + t * (self.foot_to[1] - self.foot_from[1]))


@dataclass(frozen=True, slots=True)
class ComposeSpec:
    minutes: float
    presence: float
    seed: int = 0
    group_rate: float = 0.15  # share of appearances that are groups of 2–4
    noise: float = 2.0  # sensor noise, standard deviation in grey levels
    drift: float = 0.06  # lighting drift, relative amplitude
    drift_period_s: float = 300.0
    codec: str = "mpeg4"
    walk_seconds: tuple[float, float] = (4.0, 12.0)

    def __post_init__(self) -> None:
        if not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ComposeError(f"--minutes must be a positive number, got {self.minutes}")
        if not 0 < self.presence < 1:
            raise ComposeError(f"--presence must be between 0 and 1 (exclusive), got {self.presence}")
        if self.codec not in CODECS:
            raise ComposeError(f"--codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if not 0 <= self.group_rate <= 1:
            raise ComposeError(f"--group-rate must be between 0 and 1, got {self.group_rate}")
        if self.noise < 0 or self.drift < 0 or self.drift >= 1:
            raise ComposeError("--noise must be ≥ 0 and --drift in [0, 1)")


@dataclass
class ComposeReport:
    path: Path
    placements: Path
    frames: int
    seconds: float
    tracks: int
    placed_presence: float  # share of frames with an object at least half visible
    extra: dict = field(default_factory=dict)


# --- the library -------------------------------------------------------------------------


def make_plate(source: Path, step: int = 4) -> np.ndarray:
    """Per-pixel median of every ``step``-th frame."""
    info = probe(source)
    frames = [f for _, batch in read_frames(info, range(0, info.frames, step)) for f in batch]
    if len(frames) < 5:
        raise ComposeError(f"{source}: too few frames ({len(frames)}) to estimate an empty plate")
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def foreground_alpha(crop: np.ndarray, plate_crop: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """Soft foreground mask: summed |crop − plate| over BGR above ``threshold``, closed, feathered."""
    diff = np.abs(crop.astype(np.int16) - plate_crop.astype(np.int16)).sum(axis=2)
    mask = (diff > threshold).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32) / 255.0


def build_library(source: str | Path, model: ReferenceModel, class_name: str = "person",
                  sample_step: int = 8, min_score: float = 0.6) -> Library:
    """Plate, cut-outs and depth model from a source clip, judged by the reference ``model``."""
    source = Path(source)
    info = probe(source)
    plate = make_plate(source)
    class_id = model.class_index(class_name)
    plate_dets = model.detect([plate])[0]
    plate_objects = int((plate_dets.scores >= 0.5).sum())
    cutouts, feet, heights = [], [], []
    for indices, frames in read_frames(info, range(0, info.frames, sample_step), batch_size=16):
        for index, frame, dets in zip(indices, frames, model.detect(frames)):
            keep = (dets.classes == class_id) & (dets.scores >= min_score)
            boxes = dets.boxes[keep]
            for i, (x1, y1, x2, y2) in enumerate(boxes):
                feet.append(y2)
                heights.append(y2 - y1)
                others = np.delete(boxes, i, axis=0)
                if len(others) and _overlaps(boxes[i], others):
                    continue  # a cut-out must hold one object
                x1, y1 = max(0, int(x1)), max(0, int(y1))
                x2, y2 = min(info.width, int(math.ceil(x2))), min(info.height, int(math.ceil(y2)))
                if y2 - y1 < 40 or x2 - x1 < 12 or y2 >= info.height - 1 or x1 <= 0 or x2 >= info.width:
                    continue
                alpha = foreground_alpha(frame[y1:y2, x1:x2], plate[y1:y2, x1:x2])
                fill = float(alpha.mean())
                if not 0.2 <= fill <= 0.9:
                    continue
                cutouts.append(Cutout(frame[y1:y2, x1:x2].copy(), alpha, class_name, int(index)))
    if len(cutouts) < 3 or len(feet) < 5:
        raise ComposeError(f"{source}: the reference found too few isolated {class_name}s to cut out ({len(cutouts)})")
    slope, intercept = np.polyfit(np.array(feet), np.array(heights), 1)
    band = (float(np.percentile(feet, 5)), float(np.percentile(feet, 95)))
    return Library(plate, info.fps, tuple(cutouts), (float(intercept), float(slope)), band, plate_objects)


def _overlaps(box: np.ndarray, others: np.ndarray) -> bool:
    ix = np.maximum(0, np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]))
    iy = np.maximum(0, np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]))
    return bool((ix * iy > 0).any())


# --- the schedule ------------------------------------------------------------------------


def _walk(lib: Library, rng: np.random.Generator, start: int, track_id: int, cutout: int,
          walk_seconds: tuple[float, float]) -> Track:
    h, w = lib.plate.shape[:2]
    lo, hi = lib.walk_band
    y_a, y_b = rng.uniform(lo, hi, size=2)
    margin = lambda y: lib.height_at(y) * 0.5  # noqa: E731 - half a body width, roughly
    if rng.random() < 0.5:  # left to right or back
        a, b = (-margin(y_a), y_a), (w + margin(y_b), y_b)
    else:
        a, b = (w + margin(y_a), y_a), (-margin(y_b), y_b)
    if rng.random() < 0.25:  # some come up from the bottom edge instead
        x = rng.uniform(0.2 * w, 0.8 * w)
        a = (x, h + lib.height_at(h))
    seconds = rng.uniform(*walk_seconds)
    end = start + max(2, int(round(seconds * lib.fps)))
    return Track(track_id, cutout, start, end, (float(a[0]), float(a[1])), (float(b[0]), float(b[1])))



def visible_frames(lib: Library, track: Track) -> np.ndarray:
    """The frames where at least half of the track's sprite is inside the picture."""
    h, w = lib.plate.shape[:2]
    cut = lib.cutouts[track.cutout].image
    frames = np.arange(track.start, track.end + 1)
    t = (frames - track.start) / max(1, track.end - track.start)
    fx = track.foot_from[0] + t * (track.foot_to[0] - track.foot_from[0])
    fy = track.foot_from[1] + t * (track.foot_to[1] - track.foot_from[1])
    sh = np.maximum(12.0, lib.depth[0] + lib.depth[1] * np.minimum(fy, h))
    sw = sh * cut.shape[1] / cut.shape[0]
    inside_w = np.clip(np.minimum(fx + sw / 2, w) - np.maximum(fx - sw / 2, 0), 0, None)
    inside_h = np.clip(np.minimum(fy, h) - np.maximum(fy - sh, 0), 0, None)
    return frames[inside_w * inside_h >= 0.5 * sw * sh]


def schedule(lib: Library, spec: ComposeSpec, n_frames: int) -> list[Track]:
    """Appearances (single walkers or groups) separated by empty gaps. Each gap is chosen so that
    the share of frames so far with someone at least half in view tracks ``spec.presence``
    (each gap jittered ±50%), which keeps the composed video's presence rate on target."""
    rng = np.random.default_rng(spec.seed)
    mean_walk = sum(spec.walk_seconds) / 2 * lib.fps
    tracks: list[Track] = []
    covered = 0
    t = int(rng.exponential(mean_walk * (1 - spec.presence) / spec.presence))
    while t < n_frames:
        size = int(rng.integers(2, 5)) if rng.random() < spec.group_rate else 1
        group = [_walk(lib, rng, t + (int(rng.integers(0, max(1, int(lib.fps)))) if k else 0), len(tracks) + k,
                       int(rng.integers(len(lib.cutouts))), spec.walk_seconds) for k in range(size)]
        tracks.extend(group)
        seen = np.unique(np.concatenate([visible_frames(lib, g) for g in group]))
        covered += int((seen < n_frames).sum())
        end = max(g.end for g in group) + 1
        t = end + 1 + int(max(0.0, covered / spec.presence - end) * rng.uniform(0.5, 1.5))
    return tracks


# --- rendering ---------------------------------------------------------------------------


class _Renderer:
    def __init__(self, lib: Library, spec: ComposeSpec) -> None:
        self.lib, self.spec = lib, spec
        rng = np.random.default_rng([spec.seed, 1])
        h, w = lib.plate.shape[:2]
        self.noise_bank = [
            np.clip(rng.normal(0, spec.noise, (h, w, 3)), -127, 127).astype(np.int16) for _ in range(8)
        ] if spec.noise > 0 else []
        self.phase = float(rng.uniform(0, 2 * math.pi))
        self.plate = lib.plate.astype(np.float32)
        self._scaled: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _sprite(self, index: int, height: float) -> tuple[np.ndarray, np.ndarray]:
        cut = self.lib.cutouts[index]
        target = max(8, int(round(height / 2)) * 2)  # quantised: a small cache of scaled sprites
        key = (index, target)
        if key not in self._scaled:
            scale = target / cut.image.shape[0]
            size = (max(2, int(round(cut.image.shape[1] * scale))), target)
            self._scaled[key] = (cv2.resize(cut.image, size, interpolation=cv2.INTER_AREA).astype(np.float32),
                                 cv2.resize(cut.alpha, size, interpolation=cv2.INTER_AREA)[..., None])
            if len(self._scaled) > 512:
                self._scaled.pop(next(iter(self._scaled)))
        return self._scaled[key]

    def render(self, frame: int, active: Sequence[Track]) -> tuple[np.ndarray, list[tuple]]:
        img = self.plate.copy()
        h, w = img.shape[:2]
        placed = []
        for track in sorted(active, key=lambda tr: tr.foot(frame)[1]):  # far ones first
            fx, fy = track.foot(frame)
            sprite, alpha = self._sprite(track.cutout, self.lib.height_at(min(fy, h)))
            sh, sw = sprite.shape[:2]
            x1, y1 = int(round(fx - sw / 2)), int(round(fy - sh))
            cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x1 + sw), min(h, y1 + sh)
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            sub = (slice(cy1 - y1, cy2 - y1), slice(cx1 - x1, cx2 - x1))
            a = alpha[sub]
            roi = img[cy1:cy2, cx1:cx2]
            roi += a * (sprite[sub] - roi)
            visible = (cx2 - cx1) * (cy2 - cy1) / float(sw * sh)
            placed.append((track.track_id, self.lib.cutouts[track.cutout].class_name, x1, y1, x1 + sw, y1 + sh, visible))
        gain = 1.0 + self.spec.drift * math.sin(2 * math.pi * frame / (self.spec.drift_period_s * self.lib.fps) + self.phase)
        if gain != 1.0:
            img *= gain
        out = np.clip(img, 0, 255)
        if self.noise_bank:
            noise = self.noise_bank[(frame * 7919) % len(self.noise_bank)]
            out = np.clip(out + noise, 0, 255)
        return out.astype(np.uint8), placed


def check_output(out: str | Path) -> Path:
    """The output path, if it is one the composer can write."""
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".avi", ".mov"):
        raise ComposeError(f"output must be a .mp4, .mkv, .avi or .mov file, got {out.name}")
    if not out.parent.is_dir():
        raise ComposeError(f"output folder does not exist: {out.parent}")
    return out


def compose(lib: Library, out: str | Path, spec: ComposeSpec, progress: bool | None = None) -> ComposeReport:
    """Write the composed video and its placements file; returns a summary."""
    import av  # PyAV: MPEG-4 part 2 and H.264 (libx264) encoders

    out = check_output(out)
    n_frames = int(round(spec.minutes * 60 * lib.fps))
    tracks = schedule(lib, spec, n_frames)
    renderer = _Renderer(lib, spec)
    placements_path = out.with_suffix(".placements.csv")
    h, w = lib.plate.shape[:2]
    starts = sorted(tracks, key=lambda tr: tr.start)
    active: list[Track] = []
    next_track = 0
    present = 0
    fps_fraction = _fraction(lib.fps)
    try:
        container = av.open(str(out), "w")
    except Exception as e:  # PyAV raises its own error types
        raise ComposeError(f"cannot write {out}: {e}") from e
    with (container, placements_path.open("w", newline="") as side,
          Progress(n_frames, "frames", f"composing {out.name}", enabled=progress) as bar):
        stream = container.add_stream(CODECS[spec.codec], rate=fps_fraction)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if spec.codec == "h264":
            stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        writer = csv.writer(side)
        writer.writerow(["frame", "track", "class", "x1", "y1", "x2", "y2", "visible"])
        for frame in range(n_frames):
            while next_track < len(starts) and starts[next_track].start <= frame:
                active.append(starts[next_track])
                next_track += 1
            active = [tr for tr in active if tr.end >= frame]
            image, placed = renderer.render(frame, active)
            if any(p[6] >= 0.5 for p in placed):
                present += 1
            for p in placed:
                writer.writerow([frame, p[0], p[1], p[2], p[3], p[4], p[5], f"{p[6]:.3f}"])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
            bar.update(1)
        for packet in stream.encode():
            container.mux(packet)
    return ComposeReport(out, placements_path, n_frames, n_frames / lib.fps, len(tracks), present / max(1, n_frames))


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


# --- checking a composed video against the reference -------------------------------------


def read_placements(path: str | Path) -> dict[int, list[tuple[str, np.ndarray, float]]]:
    """frame -> [(class, box x1 y1 x2 y2, visible fraction)] from a placements file."""
    path = Path(path)
    if not path.is_file():
        raise ComposeError(f"placements file not found: {path}")
    out: dict[int, list] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            box = np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")], np.float32)
            out.setdefault(int(row["frame"]), []).append((row["class"], box, float(row["visible"])))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.maximum(0, np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]))
    iy = np.maximum(0, np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-6)


def check_composed(video: str | Path, model: ReferenceModel, sample: int = 500, seed: int = 0,
                   min_score: float = 0.5, placements: str | Path | None = None,
                   progress: bool | None = None) -> dict:
    """Compare the reference's labels on a random sample of composed frames with the record.

    Reports the share of frames where the reference sees someone (the presence rate that counts),
    the share where something is placed at least half visible, their agreement frame by frame,
    and per class the recall of well-visible placed objects (a detection of the class with
    IoU ≥ 0.3) and the share of detections that match nothing placed.
    """
    video = Path(video)
    info = probe(video)
    record = read_placements(placements or video.with_suffix(".placements.csv"))
    rng = np.random.default_rng(seed)
    frames = np.sort(rng.choice(info.frames, size=min(sample, info.frames), replace=False))
    classes = sorted({c for objs in record.values() for c, _, _ in objs} | {"person"})
    ids = {c: model.class_index(c) for c in classes}
    stats = {c: {"placed": 0, "found": 0, "detections": 0, "unmatched": 0} for c in classes}
    ref_present = placed_present = agree = 0
    with Progress(len(frames), "frames", "checking sampled frames with the reference", enabled=progress) as bar:
        for indices, images in read_frames(info, frames, batch_size=16):
            for index, dets in zip(indices, model.detect(images)):
                placed = record.get(int(index), [])
                seen = (dets.scores >= min_score) & np.isin(dets.classes, list(ids.values()))
                is_placed = any(v >= 0.5 for _, _, v in placed)
                ref_present += bool(seen.any())
                placed_present += is_placed
                agree += bool(seen.any()) == is_placed
                for c in classes:
                    boxes = dets.boxes[seen & (dets.classes == ids[c])]
                    mine = [b for cls, b, v in placed if cls == c]
                    stats[c]["detections"] += len(boxes)
                    stats[c]["unmatched"] += sum(1 for b in boxes if not mine or _iou(b, np.stack(mine)).max() < 0.3)
                    for cls, b, v in placed:
                        if cls == c and v >= 0.75:
                            stats[c]["placed"] += 1
                            stats[c]["found"] += bool(len(boxes)) and _iou(b, boxes).max() >= 0.3
            bar.update(len(indices))
    n = len(frames)
    return {
        "video": str(video), "frames_checked": n,
        "reference_presence": ref_present / n, "placed_presence": placed_present / n,
        "frame_agreement": agree / n,
        "per_class": {c: {"placed_visible": s["placed"], "recall": s["found"] / s["placed"] if s["placed"] else None,
                          "detections": s["detections"],
                          "unmatched_detection_share": s["unmatched"] / s["detections"] if s["detections"] else None}
                      for c, s in stats.items()},
    }
