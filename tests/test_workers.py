"""``SET workers = N``: the reference labels frames in worker processes (engine/workers.py), with
the same labels as one process."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from patches import clip, session

import vql
from vql.engine import workers
from vql.engine.video import probe
from vql.errors import BindError, ExecutionError, ModelError
from vql.udfs.registry import default_model

LABELS = ("SELECT frame, class_id, score, x1, y1, x2, y2 FROM vql_labels ORDER BY frame, class_id, score, x1")


def labels_of(con) -> list:
    return con.duckdb.execute(LABELS).fetchall()


def test_workers_label_exactly_what_one_process_labels(shared, monkeypatch):
    monkeypatch.setattr(workers, "MIN_FRAMES", 16)
    query = "SELECT frame, object_count('person') AS n FROM cam WHERE frame < 96 ORDER BY frame WITH (exact)"
    answers, stored = [], []
    for count in (1, 2):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cam FROM '{shared / 'data' / 'vtest.avi'}'")
            con.sql(f"SET workers = {count}")
            answers.append(con.sql(query).fetchall())
            stored.append(labels_of(con))
            assert (con._workers is not None and con._workers._pool is not None) == (count > 1)
    assert len(answers[0]) == 96 and answers[0] == answers[1]
    assert len(stored[0]) > 96 and stored[0] == stored[1]  # every box, class and score


def planning_sample(video, setting: str, frames: np.ndarray):
    """``sample_pass`` over ``frames`` of ``video`` in a new session after ``setting`` (a SET
    statement): the labels stored, the frames kept at 32 pixels, the session's counts, the costs
    measured, and whether a local worker pool ran."""
    from vql.engine.cascade import sample_pass
    from vql.engine.executor import Context

    with vql.connect(None, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{video}'")
        con.sql(setting)
        ctx = Context(con.store, con.model, False, workers=con._executor(), recipe=con._recipe)
        model = con.model("centernet")
        small, costs = sample_pass(ctx, con.store.video("cam"), model, model.version, frames, ((32, None),))
        pooled = getattr(con._workers, "_pool", None) is not None
        return labels_of(con), small[(32, None)], dict(ctx.stats), costs, pooled


def test_the_planning_sample_is_labelled_by_the_workers(shared, monkeypatch):
    """A cascade's planning sample goes to the workers: the same labels stored and the same
    downscaled frames kept as in one process (which labels them as it reads them)."""
    monkeypatch.setattr(workers, "MIN_FRAMES", 8)
    frames = np.arange(5, 400, 9)  # sparse, as a random sample is
    runs = [planning_sample(shared / "data" / "vtest.avi", f"SET workers = {count}", frames) for count in (1, 2)]
    (stored, kept, _, _, pooled), (stored2, kept2, _, _, pooled2) = runs
    assert not pooled and pooled2
    assert all(stats["frames_labelled"] == len(frames) and costs.reference > 0 for _, _, stats, costs, _ in runs)
    assert stored == stored2 and len(stored) > len(frames)
    assert sorted(kept) == sorted(kept2) == frames.tolist()
    assert all(np.array_equal(kept[f], kept2[f]) for f in frames.tolist())


def test_a_model_handed_in_labels_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "MIN_FRAMES", 4)
    path = clip(tmp_path / "c.avi", 64, range(10, 20))
    con, model = session(path)
    con.sql("SET workers = 2")
    assert con.sql("SELECT count(*) FROM cam WHERE contains('person') WITH (exact)").fetchall() == [(10,)]
    assert model.calls == 64 and con._workers._pool is None  # the stand-in cannot be rebuilt in a worker


def test_a_recipe_names_the_device_its_model_was_built_on_here(shared, tmp_path):
    """A worker (or a Ray task on another machine) builds the model on the device this process
    resolved: 'auto' is decided once, here, not again where the worker runs."""
    from vql.udfs.reference import resolve_device

    tfjs, here = shared / "models" / "centernet" / "centernet.json", str(resolve_device("auto"))
    with vql.connect(None, device="auto", progress=False) as con:
        assert here in ("cpu", "cuda", "cuda:0")
        assert con._recipe(con.model("centernet")) == ("default", here)
        con.sql(f"CREATE FUNCTION det TYPE tfjs MODEL '{tfjs}'")
        recipe = con._recipe(con.model("det"))
        assert recipe[:3] == ("load", "tfjs", str(tfjs)) and dict(recipe[3])["device"] == here
        assert not workers.on_gpu(recipe) and workers.on_gpu(("default", "cuda:0"))


def test_a_sets_members_are_labelled_together_in_the_workers(cameras, monkeypatch):
    """Each member of the set alone has too few frames for 2 workers; together they have enough:
    one run of the workers labels them all (engine/members.py), with one process's labels and
    answers, counted as labelled by the query; the next query reads them all from the store."""
    monkeypatch.setattr(workers, "MIN_FRAMES", 16)  # 2 workers want 32 frames: a member has 24, the set 72
    query = "SELECT video, frame, object_count('person') AS n FROM cams ORDER BY video, frame WITH (exact)"
    answers, stored = [], []
    for count in (1, 2):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cams FROM '{cameras}/*.avi'")
            con.sql(f"SET workers = {count}")
            result = con.sql(query)
            answers.append(result.fetchall())
            assert result.metadata["frames_labelled"] == 72 and result.metadata.get("frames_cached", 0) == 0
            assert (con._workers is not None and con._workers._pool is not None) == (count > 1)
            again = con.sql(query)
            assert again.metadata.get("frames_labelled", 0) == 0 and again.metadata["frames_cached"] == 72
            assert again.fetchall() == answers[-1]
            stored.append(con.duckdb.execute("SELECT video_fp, frame, class_id, score, x1, y1, x2, y2 FROM vql_labels "
                                             "ORDER BY video_fp, frame, class_id, score, x1").fetchall())
    assert len(answers[0]) == 72 and answers[0] == answers[1] and sum(n for *_, n in answers[0]) > 72
    assert len({fp for fp, *_ in stored[0]}) == 3 and stored[0] == stored[1]  # every box, class and score


def test_worker_errors_are_the_query_errors(shared):
    info = probe(shared / "data" / "vtest.avi")
    pool = workers.Workers(2)
    try:
        with pytest.raises(ModelError):
            pool.label(info, [("load", "tfjs", str(shared / "missing.json"), ())], ["v"], np.arange(8), print)
        with pytest.raises(ExecutionError, match="versions"):
            pool.label(info, [("default", "cpu")], ["another version"], np.arange(2), lambda *a: None)
        for pid in list(pool.pool()._processes):  # a worker that dies: the query fails, clearly
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(ExecutionError, match="died"):
            pool.label(info, [("default", "cpu")], ["x"], np.arange(64), lambda *a: None)
        got = []  # the next labelling starts a fresh pool
        pool.label(info, [("default", "cpu")], [default_model("cpu").version], np.arange(3),
                   lambda frames, dets: got.append((frames.tolist(), len(dets[0]))))
        assert got == [([0, 1, 2], 3)]
    finally:
        pool.close()


def test_set_workers_is_checked():
    with vql.connect(None, progress=False) as con:
        for text, message in [("SET workers = 0", "from 1 to"), ("SET workers = 1.5", "from 1 to"),
                              ("SET workers = 'two'", "from 1 to")]:
            with pytest.raises(BindError, match=message):
                con.sql(text)
        assert con.sql("SET workers = 2").fetchall() == [("workers = 2",)]
