"""A cascade's pass in worker processes (``SET workers = N``, engine/workers.py): the same
answers, stored labels and operator counts as in one process, over ranges of the scan."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

import vql
from vql.engine import workers
from vql.engine.cascade import run_cascade
from vql.engine.difference import AnchorGate, DifferenceDetector
from vql.engine.executor import Context, label_frames
from vql.engine.video import read_frames
from vql.engine.views import downscale
from vql.errors import ExecutionError
from vql.plan import Atom, ModelPredicate
from vql.planner.cascade import Candidate, CascadeChoice
from vql.planner.cost import Costs
from vql.planner.skipping import anchors
from vql.planner.specialized import Architecture, SpecializedCNN, TrainedModel
from vql.planner.stages import Band, Stage

LAST = 239
LABELS = "SELECT frame, class_id, score, x1, y1, x2, y2 FROM vql_labels ORDER BY ALL"


def _choice(video: str, skip: int, precision: str = "float32") -> CascadeChoice:
    """A cascade over vtest's first 240 frames: a background detector, then a (randomly
    initialised, so deterministic) CNN in ``precision``; bands and the gate's δ from quantiles of
    their scores, so that every stage decides some frames and leaves some to the reference."""
    frames = np.arange(LAST + 1)
    small = np.concatenate([downscale(b, 32) for _, b in read_frames(video, frames, 64)])
    detector = DifferenceDetector("full-mse", 32, np.median(small, axis=0).astype(np.uint8))
    torch.manual_seed(0)
    arch = Architecture(1, 16, 32, 32, precision=precision)
    cnn = TrainedModel(arch, SpecializedCNN(arch),
                       small.mean(axis=0).astype(np.float32), 0.0)
    d, c = detector.scores(small), cnn.scores(small)
    stages = (Stage(detector, Band(np.quantile(d, 0.3), np.inf), 1e-4),
              Stage(cnn, Band(np.quantile(c, 0.3), np.quantile(c, 0.75)), 1e-4))
    gate, delta = None, np.inf
    if skip > 1:
        gate = AnchorGate("blocked-mse", 32)
        off = frames[anchors(frames, 0, skip) != frames]
        delta = float(np.quantile(gate.scores(small[off], small[anchors(off, 0, skip)]), 0.7))
    chosen = Candidate("test", 0.01, stages, skip=skip, gate=gate, gate_delta=delta)
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
    return CascadeChoice(atom, "cascade", "test", Costs(0.001, 0.05), 0.051, chosen)


@pytest.mark.parametrize("skip, precision", [(1, "float32"), (3, "bfloat16")])
def test_a_cascade_runs_in_workers_as_in_one_process(shared, monkeypatch, skip, precision):
    monkeypatch.setattr(workers, "CASCADE_MIN_FRAMES", 16)
    monkeypatch.setattr(workers, "CASCADE_TASK_FRAMES", 50)  # several ranges, each starting at an anchor
    video = str(shared / "data" / "vtest.avi")
    choice = _choice(video, skip, precision)
    pool = workers.Workers(2)
    runs = []
    try:
        for pooled in (None, pool):
            with vql.connect(None, progress=False) as con:
                con.sql(f"CREATE VIDEO cam FROM '{video}'")
                info, model = con.store.video("cam"), con.model("centernet")
                ctx = Context(con.store, con.model, False, workers=pooled, recipe=con._recipe)
                label_frames(ctx, info, model, np.arange(0, 12))  # stored anchors answer from their labels
                evaluate = np.ones(LAST + 1, bool)
                evaluate[100:110] = False
                answer, ops = run_cascade(ctx, info, model, model.version, choice, 0, LAST, evaluate)
                rows = [{k: v for k, v in o.row().items() if k != "seconds"} for o in ops]
                runs.append((answer.tolist(), rows, con.duckdb.execute(LABELS).fetchall(), dict(ctx.stats)))
        assert pool._pool is not None  # the second run used the workers
        (answer, rows, labels, stats), (answer2, rows2, labels2, stats2) = runs
        assert answer == answer2 and rows == rows2 and labels == labels2
        ref = rows[-1]["frames_in"]
        assert 0 < ref < 100 and 0 < sum(answer) < LAST  # the reference saw some frames, the stages decided some
        assert stats["frames_sent_to_reference"] == stats2["frames_sent_to_reference"] == ref
    finally:
        pool.close()


def test_a_cascade_reads_with_two_decoders_as_with_one(shared, monkeypatch):
    """Without a t−Δ gate the pass takes its frames from several decoding threads, in pieces
    (``engine/video.py: read_frames(readers=...)``): the same answers, labels and counts. Under a
    gate it reads in order, with one."""
    from vql.engine import cascade, executor, video

    monkeypatch.setattr(video, "MIN_PIECE", 16)  # several pieces of vtest's first 240 frames
    parts = []
    real_pieces = video.pieces
    monkeypatch.setattr(video, "pieces", lambda *a: parts.append(real_pieces(*a)) or parts[-1])
    path = str(shared / "data" / "vtest.avi")
    choice = _choice(path, 1)
    runs, pieces_read = [], []
    for readers in (1, 2):
        monkeypatch.setattr(video, "default_readers", lambda: readers)  # two, also where one core is free
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cam FROM '{path}'")
            info, model = con.store.video("cam"), con.model("centernet")
            ctx = Context(con.store, con.model, False)
            label_frames(ctx, info, model, np.arange(0, 12))
            assert executor.pass_readers(ctx, info) == readers  # vtest's seeks land where asked
            parts.clear()
            answer, ops = run_cascade(ctx, info, model, model.version, choice, 0, LAST)
            pieces_read.append(len(parts[-1]))
            rows = [{k: v for k, v in o.row().items() if k != "seconds"} for o in ops]
            runs.append((answer.tolist(), rows, con.duckdb.execute(LABELS).fetchall()))
    assert pieces_read == [1, 8]
    assert runs[0] == runs[1]
    assert 0 < runs[0][1][-1]["frames_in"] < 100 and 0 < sum(runs[0][0]) < LAST
    gated = _choice(path, 3)
    assert cascade.CascadePass(None, gated.atom, gated.chosen, 0, np.zeros(0), None, None, 2).readers == 1


def test_a_worker_dying_in_a_cascade_fails_it_clearly(shared, monkeypatch):
    monkeypatch.setattr(workers, "CASCADE_TASK_FRAMES", 10)
    video = str(shared / "data" / "vtest.avi")
    choice = _choice(video, 1)
    pool = workers.Workers(2)
    with vql.connect(None, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{video}'")
        info, model = con.store.video("cam"), con.model("centernet")

        def kill(_: int) -> None:  # after the first range: every worker dies
            for pid in list(pool.pool()._processes):
                os.kill(pid, signal.SIGKILL)

        frames = np.arange(LAST + 1)
        try:
            with pytest.raises(ExecutionError, match="died"):
                pool.cascade(info, ("default", "cpu"), model.version, choice.atom, choice.chosen, 0, frames, frames,
                             lambda *a: None, kill)
            assert pool._pool is None  # the next query starts afresh
        finally:
            pool.close()


def set_runs(cameras, vtest_path, monkeypatch, executor: str) -> tuple[list, list[int]]:
    """The cascades of a set of three 24-frame cameras (``cameras``), each member's plan the
    test's cascade, in one process and under ``executor`` (a SET statement): per run the rows,
    the operators' counts, the stored labels and the frames sent to the reference; and how many
    passes each run of ``Workers.cascade_many`` held. Each member's pass alone has too few
    frames for 2 workers (the pool's least lowered to 16 per worker: 32), the three together (72)
    have enough."""
    from dataclasses import replace

    from vql.planner.query import QueryPlan

    monkeypatch.setattr(workers, "CASCADE_MIN_FRAMES", 16)
    monkeypatch.setattr(workers, "CASCADE_TASK_FRAMES", 10)  # several ranges per member
    choice = _choice(str(vtest_path), 1)
    together: list[int] = []
    real = workers.Workers.cascade_many
    monkeypatch.setattr(workers.Workers, "cascade_many",
                        lambda self, jobs, on_batch: together.append(len(jobs)) or real(self, jobs, on_batch))
    query = "SELECT video, frame FROM cams WHERE contains('person') ORDER BY video, frame"
    runs = []
    for setting in ("SET workers = 1", executor):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cams FROM '{cameras}/*.avi'")
            con.sql(setting)
            # every member's plan: the test's cascade (a 24-frame member is too short to plan one on)
            monkeypatch.setattr(con, "_plan_query", lambda ctx, node, fpr, fnr: QueryPlan(
                "cascade", "the test's cascade", (replace(choice, atom=node.atoms[0]),), fpr, fnr))
            result = con.sql(query)
            ops = {key: [{k: v for k, v in o.items() if k != "seconds"} for o in run["ops"]]
                   for key, run in result.metadata["operators"].items()}
            runs.append((result.fetchall(), ops, con.duckdb.execute(LABELS).fetchall(),
                         result.metadata["frames_sent_to_reference"]))
    return runs, together


def test_a_sets_cascades_run_their_passes_together_in_the_workers(cameras, vtest_path, monkeypatch):
    """One run of the workers holds the three members' passes (engine/members.py; without it, the
    pool never starts), and each member gets one process's answers, stored labels and operators'
    counts."""
    runs, together = set_runs(cameras, vtest_path, monkeypatch, "SET workers = 2")
    assert together == [3]  # one run, three passes
    assert runs[0] == runs[1]
    rows, ops, labels, sent = runs[0]
    assert len(ops) == 3 and sum(o[-1]["frames_in"] for o in ops.values()) == sent
    assert 0 < len(rows) < 72 and 0 < sent < 72 and labels  # the reference saw some frames, the stages decided some
    assert {video for video, _ in rows} <= {key.split(":")[0] for key in ops}  # the members' names
