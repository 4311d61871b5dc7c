"""A video set's members labelled together: an exact scan of a set labels the frames every member
still lacks in one run of the workers (or Ray), so that the members' tasks keep every worker busy
at once, where one member alone may have too few frames for the
pool (``Workers.fits``), and no worker waits at the end of one member for the next to start.

Each member's labels are stored as its own labelling would store them (in its frame order, one
transaction per task), and its scan then reads them as labels stored before the query, except
that they count as labelled by it (``frames_labelled``, ``label_seconds``), not as cached. Where
the workers do not take the members' frames together (one process, a model they cannot rebuild,
a video that cannot be sought, too few frames in all, models on the CPU and on a GPU at once, two
members of the same content), each member is labelled on its own, as before.
"""

from __future__ import annotations

import time

import numpy as np

from vql.engine.executor import Context, label_store, missing_frames, sparse_seek_gap
from vql.engine.workers import on_gpu
from vql.progress import Progress


def label_together(nodes: list, ctx: Context) -> None:
    """Label the frames the LabelFrames of ``nodes`` (the exact scans of a query's inputs) lack,
    in one run of the workers where they take them together; each one done is added to
    ``ctx.labelled``, which its own operator then skips."""
    labels = [lf for node in nodes for lf in node.labels]
    keys = [(lf.scan.info.fingerprint, lf.model_version) for lf in labels]
    if (ctx.workers is None or ctx.recipe is None or len({fp for fp, _ in keys}) < 2
            or len(set(keys)) < len(keys)):  # members of the same content: one after the other
        return
    jobs, todo, total = [], [], 0
    for lf in labels:
        model = ctx.model(lf.model)
        done, missing = missing_frames(ctx, lf)
        jobs.append((lf, model, done, missing))
        todo.append(missing)
        total += len(missing)
    every = np.concatenate(todo)
    recipes = {lf.model: ctx.recipe(model) for lf, model, _, _ in jobs}
    if (not total or None in recipes.values()
            or len({on_gpu(r) for r in recipes.values()}) > 1  # a run's tasks all ask for a GPU, or none
            or not all(ctx.workers.fits(lf.scan.info, [recipes[lf.model]], every) for lf, *_ in jobs)):
        return
    names = ", ".join(dict.fromkeys(model.name for _, model, _, _ in jobs))
    with Progress(total, "frames", f"labelling {len(jobs)} videos with {names}", enabled=ctx.progress) as bar:
        runs = [(lf.scan.info, [recipes[lf.model]], [model.version], missing,
                 label_store(ctx, lf.scan.info, [model], bar.update), sparse_seek_gap(ctx, lf.scan.info, missing))
                for lf, model, _, missing in jobs if len(missing)]
        start = time.perf_counter()
        ctx.workers.label_many(runs)
        ctx.count("label_seconds", time.perf_counter() - start)
    for lf, _, done, _ in jobs:
        ctx.count("frames_cached", len(done))
        ctx.labelled.add(lf)
