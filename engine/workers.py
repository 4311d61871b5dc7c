"""Labelling and cascades in worker processes: ``SET workers = N``.

With N > 1, the reference labels frames in N worker processes, and a cascade's pass over a
scan (decoding, difference detectors, specialized models, the reference on what they leave
open) runs in them over ranges of the scan (see :meth:`Workers.cascade`). Each worker has its own copy of
every model it is asked for, loaded once and kept for the session, and runs torch on
cores / N threads.

The wanted frames are cut into tasks of :data:`TASK_FRAMES` consecutive wanted frames, in frame
order. Each task opens the video, seeks to its first frame (the decoder lands on the keyframe
before it and decodes forward; an inexact seek falls back to decoding from the start, as in one
process), and returns the detections of every model asked for. The coordinator stores them in
frame order, one transaction per task and model, as the single process does per batch.

The labels are the same as in one process: the same frames, the same model files, the same
preprocessing (tested). A task that fails in a worker fails the query with the worker's error
(a VideoError, a ModelError). A worker that dies fails it with an ExecutionError. Labels already
stored stay: each is a complete, content-keyed label.

A worker pool is used where it can pay:
- every model is one vql can rebuild in a worker (the packaged CenterNet, or a model registered
  with CREATE FUNCTION; not a model object handed to the connection in Python);
- the video can be sought;
- there are at least :data:`MIN_FRAMES` wanted frames per worker (:data:`CASCADE_MIN_FRAMES`
  for a cascade's pass; in a video set, over its members together: an exact scan's labelling,
  and the members' passes, run in one run of the workers, ``engine/members.py``).

Otherwise the frames are labelled in this process.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from vql.engine.executor import LABEL_BATCH
from vql.engine.video import VideoInfo, read_frames
from vql.errors import ExecutionError, VideoError

TASK_FRAMES = 64  # wanted frames per task: a seek (~half a keyframe interval of decoding) is small beside them
IN_FLIGHT = 2  # tasks submitted per worker ahead of the one being stored (the rest wait: memory stays bounded)
MIN_FRAMES = 256  # wanted frames per worker, at least, for the pool to be used
CASCADE_TASK_FRAMES = 2048  # frames per cascade task: ~2 s of decoding, beside a seek of ~0.1 s
CASCADE_MIN_FRAMES = 4096  # frames per worker, at least, for a cascade's pass to use the pool (starting it takes seconds)

Recipe = tuple  # ("default", device) or ("load", kind, path, options): how a worker builds a model

_models: dict[str, object] = {}  # in a worker: the models built so far, by their recipe's repr


def device_of(recipe: Recipe) -> str:
    """The torch device a recipe's model runs on, as the coordinator resolved it.

    >>> device_of(("default", "cuda:0")), device_of(("load", "onnx", "m.onnx", (("device", "cpu"),)))
    ('cuda:0', 'cpu')
    >>> device_of(("load", "ultralytics", "y.pt", (("name", "y"),)))
    'cpu'
    """
    return str(recipe[1] if recipe[0] == "default" else dict(recipe[3]).get("device", "cpu"))


def on_gpu(recipe: Recipe) -> bool:
    """Whether a recipe's model runs on a GPU (``device_of`` is not the CPU)."""
    return device_of(recipe) not in ("cpu", "None")


def _start(threads: int) -> None:
    """A worker's start: torch on its share of the cores; Ctrl-C is the coordinator's to handle
    (a worker sharing the terminal would otherwise die with it and break the pool)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def build(recipe: Recipe):
    """The model a recipe describes (in a worker, once)."""
    key = repr(recipe)
    if key not in _models:
        if recipe[0] == "default":
            from vql.udfs.registry import default_model

            _models[key] = default_model(recipe[1])
        else:
            from vql.udfs.registry import load_model

            _, kind, path, options = recipe
            _models[key] = load_model(kind, path, **dict(options))
    return _models[key]


def _readable(info: VideoInfo) -> None:
    """In a worker: the video's file is there (on a cluster, every node reads it by its path)."""
    if not os.path.isfile(info.path):
        raise VideoError(f"worker {socket.gethostname()} (process {os.getpid()}) cannot read {info.path}: no such "
                         "file there; every worker reads the video by its path (a shared file system, or the same "
                         "path on every node)")


