"""``SELECT frame FROM cam WHERE <model tests> WITH (recall := 0.9)``: a selection with a recall guarantee.

SUPG's question (VLDB 2020), answered with exact finite-sample bounds: return a set of frames that
holds at least a share ``recall`` of the frames where WHERE is true by the reference, with
probability at least ``confidence``, from a stated budget of reference calls. Precision is what
varies, and it is reported with an interval.

1. Frames in the label cache are known: their true ones are returned, the others not.
2. Every other frame (the *unknown* ones) gets a label-free proxy score, the difference to its
   block's median image, signed by the WHERE clause's direction (busy frames first, or empty
   ones); the candidate sets are the top of that order, from every unknown frame down to the
   top 1% (:data:`GRID` sizes, fixed before any label is seen).
3. ``budget`` unknown frames drawn uniformly at random are labelled (all of them, when the budget
   is nearly every unknown frame: the answer is exact).
4. For a candidate set R, let A be the true frames among the unknown frames in R and M those
   outside it. The sample bounds both, each by the exact hypergeometric limit at (1 -
   confidence)/2: A >= A_low, M <= M_high. With K true frames known from the cache, the recall
   of the answer (known true frames, the sampled true frames, and R) is at least
   (K + A_low) / (K + A_low + M_high).
5. The sets are tested in order, largest first, each at the full confidence (fixed-sequence
   testing: recall falls as R shrinks, so the sets whose recall is below the target come last
   in the order, and only the first of them could be passed by mistake); the smallest set that
   passes, with every test before it passed, is returned. The set of every unknown frame always
   passes: its recall is 1.

>>> truth = np.zeros(20_000, bool); truth[3000:3400] = True; truth[9000:9600] = True
>>> key = truth + np.random.default_rng(0).normal(0, 0.3, len(truth))
>>> sel = select(key, 0, 2_000, np.random.default_rng(1), lambda i: truth[i], 0.9)
>>> returned = sel.chosen | sel.labelled_true
>>> bool(returned[truth].mean() >= 0.9), int(returned.sum()) < 2_000, sel.recall_bound >= 0.9
(True, True, True)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vql.engine.executor import Context, atom_models, judge_frames, label_with, labelled_by_all, where_truth
from vql.engine.search import scan_rng, scan_scores, where_polarity
from vql.plan import EvaluatePredicates, RecallSelect
from vql.planner.stats import count_interval
from vql.progress import Progress

GRID = 100  # candidate set sizes, from every unknown frame down to 1/GRID of them
EXACT_SHARE = 0.9  # a budget over this share of the unknown frames labels all of them (exact)
ORDER_SALT = 13  # in the random order's seed, with the video's content and the scan


@dataclass
class Selection:
    """What :func:`select` chose, over the unknown frames (index space of ``key``)."""

    chosen: np.ndarray  # bool: unknown frames returned without a label (the candidate set, unlabelled)
    labelled: np.ndarray  # bool: unknown frames labelled now
    labelled_true: np.ndarray  # bool: of those, the true ones (returned)
    size: int  # the candidate set's size, unknown frames
    recall_bound: float  # the recall the tests passed at the chosen set (1.0: every unknown frame)
    precision: tuple[float, float, float]  # the answer's precision: estimate, interval (at the confidence)
    exact: bool
    sets_passed: int


def select(key: np.ndarray, known_true: int, budget: int, rng: np.random.Generator,
           judge: Callable[[np.ndarray], np.ndarray], recall: float, confidence: float = 0.95,
           grid: int = GRID) -> Selection:
    """The smallest candidate set (top of ``key``) whose recall passes, with every larger one
    (see the module's docstring). ``key``: one score per unknown frame, higher first;
    ``known_true``: true frames known already; ``judge(indices)``: label those unknown frames,
    return their truth; ``grid``: candidate set sizes (1: every unknown frame, without a proxy)."""
    u = len(key)
    n = min(budget, u)
    if n >= EXACT_SHARE * u:
        n = u
    sample = np.sort(rng.choice(u, n, replace=False)) if n < u else np.arange(u)
    truth = np.zeros(u, bool)
    truth[sample] = judge(sample) if n else np.zeros(0, bool)
    labelled = np.zeros(u, bool)
    labelled[sample] = True
    if n == u:  # every unknown frame labelled: the answer is exact
        empty = np.zeros(u, bool)
        return Selection(empty, labelled, truth.copy(), 0, 1.0, (1.0, 1.0, 1.0), True, 0)
    rank = np.empty(u, np.int64)
    rank[np.argsort(-key, kind="stable")] = np.arange(u)  # 0: the highest score
    in_order = np.sort(rank[sample])  # the sampled frames' places in the order
    true_order = np.sort(rank[sample][truth[sample]])  # the sampled true frames'
    sizes = np.unique(np.ceil(u * np.arange(grid, 0, -1) / grid).astype(np.int64))[::-1]  # largest first
    chosen_size, bound, passed = u, 1.0, 0
    for size in sizes:
        # the sample's frames inside the set are a uniform sample of it, those outside of the rest
        n_in, inside = int(np.searchsorted(in_order, size)), int(np.searchsorted(true_order, size))
        a_low = count_interval(int(size), n_in, inside, confidence)[0]
        m_high = count_interval(u - int(size), n - n_in, len(true_order) - inside, confidence)[1]
        lower = (known_true + a_low) / max(known_true + a_low + m_high, 1)
        if lower < recall:
            break
        chosen_size, bound, passed = int(size), lower, passed + 1
    chosen = (rank < chosen_size) & ~labelled
    # precision: rows are the known and sampled true frames and the set's unlabelled frames
    n_in, inside = int(np.searchsorted(in_order, chosen_size)), int(np.searchsorted(true_order, chosen_size))
    lo, hi = count_interval(chosen_size, n_in, inside, confidence)  # true frames in the set
    outside_true = int(truth.sum()) - inside
    rows = known_true + outside_true + inside + (chosen_size - n_in)
    point = known_true + outside_true + inside / max(n_in, 1) * chosen_size
    precision = tuple(float(x) / rows for x in (point, known_true + outside_true + lo, known_true + outside_true + hi))
    return Selection(chosen, labelled, truth & labelled, chosen_size, bound, precision, False, passed)


def assign(node: EvaluatePredicates, judge, frames: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Atom values under which WHERE holds on each of ``frames`` (the first of the 2^m assignments
    that makes it true), and which frames have one: an unlabelled frame returned by a selection
    must pass the query's own WHERE clause, whatever its other parts say."""
    columns = [a.column for a in node.atoms]
    values = {c: np.zeros(len(frames), bool) for c in columns}
    found = np.zeros(len(frames), bool)
    for bits in itertools.product((True, False), repeat=len(columns)):
        holds = judge(frames, {c: np.full(len(frames), b) for c, b in zip(columns, bits)}) & ~found
        for c, b in zip(columns, bits):
            values[c][holds] = b
        found |= holds
    return values, found


def run_recall(spec: RecallSelect, node: EvaluatePredicates, ctx: Context) -> dict:
    """Select the scan's frames where WHERE holds with the recall guarantee; materialise the
    per-frame table: labelled frames with the reference's values, and the chosen unlabelled
    frames with atom values under which WHERE holds."""
    scan, info = node.scan, node.scan.info
    models = atom_models(ctx, node)
    first, n = scan.first, scan.frame_count
    judge = where_truth(ctx, node)
    stored = labelled_by_all(ctx, scan, models)
    ctx.count("frames_cached", len(stored))
    values, true = judge_frames(ctx, node, stored) if len(stored) else ({}, np.zeros(0, bool))
    unknown = np.setdiff1d(np.arange(first, first + n, dtype=np.int64), stored, assume_unique=True)
    if len(unknown):  # frames where WHERE cannot hold whatever the tests say (frame < 2000...) are never candidates
        unknown = unknown[assign(node, judge, unknown)[1]]
    start = time.perf_counter()
    polarity = where_polarity(node, judge) if len(unknown) else 0
    proxy_seconds = 0.0
    key = np.zeros(len(unknown))
    if polarity:
        t0 = time.perf_counter()
        key = polarity * scan_scores(scan)[unknown - first]
        proxy_seconds = time.perf_counter() - t0
    tests = ", ".join(a.short_text for a in node.atoms)
    reference = [0.0]
    judged: dict[str, np.ndarray] = {}  # the sampled frames' atom values, from their labelling
    with Progress(min(spec.budget, len(unknown)), "frames", f"sampling {scan.video} for {tests}",
                  enabled=ctx.progress) as bar:
        def label(idx: np.ndarray) -> np.ndarray:
            frames = unknown[idx]
            reference[0] += label_with(ctx, info, models, frames, bar.update)
            atoms, truth = judge_frames(ctx, node, frames)
            judged.update(atoms)
            return truth

        sel = select(key, int(true.sum()), spec.budget, scan_rng(scan, ORDER_SALT), label, spec.recall, spec.confidence,
                     GRID if polarity else 1)
    sampled = unknown[sel.labelled]
    sampled_values = judged  # select labels its whole sample in one call, in frame order: ``sampled``
    chosen = unknown[sel.chosen]
    chosen_values, ok = assign(node, judge, chosen) if len(chosen) else ({}, np.zeros(0, bool))
    frames = np.concatenate([stored, sampled, chosen[ok]])
    columns = {"frame": frames, "ts": frames / float(info.fps)}
    for a in node.atoms:
        parts = [values.get(a.column, np.zeros(0, bool)), sampled_values.get(a.column, np.zeros(0, bool)),
                 chosen_values.get(a.column, np.zeros(0, bool))[ok]]
        columns[a.column] = np.concatenate(parts).astype(bool)
    ctx.store.materialise(node.table, pa.table(columns), order_by="frame")
    stats = {"recall": spec.recall, "confidence": spec.confidence, "budget": spec.budget,
             "proxy": "blocked MSE vs block median, " + ("high first" if polarity > 0 else "low first")
             if polarity else "none: WHERE is not monotone in its tests; every unknown frame is a candidate",
             "from_cache": len(stored), "cache_true": int(true.sum()), "unknown": len(unknown),
             "labelled": int(sel.labelled.sum()), "labelled_true": int(sel.labelled_true.sum()),
             "chosen_unlabelled": int(ok.sum()), "set_size": sel.size, "recall_bound": sel.recall_bound,
             "sets_passed": sel.sets_passed, "precision": sel.precision[0], "precision_low": sel.precision[1],
             "precision_high": sel.precision[2], "exact": sel.exact, "proxy_seconds": proxy_seconds,
             "reference_seconds": reference[0], "seconds": time.perf_counter() - start}
    ctx.stats.setdefault("recall", {})[node.table] = stats
    return stats


def analyze_line(s: dict) -> str:
    """What a recall selection did, for EXPLAIN ANALYZE (``s``: its ``metadata["recall"]`` entry)."""
    if s["exact"]:
        return (f"-- recall selection: every one of the {s['unknown']} unknown frames labelled ({s['from_cache']} from "
                f"the label cache): the answer is exact")
    head = (f"-- recall selection: {s['labelled']} random frames labelled ({s['labelled_true']} true), "
            f"{s['from_cache']} from the label cache; proxy: {s['proxy']} ({s['proxy_seconds']:.3f} s); ")
    if not s["sets_passed"]:  # no true frame seen: nothing bounds a smaller set's recall
        return head + (f"no set smaller than every unknown frame could be certified: the {s['chosen_unlabelled']} "
                       f"unknown frames not labelled are returned (recall 1)")
    return head + (f"the answer's set is the top {s['set_size']} of the {s['unknown']} unknown frames "
                   f"({s['chosen_unlabelled']} of them returned unlabelled; {s['sets_passed']} sets passed, largest "
                   f"first): recall >= {s['recall_bound']:.3f} >= {s['recall']:g} at {s['confidence']:.0%}; precision "
                   f"{s['precision']:.3f} [{s['precision_low']:.3f}, {s['precision_high']:.3f}]")
