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

The sample size is chosen on the pilot and the interval computed on the main sample only, so
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

from vql.engine.executor import Context, atom_models, judge_frames, label_with, labelled_by_all
from vql.plan import CountEstimate, EvaluatePredicates
from vql.planner.stats import count_interval, count_sample_size
from vql.progress import Progress

PILOT_HITS = 30  # true frames the pilot wants before it stops
PILOT_MIN = 100  # frames, at least
PILOT_SHARE = 0.1  # of the unknown frames, at most
STEP = 64  # frames labelled per call
ORDER_SALT = 7  # in the random order's seed, with the video's content and the scan (benchmarks vary it)
EXACT_SHARE = 0.9  # a planned sample over this share of the unknown frames becomes all of them


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

    def row(self) -> dict:
        return dict(self.__dict__)


def estimate_count(order: np.ndarray, known_true: int, judge: Callable[[np.ndarray], np.ndarray], error: float,
                   confidence: float = 0.95, known: int = 0, on_labelled: Callable[[int], None] | None = None) -> Estimate:
    """The count of true frames: ``known_true`` among the ``known`` frames already answered, plus
    an interval for the frames of ``order`` (the unknown frames, in a uniformly random order),
    whose truth ``judge`` gives (labelling them). ``error``: the relative half-width planned for."""
    u = len(order)

    def draw(frames: np.ndarray) -> int:
        hits = 0
        for i in range(0, len(frames), STEP):
            part = frames[i:i + STEP]
            hits += int(np.count_nonzero(judge(part)))
            if on_labelled:
                on_labelled(len(part))
        return hits

    pilot = pilot_true = 0
    cap = max(min(u, PILOT_MIN), int(PILOT_SHARE * u))
    while pilot < cap and (pilot < PILOT_MIN or pilot_true < PILOT_HITS):
        step = min(STEP, cap - pilot)
        pilot_true += draw(order[pilot:pilot + step])
        pilot += step
    rest = order[pilot:]
    rate = (pilot_true + 1) / (pilot + 2)
    expected = known_true + pilot_true + rate * len(rest)
    n = count_sample_size(len(rest), rate, error * expected, confidence) if len(rest) else 0  # ±error of the total
    if n > EXACT_SHARE * len(rest):  # nearly all of it: label the rest too, and the count is exact
        n = len(rest)
    sampled_true = draw(rest[:n])
    low, high = count_interval(len(rest), n, sampled_true, confidence)
    base = known_true + pilot_true
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

    tests = ", ".join(a.short_text for a in node.atoms)
    start = time.perf_counter()
    with Progress(None, "frames", f"sampling {scan.video} for {tests}", enabled=ctx.progress) as bar:
        est = estimate_count(order, known_true, judge, spec.error, spec.confidence, len(stored), bar.update)
    ctx.store.materialise(node.table, pa.table({"estimate": [est.count], "low": [est.low], "high": [est.high]}))
    ctx.stats.setdefault("estimate", {})[node.table] = dict(est.row(), seconds=time.perf_counter() - start,
                                                            error=spec.error, frames=scan.frame_count)
    return est


def analyze_line(e: dict) -> str:
    """What a count estimate did, for EXPLAIN ANALYZE (``e``: its ``metadata["estimate"]`` entry)."""
    return (f"-- COUNT estimate: {e['count']} [{e['low']}, {e['high']}] at {e['confidence']:.0%} (exact: "
            f"hypergeometric); {e['known'] - e['pilot']} frames known from the label cache, a pilot of {e['pilot']} "
            f"random frames ({e['pilot_true']} true), then {e['sampled']} of the {e['unknown']} frames still unknown "
            f"sampled ({e['sampled_true']} true)" + ("; every frame labelled (exact)" if e["exact"] else ""))
