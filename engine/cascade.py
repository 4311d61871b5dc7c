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
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vql.engine import executor
from vql.engine.executor import Context, atom_counts
from vql.engine.video import VideoInfo, read_frames
from vql.plan import Atom
from vql.planner.cascade import Candidate, CascadeChoice
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
    ``label``: what the progress bar says is being done.

    Where the workers or Ray take them (``SET workers``, ``executor.label_with``), the frames
    without stored labels are labelled there first, and this process then only reads and
    downscales the sample; the reference's cost is then the calibrated one."""
    done = set(ctx.store.labelled_frames(info.fingerprint, version, int(frames.min()), int(frames.max())).tolist())
    small: dict[View, dict[int, np.ndarray]] = {v: {} for v in views}
    ref_s = 0.0
    referenced = decoded = 0
    label = label or f"labelling planning frames of {info.path.split('/')[-1]}"
    missing = np.array(sorted(set(frames.tolist()) - done), np.int64)
    if executor.pool_recipes(ctx, info, [model], missing) is not None:
        with Progress(len(missing), "frames", label, enabled=ctx.progress) as bar:
            executor.label_with(ctx, info, [model], missing, bar.update)
        done.update(missing.tolist())
        referenced = len(missing)
        label = f"reading {label.removeprefix('labelling ')}"
    with Progress(len(frames), "frames", label, enabled=ctx.progress) as bar:
        for indices, batch in read_frames(info, frames, executor.LABEL_BATCH,
                                          seek_gap=executor.sparse_seek_gap(ctx, info, frames)):
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
    ctx.count("label_seconds", ref_s)  # as the workers' labelling counts it (executor.label_with)
    # a few frames' time is mostly warm-up: below one labelling batch (or none timed here), the
    # calibrated cost
    reference = ref_s / referenced if referenced >= executor.LABEL_BATCH and ref_s else reference_cost(ctx, model)
    read, grab = executor.decode_cost(ctx, info, frames)
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


@dataclass(frozen=True)
class PassRequest:
    """A cascade's pass over ``frames`` that the caller runs: :func:`run_pass` alone, or
    ``engine/members.py`` with a video set's other members' passes in one run of the workers.
    The reference's labels go to ``store(frames, detections)``; ``label`` names its progress bar."""

    info: VideoInfo
    model: ReferenceModel
    version: str
    atom: Atom
    chosen: Candidate
    first: int
    unknown: np.ndarray
    frames: np.ndarray
    store: Callable[[list[int], list], None]
    label: str


Steps = Generator[PassRequest, "PassResult", Any]  # yields the passes it needs, is sent their results


def run_cascade(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                first: int, last: int, evaluate: np.ndarray | None = None) -> tuple[np.ndarray, list[OperatorStats]]:
    """The atom's answer for the frames of [first, last] marked in ``evaluate`` (all by default),
    and what each operator did. Frames not marked are left False and never decoded."""
    return drive(ctx, cascade_steps(ctx, info, model, version, choice, first, last, evaluate))


def cascade_steps(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                  first: int, last: int, evaluate: np.ndarray | None = None) -> Steps:
    """:func:`run_cascade` as steps: it yields the pass it needs (a :class:`PassRequest`), is sent
    that pass's :class:`PassResult`, and returns (the answer, the operators' counts)."""
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
    return (yield from _stage_steps(ctx, info, model, version, choice, first, known, todo, answer, cached))


def drive(ctx: Context, steps: Steps):
    """Run ``steps`` (as :func:`cascade_steps` makes) to its end, each pass it asks for alone
    (:func:`run_pass`); what it returns."""
    try:
        request = next(steps)
        while True:
            request = steps.send(run_pass(ctx, request))
    except StopIteration as done:
        return done.value


