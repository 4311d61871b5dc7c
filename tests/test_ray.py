"""Ray as the executor (``engine/ray_backend.py``), on a local Ray of 2 CPUs: the same answers as
this machine's executor, retried tasks, clear errors. Run where Ray is installed (CI's second
environment: ``pip install 'vql[ray]'``); every test is bounded by an alarm. The local Ray
declares one GPU, which Ray hands out as a resource; no task here uses a real one."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (CI runs this in its second environment)")

import vql  # noqa: E402
from vql.engine import workers  # noqa: E402
from vql.engine.cascade import run_cascade  # noqa: E402
from vql.engine.executor import Context  # noqa: E402
from vql.engine.ray_backend import RayWorkers  # noqa: E402
from vql.engine.video import probe  # noqa: E402
from vql.errors import ExecutionError, VideoError  # noqa: E402

LABELS = "SELECT frame, class_id, score, x1, y1, x2, y2 FROM vql_labels ORDER BY ALL"
LIMIT_S = 240  # a local Ray on 2 cores has hung before: no test waits longer


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    tests = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,  # a GPU Ray counts, none real
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}})
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def bounded():
    def stop(*_):
        raise TimeoutError(f"a Ray test ran over {LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_ray_labels_what_this_machine_labels(shared, monkeypatch):
    monkeypatch.setattr(workers, "MIN_FRAMES", 16)
    query = "SELECT frame, object_count('person') AS n FROM cam WHERE frame < 64 ORDER BY frame WITH (exact)"
    out = []
    for executor in ("local", "ray"):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cam FROM '{shared / 'data' / 'vtest.avi'}'")
            assert con.sql(f"SET executor = '{executor}'").fetchall()[0][0].startswith(f"executor = {executor}")
            out.append((con.sql(query).fetchall(), con.duckdb.execute(LABELS).fetchall()))
            assert isinstance(con._workers, RayWorkers) == (executor == "ray")
    assert len(out[0][0]) == 64 and out[0] == out[1]


def test_the_planning_sample_is_labelled_on_ray(shared, monkeypatch):
    from test_workers import planning_sample

    monkeypatch.setattr(workers, "MIN_FRAMES", 8)
    asked = []
    label = RayWorkers.label
    monkeypatch.setattr(RayWorkers, "label", lambda self, *a, **k: asked.append(len(a[3])) or label(self, *a, **k))
    frames = np.arange(3, 200, 7)
    (stored, kept, *_), (stored2, kept2, *_) = [
        planning_sample(shared / "data" / "vtest.avi", f"SET executor = '{e}'", frames) for e in ("local", "ray")]
    assert asked == [len(frames)] and stored == stored2 and len(kept) == len(frames)
    assert all(np.array_equal(kept[f], kept2[f]) for f in frames.tolist())


def test_a_cascade_on_ray_answers_as_on_this_machine(shared, monkeypatch):
    from test_cascade_workers import LAST, _choice

    monkeypatch.setattr(workers, "CASCADE_MIN_FRAMES", 16)
    monkeypatch.setattr(workers, "CASCADE_TASK_FRAMES", 60)
    video = str(shared / "data" / "vtest.avi")
    choice = _choice(video, 3)
    runs = []
    for pool in (None, RayWorkers("local")):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cam FROM '{video}'")
            info, model = con.store.video("cam"), con.model("centernet")
            ctx = Context(con.store, con.model, False, workers=pool, recipe=con._recipe)
            answer, ops = run_cascade(ctx, info, model, model.version, choice, 0, LAST)
            runs.append((answer.tolist(), [{k: v for k, v in o.row().items() if k != "seconds"} for o in ops],
                         con.duckdb.execute(LABELS).fetchall()))
    assert runs[0] == runs[1] and 0 < runs[0][1][-1]["frames_in"] < 100


def test_a_sets_members_run_together_on_ray(cameras, vtest_path, monkeypatch):
    """A video set's members on Ray: their cascades' passes in one run of Ray tasks, and an exact
    scan's labelling in one run (engine/members.py), with the answers and labels of one process."""
    from test_cascade_workers import set_runs

    runs, together = set_runs(cameras, vtest_path, monkeypatch, "SET executor = 'ray'")
    assert together == [3] and runs[0] == runs[1] and 0 < runs[0][3] < 72
    monkeypatch.setattr(workers, "MIN_FRAMES", 16)  # 2 workers' worth: 32 frames; a member has 24, the set 72
    started = []
    real = RayWorkers.label_many
    monkeypatch.setattr(RayWorkers, "label_many", lambda self, jobs: started.append(len(jobs)) or real(self, jobs))
    query = "SELECT video, frame, object_count('person') AS n FROM cams ORDER BY video, frame WITH (exact)"
    out = []
    for executor in ("local", "ray"):
        with vql.connect(None, progress=False) as con:
            con.sql(f"CREATE VIDEO cams FROM '{cameras}/*.avi'")
            con.sql(f"SET executor = '{executor}'")
            out.append((con.sql(query).fetchall(), con.duckdb.execute(LABELS).fetchall()))
    assert started == [3] and out[0] == out[1] and len(out[0][0]) == 72