def _task(info: VideoInfo, recipes: Sequence[Recipe], frames: np.ndarray,
          seek_gap: int | None = None) -> tuple[list[str], np.ndarray, list[list]]:
    """In a worker: decode ``frames`` (seeking over gaps longer than ``seek_gap``) and run every
    model on them: (the models' versions, the frames, detections per model)."""
    _readable(info)
    models = [build(r) for r in recipes]
    done: list[np.ndarray] = []
    dets: list[list] = [[] for _ in models]
    for indices, batch in read_frames(info, frames, LABEL_BATCH, seek_gap=seek_gap):
        done.append(indices)
        for out, model in zip(dets, models):
            out.extend(model.detect(batch))
    return [m.version for m in models], np.concatenate(done) if done else np.zeros(0, np.int64), dets


def _cascade_task(info: VideoInfo, recipe: Recipe, atom, chosen, first: int, unknown: np.ndarray,
                  frames: np.ndarray):
    """In a worker: one range of a cascade's pass (``engine/cascade.py: CascadePass``); the
    reference is built only if a frame reaches it. (The model's version or None, the result.)"""
    from vql.engine.cascade import CascadePass

    _readable(info)
    labels: list = []
    built: list = []

    def detect(images: list) -> list:
        if not built:
            built.append(build(recipe))
        return built[0].detect(images)

    result = CascadePass(info, atom, chosen, first, unknown, detect, lambda ids, dets: labels.append((ids, dets))).run(frames)
    result.labels = labels
    return (built[0].version if built else None), result