def run_pass(ctx: Context, request: PassRequest) -> PassResult:
    """One cascade's pass, in the session's workers where they take it alone
    (``Workers.fits``), else in this process."""
    start = time.perf_counter()
    with Progress(len(request.frames), "frames", request.label, enabled=ctx.progress) as bar:
        recipes = executor.pool_recipes(ctx, request.info, [request.model], request.frames, cascade=True)
        if recipes is not None:
            result = ctx.workers.cascade(request.info, recipes[0], request.version, request.atom, request.chosen,
                                         request.first, request.unknown, request.frames, request.store, bar.update)
        else:
            result = CascadePass(request.info, request.atom, request.chosen, request.first, request.unknown,
                                 request.model.detect, request.store, executor.pass_readers(ctx, request.info)
                                 ).run(request.frames, bar.update)
    result.wall = time.perf_counter() - start
    return result


def timed(steps: Steps, took: list[float]) -> Steps:
    """``steps`` passed through unchanged, adding to ``took[0]`` the seconds spent in it and the
    wall time of each pass it is sent (where a set's passes ran together, their shared run's),
    not the time its caller spends elsewhere between them (on a set's other members)."""
    t = time.perf_counter()
    try:
        request = next(steps)
        while True:
            took[0] += time.perf_counter() - t
            result = yield request
            t = time.perf_counter()
            took[0] += result.wall
            request = steps.send(result)
    except StopIteration as done:
        took[0] += time.perf_counter() - t
        return done.value


@dataclass
class PassResult:
    """What one pass of a cascade's stages over some frames found (in this process or a worker):
    the frames it answered True, the frames off an anchor the t−Δ gate sent through the stages,
    the reference's labels of the frames no stage decided, and each operator's counts."""

    yes: list[int]
    through: list[int]
    labels: list[tuple[list[int], list]]
    decode: OperatorStats
    gate: OperatorStats
    stage_ops: list[OperatorStats]
    ref: OperatorStats
    wall: float = 0.0  # seconds the run that gave it took (set by its caller; a set's passes run together share one)

    @classmethod
    def empty(cls, chosen: Candidate) -> PassResult:
        """Nothing found yet, with one operator per stage of ``chosen``."""
        return cls([], [], [], OperatorStats("decode"), OperatorStats("gate"),
                   [OperatorStats(f"{st.kind.label} {st.name}") for st in chosen.stages], OperatorStats("reference"))

    def add(self, part: PassResult) -> None:
        """Add a later range's result to this one (ranges in frame order; labels stay with the part)."""
        self.yes.extend(part.yes)
        self.through.extend(part.through)
        for a, b in zip([self.decode, self.gate, *self.stage_ops, self.ref],
                        [part.decode, part.gate, *part.stage_ops, part.ref]):
            a.frames_in += b.frames_in
            a.decided += b.decided
            a.passed_on += b.passed_on
            a.seconds += b.seconds


