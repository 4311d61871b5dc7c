"""A video set's members labelled and run together: an exact scan of a set labels the frames every
member still lacks in one run of the workers (or Ray), and a set's cascades run their passes over
the members in one run of them, so that the members' tasks keep every worker busy at once, where
one member alone may have too few frames for the pool (``Workers.fits``), and no worker waits at
the end of one member for the next to start.

Each member's labels are stored as its own labelling would store them (in its frame order, one
transaction per task), and its scan then reads them as labels stored before the query, except
that they count as labelled by it (``frames_labelled``, ``label_seconds``), not as cached. Where
the workers do not take the members' frames together (one process, a model they cannot rebuild,
a video that cannot be sought, too few frames in all, models on the CPU and on a GPU at once, two
members of the same content), each member is labelled on its own, as before.

Cascades: each member is planned on its own (its own sample, cascade and certificate), one member
after another, up to its first pass; the members' passes then run in one run of the workers, and
each member goes on to its next atom's pass (or its end), and so on (``evaluate_together``). A
member's answers, labels and operators' counts are those it gets alone: its pass is the same,
only the run holding it is shared. Where the workers do not take the passes together (the same
reasons as above), each pass runs as it would alone (``engine/cascade.py: run_pass``).
"""

from __future__ import annotations

import time

import numpy as np

from vql.engine.cascade import PassRequest, PassResult, run_pass
from vql.engine.executor import Context, evaluate_steps, label_store, missing_frames, sparse_seek_gap
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
    jobs = [(lf, ctx.model(lf.model), *missing_frames(ctx, lf)) for lf in labels]  # (node, model, done, missing)
    every = np.concatenate([missing for *_, missing in jobs])
    recipes = {lf.model: ctx.recipe(model) for lf, model, _, _ in jobs}
    if (not len(every) or None in recipes.values()
            or len({on_gpu(r) for r in recipes.values()}) > 1  # a run's tasks all ask for a GPU, or none
            or not all(ctx.workers.fits(lf.scan.info, [recipes[lf.model]], every) for lf, *_ in jobs)):
        return
    names = ", ".join(dict.fromkeys(model.name for _, model, _, _ in jobs))
    with Progress(len(every), "frames", f"labelling {len(jobs)} videos with {names}", enabled=ctx.progress) as bar:
        runs = [(lf.scan.info, [recipes[lf.model]], [model.version], missing,
                 label_store(ctx, lf.scan.info, [model], bar.update), sparse_seek_gap(ctx, lf.scan.info, missing))
                for lf, model, _, missing in jobs if len(missing)]
        start = time.perf_counter()
        ctx.workers.label_many(runs)
        ctx.count("label_seconds", time.perf_counter() - start)
    for lf, _, done, _ in jobs:
        ctx.count("frames_cached", len(done))
        ctx.labelled.add(lf)


def evaluate_together(nodes: list, ctx: Context) -> None:
    """Answer the model tests of ``nodes`` (a video set's members' scans) with their cascades,
    each member's passes run beside the other members' (:func:`run_passes`); each one done is
    added to ``ctx.evaluated``, which its own operator then skips."""
    if (ctx.workers is None or ctx.recipe is None or len(nodes) < 2
            or len({node.scan.info.fingerprint for node in nodes}) < len(nodes)):  # the same content: one by one
        return
    steps = {node: evaluate_steps(node, ctx) for node in nodes}
    waiting: dict = {}  # a member -> the pass it waits for

    def advance(node, result: PassResult | None = None) -> None:
        try:
            waiting[node] = steps[node].send(result)  # planned (on the first step), up to its next pass
        except StopIteration:
            waiting.pop(node, None)
            ctx.evaluated.add(node)

    for node in nodes:
        advance(node)
    while waiting:
        members = list(waiting)
        for node, result in zip(members, run_passes(ctx, [waiting[node] for node in members])):
            advance(node, result)


def run_passes(ctx: Context, requests: list[PassRequest]) -> list[PassResult]:
    """The cascade passes of several members, in one run of the workers where they take them
    together (every model rebuildable, all on the CPU or all on a GPU, ``Workers.fits`` over all
    their frames); else each as it would run alone."""
    recipes = [ctx.recipe(r.model) for r in requests]
    every = np.concatenate([r.frames for r in requests])
    if (len(requests) < 2 or None in recipes or len({on_gpu(x) for x in recipes}) > 1
            or not all(ctx.workers.fits(r.info, [x], every, cascade=True) for r, x in zip(requests, recipes))):
        return [run_pass(ctx, r) for r in requests]
    start = time.perf_counter()
    with Progress(len(every), "frames", f"cascades over {len(requests)} videos", enabled=ctx.progress) as bar:
        results = ctx.workers.cascade_many([(r.info, x, r.version, r.atom, r.chosen, r.first, r.unknown, r.frames,
                                             r.store) for r, x in zip(requests, recipes)], bar.update)
    for result in results:
        result.wall = time.perf_counter() - start  # the shared run's, for each member's time
    return results
