"""Planning one atom over a scan, with the reference in the loop.

``plan_atom`` labels the pilot sample (``planner/sampling.py``), grows its fit set while the
cost model says that pays (``label_sample``), trains the cheap stages and picks the cheapest
certified plan (``planner/cascade.py: decide``), then labels the anchors of the frame skips
worth certifying (``label_anchors``) and decides again with them. The session caches and
stores what this returns.
"""

from __future__ import annotations

import math
import time

import numpy as np

from vql.engine.cascade import atom_counts, sample_pass
from vql.engine.executor import Context
from vql.engine.difference import GATE_METRICS, AnchorGate
from vql.planner.cascade import DIFF_SIZE, DRIFT_MARGIN, CascadeChoice, decide, plan_sample, search, train_stages
from vql.planner.cost import Costs, exact_cost, growth_costs
from vql.planner.sampling import FIT_SHARE, Split, time_block_split
from vql.planner.skipping import MIN_PAIRS, SKIPS, anchors, estimate, gate_estimate
from vql.planner.stats import trials_needed

MAX_GROWTH = 6  # rounds of growing the fit set (positives cluster in time, so one estimate can fall short)


def plan_atom(ctx: Context, model, scan, atom, fpr: float, fnr: float) -> CascadeChoice:
    """The cascade (or the exact plan) for ``atom`` over ``scan`` under the targets, with the
    seconds planning took."""
    start = time.perf_counter()
    split, why = plan_sample(scan.first, scan.last, min(fpr, fnr))
    if len(split.frames) * 2 > scan.frame_count:
        choice = CascadeChoice(atom, "exact", "the planning sample would cover over half of the scan: "
                               "labelling every frame costs less", len(split.frames), why, split.reason,
                               Costs(0.0, 0.0, 0.0, 0.0), 0.0, None)
    else:
        split, why, truth, small, costs, stages, short = label_sample(ctx, model, scan, atom, split, why, fpr, fnr)
        if short:
            choice = CascadeChoice(atom, "exact", short, len(split.frames), why, split.reason, costs,
                                   exact_cost(1, costs), None)
        else:
            stages = stages or train_stages(split, truth, small)
            choice = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages)
            if stages is not None:
                skips, notes = label_anchors(ctx, model, scan, atom, split, truth, small, costs, choice, fpr, fnr)
                if skips:
                    choice = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages,
                                    first=scan.first, skips=skips, skip_notes=notes)
                else:
                    choice.skip_notes = notes
    choice.plan_seconds = time.perf_counter() - start
    return choice


def label_sample(ctx: Context, model, scan, atom, split, why: str, fpr: float, fnr: float):
    """Label the planning sample, then grow its fit set until it holds enough of the atom's
    rarer class (positives or negatives) to certify the targets: the rate seen so far says
    how many fit frames that takes (training and evaluation keep the pilot's frames).

    Whether growing is worth it is the cost model's call, with what is still to pay: the
    stages are trained on the pilot, the cheapest cascade that makes no error on the fit set
    so far gives the projected cost per frame, and labelling the extra frames plus running
    that cascade over the rest of the unlabelled scan is compared with the reference on all
    of it (labels already stored serve both plans alike). Returns (split, why, truth, small,
    costs, stages, short), ``short`` saying why the exact plan wins, or None."""
    info = scan.info
    small: dict = {}
    costs = stages = None
    target = min(fpr, fnr)
    wanted = trials_needed(target * DRIFT_MARGIN)
    todo, rounds, pilot_why, pilot_projection = split.frames, 0, why, ""
    truth: dict[int, bool] = {}
    while True:
        new_costs = _label(ctx, model, scan, atom, todo, small, truth)
        costs = new_costs if costs is None else costs
        fit_pos = sum(truth[int(f)] for f in split.fit)
        least = min(fit_pos, len(split.fit) - fit_pos)
        if least >= wanted:
            return split, why, truth, small, costs, stages, None
        stages = stages or train_stages(split, truth, small)
        if stages is None:
            return split, why, truth, small, costs, None, "the training sample has only one class"
        # the rate seen so far, with a margin; at least a tenth more (an estimate near the goal undershoots)
        extra = max(math.ceil(1.2 * (wanted * len(split.fit) / max(least, 0.5) - len(split.fit))),
                    math.ceil(0.1 * len(split.fit)))
        unlabelled = scan.frame_count - len(ctx.store.labelled_frames(info.fingerprint, model.version,
                                                                      scan.first, scan.last))
        y_fit = np.array([truth[int(f)] for f in split.fit], bool)
        best = search(stages, split.fit, y_fit, small, costs, fpr, fnr, budgets=(0, 0))[0]
        grow, exact = growth_costs(extra, unlabelled, costs, best.cost_per_frame)
        projection = (f"labelling ~{extra} more frames, then {best.name} (projected {best.cost_per_frame * 1000:.1f} "
                      f"ms/frame with no error on the fit set) on the rest of the {unlabelled} unlabelled frames: "
                      f"~{grow:.0f} s, against ~{exact:.0f} s for the reference on all of them")
        if grow >= exact:
            return split, why, truth, small, costs, stages, (
                f"certifying {target:g} needs {wanted} of the rarer class in the fit set; it had {least} of "
                f"{len(split.fit)}; {projection}")
        more = time_block_split(scan.first, scan.last, math.ceil(extra / FIT_SHARE), seed=len(split.frames))
        todo = np.setdiff1d(more.fit, split.fit)
        if not len(todo) or rounds == MAX_GROWTH:  # the fit blocks are used up: decide with what there is
            return split, why, truth, small, costs, stages, None
        split = Split(split.train, np.union1d(split.fit, todo), split.eval, split.blocks, split.reason)
        rounds += 1
        pilot_projection = (pilot_projection
                            or f"the pilot's fit set had {least} of {len(split.fit) - len(todo)}; {projection}")
        why = (f"{pilot_why}; fit set grown in {rounds} round(s) to {len(split.fit)} frames to hold {wanted} of "
               f"the rarer class ({pilot_projection})")


