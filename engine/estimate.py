"""``SELECT COUNT(*) FROM cam WHERE <model tests> WITH (error := e)``: a count with an exact interval.

The frames whose answer is known already (the label cache) are counted exactly. The rest, the
*unknown* frames, are put in a random order (seeded by the video's content and the scan), and:

1. a *pilot* prefix of that order is labelled by the reference until it holds
   :data:`PILOT_HITS` true frames (at least :data:`PILOT_MIN` frames, at most a tenth of the
   unknown frames): it measures the share of true frames, and its frames become known;
2. from the pilot alone, the size of the *main* sample is planned
   (``stats.count_sample_size``: the exact interval at the pilot's share of true frames) for an
   interval of about ±e of the total count;
3. the main sample, the next frames of the order, is labelled; the count of true frames among
   the frames still unknown gets an exact hypergeometric interval at the stated confidence
   (``stats.count_interval``: uniform draws without replacement, whatever the temporal
   correlation), and the known frames' count is added.

Where the uniform plan needs :data:`STRATIFY_MIN` frames or more and the WHERE clause has a
direction (busy frames true, or empty ones), the scan is read once for the LIMIT search's
label-free proxy (the difference to each block's median image), and the pilot plans 2 or 3
strata by the proxy's rank (``planner/strata.py``); when they need under
:data:`STRATIFIED_GAIN` of the uniform plan's frames, the main sample is drawn uniformly within
each stratum (the stratum's frames in the same random order), and the strata's exact intervals,
each at (1 - confidence) / H, are added (a union bound).

The sample size (and strata) is chosen on the pilot and the interval computed on the main sample only, so
nothing that certifies was used to choose: the interval holds with the stated probability over
vql's random order. When the plan needs every unknown frame, all are labelled and the count is
exact.

>>> truth = np.zeros(10_000, bool); truth[2000:2600] = True; truth[7000:7400] = True   # 1,000 true
>>> est = estimate_count(np.random.default_rng(1).permutation(10_000), 0, lambda f: truth[f], 0.1)
>>> est.low <= 1000 <= est.high, est.exact
(True, False)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vql.engine.executor import Context, atom_models, judge_frames, label_with, labelled_by_all, where_truth
from vql.engine.search import BLOCK, block_scores, where_polarity
from vql.plan import CountEstimate, EvaluatePredicates
from vql.planner.stats import count_interval, count_sample_size
from vql.planner.strata import plan_strata, summed_interval
from vql.progress import Progress

PILOT_HITS = 30  # true frames the pilot wants before it stops
PILOT_MIN = 100  # frames, at least
PILOT_SHARE = 0.1  # of the unknown frames, at most
STEP = 64  # frames labelled per call
ORDER_SALT = 7  # in the random order's seed, with the video's content and the scan (benchmarks vary it)
EXACT_SHARE = 0.9  # a planned sample over this share of the unknown frames becomes all of them
STRATIFY_MIN = 400  # a uniform plan of this many frames or more reads the proxy, to try strata
STRATIFIED_GAIN = 0.9  # strata are used when they need under this share of the uniform plan's frames


@dataclass(frozen=True)
class Estimate:
    """A count and its interval, with what it took (``result.metadata["estimate"]``)."""

    count: int
    low: int
    high: int
    confidence: float
    known: int  # frames whose answer was known (cache and pilot)
    known_true: int
    pilot: int
    pilot_true: int
    sampled: int  # main sample, from the frames still unknown after the pilot
    sampled_true: int
    unknown: int  # frames the interval is about (unknown after the pilot)
    exact: bool
    strata: tuple = ()  # stratified by the proxy: (frames, drawn, true) per stratum, highest scores first

    def row(self) -> dict:
        return dict(self.__dict__)


def estimate_count(order: np.ndarray, known_true: int, judge: Callable[[np.ndarray], np.ndarray], error: float,
                   confidence: float = 0.95, known: int = 0, on_labelled: Callable[[int], None] | None = None,
                   keys: Callable[[np.ndarray], np.ndarray] | None = None) -> Estimate:
    """The count of true frames: ``known_true`` among the ``known`` frames already answered, plus
    an interval for the frames of ``order`` (the unknown frames, in a uniformly random order),
    whose truth ``judge`` gives (labelling them). ``error``: the relative half-width planned for.
    ``keys(frames)``: a label-free proxy's score per frame (higher: likelier true), asked for
    only when the uniform plan needs :data:`STRATIFY_MIN` frames or more; the sample is then
    stratified by it where the pilot says that needs fewer frames."""
    u = len(order)

    def draw(frames: np.ndarray) -> np.ndarray:
        truth = np.zeros(len(frames), bool)
        for i in range(0, len(frames), STEP):
            truth[i:i + STEP] = judge(frames[i:i + STEP])
            if on_labelled:
                on_labelled(len(frames[i:i + STEP]))
        return truth

    pilot_truth = np.zeros(0, bool)
    cap = max(min(u, PILOT_MIN), int(PILOT_SHARE * u))
    while len(pilot_truth) < cap and (len(pilot_truth) < PILOT_MIN or pilot_truth.sum() < PILOT_HITS):
        step = min(STEP, cap - len(pilot_truth))
        pilot_truth = np.r_[pilot_truth, draw(order[len(pilot_truth):len(pilot_truth) + step])]
    pilot, pilot_true = len(pilot_truth), int(pilot_truth.sum())
    rest = order[pilot:]
    rate = (pilot_true + 1) / (pilot + 2)
    expected = known_true + pilot_true + rate * len(rest)
    n = count_sample_size(len(rest), rate, error * expected, confidence) if len(rest) else 0  # ±error of the total
    base = known_true + pilot_true
    plan = None
    if keys is not None and STRATIFY_MIN <= n < EXACT_SHARE * len(rest):
        scores = np.asarray(keys(order), np.float64)
        plan = plan_strata(scores[pilot:], scores[:pilot], pilot_truth, error * expected, confidence)
        if plan.total >= STRATIFIED_GAIN * n:
            plan = None
    if plan is not None:  # a uniform sample within each stratum: its frames in the random order
        rank = np.empty(len(rest), np.int64)
        rank[np.argsort(-scores[pilot:], kind="stable")] = np.arange(len(rest))
        stratum = np.searchsorted(np.asarray(plan.cuts[1:-1]), rank, side="right")
        hits = [int(draw(rest[np.flatnonzero(stratum == h)[:d]]).sum()) for h, d in enumerate(plan.draws)]
        low, high = summed_interval(plan.sizes, plan.draws, hits, confidence)
        point = base + round(sum(s * x / d for s, d, x in zip(plan.sizes, plan.draws, hits) if d))
        strata = tuple(zip(plan.sizes, plan.draws, hits))
        return Estimate(int(point), base + low, base + high, confidence, known + pilot, base, pilot, pilot_true,
                        plan.total, sum(hits), len(rest), plan.draws == plan.sizes, strata)
    if n > EXACT_SHARE * len(rest):  # nearly all of it: label the rest too, and the count is exact
        n = len(rest)
    sampled_true = int(draw(rest[:n]).sum())
    low, high = count_interval(len(rest), n, sampled_true, confidence)
    point = base + (round(len(rest) * sampled_true / n) if n else 0)
    return Estimate(int(point), base + low, base + high, confidence, known + pilot, base, pilot, pilot_true, n,
                    sampled_true, len(rest), n >= len(rest))


def run_count(spec: CountEstimate, node: EvaluatePredicates, ctx: Context) -> Estimate:
    """Estimate the count of frames of the scan where WHERE holds; materialise the one-row table
    (estimate, low, high) the query's SQL reads."""
    scan, info = node.scan, node.scan.info
    models = atom_models(ctx, node)
    frames = np.arange(scan.first, scan.last + 1, dtype=np.int64)
    stored = labelled_by_all(ctx, scan, models)
    ctx.count("frames_cached", len(stored))
    known_true = int(np.count_nonzero(judge_frames(ctx, node, stored)[1])) if len(stored) else 0
    unknown = np.setdiff1d(frames, stored, assume_unique=True)
    rng = np.random.default_rng([int(info.fingerprint[:8], 16), scan.first, scan.last, ORDER_SALT])
    order = unknown[rng.permutation(len(unknown))]

    def judge(part: np.ndarray) -> np.ndarray:
        label_with(ctx, info, models, part)
        return judge_frames(ctx, node, part)[1]

    polarity = where_polarity(node, where_truth(ctx, node))
    proxy = {"seconds": 0.0}

    def keys(frames: np.ndarray) -> np.ndarray:  # the LIMIT search's proxy, signed by WHERE's direction
        t0 = time.perf_counter()
        n = scan.frame_count
        scores = np.concatenate([block_scores(info, scan.first + s, min(BLOCK, n - s)) for s in range(0, n, BLOCK)])
        proxy["seconds"] = time.perf_counter() - t0
        return polarity * scores[frames - scan.first]

    tests = ", ".join(a.short_text for a in node.atoms)
    start = time.perf_counter()
    with Progress(None, "frames", f"sampling {scan.video} for {tests}", enabled=ctx.progress) as bar:
        est = estimate_count(order, known_true, judge, spec.error, spec.confidence, len(stored), bar.update,
                             keys if polarity else None)
    ctx.store.materialise(node.table, pa.table({"estimate": [est.count], "low": [est.low], "high": [est.high]}))
    ctx.stats.setdefault("estimate", {})[node.table] = dict(est.row(), seconds=time.perf_counter() - start,
                                                            proxy_seconds=proxy["seconds"], error=spec.error,
                                                            frames=scan.frame_count)
    return est


def analyze_line(e: dict) -> str:
    """What a count estimate did, for EXPLAIN ANALYZE (``e``: its ``metadata["estimate"]`` entry)."""
    return (f"-- COUNT estimate: {e['count']} [{e['low']}, {e['high']}] at {e['confidence']:.0%} (exact: "
            f"hypergeometric); {e['known'] - e['pilot']} frames known from the label cache, a pilot of {e['pilot']} "
            f"random frames ({e['pilot_true']} true), then {e['sampled']} of the {e['unknown']} frames still unknown "
            f"sampled ({e['sampled_true']} true)" + ("; every frame labelled (exact)" if e["exact"] else "")
            + (f"; in {len(e['strata'])} strata by the proxy (read in {e['proxy_seconds']:.1f} s), highest first, "
               "frames/drawn/true: " + ", ".join(f"{s}/{d}/{x}" for s, d, x in e["strata"]) if e.get("strata") else ""))
