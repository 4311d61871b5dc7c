"""Running cascades: labelling the planning sample, and answering an atom over a scan.

The sample pass decodes each sample frame once: the reference labels the ones the store has not
seen, and every frame is also kept downscaled for the difference detectors and specialized
models. The cascade pass answers frames already labelled from their stored labels (those are
only grabbed by the decoder, never converted), decodes the rest, lets the difference detector
answer "no" where the frame looks like the background, lets the specialized model answer where
its thresholds allow, and sends only what is left to the reference (whose labels are stored, so
a frame is never sent twice).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from vql.engine import executor
from vql.engine.executor import Context
from vql.engine.video import VideoInfo, decode_costs, read_frames
from vql.planner.cascade import Atom, CascadeChoice
from vql.planner.cost import Costs
from vql.planner.skipping import anchors
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


def atom_truth(ctx: Context, info: VideoInfo, version: str, atom: Atom, frames: np.ndarray) -> np.ndarray:
    """The atom's truth on labelled ``frames`` (a frame without detections counts 0 objects)."""
    frames = np.asarray(frames, np.int64)
    if not len(frames):
        return np.zeros(0, bool)
    counts = atom_counts(ctx, info, version, atom, int(frames.min()), int(frames.max()))
    return np.array([bool(atom.holds(np.array(counts.get(int(f), 0)))) for f in frames], bool)


def sample_pass(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, frames: np.ndarray,
                sizes=(32, 64), label: str = "") -> tuple[dict[int, dict[int, np.ndarray]], Costs]:
    """Label the sample (reusing stored labels) and keep it downscaled; measure per-frame costs
    (the reference on the frames it labels; reading and grabbing once per video and machine).
    ``label``: what the progress bar says is being done."""
    done = set(ctx.store.labelled_frames(info.fingerprint, version, int(frames.min()), int(frames.max())).tolist())
    small: dict[int, dict[int, np.ndarray]] = {s: {} for s in sizes}
    ref_s = 0.0
    referenced = decoded = 0
    label = label or f"labelling planning frames of {info.path.split('/')[-1]}"
    with Progress(len(frames), "frames", label, enabled=ctx.progress) as bar:
        for indices, batch in read_frames(info, frames, executor.LABEL_BATCH):
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
    ctx.count("frames_cached", decoded - referenced)
    # a few frames' time is mostly warm-up: below one labelling batch, the calibrated cost
    reference = ref_s / referenced if referenced >= executor.LABEL_BATCH else reference_cost(ctx, model)
    key = f"decode_cost:{info.fingerprint}"
    if key not in ctx.calibration:
        ctx.calibration[key] = decode_costs(info.path, start=int(np.median(frames)))
    read, grab = ctx.calibration[key]
    return small, Costs(decode=read, diff=0.0, cnn=0.0, reference=reference, grab=grab)


def reference_cost(ctx: Context, model: ReferenceModel) -> float:
    """Seconds per frame of the reference, measured once per machine (vql_calibration) on a small
    batch: the best of two timed runs after a warm-up run of the same batch (the first batch
    after loading ran 1.6-3.5x slower per frame than later ones on a 2-core CPU)."""
    key = f"reference_cost:{model.version}:{model.device}"
    if key not in ctx.calibration:
        frames = [np.zeros((576, 768, 3), np.uint8)] * 8
        model.detect(frames)
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            model.detect(frames)
            runs.append((time.perf_counter() - t) / len(frames))
        ctx.calibration[key] = min(runs)
    return ctx.calibration[key]


@dataclass
class OperatorStats:
    """What one operator of a cascade did in a run (EXPLAIN ANALYZE prints these)."""

    name: str
    frames_in: int = 0
    decided: int = 0
    passed_on: int = 0
    seconds: float = 0.0

    def row(self) -> dict:
        return {"operator": self.name, "frames_in": self.frames_in, "decided": self.decided,
                "passed_on": self.passed_on, "seconds": round(self.seconds, 4)}


