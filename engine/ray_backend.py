"""Ray as the distributed engine: ``vql.connect(db, ray="local" | "auto" | address)``,
``vql DB --ray ADDRESS``, ``SET executor = 'ray'``.

The same tasks as the local worker processes (``engine/workers.py``: labelling a run of wanted
frames; a cascade's pass over a range of the scan) run as Ray tasks, one CPU each; a task whose
model is on CUDA also asks for a share of a GPU (a GPU node's GPUs over its CPUs, at most one),
so every CPU of a GPU node can decode for a GPU that several tasks' models share. A Ray worker
process keeps the models it built (the module's cache), so each model is loaded once per worker
process, not once per task. Workers read the video by its path: on a cluster every node must
see the file at the same path (a shared file system); a worker that cannot is a VideoError
naming the worker's host and the path. The results come back to this process, which stores
them in DuckDB, one transaction per task, in frame order, as with local workers.

A task whose worker dies is retried by Ray (:data:`RETRIES` times; a task only computes, it
writes nothing, so a retry is safe); if it keeps dying the query fails with an ExecutionError,
and the labels stored before it are kept. Ray is an optional extra (``pip install 'vql[ray]'``),
imported only here and only when asked for.
"""

from __future__ import annotations

import os

from vql.engine import workers as local
from vql.engine.workers import Workers, device_of, on_gpu
from vql.errors import ExecutionError, VqlError

RETRIES = 2  # Ray's retries of a task whose worker died


def _ray():
    try:
        import ray
    except ImportError as e:
        raise ExecutionError("Ray is not installed; pip install 'vql[ray]' (or SET executor = 'local')") from e
    return ray


def start(address: str | None) -> None:
    """Connect to Ray: ``"local"`` (or None) starts a local Ray on this machine's cores, anything
    else is handed to ``ray.init(address=...)`` ("auto": the cluster this machine belongs to;
    "ray://host:10001": a remote one). Nothing happens if Ray is already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        if address in (None, "local"):
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise ExecutionError(f"cannot connect to Ray at {address!r}: {e}") from e


def gpu_share(gpus: float, cpus: float) -> float:
    """The share of a GPU a task asks for on a node: its GPUs over its CPUs, at most one, at least
    Ray's smallest step (0.0001); 0 without GPUs.

    >>> gpu_share(1, 16), gpu_share(8, 8), gpu_share(4, 2), gpu_share(0, 16), gpu_share(1, 3)
    (0.0625, 1.0, 1.0, 0.0, 0.3333)
    """
    return 0.0 if gpus <= 0 else max(0.0001, min(1.0, round(gpus / max(cpus, 1), 4)))


class RayWorkers(Workers):
    """The session's tasks on Ray: :class:`~vql.engine.workers.Workers` with Ray tasks for
    worker processes; ``count`` is the cluster's CPUs."""

    name = "Ray worker"

    def __init__(self, address: str | None) -> None:
        start(address)
        ray = _ray()
        super().__init__(max(1, int(ray.cluster_resources().get("CPU", 1))))
        # what a task on a GPU asks for: the smallest share among the nodes with GPUs, so that every
        # CPU of each such node can hold a task (a node's tasks are capped by its CPUs anyway)
        self.gpu = min((gpu_share(r["GPU"], r.get("CPU", 1)) for n in ray.nodes() if n.get("Alive")
                        for r in [n.get("Resources") or {}] if r.get("GPU", 0) > 0), default=0.0)
        self._remote: dict = {}
        self.lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                     ray.exceptions.RaySystemError)

    def fits(self, info, recipes, frames, cascade: bool = False) -> bool:
        """As for local workers (``engine/workers.py``), with enough frames for two workers' worth
        (Ray was asked for: a bigger cluster does not need more frames before it is used). A
        model on CUDA goes to Ray only where the cluster has GPUs and the model is on the GPU Ray
        assigns (``cuda``, ``cuda:0``); otherwise it stays in this process."""
        least = local.CASCADE_MIN_FRAMES if cascade else local.MIN_FRAMES
        return (info.seekable and len(frames) >= least * 2
                and all(r is not None and self._takes(r) for r in recipes))

    def _takes(self, recipe: tuple) -> bool:
        """Whether a task can run the recipe's model: on the CPU, or on CUDA where the cluster has
        GPUs and the model is on the GPU Ray assigns the task (``cuda`` or ``cuda:0``: Ray shows a
        task only its own GPU, as device 0)."""
        return not on_gpu(recipe) or (self.gpu > 0 and device_of(recipe) in ("cuda", "cuda:0"))

    def submit(self, fn, *args, gpu: bool = False):
        """``fn(*args)`` as a Ray task of one CPU (``gpu``: and :attr:`gpu` of a GPU). A task on a
        GPU may reuse its worker process as a CPU task does (Ray would otherwise start a process
        per GPU task, ``max_calls=1``, and the model would be loaded for every task)."""
        ray = _ray()
        key = (fn, gpu)
        if key not in self._remote:
            options = {"num_gpus": self.gpu, "max_calls": 0} if gpu else {}
            self._remote[key] = ray.remote(num_cpus=1, max_retries=RETRIES, **options)(fn)
        return self._remote[key].remote(*args)

    def get(self, task):
        ray = _ray()
        try:
            return ray.get(task)
        except ray.exceptions.RayTaskError as e:  # the task's own error: vql's errors stay vql's
            cause = getattr(e, "cause", None)
            if isinstance(cause, VqlError):
                raise type(cause)(str(cause)) from e
            raise ExecutionError(f"a Ray task failed: {cause!r}" if cause is not None else str(e)) from e
        except self.lost:
            raise
        except ray.exceptions.RayError as e:  # out of memory, an object or its owner lost, an unschedulable task...
            raise ExecutionError(f"Ray could not run a task ({type(e).__name__}: {e}); labels stored before it are "
                                 "kept; SET executor = 'local' runs it on this machine") from e

    def cancel(self, task) -> None:
        try:
            _ray().cancel(task)
        except Exception:  # already finished, or its worker gone: nothing to cancel
            pass

    def died(self, what: str) -> str:
        return (f"a Ray worker {what} died {RETRIES + 1} times (out of memory, a node lost, or killed); labels "
                "stored before it are kept; SET executor = 'local' runs it on this machine")

    def close(self) -> None:
        self._remote.clear()  # Ray stays up for the session's process (ray.shutdown() ends it)
