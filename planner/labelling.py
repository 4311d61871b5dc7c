"""Planning a scan's model tests with the reference in the loop.

``plan_query`` walks the scan's seeded random order (``planner/sampling.py``): it labels the
training prefix, trains each atom's stages on its first third and scores them on the other
two thirds, lets ``planner/query.py: propose`` make every choice there, then labels the
certification frames after the prefix (stored labels reused, whichever query paid for them)
and certifies the one proposal on them (``finish``). The session caches and stores what this
returns.
"""

from __future__ import annotations

import time

import numpy as np

from vql.engine.cascade import sample_pass
from vql.engine.executor import Context, atom_truth, predicate_extents, where_truth
from vql.planner.cascade import exact_choice, op_scores, pool_size, stage_crop, stage_views, train_stages
from vql.planner.cost import Costs
from vql.plan import claim_names
from vql.planner.query import AtomInput, QueryPlan, certification_claims, finish, propose
from vql.planner.sampling import MAX_TRAIN_SHARE, Sample, grow, min_rare, permutation, training_size


def _exact(node, reason: str, fpr: float, fnr: float, **info) -> QueryPlan:
    costs = Costs(0.0, 0.0, 0.0, 0.0)
    return QueryPlan("exact", reason, tuple(exact_choice(a, reason, costs) for a in node.atoms), fpr, fnr,
                     claim_names(list(node.atoms), node.where), **info)


def plan_query(ctx: Context, node, fpr: float, fnr: float) -> QueryPlan:
    """The plan of one scan's atoms under the targets: certified cascades, or the exact plan."""
    start = time.perf_counter()
    scan, atoms = node.scan, list(node.atoms)
    total = scan.frame_count
    n_train, why = training_size(total, min(fpr, fnr))
    if total == 0:
        return _exact(node, "the scan is empty", fpr, fnr)
    if fpr <= 0 or fnr <= 0:
        return _exact(node, "a target of 0 needs the reference on every frame", fpr, fnr)
    if 2 * n_train > total:
        return _exact(node, f"the training prefix ({n_train} frames) would cover over half of the {total}-frame "
                            f"scan: labelling every frame costs less", fpr, fnr, sample=why)
    order = permutation(scan.info.fingerprint, scan.first, scan.last)
    small: dict = {}
    truth: dict[str, dict[int, bool]] = {a.column: {} for a in atoms}
    costs = _label(ctx, scan, atoms, order[:n_train], small, truth, "training")
    sizes = _pool_sizes(ctx, scan, atoms, Sample(order, n_train).train, small)
    views = {a.column: stage_views(stage_crop(a.predicate.region), sizes[a.column]) for a in atoms}
    n_train, why = _grow_prefix(ctx, scan, atoms, order, n_train, why, small, truth, min(fpr, fnr), views)
    sample = Sample(order, n_train)
    inputs = []
    for atom in atoms:
        t = truth[atom.column]
        s = train_stages(sample.train, t, small, crop=stage_crop(atom.predicate.region), size=sizes[atom.column])
        views[atom.column] = s.views if s is not None else ()
        y_sel = np.array([t[int(f)] for f in sample.select], bool)
        rate = float(np.mean([t[int(f)] for f in sample.prefix]))
        inputs.append(AtomInput(atom, y_sel, rate, s.scored(sample.select, small) if s is not None else None))
    combine = where_truth(ctx, node)
    prefix_values = {a.column: np.array([truth[a.column][int(f)] for f in sample.prefix], bool) for a in atoms}
    rates = ([float(combine(sample.prefix, prefix_values).mean())] if combine is not None
             else [i.positive_rate for i in inputs])
    unlabelled = total - min(len(ctx.store.labelled_frames(scan.info.fingerprint, ctx.model(m).version, scan.first,
                                                           scan.last)) for m in {a.predicate.model for a in atoms})
    proposal = propose(inputs, combine, fpr, fnr, unlabelled, total - n_train, costs, sample.select, rates, node.where,
                       n_train)
    steps = []
    if proposal.cascade:
        sample = Sample(sample.order, n_train, proposal.sizing.frames)
        frames = sample.certify
        _label(ctx, scan, atoms, frames, small, truth, "certification", views)
        values = {a.column: np.array([truth[a.column][int(f)] for f in frames], bool) for a in atoms}
        scored: dict = {}

        def scores(c):  # the plans of the sequence share their stages (some drop one): score each once
            for st in c.chosen.stages:
                if id(st.op) not in scored:
                    scored[id(st.op)] = op_scores(st.op, frames, small)
            return [scored[id(st.op)] for st in c.chosen.stages]

        steps = certification_claims(proposal, frames, values, scores, combine)
    return finish(proposal, steps, fpr, fnr, sample=why, training_frames=n_train,
                  plan_seconds=time.perf_counter() - start)


