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
from dataclasses import dataclass

import numpy as np

from vql.engine import executor
from vql.engine.executor import Context, atom_counts
from vql.engine.video import VideoInfo, decode_costs, read_frames
from vql.planner.cascade import CascadeChoice
from vql.planner.cost import Costs
from vql.planner.skipping import anchors
from vql.engine.views import View, downscale
from vql.progress import Progress
from vql.udfs.reference import ReferenceModel


def sample_pass(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, frames: np.ndarray,
                views: tuple[View, ...], label: str = "") -> tuple[dict[View, dict[int, np.ndarray]], Costs]:
    """Label the sample (reusing stored labels) and keep it downscaled, once per view its stages
    read (``planner/cascade.py: stage_views``); measure per-frame costs
    (the reference on the frames it labels; reading and grabbing once per video and machine).
    ``label``: what the progress bar says is being done."""
    done = set(ctx.store.labelled_frames(info.fingerprint, version, int(frames.min()), int(frames.max())).tolist())
    small: dict[View, dict[int, np.ndarray]] = {v: {} for v in views}
    ref_s = 0.0
    referenced = decoded = 0
    label = label or f"labelling planning frames of {info.path.split('/')[-1]}"
    with Progress(len(frames), "frames", label, enabled=ctx.progress) as bar:
        for indices, batch in read_frames(info, frames, executor.LABEL_BATCH):
            decoded += len(indices)
            for v in views:
                for f, img in zip(indices, downscale(batch, *v)):
                    small[v][int(f)] = img
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
    return small, Costs(decode=read, reference=reference, grab=grab)


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
    if choice.chosen is None:  # the exact plan: the one labelling loop of exact scans, then the stored labels
        ref = OperatorStats(f"reference {model.name}", frames_in=len(todo), decided=len(todo))
        t0 = time.perf_counter()
        executor.label_frames(ctx, info, model, todo, f"{atom.short_text}: {model.name} (exact)")
        ref.seconds = time.perf_counter() - t0
        wanted = set(todo.tolist())
        for f, c in atom_counts(ctx, info, version, atom, first, last).items():
            if f in wanted:
                answer[f - first] = bool(atom.holds(np.array(c)))
        ctx.count("frames_sent_to_reference", len(todo))
        return answer, [cached, ref]
    run = _CascadeRun(ctx, info, model, version, choice, first, n, known)
    return run.answer(todo, answer, cached)