class CascadePass:
    """The stages of one cascade over frames read in order (without a t−Δ gate, by ``readers``
    decoding threads in any order: each frame's answer is its own): frames are downscaled once per view;
    under a t−Δ gate a frame off its anchor goes through the stages only when it differs from the
    anchor (read before it) by gate_delta or more; each stage of the candidate decides what reaches
    it (``planner/stages.py``); what no stage decides goes to ``detect`` (the reference) in
    batches, and ``on_labels(frames, detections)`` gets each batch's labels as they come.

    It holds no store: the coordinator runs it over the whole scan, or worker processes run it
    over ranges of it (:func:`ranges`; ``engine/workers.py``), with the same answers."""

    def __init__(self, info: VideoInfo, atom: Atom, chosen: Candidate, first: int, unknown_anchors: np.ndarray,
                 detect: Callable[[list], list], on_labels: Callable[[list[int], list], None],
                 readers: int = 1) -> None:
        self.info, self.atom, self.chosen, self.first = info, atom, chosen, first
        # decoding threads (``read_frames``); a t−Δ gate needs every anchor read before its frames
        self.readers = 1 if chosen.gate is not None else readers
        self.unknown_anchors = unknown_anchors
        self.detect, self.on_labels = detect, on_labels
        self.result = PassResult.empty(chosen)
        self.pending: list[tuple[int, np.ndarray]] = []
        self.anchor_images: dict[int, np.ndarray] = {}
        gate = chosen.gate
        self.views = {st.op.view for st in chosen.stages} | ({gate.view} if gate else set())

    def run(self, frames: np.ndarray, on_batch: Callable[[int], None] | None = None) -> PassResult:
        """Read ``frames`` (under a gate in order, every anchor of a frame before it; else by
        ``readers`` threads, in pieces) and answer them; ``on_batch``: told how many frames each
        read batch held."""
        decode = self.result.decode
        t0 = time.perf_counter()
        for indices, batch in read_frames(self.info, frames, 64, readers=self.readers):
            small = {v: downscale(batch, *v) for v in self.views}
            decode.seconds += time.perf_counter() - t0
            decode.frames_in += len(indices)
            run = self.route(indices, small)
            self.stages(indices[run], [img for img, r in zip(batch, run) if r],
                        {s: images[run] for s, images in small.items()})
            self.flush()
            if on_batch:
                on_batch(len(run))
            t0 = time.perf_counter()
        self.flush(final=True)
        decode.passed_on = decode.frames_in
        return self.result

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
            self.result.through.extend(int(f) for f in indices[off[through[off]]])
            self.result.gate.decided += int((~through[off]).sum())
            self.result.gate.passed_on += int(through[off].sum())
        for a in [a for a in self.anchor_images if a < own[-1]]:
            del self.anchor_images[a]  # frames come in order: no later frame has this anchor
        self.result.gate.seconds += time.perf_counter() - t1
        return through | (is_anchor & np.isin(indices, self.unknown_anchors))

    def stages(self, indices: np.ndarray, batch: list, small: dict[View, np.ndarray]) -> None:
        """Each stage in order on the frames still open (beside the decoding threads:
        :func:`beside_decoding`); what none decides waits for the reference."""
        open_ = np.ones(len(indices), bool)
        with beside_decoding():
            for stage, op in zip(self.chosen.stages, self.result.stage_ops):
                t1 = time.perf_counter()
                reach = np.flatnonzero(open_)
                no, yes = stage.band.decide(stage.op.scores(small[stage.op.view][reach]) if len(reach) else np.zeros(0))
                self.result.yes.extend(int(f) for f in indices[reach[yes]])
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
        """One reference batch; its labels go to ``on_labels``."""
        t1 = time.perf_counter()
        ids = [f for f, _ in part]
        dets = self.detect([img for _, img in part])
        self.on_labels(ids, dets)
        pred, size = self.atom.predicate, (self.info.width, self.info.height)
        self.result.yes.extend(f for f, d in zip(ids, dets)
                               if self.atom.holds(np.array(d.count(pred.class_id, pred.min_score, pred.region, size))))
        self.result.ref.frames_in += len(ids)
        self.result.ref.decided += len(ids)
        self.result.ref.seconds += time.perf_counter() - t1