def _pool_sizes(ctx: Context, scan, atoms, train: np.ndarray, small: dict) -> dict[str, int]:
    """Each atom's pooled CNN input size, picked (``pool_size``) from the objects its predicate
    counts on ``train``, the training part of the first labelled prefix (which any grown prefix's
    training part contains: nothing else decides it); the downscaled frames at the sizes not
    picked are dropped from ``small``."""
    sizes = {a.column: pool_size(predicate_extents(ctx, scan.info, ctx.model(a.predicate.model).version, a.predicate,
                                                   train), stage_crop(a.predicate.region)) for a in atoms}
    kept = {v for a in atoms for v in stage_views(stage_crop(a.predicate.region), sizes[a.column])}
    for view in set(small) - kept:
        del small[view]
    return sizes


def _grow_prefix(ctx: Context, scan, atoms, order: np.ndarray, n_train: int, why: str, small: dict,
                 truth: dict[str, dict[int, bool]], target: float, views: dict[str, tuple]) -> tuple[int, str]:
    """Extend the labelled training prefix as ``sampling.grow`` says for ``target``, its frames
    kept downscaled at ``views`` (per atom's column)."""
    start = n_train
    while True:
        rare = min(min(sum(v), len(v) - sum(v)) for v in ([truth[a.column][int(f)] for f in order[:n_train]]
                                                          for a in atoms))
        grown = grow(n_train, len(order), rare, target)
        if grown == n_train:
            break
        _label(ctx, scan, atoms, order[n_train:grown], small, truth, "more training", views)
        n_train = grown
    if n_train > start:
        why += (f"; grown to {n_train} frames to hold {min_rare(target)} of each test's rarer class "
                f"(at most {MAX_TRAIN_SHARE:.0%} of the scan)")
    return n_train, why


def _label(ctx: Context, scan, atoms, frames: np.ndarray, small: dict, truth: dict[str, dict[int, bool]],
           kind: str, views: dict[str, tuple] | None = None) -> Costs:
    """Label ``frames`` with each atom's reference (stored labels reused), keep them downscaled in
    ``small`` (at ``views[atom's column]``; by default, at every size its pooled CNN may take)
    and each atom's value on them in ``truth``; the costs measured on the way. The progress bar
    says "labelling {kind} frames for" the atoms."""
    costs = None
    for name in dict.fromkeys(a.predicate.model for a in atoms):
        model = ctx.model(name)
        tests = ", ".join(a.short_text for a in atoms if a.predicate.model == name)
        wanted = tuple(dict.fromkeys(v for a in atoms if a.predicate.model == name
                                     for v in (stage_views(stage_crop(a.predicate.region)) if views is None
                                               else views[a.column])))
        new_small, measured = sample_pass(ctx, scan.info, model, model.version, np.sort(frames), wanted,
                                          label=f"labelling {kind} frames for {tests}")
        costs = costs or measured
        for view, images in new_small.items():
            small.setdefault(view, {}).update(images)
        for atom in (a for a in atoms if a.predicate.model == name):
            values = atom_truth(ctx, scan.info, model.version, atom, frames)
            truth[atom.column].update(zip((int(f) for f in frames), values.tolist()))
    return costs