class Workers:
    """A session's worker processes (started on the first labelling that uses them). The
    labelling and cascade loops submit tasks through :meth:`submit` and :meth:`get`, which a
    Ray backend replaces (``engine/ray_backend.py``)."""

    name = "worker process"
    lost: tuple[type[BaseException], ...] = (BrokenProcessPool,)  # a worker died: the query fails

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn, *args, gpu: bool = False):
        """Start ``fn(*args)`` in a worker: something :meth:`get` and :meth:`cancel` take. ``gpu``:
        the task runs a model on a GPU (a local worker uses the device its recipe names)."""
        return self.pool().submit(fn, *args)

    def get(self, task):
        """The task's result (its error raised here)."""
        return task.result()

    def cancel(self, task) -> None:
        task.cancel()

    def died(self, what: str) -> str:
        """The message of a query whose worker died while it was ``what``."""
        return (f"a worker process {what} died (out of memory, or killed; a Python script using SET workers needs "
                f"its statements under `if __name__ == '__main__':`, as worker processes re-import it); labels "
                f"stored before it are kept; SET workers = 1 runs it in this process")

    def fits(self, info: VideoInfo, recipes: Sequence[Recipe | None], frames: np.ndarray, cascade: bool = False) -> bool:
        """Whether labelling these frames (``cascade``: a cascade's pass over them) goes to the
        workers (see the module's rules; :data:`CASCADE_MIN_FRAMES` per worker for a cascade)."""
        least = CASCADE_MIN_FRAMES if cascade else MIN_FRAMES
        return (self.count > 1 and info.seekable and all(r is not None for r in recipes)
                and len(frames) >= least * self.count)

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self.close()  # broken by an earlier failure: start afresh
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.count)
            self._pool = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(threads,))
        return self._pool

    def label(self, info: VideoInfo, recipes: Sequence[Recipe], versions: Sequence[str], frames: np.ndarray,
              store: Callable[[np.ndarray, list[list]], None], seek_gap: int | None = None) -> None:
        """Label ``frames`` in the workers (each seeking over gaps longer than ``seek_gap``);
        ``store(frames, detections per model)`` is called in frame order, once per task, in this
        process. A worker whose model has another version than ``versions`` (the coordinator's:
        another file, another runtime) is an error."""
        self.label_many([(info, recipes, versions, frames, store, seek_gap)])

    def label_many(self, jobs: Sequence[tuple]) -> None:
        """Label several videos' frames in one run of the workers, each job ``(info, recipes,
        versions, frames, store, seek_gap)`` as :meth:`label` takes it: a video set's members'
        tasks keep every worker busy where each member alone has too few frames for them, and
        no worker waits at the end of one member for the next. Each ``store`` is called in its
        video's frame order; the videos' tasks run in the order of ``jobs``."""
        calls: deque = deque()
        takers: deque = deque()
        for info, recipes, versions, frames, store, seek_gap in jobs:
            frames = np.unique(np.asarray(frames, np.int64))
            for i in range(0, len(frames), TASK_FRAMES):
                calls.append((_task, info, tuple(recipes), frames[i:i + TASK_FRAMES], seek_gap))
                takers.append(functools.partial(self._stored, versions, store))
        what = (f"labelling {jobs[0][0].path}" if len(jobs) == 1
                else f"labelling {len(jobs)} videos ({', '.join(str(job[0].path) for job in jobs)})")
        self.run(calls, lambda result: takers.popleft()(result), what,
                 gpu=any(on_gpu(r) for job in jobs for r in job[1]))

    def _stored(self, versions: Sequence[str], store: Callable[[np.ndarray, list[list]], None], result) -> None:
        """A labelling task's result to ``store``, once its models' versions are checked."""
        got, indices, dets = result
        if list(got) != list(versions):
            raise ExecutionError(f"a {self.name} built model versions {got}, not {list(versions)} as "
                                 f"this process did; SET workers = 1 labels in this process")
        store(indices, dets)

    def cascade(self, info: VideoInfo, recipe: Recipe, version: str, atom, chosen, first: int, unknown: np.ndarray,
                frames: np.ndarray, store: Callable[[list[int], list], None], on_batch: Callable[[int], None]):
        """A cascade's pass (``engine/cascade.py: CascadePass``) over ``frames`` in the workers,
        cut into ranges of :data:`CASCADE_TASK_FRAMES` (under a t−Δ gate, each starting at an anchor); the reference's
        labels go to ``store(frames, detections)`` in frame order, in this process. The merged
        result, as one process would have found it."""
        return self.cascade_many([(info, recipe, version, atom, chosen, first, unknown, frames, store)], on_batch)[0]

    def cascade_many(self, jobs: Sequence[tuple], on_batch: Callable[[int], None]) -> list:
        """Several cascades' passes in one run of the workers, each job ``(info, recipe, version,
        atom, chosen, first, unknown, frames, store)`` as :meth:`cascade` takes it: a video set's
        members' ranges keep every worker busy where one member alone has too few frames for
        them, and no worker waits at the end of one member for the next (``engine/members.py``).
        Each ``store`` is called in its video's frame order; the merged result per job."""
        from vql.engine.cascade import PassResult, ranges

        calls: deque = deque()
        takers: deque = deque()
        totals = []
        for info, recipe, version, atom, chosen, first, unknown, frames, store in jobs:
            totals.append(PassResult.empty(chosen))
            for run in ranges(frames, first, chosen, CASCADE_TASK_FRAMES):
                if len(run):
                    calls.append((_cascade_task, info, recipe, atom, chosen, first,
                                  unknown[(unknown >= run[0]) & (unknown <= run[-1])], run))
                    takers.append(functools.partial(self._merged, version, store, totals[-1], on_batch))
        what = (f"running a cascade over {jobs[0][0].path}" if len(jobs) == 1
                else f"running cascades over {len(jobs)} videos ({', '.join(str(job[0].path) for job in jobs)})")
        self.run(calls, lambda result: takers.popleft()(result), what, gpu=any(on_gpu(job[1]) for job in jobs))
        return totals

    def _merged(self, version: str, store: Callable[[list[int], list], None], total, on_batch: Callable[[int], None],
                result) -> None:
        """A cascade task's result added to its pass's ``total``, its labels to ``store``, once its
        model's version is checked."""
        got, part = result
        if got is not None and got != version:
            raise ExecutionError(f"a {self.name} built model version {got}, not {version} as this process "
                                 f"did; SET workers = 1 runs the cascade in this process")
        for ids, dets in part.labels:
            store(ids, dets)
        total.add(part)
        on_batch(part.decode.frames_in)  # every frame of the range was read

    def run(self, calls: deque, take: Callable[[object], None], what: str, gpu: bool = False) -> None:
        """Run ``calls`` ((function, *args) each) in the workers, :data:`IN_FLIGHT` per worker
        ahead of the one being taken (``gpu``: they run a model on a GPU); ``take`` gets each result
        in order, in this process. A worker that dies is an ExecutionError (``what`` it was
        doing); on any error or Ctrl-C, what is still queued is dropped."""
        futures: deque = deque()
        try:
            while calls or futures:
                while calls and len(futures) < IN_FLIGHT * self.count:
                    fn, *args = calls.popleft()
                    futures.append(self.submit(fn, *args, gpu=gpu))
                take(self.get(futures.popleft()))
        except self.lost as e:
            for future in futures:
                self.cancel(future)
            self.close()
            raise ExecutionError(self.died(what)) from e
        except BaseException:
            for future in futures:
                self.cancel(future)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