def label_anchors(ctx: Context, model, scan, atom, split, truth, small, costs, choice, fpr: float,
                   fnr: float) -> tuple[tuple[int, ...], list[str]]:
    """Frame skipping: for each skip, estimate on the sample's own neighbouring pairs the error
    of propagation alone and the share a t−Δ gate would have to send through the cascade to
    keep it small. Where plain skipping leaves room in the targets, or the gate would, and
    skipping could save more than labelling its anchors costs (the fit and eval frames'
    anchors), label them (into ``truth`` and ``small``). Returns the skips now certifiable and
    notes saying what was estimated and decided per skip."""
    info = scan.info
    unlabelled = scan.frame_count - len(ctx.store.labelled_frames(info.fingerprint, model.version,
                                                                  scan.first, scan.last))
    evaluated = np.union1d(split.fit, split.eval)
    stages_cost = choice.expected_per_frame - costs.decode  # what an inheriting frame no longer pays
    skips, notes, need = [], [], set()
    for k in SKIPS:
        est = estimate(truth, scan.first, k)
        off = unlabelled * (1 - 1 / k)  # frames that may inherit
        if est.admissible(fnr * DRIFT_MARGIN, fpr * DRIFT_MARGIN):
            what, saving = est.describe(), off * (choice.expected_per_frame - costs.grab)
        else:
            gates = [gate_estimate(truth, small[DIFF_SIZE], scan.first, k, fnr * DRIFT_MARGIN, fpr * DRIFT_MARGIN,
                                   AnchorGate(metric, DIFF_SIZE)) for metric in GATE_METRICS]
            gate = min(gates, key=lambda g: g.gate_pass)
            saving = off * ((1 - gate.gate_pass) * stages_cost - gate.seconds)
            what = (est.describe() + (": too few to judge" if est.positives < MIN_PAIRS else ": over the targets on "
                                      "its own") + "; " + gate.describe())
            if gate.gate_pass >= 1.0:
                notes.append(what)
                continue
        new = set(anchors(evaluated, scan.first, k).tolist()) - set(truth) - need
        label_cost = len(new) * (costs.decode + costs.reference)
        if saving <= label_cost:
            notes.append(f"{what}; labelling its {len(new)} anchors (~{label_cost:.0f} s) would cost more than "
                         f"skipping could save (~{max(saving, 0):.0f} s)")
            continue
        notes.append(f"{what}; its {len(new)} anchors labelled to certify it")
        skips.append(k)
        need |= new
    if need:
        _label(ctx, model, scan, atom, np.array(sorted(need), np.int64), small, truth)
    return tuple(skips), notes


def _label(ctx: Context, model, scan, atom, frames: np.ndarray, small: dict, truth: dict[int, bool]) -> Costs:
    """Label ``frames`` with the reference (stored labels reused), keep them downscaled in
    ``small`` and the atom's value on them in ``truth``; the costs measured on the way."""
    new_small, costs = sample_pass(ctx, scan.info, model, model.version, frames)
    for size, images in new_small.items():
        small.setdefault(size, {}).update(images)
    counts = atom_counts(ctx, scan.info, model.version, atom, scan.first, scan.last)
    truth.update({int(f): bool(atom.holds(np.array(counts.get(int(f), 0)))) for f in frames})
    return costs