@contextmanager
def beside_decoding() -> Iterator[None]:
    """torch on one thread fewer (at least one) while a cascade pass's cheap stages score frames
    that the decoding threads keep reading, its setting restored afterwards (the reference keeps
    them all); nothing changes where torch has one thread.

    A specialized CNN on all of torch's threads stalls at their barriers whenever a decoder
    holds a core. Measured with one decoding thread (two, ``read_frames(readers=2)``, came
    after: they only add to what holds the cores): on 2 cores, with the pooled CNN scoring 43% of each read batch, it took 1.47
    (vtest) and 1.62 (the composed hour) ms per frame scored on two threads, 0.80 and 0.93 on
    one, and the pass ran 1.28x and 1.38x faster; scoring every frame, 1.15x and 1.00x
    (``benchmarks/stage_threads.py``, ``benchmarks/results/stage_threads*.json``).

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with beside_decoding():
    ...     torch.get_num_threads() == max(1, before - 1)
    True
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    threads = torch.get_num_threads()
    if threads <= 1:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ranges(todo: np.ndarray, first: int, chosen: Candidate, size: int) -> list[np.ndarray]:
    """``todo`` (sorted) cut into runs of about ``size`` frames; under a t−Δ gate each run starts
    at an anchor, so that every frame's anchor is read in the same run, before it.

    >>> from types import SimpleNamespace as NS
    >>> [r.tolist() for r in ranges(np.arange(10, 20), 10, NS(gate=object(), skip=4), 3)]
    [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    >>> [r.tolist() for r in ranges(np.arange(10, 20), 10, NS(gate=None, skip=1), 4)]
    [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    """
    starts = np.flatnonzero(anchors(todo, first, chosen.skip) == todo) if chosen.gate is not None else range(len(todo))
    cuts = [0]
    for i in starts:  # the first allowed start at least ``size`` frames after the last cut
        if i >= cuts[-1] + size:
            cuts.append(int(i))
    return [todo[a:b] for a, b in zip(cuts, cuts[1:] + [len(todo)])]


def _stage_steps(ctx: Context, info: VideoInfo, model: ReferenceModel, version: str, choice: CascadeChoice,
                first: int, known: dict[int, int], asked: np.ndarray, answer: np.ndarray,
                cached: OperatorStats) -> Steps:
    """The cascade over the ``asked`` frames the store cannot answer. Under frame skipping the
    stages run on each frame's anchor (a stored anchor answers from its labels); under a t−Δ gate
    every frame is read and a frame off its anchor that differs from it by gate_delta or more
    goes through the stages itself (:class:`CascadePass`: yielded as a :class:`PassRequest`, which
    its caller runs in this process or in the session's workers, alone or beside a video set's
    other members). The reference's labels are stored as they come, one transaction per batch."""
    atom, chosen = choice.atom, choice.chosen
    computed = np.zeros(len(answer), bool)  # the cascade's answer per frame it evaluated
    anchor_of = anchors(asked, first, chosen.skip)
    inherit = anchor_of != asked
    for a in np.unique(anchor_of):
        if int(a) in known:
            computed[a - first] = bool(atom.holds(np.array(known[int(a)])))
    unknown = np.array([a for a in np.unique(anchor_of) if int(a) not in known], np.int64)
    todo = unknown if chosen.gate is None else np.union1d(asked, anchor_of)  # the gate compares with stored anchors too

    def store(ids: list[int], dets: list) -> None:
        ctx.store.save_labels(info.fingerprint, version, model.classes, ids, dets)

    result = yield PassRequest(info, model, version, atom, chosen, first, unknown, todo, store,
                               f"{atom.short_text}: cascade")
    computed[np.asarray(result.yes, np.int64) - first] = True
    inherit[np.isin(asked, result.through)] = False
    answer[asked - first] = np.where(inherit, computed[anchor_of - first], computed[asked - first])
    if chosen.gate is None:
        skipped = OperatorStats(f"skip {chosen.skip}: frames inheriting their anchor's answer (only grabbed)",
                                frames_in=len(asked), decided=int(inherit.sum()), passed_on=len(unknown))
    else:
        skipped = replace(result.gate, name=f"skip {chosen.skip}, t-Δ gate {chosen.gate.name}: frames off an "
                          "anchor inheriting its answer", frames_in=int((anchor_of != asked).sum()))
    decode = replace(result.decode, name="decode and downscale (frames not in the store" +
                     (" and their anchors" if chosen.gate else "") + "; the rest only grabbed)")
    ref = replace(result.ref, name=f"reference {model.name}")
    ops = [cached] + ([skipped] if chosen.skip > 1 else []) + [decode] + result.stage_ops + [ref]
    for label, key in (("difference", "frames_decided_by_difference"), ("specialized", "frames_decided_by_specialized")):
        ctx.count(key, sum(o.decided for st, o in zip(chosen.stages, result.stage_ops) if st.kind.label == label))
    ctx.count("frames_sent_to_reference", ref.frames_in)
    ctx.count("frames_labelled", ref.frames_in)
    ctx.count("label_seconds", ref.seconds)
    return answer, ops
