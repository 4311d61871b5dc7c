"""Stratified sampling plans for a count: strata by a label-free proxy's rank, sized on a pilot.

A count estimate (engine/estimate.py) may split the frames it has not labelled into 2 or 3
*strata* by a proxy's score (the top f of the proxy's order, the next part, the rest), draw a
uniform sample in each, and add the strata's exact intervals, each at (1 - confidence) / H so
that all hold together with the stated confidence (a union bound: widths add, so stratifying
pays only where the proxy separates true frames well). Where true frames crowd into the top
strata, the rest needs few draws: BlazeIt's stratification, with an exact interval.

The plan (cut points and draws per stratum) is chosen here from the pilot alone: its frames'
truth and scores say how many true frames each stratum holds. Draws follow the allocation that
minimises the total for a summed half-width (n_h proportional to a_h^(2/3), a_h the stratum's
normal-approximation width term), then are scaled until the exact summed interval, at the
pilot's rates, is within the half-width asked. A plan, not a bound: the interval is computed on
the main samples only.

>>> keys = np.r_[np.full(900, 5.0), np.zeros(9_100)] + np.linspace(0, 1e-3, 10_000)   # 900 high scores, 10%
>>> pilot_keys = np.r_[np.full(30, 5.0), np.zeros(270)]
>>> pilot_truth = np.r_[np.ones(27, bool), np.zeros(3, bool), np.zeros(268, bool), np.ones(2, bool)]
>>> plan = plan_strata(keys, pilot_keys, pilot_truth, half_width=100)
>>> plan.sizes, plan.total < count_sample_size(10_000, 29 / 300, 100)
((1000, 9000), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from vql.planner.stats import count_interval, count_sample_size  # noqa: F401 (count_sample_size: the doctest)

FRACTIONS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7)  # top shares of the proxy's order
EXACT_SHARE = 0.9  # a stratum sampled over this share is labelled whole (its count exact)


@dataclass(frozen=True)
class StrataPlan:
    """Strata as ranks of the proxy's order (stratum h: ranks ``cuts[h]`` to ``cuts[h + 1]``)."""

    cuts: tuple[int, ...]  # 0, ..., len(keys)
    draws: tuple[int, ...]  # frames to label per stratum

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(b - a) for a, b in zip(self.cuts, self.cuts[1:]))

    @property
    def total(self) -> int:
        return int(sum(self.draws))


def summed_interval(sizes, draws, hits, confidence: float) -> tuple[int, int]:
    """The strata's exact intervals, each at 1 - (1 - confidence) / H, added: the count over all of
    them lies in it with probability at least ``confidence`` (a union bound).

    >>> summed_interval((100, 900), (100, 90), (60, 0), 0.95)
    (60, 100)
    """
    level = 1 - (1 - confidence) / len(sizes)
    parts = [count_interval(int(s), int(d), int(h), level) for s, d, h in zip(sizes, draws, hits)]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _allocate(sizes: np.ndarray, rates: np.ndarray, half_width: float, z: float) -> np.ndarray:
    """Draws per stratum minimising the total for a summed normal half-width; a stratum asked for
    over :data:`EXACT_SHARE` of its frames is labelled whole (and adds no width)."""
    draws = np.zeros(len(sizes), np.int64)
    whole = np.zeros(len(sizes), bool)
    a = z * sizes * np.sqrt(rates * (1 - rates))
    for _ in range(len(sizes) + 1):
        open_ = ~whole
        weight = a[open_] ** (2 / 3)
        scale = (weight.sum() / max(half_width, 1e-9)) ** 2
        draws[open_] = np.ceil(scale * weight).astype(np.int64)
        draws[whole] = sizes[whole]
        over = open_ & (draws > EXACT_SHARE * sizes)
        if not over.any():
            break
        whole |= over
    draws[draws > EXACT_SHARE * sizes] = sizes[draws > EXACT_SHARE * sizes]
    return np.maximum(np.minimum(draws, sizes), np.minimum(sizes, 1))


def _exact_plan(sizes: np.ndarray, rates: np.ndarray, half_width: float, confidence: float, z: float) -> np.ndarray:
    """Scale the allocation until the exact summed interval at the pilot's rates is within
    ``half_width`` of the estimate (at most 12 rounds)."""
    target = half_width
    draws = _allocate(sizes, rates, target, z)
    for _ in range(12):
        hits = np.round(rates * draws).astype(np.int64)
        low, high = summed_interval(sizes, draws, hits, confidence)
        point = float(np.sum(sizes * hits / np.maximum(draws, 1)))
        wide = max(point - low, high - point)
        if wide <= half_width or (draws >= sizes).all():
            break
        target *= half_width / wide * 0.97
        draws = _allocate(sizes, rates, target, z)
    return draws


def plan_strata(keys: np.ndarray, pilot_keys: np.ndarray, pilot_truth: np.ndarray, half_width: float,
                confidence: float = 0.95) -> StrataPlan:
    """The cheapest plan of 2 or 3 strata over frames with proxy ``keys`` (higher: likelier true)
    for a summed interval within ``half_width`` frames of the estimate, judged on the pilot's
    frames (their ``pilot_keys`` and ``pilot_truth``)."""
    n = len(keys)
    ranked = np.sort(keys)[::-1]
    cuts_at = sorted({int(round(f * n)) for f in FRACTIONS if 0 < round(f * n) < n})
    candidates = [(c,) for c in cuts_at] + list(combinations(cuts_at, 2))
    rough = []
    for inner in candidates:
        cuts = (0, *inner, n)
        sizes = np.diff(cuts).astype(np.int64)
        # pilot frames fall in a stratum by their score against the stratum's lowest score
        edges = [ranked[c - 1] for c in inner]
        stratum = np.searchsorted(-np.asarray(edges), -pilot_keys, side="left")
        m = np.bincount(stratum, minlength=len(sizes))
        x = np.bincount(stratum, weights=pilot_truth.astype(float), minlength=len(sizes))
        rates = (x + 1) / (m + 2)
        z = float(stats.norm.ppf(1 - (1 - confidence) / (2 * len(sizes))))
        rough.append((_allocate(sizes, rates, half_width, z).sum(), cuts, sizes, rates, z))
    rough.sort(key=lambda r: r[0])
    best = None
    for _, cuts, sizes, rates, z in rough[:3]:  # the three best by the normal sizing, refined exactly
        draws = _exact_plan(sizes, rates, half_width, confidence, z)
        if best is None or draws.sum() < sum(best.draws):
            best = StrataPlan(tuple(int(c) for c in cuts), tuple(int(d) for d in draws))
    return best
