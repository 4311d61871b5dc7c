"""Running cascades: labelling the planning sample, and answering an atom over a scan.

The sample pass decodes each sample frame once: the reference labels the ones the store has not
seen, and every frame is also kept downscaled for the specialized models. The cascade pass
decodes the scan, scores each frame with the specialized model, answers from the thresholds
where it may, and sends only the undecided frames to the reference (whose labels are stored, so a
frame is never sent twice). Frames already labelled are answered from their labels.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from vql.engine import executor
from vql.engine.executor import Context
from vql.engine.video import VideoInfo, read_frames
from vql.planner.cascade import Atom, CascadeChoice
from vql.planner.cost import Costs
from vql.planner.specialized import downscale
from vql.progress import Progress
from vql.udfs.reference import ReferenceModel


def atom_counts(ctx: Context, info: VideoInfo, version: str, atom: Atom, first: int, last: int) -> dict[int, int]:
    """Per labelled frame in [first, last]: the number of objects the atom's predicate counts."""
    from vql.engine.executor import predicate_sql

    pred = replace(atom.predicate, column="n")
    rows = ctx.store.con.execute(
        f"SELECT f.frame, coalesce(l.n, 0) FROM vql_labelled_frames f LEFT JOIN ("
        f"SELECT frame, {predicate_sql(pred, info)} "
        f"FROM vql_labels WHERE video_fp = ? AND model_version = ? AND frame BETWEEN ? AND ? GROUP BY frame) l "
        f"ON l.frame = f.frame WHERE f.video_fp = ? AND f.model_version = ? AND f.frame BETWEEN ? AND ?",
        [info.fingerprint, version, first, last, info.fingerprint, version, first, last],
    ).fetchall()
    return {int(f): int(n) for f, n in rows}


def sample_pass(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, frames: np.ndarray,
                sizes=(32, 64)) -> tuple[dict[int, dict[int, np.ndarray]], Costs]:
    """Label the sample (reusing stored labels) and keep it downscaled; measure per-frame costs."""
    done = set(ctx.store.labelled_frames(info.fingerprint, version, int(frames.min()), int(frames.max())).tolist())
    small: dict[int, dict[int, np.ndarray]] = {s: {} for s in sizes}
    decode_s = ref_s = 0.0
    referenced = decoded = 0
    with Progress(len(frames), "frames", f"sample for planning on {info.path.split('/')[-1]}: ", enabled=ctx.progress) as bar:
        t0 = time.perf_counter()
        for indices, batch in read_frames(info.path, frames, executor.LABEL_BATCH):
            decode_s += time.perf_counter() - t0
            decoded += len(indices)
            for s in sizes:
                for f, img in zip(indices, downscale(batch, s)):
                    small[s][int(f)] = img
            todo = [i for i, f in enumerate(indices) if int(f) not in done]
            if todo:
                t1 = time.perf_counter()
                dets = model.detect([batch[i] for i in todo])
                ref_s += time.perf_counter() - t1
                referenced += len(todo)
                ctx.store.save_labels(info.fingerprint, version, model.classes, [int(indices[i]) for i in todo], dets)
                ctx.count("frames_labelled", len(todo))
            bar.update(len(indices))
            t0 = time.perf_counter()
    ctx.count("frames_cached", decoded - referenced)
    reference = ref_s / referenced if referenced else reference_cost(ctx, model)
    decode = decode_s / max(1, decoded)
    return small, Costs(decode=decode, grab=decode * 0.5, diff=0.0, cnn=0.0, reference=reference)


def reference_cost(ctx: Context, model: ReferenceModel) -> float:
    """Seconds per frame of the reference, measured once per session on a small batch."""
    key = f"reference_cost:{model.version}"
    if key not in ctx.calibration:
        frames = [np.zeros((576, 768, 3), np.uint8)] * 8
        model.detect(frames[:1])
        t = time.perf_counter()
        model.detect(frames)
        ctx.calibration[key] = (time.perf_counter() - t) / len(frames)
    return ctx.calibration[key]


def run_cascade(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                first: int, last: int) -> np.ndarray:
    """The atom's answer for every frame of [first, last] (a boolean array)."""
    atom = choice.atom
    known = atom_counts(ctx, info, version, atom, first, last)
    answer = np.zeros(last - first + 1, bool)
    for f, n in known.items():
        answer[f - first] = bool(atom.holds(np.array(n)))
    ctx.count("frames_cached", len(known))
    if choice.chosen is None:  # exact: label whatever is missing
        todo = np.array([f for f in range(first, last + 1) if f not in known], np.int64)
        executor.label_frames(ctx, info, model, version, todo, f"{model.name} (exact) {atom.column}: ")
        for f, n in atom_counts(ctx, info, version, atom, first, last).items():
            answer[f - first] = bool(atom.holds(np.array(n)))
        return answer
    trained, t = choice.chosen.model, choice.chosen.thresholds
    size = trained.arch.size
    decided = sent = 0
    with Progress(last - first + 1, "frames", f"cascade {atom.column}: ", enabled=ctx.progress) as bar:
        for indices, batch in read_frames(info.path, np.arange(first, last + 1), 64):
            scores = trained.scores(downscale(batch, size))
            unknown = np.array([int(f) not in known for f in indices])
            ask = unknown & (scores >= t.c_low) & (scores <= t.c_high)
            for i in np.flatnonzero(unknown & ~ask):
                answer[indices[i] - first] = scores[i] > t.c_high
            decided += int((unknown & ~ask).sum())
            if ask.any():
                frames = [batch[i] for i in np.flatnonzero(ask)]
                dets = model.detect(frames)
                ids = [int(indices[i]) for i in np.flatnonzero(ask)]
                ctx.store.save_labels(info.fingerprint, version, model.classes, ids, dets)
                cls = atom.predicate.class_id
                for f, d in zip(ids, dets):
                    n = d.count(cls, atom.predicate.min_score, atom.predicate.region, (info.width, info.height))
                    answer[f - first] = bool(atom.holds(np.array(n)))
                sent += len(ids)
            bar.update(len(indices))
    ctx.count("frames_decided_by_specialized", decided)
    ctx.count("frames_sent_to_reference", sent)
    ctx.count("frames_labelled", sent)
    return answer
