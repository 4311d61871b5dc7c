"""``AVG`` / ``SUM`` of ``object_count(...)`` over a video's frames, with an interval.

The frames whose labels are stored already are summed exactly. The rest, the *unknown* frames, are
put in a random order (seeded by the video's content and the scan) and labelled by the reference,
:data:`STEP` frames at a time. After each step (once the sample passes 3,200 frames, each time
it grows by 2%), the betting confidence sequence of ``planner/betting.py`` bounds the mean
count of the unknown frames. It is valid at every sample
size at once, so sampling stops as soon as the interval of the whole average is within ±``error``
of its estimate (relative). If the plan reaches :data:`EXACT_SHARE` of the unknown frames, the
rest are labelled too and the answer is exact.

A finite-sample interval for a mean needs a bound on the values: a frame never drawn could count
anything. That bound, ``cap``, is the most objects the reference model reports on one frame (its
detections per frame), or less where the query states it (``WITH (max_count := 10)``). In that
case, the interval holds *if no frame counts more*. A drawn frame that does raises an
ExecutionError rather than return an interval whose premise failed.

Each step's bets are tuned for the sample size the estimator planned before that step (from the
draws before it). That keeps them predictable, and the interval valid at any stopping point.

>>> counts = np.zeros(20_000, int); counts[3000:5000] = 1; counts[9000:9600] = 3   # 3,800 objects
>>> order = np.random.default_rng(1).permutation(20_000)
>>> est = estimate_mean(order, lambda f: counts[f], 0, 0, 10, 0.2)
>>> est.total_low <= 3800 <= est.total_high, est.exact, est.sampled < 20_000
(True, False, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vql.errors import ExecutionError
from vql.planner.betting import mean_interval, variances

STEP = 64  # frames labelled between two looks at the interval
EXACT_SHARE = 0.9  # a sample reaching this share of the unknown frames becomes all of them
LOOK_GROWTH = 1.02  # beyond STEP / 0.02 frames, the interval is looked at each time the sample grows by 2%


@dataclass(frozen=True)
class MeanEstimate:
    """The average and the sum of a count over a set of frames, each with its interval
    (``result.metadata["estimate"]``). ``mean`` is None over no frames."""

    mean: float | None
    low: float | None
    high: float | None
    total: int
    total_low: int
    total_high: int
    confidence: float
    frames: int  # frames averaged over
    known: int  # frames whose count was known (the label cache)
    known_sum: int
    sampled: int  # unknown frames labelled, in the random order
    sampled_sum: int
    unknown: int
    cap: int  # no frame counts more (the model's limit or the query's max_count)
    exact: bool

    def row(self) -> dict:
        return dict(self.__dict__)


def check_cap(frames: np.ndarray, counts: np.ndarray, cap: int) -> None:
    """An ExecutionError naming the first frame of ``frames`` whose count is above ``cap`` (the
    interval's premise), if any."""
    if len(counts) and counts.max() > cap:
        at = int(frames[int(np.argmax(counts))])
        raise ExecutionError(f"frame {at} counts {int(counts.max())} objects, more than the {cap} the interval "
                             f"assumes no frame counts (max_count); state a larger max_count, or drop it to use the "
                             f"model's own limit")


def _horizon(x: np.ndarray, need: float, alpha: float, unknown: int) -> float:
    """The sample size the next step's bets are tuned for: what an interval of half-width
    ``need`` (scaled units) takes at the variance seen so far, between the next step's end and
    every unknown frame (a plan, not a promise: the interval's upper end also pays for the cap)."""
    variance = float(variances(x)[-1]) if len(x) else 0.25
    planned = 2 * math.log(2 / alpha) * variance / need ** 2 if need > 0 else math.inf
    return float(min(max(planned, len(x) + STEP), unknown))


def estimate_mean(order: np.ndarray, values: Callable[[np.ndarray], np.ndarray], known_sum: int, known: int,
                  cap: int, error: float, confidence: float = 0.95,
                  on_labelled: Callable[[int], None] | None = None) -> MeanEstimate:
    """The sum (and average) of a count over ``known`` frames whose counts add up to
    ``known_sum``, plus the frames of ``order`` (the unknown ones, in a uniformly random order),
    whose counts ``values(frames)`` gives (labelling them). ``error``: the relative half-width
    asked for; ``cap``: no frame counts more."""
    unknown, alpha = len(order), 1 - confidence
    frames = known + unknown
    drawn = np.zeros(0, np.float64)  # the counts drawn, divided by cap
    horizons = np.zeros(0, np.float64)
    sampled_sum = 0  # the counts drawn, added up exactly
    low, high, look = 0.0, 1.0, STEP
    while len(drawn) < unknown:
        point = known_sum + unknown * cap * float(drawn.mean()) if len(drawn) else 0.0
        need = error * point / (unknown * cap)  # the half-width on the unknown frames' mean
        step = min(STEP, unknown - len(drawn))
        if len(drawn) + step >= EXACT_SHARE * unknown:
            step = unknown - len(drawn)
        horizon = _horizon(drawn, need, alpha, unknown)
        part = order[len(drawn):len(drawn) + step]
        counts = np.asarray(values(part), np.int64)
        if on_labelled:
            on_labelled(len(part))
        check_cap(part, counts, cap)
        drawn = np.r_[drawn, counts / cap]
        horizons = np.r_[horizons, np.full(len(counts), horizon)]
        sampled_sum += int(counts.sum())
        if len(drawn) >= unknown or len(drawn) < look:
            continue  # the interval is looked at as the sample grows by LOOK_GROWTH (stopping late, never early)
        look = max(len(drawn) + STEP, math.ceil(LOOK_GROWTH * len(drawn)))
        low, high = mean_interval(drawn, unknown, alpha, horizons)
        centre = min(max(float(drawn.mean()), low), high)  # the estimate, inside its interval
        if unknown * cap * max(high - centre, centre - low) <= error * (known_sum + unknown * cap * centre):
            break
    exact = len(drawn) >= unknown
    if exact:  # every frame counted: integers only
        total = total_low = total_high = known_sum + sampled_sum
    else:
        total_low = known_sum + math.ceil(unknown * cap * low * (1 - 1e-12) - 1e-9)  # the sum is a whole number
        total_high = known_sum + math.floor(unknown * cap * high * (1 + 1e-12) + 1e-9)
        total = min(max(known_sum + round(unknown * cap * float(drawn.mean())), total_low), total_high)
    mean, mean_low, mean_high = ((total / frames, total_low / frames, total_high / frames) if frames
                                 else (None, None, None))
    return MeanEstimate(mean, mean_low, mean_high, int(total), int(total_low), int(total_high), confidence, frames,
                        known, known_sum, len(drawn), sampled_sum, unknown, cap, exact)
