"""``ORDER BY object_count(...) DESC LIMIT k``: the k busiest frames, with a certified miss share.

The exact answer needs the reference on every frame. vql labels far fewer (Everest's idea, with a
finite-sample guarantee instead of a proxy's uncertainty model):

1. frames in the label cache count at no cost;
2. *search*: the reference labels batches of frames, first the unlabelled neighbours (±
   :data:`NEIGHBOURS` frames) of frames as high as the answer's last row (busy moments last
   several frames), then frames in the order of a label-free proxy's score (the difference to
   each block's median image, as the LIMIT search's), until :data:`QUIET` batches in a row
   find no frame above the answer's last row;
3. *certification*: with the answer's last count ``t`` fixed, ``n`` frames are drawn uniformly at
   random (without replacement) from the candidate frames not labelled yet, ``n`` the fewest for
   which no frame above ``t`` among them bounds the share above ``t`` at ``miss``
   (``stats.trials_needed``). None above ``t``: certified. Otherwise those frames join the answer,
   the search resumes around them, and a new round draws a fresh sample.

The risk ``1 - confidence`` is spent over the rounds (round r: :data:`FIRST_SHARE` x (1 -
:data:`FIRST_SHARE`)^(r-1) of it), so the chance that *any* round certifies a share above
``miss`` is at most ``1 - confidence``, whatever the proxy and the video's temporal correlation:
each round's ``t`` is fixed before its sample is drawn, and the sample is uniform. What is
certified: at most ``bound`` of the candidate frames vql did not label (the exact hypergeometric
limit) have a count above the answer's last row, a share of at most ``miss`` of the frames that
were unlabelled when the certifying sample was drawn, at the stated confidence. Frames it
labelled are ranked exactly. When a round's sample would be nearly every frame left, all are
labelled and the answer is exact.

>>> counts = np.zeros(20_000, np.int64); counts[5000:5040] = 3; counts[12000:12012] = 5
>>> proxy = lambda: counts + np.random.default_rng(0).normal(0, 1, len(counts))
>>> known = np.full(len(counts), -1)
>>> st = search_top(10, np.ones(len(counts), bool), known, proxy, lambda i: counts[i], np.random.default_rng(1), 0.002)
>>> sorted(known[known >= 0].tolist())[-10:], st.threshold, st.exact, st.labelled < 2_500
([5, 5, 5, 5, 5, 5, 5, 5, 5, 5], 5, False, True)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vql.engine.executor import Context, label_with, labelled_by_all, predicate_counts, where_truth
from vql.engine.search import scan_rng, scan_scores
from vql.plan import EvaluatePredicates, TopK
from vql.planner.stats import count_interval, trials_needed, upper_bound
from vql.progress import Progress

NEIGHBOURS = 2  # frames each side of a frame as high as the answer's last row, labelled next
BATCH = 32  # frames per reference batch while searching
QUIET = 2  # batches in a row without a frame above the answer's last row end a search phase
FIRST_SHARE = 0.8  # of the risk 1 - confidence, spent on the first round; each later round 1/5 of the one before
EXACT_SHARE = 0.9  # a sample over this share of the frames left becomes all of them (exact)
ORDER_SALT = 11  # in the random order's seed, with the video's content and the scan


def round_risk(r: int, confidence: float) -> float:
    """The risk spent on certification round ``r`` (from 1); over all rounds they sum to 1 - confidence.

    >>> [round(round_risk(r, 0.95), 4) for r in (1, 2, 3)], round(sum(round_risk(r, 0.95) for r in range(1, 60)), 6)
    ([0.04, 0.008, 0.0016], 0.05)
    """
    return (1 - confidence) * FIRST_SHARE * (1 - FIRST_SHARE) ** (r - 1)


@dataclass
class TopStats:
    """What a top-k search did (``result.metadata["topk"]``, EXPLAIN ANALYZE)."""

    rows: int
    descending: bool
    miss: float
    confidence: float
    proxy: str = "blocked MSE vs block median"
    from_cache: int = 0  # frames whose counts the label cache held
    scored: int = 0  # frames the proxy scored
    labelled: int = 0  # frames the reference labelled now
    neighbour_picks: int = 0  # of those, as neighbours of high frames
    proxy_picks: int = 0  # for their proxy score
    sampled: int = 0  # drawn uniformly at random to certify (not the frames labelled to finish exactly)
    rounds: list = field(default_factory=list)  # per certification round: what was drawn, what was found
    threshold: int | None = None  # the answer's last count (the k-th highest found)
    unlabelled: int = 0  # candidate frames never labelled
    bound: int = 0  # of those, at most this many above the threshold (at the confidence)
    share_bound: float = 0.0  # the certified share: of the frames unlabelled when the certifying sample was drawn
    exact: bool = False  # every candidate frame labelled: the answer is exact
    proxy_seconds: float = 0.0
    reference_seconds: float = 0.0

    def row(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def search_top(rows: int, candidates: np.ndarray, counts: np.ndarray, proxy: Callable[[], np.ndarray],
               label: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator, miss: float,
               confidence: float = 0.95, descending: bool = True, stats: TopStats | None = None) -> TopStats:
    """Find the ``rows`` highest ``counts`` among the ``candidates`` (frame indices' mask) and
    certify the rest (see the module's docstring). ``counts``: -1 where unknown, filled in place
    as ``label(indices)`` returns counts; ``proxy()``: a score per frame, higher where busier."""
    st = stats or TopStats(rows, descending, miss, confidence)
    if rows <= 0:
        return st
    sign = 1 if descending else -1
    queued = np.zeros(len(counts), bool)
    neighbours: deque[int] = deque()
    order: list[np.ndarray] = []  # the proxy's order, computed when first needed
    position = 0

    def kth() -> int | None:
        keys = sign * counts[candidates & (counts >= 0)]
        return None if len(keys) < rows else int(np.partition(keys, len(keys) - rows)[len(keys) - rows])

    def add_neighbours(idx: np.ndarray) -> None:
        t = kth()
        high = idx if t is None else idx[sign * counts[idx] >= t]
        for i in high.tolist():
            for j in range(max(0, i - NEIGHBOURS), min(len(counts), i + NEIGHBOURS + 1)):
                if candidates[j] and counts[j] < 0 and not queued[j]:
                    queued[j] = True
                    neighbours.append(j)

    def labelled(idx: np.ndarray) -> None:
        idx = np.sort(idx)
        counts[idx] = label(idx)
        st.labelled += len(idx)
        add_neighbours(idx)

    def next_batch() -> tuple[np.ndarray, int]:
        nonlocal position
        batch: list[int] = []
        while neighbours and len(batch) < BATCH:
            j = neighbours.popleft()
            if counts[j] < 0:
                batch.append(j)
        near = len(batch)
        if len(batch) < BATCH:
            if not order:
                scores = np.asarray(proxy(), np.float64)
                order.append(np.flatnonzero(candidates)[np.argsort(-sign * scores[candidates], kind="stable")])
            ranked = order[0]
            while position < len(ranked) and len(batch) < BATCH:
                j = int(ranked[position])
                position += 1
                if counts[j] < 0 and j not in batch:
                    batch.append(j)
        return np.asarray(batch, np.int64), near

    def explore() -> None:
        quiet = 0
        while quiet < QUIET:
            t = kth()
            batch, near = next_batch()
            if not len(batch):
                return
            labelled(batch)
            st.neighbour_picks += near
            st.proxy_picks += len(batch) - near
            quiet = 0 if t is None or (sign * counts[batch] > t).any() else quiet + 1

    add_neighbours(np.flatnonzero(candidates & (counts >= 0)))
    r = 0
    while True:
        if trials_needed(miss, 1 - round_risk(r + 1, confidence)) < EXACT_SHARE * np.count_nonzero(
                candidates & (counts < 0)):  # else the round labels every frame left: no search first
            explore()
        t = kth()
        open_ = np.flatnonzero(candidates & (counts < 0))
        r += 1
        risk = round_risk(r, confidence)
        n = trials_needed(miss, 1 - risk)
        if not len(open_) or t is None or n >= EXACT_SHARE * len(open_):
            if len(open_):
                labelled(open_)
            st.exact = True
            break
        sample = rng.choice(open_, n, replace=False)
        labelled(sample)
        st.sampled += n
        higher = int(np.count_nonzero(sign * counts[sample] > t))
        st.rounds.append({"threshold": sign * t, "open": len(open_), "drawn": n, "higher": higher,
                          "risk": round(risk, 6)})
        if not higher:
            st.bound = count_interval(len(open_), n, 0, 1 - 2 * risk)[1]
            st.share_bound = upper_bound(0, n, 1 - risk)
            break
    st.unlabelled = int(np.count_nonzero(candidates & (counts < 0)))
    t = kth()
    st.threshold = None if t is None else sign * t
    return st


def run_topk(spec: TopK, node: EvaluatePredicates, ctx: Context) -> TopStats:
    """Answer a top-k query's scan: label what :func:`search_top` picks, then materialise the
    per-frame table (every labelled frame, every predicate column) the query's SQL ranks."""
    scan, info = node.scan, node.scan.info
    versions = {p.model: ctx.model(p.model).version for p in node.predicates}
    models = [ctx.model(name) for name in versions]
    pred = next(p for p in node.predicates if p.column == spec.column)
    first, n = scan.first, scan.frame_count
    frames = np.arange(first, first + n, dtype=np.int64)
    judge = where_truth(ctx, node)
    candidates = judge(frames, {}) if judge is not None and n else np.ones(n, bool)
    counts = np.full(n, -1, np.int64)
    stored = labelled_by_all(ctx, scan, models)
    counts[stored - first] = predicate_counts(ctx, info, versions[pred.model], pred, stored)
    ctx.count("frames_cached", len(stored))
    st = TopStats(spec.rows, spec.descending, spec.miss, spec.confidence, from_cache=len(stored))

    with Progress(None, "frames", f"top {spec.rows} of {scan.video} by {pred.short_text}",
                  enabled=ctx.progress) as bar:
        def label(idx: np.ndarray) -> np.ndarray:
            st.reference_seconds += label_with(ctx, info, models, idx + first, bar.update)
            return predicate_counts(ctx, info, versions[pred.model], pred, idx + first)

        def proxy() -> np.ndarray:
            start = time.perf_counter()
            scores = scan_scores(scan)
            st.scored, st.proxy_seconds = n, time.perf_counter() - start
            return scores

        rng = scan_rng(scan, ORDER_SALT)
        search_top(spec.rows, candidates, counts, proxy, label, rng, spec.miss, spec.confidence, spec.descending, st)

    idx = np.flatnonzero(counts >= 0)
    done = idx + first
    columns = {"frame": done, "ts": done / float(info.fps)}
    for p in node.predicates:
        c = counts[idx] if p is pred else predicate_counts(ctx, info, versions[p.model], p, done)
        columns[p.column] = pa.array(c > 0) if p.function == "contains" else pa.array(c.astype(np.int32))
    ctx.store.materialise(node.table, pa.table(columns), order_by="frame")
    ctx.stats.setdefault("topk", {})[node.table] = st.row()
    return st


def analyze_line(s: dict) -> str:
    """What a top-k search did, for EXPLAIN ANALYZE (``s``: :meth:`TopStats.row`)."""
    last = "no frame to return" if s["threshold"] is None else f"the last row counts {s['threshold']}"
    head = (f"-- top-k search: {s['from_cache']} frames from the label cache, {s['scored']} scored by the proxy in "
            f"{s['proxy_seconds']:.3f} s, {s['labelled']} labelled by the reference in {s['reference_seconds']:.3f} s "
            f"({s['neighbour_picks']} as neighbours of high frames, {s['proxy_picks']} by the proxy, {s['sampled']} "
            f"drawn at random to certify); {last}")
    if s["exact"]:
        return head + "; every candidate frame labelled (exact)"
    way = "above" if s["descending"] else "below"
    return head + (f"; certified at {s['confidence']:.0%} after {len(s['rounds'])} round(s): at most {s['bound']} of the "
                   f"{s['unlabelled']} frames not labelled count {way} it (a share of at most {s['share_bound']:.2%} of "
                   f"the frames unlabelled when the certifying sample was drawn)")