def test_a_killed_task_is_retried_and_one_that_keeps_dying_fails_clearly(shared, tmp_path, monkeypatch):
    import ray_helpers

    pool = RayWorkers("local")
    assert pool.get(pool.submit(ray_helpers.dies_once, str(tmp_path / "died"))) == "ok"  # Ray ran it again
    assert (tmp_path / "died").exists()
    stored = []
    monkeypatch.setattr(workers, "MIN_FRAMES", 1)
    monkeypatch.setattr(pool, "submit", lambda fn, *args, **kw: RayWorkers.submit(pool, ray_helpers.always_dies, *args))
    info = probe(shared / "data" / "vtest.avi")
    with pytest.raises(ExecutionError, match="Ray worker labelling .* died 3 times"):
        pool.label(info, [("default", "cpu")], ["v"], np.arange(8), lambda *a: stored.append(a))
    assert stored == []  # nothing half-written


def test_a_video_a_worker_cannot_read_is_a_clear_error(shared, tmp_path):
    path = tmp_path / "gone.avi"
    shutil.copy(shared / "data" / "vtest.avi", path)
    info = probe(path)
    path.unlink()
    pool = RayWorkers("local")
    with pytest.raises(VideoError, match=f"worker .* cannot read {path}"):
        pool.label(info, [("default", "cpu")], ["v"], np.arange(8), lambda *a: None)


def test_a_model_on_cuda_asks_ray_for_a_share_of_a_gpu(shared, monkeypatch):
    import ray_helpers

    from vql.udfs.registry import default_model

    pool = RayWorkers("local")
    assert pool.gpu == 0.5  # the cluster's 1 GPU over its 2 CPUs: two tasks share it
    info, frames = probe(shared / "data" / "vtest.avi"), np.arange(2 * workers.MIN_FRAMES)
    assert pool.fits(info, [("default", "cuda:0")], frames) and pool.fits(info, [("default", "cpu")], frames)
    assert not pool.fits(info, [("default", "cuda:1")], frames)  # Ray shows a task its own GPU only, as device 0
    on_gpu = [pool.get(pool.submit(ray_helpers.gpu_ids, gpu=True)) for _ in range(3)]
    assert [ids for ids, _ in on_gpu] == [["0"]] * 3
    assert len({pid for _, pid in on_gpu}) == 1  # one worker process serves them: its model is loaded once
    assert pool.get(pool.submit(ray_helpers.gpu_ids))[0] == []
    # Labelling with a model on CUDA submits its tasks for a GPU; here they build the CPU model in them
    asked, stored = [], []
    cpu = ("default", "cpu")
    monkeypatch.setattr(pool, "submit", lambda fn, info, recipes, *rest, gpu=False: asked.append(gpu) or
                        RayWorkers.submit(pool, fn, info, (cpu,), *rest, gpu=gpu))
    pool.label(info, [("default", "cuda:0")], [default_model("cpu").version], np.arange(3), lambda f, d: stored.append(f))
    assert asked == [True] and np.concatenate(stored).tolist() == [0, 1, 2]
    pool.gpu = 0.0  # a cluster without GPUs: a model on CUDA stays in this process
    assert not pool.fits(info, [("default", "cuda:0")], frames) and pool.fits(info, [cpu], frames)


def test_ray_is_asked_for_by_name():
    with vql.connect(None, progress=False) as con:
        with pytest.raises(vql.VqlError, match="SET executor must be one of 'local', 'ray'"):
            con.sql("SET executor = 'spark'")