def run_cascade(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                first: int, last: int, evaluate: np.ndarray | None = None) -> tuple[np.ndarray, list[OperatorStats]]:
    """The atom's answer for the frames of [first, last] marked in ``evaluate`` (all by default),
    and what each operator did. Frames not marked are left False and never decoded."""
    atom = choice.atom
    n = max(0, last - first + 1)
    evaluate = np.ones(n, bool) if evaluate is None else evaluate
    answer = np.zeros(n, bool)
    cached = OperatorStats("stored labels", frames_in=int(evaluate.sum()))
    t0 = time.perf_counter()
    known = atom_counts(ctx, info, version, atom, first, last)
    for f, c in known.items():
        if evaluate[f - first]:
            answer[f - first] = bool(atom.holds(np.array(c)))
            cached.decided += 1
    cached.seconds = time.perf_counter() - t0
    todo = np.array([first + i for i in np.flatnonzero(evaluate) if first + i not in known], np.int64)
    cached.passed_on = len(todo)
    ctx.count("frames_cached", cached.decided)
    chosen = choice.chosen
    ref = OperatorStats(f"reference {model.name}", frames_in=len(todo), decided=len(todo))
    if chosen is None:  # the exact plan: the one labelling loop of exact scans, then the stored labels
        t0 = time.perf_counter()
        executor.label_frames(ctx, info, model, version, todo, f"{atom.short_text}: {model.name} (exact)")
        ref.seconds = time.perf_counter() - t0
        wanted = set(todo.tolist())
        for f, c in atom_counts(ctx, info, version, atom, first, last).items():
            if f in wanted:
                answer[f - first] = bool(atom.holds(np.array(c)))
        ctx.count("frames_sent_to_reference", len(todo))
        return answer, [cached, ref]
    # frame skipping: the cascade runs on each frame's anchor; stored anchors answer from their
    # labels. Under a t−Δ gate every frame is read and a frame off its anchor that differs from
    # it by delta_Δ or more goes through the cascade itself (``answering`` in the planner).
    computed = np.zeros(n, bool)
    asked, anchor_of = todo, anchors(todo, first, chosen.skip)
    gate = chosen.gate
    inherit = anchor_of != asked  # refined by the gate as frames are read
    for a in np.unique(anchor_of):
        if int(a) in known:
            computed[a - first] = bool(atom.holds(np.array(known[int(a)])))
    unknown_anchors = np.array([a for a in np.unique(anchor_of) if int(a) not in known], np.int64)
    if gate is None:
        skipped = OperatorStats(f"skip {chosen.skip}: frames inheriting their anchor's answer (only grabbed)",
                                frames_in=len(asked), decided=int(inherit.sum()), passed_on=len(unknown_anchors))
        todo = unknown_anchors
    else:
        skipped = OperatorStats(f"skip {chosen.skip}, t-Δ gate {gate.name}: frames off an anchor inheriting its answer",
                                frames_in=int(inherit.sum()))
        todo = np.union1d(asked, anchor_of)  # stored anchors are read too: the gate compares with them
    decode = OperatorStats("decode and downscale (frames not in the store" + (" and their anchors" if gate else "")
                           + "; the rest only grabbed)", frames_in=len(todo), passed_on=len(todo))
    diff = OperatorStats(f"difference {chosen.detector.name}" if chosen.detector else "")
    cnn = OperatorStats(f"specialized {chosen.model.arch.name}" if chosen.model else "")
    ref = OperatorStats(f"reference {model.name}")
    pending: list[tuple[int, np.ndarray]] = []
    cls, pred = atom.predicate.class_id, atom.predicate
    position = {int(f): i for i, f in enumerate(asked)}
    anchor_images: dict[int, np.ndarray] = {}
    sizes = {chosen.detector.size} if chosen.detector else set()
    sizes |= {chosen.model.arch.size} if chosen.model else set()
    sizes |= {gate.size} if gate else set()

    def flush(final: bool = False) -> None:
        while len(pending) >= executor.LABEL_BATCH or (final and pending):
            send(pending[: executor.LABEL_BATCH])
            del pending[: executor.LABEL_BATCH]

    def send(part: list[tuple[int, np.ndarray]]) -> None:  # one reference batch, one stored transaction
        t1 = time.perf_counter()
        ids = [f for f, _ in part]
        dets = model.detect([img for _, img in part])
        ctx.store.save_labels(info.fingerprint, version, model.classes, ids, dets)
        for f, d in zip(ids, dets):
            computed[f - first] = bool(atom.holds(np.array(d.count(cls, pred.min_score, pred.region, (info.width, info.height)))))
        ref.frames_in += len(ids)
        ref.decided += len(ids)
        ref.seconds += time.perf_counter() - t1

    def route(indices: np.ndarray, small: dict[int, np.ndarray]) -> np.ndarray:
        """Which frames of a read batch the stages must answer: unknown anchors, and under a
        gate the frames off an anchor that differ from it by delta_Δ or more."""
        if gate is None:
            return np.ones(len(indices), bool)
        t1 = time.perf_counter()
        own = anchors(indices, first, chosen.skip)
        is_anchor = own == indices
        for i in np.flatnonzero(is_anchor):
            anchor_images[int(indices[i])] = small[gate.size][i]
        off = np.flatnonzero(~is_anchor)
        through = np.zeros(len(indices), bool)
        if len(off):
            g = gate.scores(small[gate.size][off], np.stack([anchor_images[int(a)] for a in own[off]]))
            through[off] = g >= chosen.thresholds.gate_delta
            for i, passed in zip(off, through[off]):
                inherit[position[int(indices[i])]] = not passed
            skipped.decided += int((~through[off]).sum())
            skipped.passed_on += int(through[off].sum())
        for a in [a for a in anchor_images if a < own[-1]]:
            del anchor_images[a]  # frames come in order: no later frame has this anchor
        skipped.seconds += time.perf_counter() - t1
        return through | (is_anchor & np.isin(indices, unknown_anchors))

    with Progress(len(todo), "frames", f"{atom.short_text}: cascade", enabled=ctx.progress) as bar:
        t0 = time.perf_counter()
        for indices, batch in read_frames(info, todo, 64):
            small = {s: downscale(batch, s) for s in sizes}
            decode.seconds += time.perf_counter() - t0
            run = route(indices, small)
            indices, batch = indices[run], [img for img, r in zip(batch, run) if r]
            small = {s: images[run] for s, images in small.items()}
            t1 = time.perf_counter()
            d_scores = c_scores = None
            if chosen.detector is not None:
                d_scores = chosen.detector.scores(small[chosen.detector.size])
                passing = d_scores >= chosen.thresholds.delta
                diff.frames_in += len(indices)
                diff.decided += int((~passing).sum())
                diff.passed_on += int(passing.sum())
                t2 = time.perf_counter()
                diff.seconds += t2 - t1
                t1 = t2
            else:
                passing = np.ones(len(indices), bool)
            if chosen.model is not None:
                c_scores = np.zeros(len(indices), np.float32)
                if passing.any():
                    c_scores[passing] = chosen.model.scores(small[chosen.model.arch.size][passing])
                cnn.frames_in += int(passing.sum())
                cnn.seconds += time.perf_counter() - t1
            said_no, said_yes = chosen.decide(d_scores, c_scores, len(indices))
            computed[indices - first] = said_yes
            ask = ~said_no & ~said_yes
            if chosen.model is not None:
                cnn.decided += int((passing & ~ask).sum())
                cnn.passed_on += int(ask.sum())
            for i in np.flatnonzero(ask):
                pending.append((int(indices[i]), batch[i]))
            flush()
            bar.update(len(run))
            t0 = time.perf_counter()
        flush(final=True)
    answer[asked - first] = np.where(inherit, computed[anchor_of - first], computed[asked - first])
    ops = [cached] + ([skipped] if chosen.skip > 1 else []) + [decode] + [s for s in (diff, cnn) if s.name] + [ref]
    ctx.count("frames_decided_by_difference", diff.decided)
    ctx.count("frames_decided_by_specialized", cnn.decided)
    ctx.count("frames_sent_to_reference", ref.frames_in)
    ctx.count("frames_labelled", ref.frames_in)
    ctx.count("label_seconds", ref.seconds)
    return answer, ops