class _CascadeRun:
    """One run of an atom's cascade over the frames the store cannot answer: frames are read in
    order and downscaled; under frame skipping only anchors (and, with a t−Δ gate, the frames
    that differ from their anchor) go through the stages; each stage of the candidate decides
    what reaches it (``planner/stages.py``); what no stage decides goes to the reference in
    batches, whose labels are stored as they come."""

    def __init__(self, ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                 first: int, n: int, known: dict[int, int]) -> None:
        self.ctx, self.info, self.model, self.version = ctx, info, model, version
        self.atom, self.chosen, self.first = choice.atom, choice.chosen, first
        self.known = known
        self.computed = np.zeros(n, bool)  # the cascade's answer per frame it evaluated
        self.pending: list[tuple[int, np.ndarray]] = []
        self.anchor_images: dict[int, np.ndarray] = {}
        self.stage_ops = [OperatorStats(f"{st.kind.label} {st.name}") for st in self.chosen.stages]
        self.ref = OperatorStats(f"reference {model.name}")
        gate = self.chosen.gate
        self.views = {st.op.view for st in self.chosen.stages} | ({gate.view} if gate else set())

    def answer(self, asked: np.ndarray, answer: np.ndarray, cached: OperatorStats):
        """Frame skipping: the cascade runs on each frame's anchor; stored anchors answer from
        their labels. Under a t−Δ gate every frame is read and a frame off its anchor that
        differs from it by gate_delta or more goes through the stages itself."""
        chosen, first = self.chosen, self.first
        self.asked, self.anchor_of = asked, anchors(asked, first, chosen.skip)
        self.inherit = self.anchor_of != asked  # refined by the gate as frames are read
        self.position = {int(f): i for i, f in enumerate(asked)}
        for a in np.unique(self.anchor_of):
            if int(a) in self.known:
                self.computed[a - first] = bool(self.atom.holds(np.array(self.known[int(a)])))
        self.unknown_anchors = np.array([a for a in np.unique(self.anchor_of) if int(a) not in self.known], np.int64)
        if chosen.gate is None:
            self.skipped = OperatorStats(f"skip {chosen.skip}: frames inheriting their anchor's answer (only grabbed)",
                                         frames_in=len(asked), decided=int(self.inherit.sum()),
                                         passed_on=len(self.unknown_anchors))
            todo = self.unknown_anchors
        else:
            self.skipped = OperatorStats(f"skip {chosen.skip}, t-Δ gate {chosen.gate.name}: frames off an anchor "
                                         "inheriting its answer", frames_in=int(self.inherit.sum()))
            todo = np.union1d(asked, self.anchor_of)  # stored anchors are read too: the gate compares with them
        decode = OperatorStats("decode and downscale (frames not in the store" + (" and their anchors" if chosen.gate
                               else "") + "; the rest only grabbed)", frames_in=len(todo), passed_on=len(todo))
        with Progress(len(todo), "frames", f"{self.atom.short_text}: cascade", enabled=self.ctx.progress) as bar:
            t0 = time.perf_counter()
            for indices, batch in read_frames(self.info, todo, 64):
                small = {v: downscale(batch, *v) for v in self.views}
                decode.seconds += time.perf_counter() - t0
                run = self.route(indices, small)
                self.stages(indices[run], [img for img, r in zip(batch, run) if r],
                            {s: images[run] for s, images in small.items()})
                self.flush()
                bar.update(len(run))
                t0 = time.perf_counter()
            self.flush(final=True)
        answer[asked - first] = np.where(self.inherit, self.computed[self.anchor_of - first], self.computed[asked - first])
        ops = ([cached] + ([self.skipped] if chosen.skip > 1 else []) + [decode] + self.stage_ops + [self.ref])
        for label, key in (("difference", "frames_decided_by_difference"), ("specialized", "frames_decided_by_specialized")):
            self.ctx.count(key, sum(o.decided for st, o in zip(chosen.stages, self.stage_ops) if st.kind.label == label))
        self.ctx.count("frames_sent_to_reference", self.ref.frames_in)
        self.ctx.count("frames_labelled", self.ref.frames_in)
        self.ctx.count("label_seconds", self.ref.seconds)
        return answer, ops

    def route(self, indices: np.ndarray, small: dict[View, np.ndarray]) -> np.ndarray:
        """Which frames of a read batch the stages must answer: unknown anchors, and under a
        gate the frames off an anchor that differ from it by gate_delta or more."""
        chosen, gate = self.chosen, self.chosen.gate
        if gate is None:
            return np.ones(len(indices), bool)
        t1 = time.perf_counter()
        own = anchors(indices, self.first, chosen.skip)
        is_anchor = own == indices
        for i in np.flatnonzero(is_anchor):
            self.anchor_images[int(indices[i])] = small[gate.view][i]
        off = np.flatnonzero(~is_anchor)
        through = np.zeros(len(indices), bool)
        if len(off):
            g = gate.scores(small[gate.view][off], np.stack([self.anchor_images[int(a)] for a in own[off]]))
            through[off] = g >= chosen.gate_delta
            for i, passed in zip(off, through[off]):
                self.inherit[self.position[int(indices[i])]] = not passed
            self.skipped.decided += int((~through[off]).sum())
            self.skipped.passed_on += int(through[off].sum())
        for a in [a for a in self.anchor_images if a < own[-1]]:
            del self.anchor_images[a]  # frames come in order: no later frame has this anchor
        self.skipped.seconds += time.perf_counter() - t1
        return through | (is_anchor & np.isin(indices, self.unknown_anchors))

    def stages(self, indices: np.ndarray, batch: list, small: dict[View, np.ndarray]) -> None:
        """Each stage in order on the frames still open; what none decides waits for the reference."""
        open_ = np.ones(len(indices), bool)
        for stage, op in zip(self.chosen.stages, self.stage_ops):
            t1 = time.perf_counter()
            reach = np.flatnonzero(open_)
            no, yes = stage.band.decide(stage.op.scores(small[stage.op.view][reach]) if len(reach) else np.zeros(0))
            self.computed[indices[reach[yes]] - self.first] = True
            open_[reach[no | yes]] = False
            op.frames_in += len(reach)
            op.decided += int((no | yes).sum())
            op.passed_on += int((~no & ~yes).sum())
            op.seconds += time.perf_counter() - t1
        for i in np.flatnonzero(open_):
            self.pending.append((int(indices[i]), batch[i]))

    def flush(self, final: bool = False) -> None:
        while len(self.pending) >= executor.LABEL_BATCH or (final and self.pending):
            self.send(self.pending[: executor.LABEL_BATCH])
            del self.pending[: executor.LABEL_BATCH]

    def send(self, part: list[tuple[int, np.ndarray]]) -> None:
        """One reference batch, one stored transaction."""
        t1 = time.perf_counter()
        ids = [f for f, _ in part]
        dets = self.model.detect([img for _, img in part])
        self.ctx.store.save_labels(self.info.fingerprint, self.version, self.model.classes, ids, dets)
        pred, size = self.atom.predicate, (self.info.width, self.info.height)
        for f, d in zip(ids, dets):
            self.computed[f - self.first] = bool(self.atom.holds(np.array(d.count(pred.class_id, pred.min_score,
                                                                                   pred.region, size))))
        self.ref.frames_in += len(ids)
        self.ref.decided += len(ids)
        self.ref.seconds += time.perf_counter() - t1
