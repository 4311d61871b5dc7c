"""Honest error bounds: exact (Clopper–Pearson) binomial confidence limits, from scipy.stats.

A rate measured as k errors in n trials is only a point estimate; the planner keeps a rate under
its target only when the *upper* confidence limit is under it. With no error at all, n trials
bound the rate at about 3/n (95%): a 1% target needs about 300 positives.

Trials drawn uniformly at random *without* replacement from a finite set of frames (the
certification sample) make the binomial limits conservative: the hypergeometric count they
really follow is less spread out.

>>> round(upper_bound(0, 300), 4)
0.0099
>>> round(upper_bound(5, 100), 4)
0.1023
>>> [round(x, 4) for x in interval(5, 100)]
[0.0164, 0.1128]
"""

from __future__ import annotations

import math

from functools import lru_cache

import numpy as np

from scipy import special, stats

OPTIMISM = 0.7  # see pass_probability


def upper_bound(errors: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper limit of a rate observed as ``errors`` of ``trials``."""
    if trials <= 0 or errors >= trials:
        return 1.0
    return float(special.betaincinv(errors + 1, trials - errors, confidence))


def interval(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval (what audits report)."""
    if trials <= 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = 0.0 if errors == 0 else float(stats.beta.ppf(tail, errors, trials - errors + 1))
    high = 1.0 if errors >= trials else float(stats.beta.ppf(1 - tail, errors + 1, trials - errors))
    return low, high


@lru_cache(maxsize=4096)
def trials_needed(target: float, confidence: float = 0.95, errors: int = 0) -> int:
    """The fewest trials whose upper bound with ``errors`` errors meets ``target``
    (a huge number when ``target`` is 0).

    >>> trials_needed(0.01), trials_needed(0.01, 0.975), trials_needed(0.01, 0.975, errors=2)
    (299, 368, 720)
    """
    if target <= 0:
        return 1 << 40
    if errors == 0:
        return max(1, math.ceil(math.log(1.0 - confidence) / math.log1p(-target)))
    lo, hi = errors + 1, max(errors + 2, trials_needed(target, confidence))
    while upper_bound(errors, hi, confidence) > target:
        lo, hi = hi, hi * 2
    while lo < hi:  # the bound falls as trials grow
        mid = (lo + hi) // 2
        if upper_bound(errors, mid, confidence) <= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


def pass_probability(errors_seen: int, trials_seen: int, allowed: int, trials: int,
                     optimism: float = OPTIMISM) -> float:
    """Chance that ``trials`` fresh trials show at most ``allowed`` errors, predicted from
    ``errors_seen`` of ``trials_seen`` on the data a threshold was placed on (beta-binomial).

    A threshold placed just past the k-th of n scores leaves a share of the population past it
    distributed as Beta(k + 1, n - k) (an order statistic), whatever the scores' distribution:
    that, not a posterior centred on k / n, is the rate to expect. The planner also picks the
    cheapest of many placements on the same frames, which flatters the winner; ``optimism``
    shrinks the frames seen to that share to make up for it (measured on simulated scans in
    tests/test_coverage.py: predicted and realised pass rates agree there). The planner uses it
    to size a certification sample before drawing it; the guarantee never rests on it.

    >>> round(pass_probability(0, 1000, 0, 368), 2), round(pass_probability(10, 100, 0, 368), 4)
    (0.66, 0.0)
    """
    seen = max(errors_seen + 1, int(trials_seen * optimism))
    return _out(betabinom_cdf(allowed, np.maximum(trials, 0), errors_seen + 1, max(1, seen - errors_seen)))


SURE = 1e-9  # a beta-binomial CDF bounded within this of 1 is taken as 1 (``betabinom_cdf``)


def betabinom_cdf(k, n, a: float, b: float) -> np.ndarray:
    """P(BetaBinomial(n, a, b) <= k), elementwise: scipy's, whose cost grows with k, except
    where a cheap bound shows it within SURE of 1. For any t, P(X > k) <= P(p > t) +
    P(Binomial(n, t) > k) (p ~ Beta(a, b)); t is taken half-way between the mean rate and k / n.

    >>> float(betabinom_cdf(900, 20000, 1.0, 2000.0)), round(float(betabinom_cdf(3, 400, 1.0, 200.0)), 4)
    (1.0, 0.8035)
    >>> bool(np.allclose(betabinom_cdf(np.arange(0, 40), 400, 2.0, 300.0),
    ...                  stats.betabinom.cdf(np.arange(0, 40), 400, 2.0, 300.0)))
    True
    """
    k, n = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64))
    out = np.ones(k.shape)
    t = np.clip(0.5 * (a / (a + b) + np.where(n > 0, k / np.maximum(n, 1), 1.0)), 0.0, 1.0)
    bound = special.betainc(b, a, 1.0 - t) + special.bdtrc(k.astype(np.int64), n.astype(np.int64), t)  # P(p > t) + P(Bin(n, t) > k)
    todo = ~((bound <= SURE) | (k >= n))
    if todo.any():
        out[todo] = _summed_cdf(np.floor(k[todo]), n[todo], a, b)
    return out


def _summed_cdf(k: np.ndarray, n: np.ndarray, a: float, b: float, cells: int = 1 << 20) -> np.ndarray:
    """P(BetaBinomial(n, a, b) <= k) as the sum of its probabilities over 0..k, all entries at
    once, each term from the one before (pmf(j + 1) / pmf(j) = (n − j)(j + a) / ((j + 1)(n − j −
    1 + b))): scipy's ``betabinom.cdf`` sums the same terms one entry at a time, each from
    three log-beta functions (80% of the planner's time where it sized certification samples).
    ``k`` holds whole numbers.

    >>> k, n = np.array([-1.0, 0.0, 5.0, 37.0, 900.0]), np.array([400.0, 400.0, 9.0, 400.0, 3000.0])
    >>> bool(np.allclose(_summed_cdf(k, n, 2.0, 300.0), stats.betabinom.cdf(k, n, 2.0, 300.0), rtol=1e-10))
    True
    """
    out = np.zeros(k.shape)
    top = np.minimum(k, n)
    rows = np.flatnonzero(top >= 0)
    if len(rows) == 0:
        return out
    width = int(top[rows].max()) + 1
    step = max(1, cells // width)
    j = np.arange(width, dtype=np.float64)
    for start in range(0, len(rows), step):
        r = rows[start:start + step]
        nn = n[r][:, None]
        log_pmf = np.empty((len(r), width))
        log_pmf[:, 0] = special.betaln(a, n[r] + b) - special.betaln(a, b)  # log pmf(0)
        ratio = log_pmf[:, 1:]
        with np.errstate(divide="ignore", invalid="ignore"):  # terms past n are masked below
            np.subtract(nn, j[:-1], out=ratio)
            ratio *= j[:-1] + a
            ratio /= (j[:-1] + 1) * (nn - j[:-1] - 1 + b)
            np.log(ratio, out=ratio)
        np.cumsum(log_pmf, axis=1, out=log_pmf)
        log_pmf[j > top[r][:, None]] = -np.inf
        out[r] = np.exp(log_pmf, out=log_pmf).sum(axis=1)
    return out


def _out(x):
    """A float for one value, an array for many (the planner asks for many sizes at once)."""
    x = np.asarray(x, np.float64)
    return float(x) if x.ndim == 0 else x


def pass_probability_at(rate: float, trials_seen: int, allowed: int, trials: int, optimism: float = OPTIMISM) -> float:
    """Chance that ``trials`` fresh trials show at most ``allowed`` errors when the error rate is
    predicted as ``rate`` from ``trials_seen`` trials (``planner/tails.py``): beta-binomial with
    mean ``rate`` and as much weight as ``optimism`` x ``trials_seen`` trials (a prediction
    from few frames is uncertain both ways).

    >>> round(pass_probability_at(0.001, 200, 0, 400), 2), round(pass_probability_at(0.001, 20000, 0, 400), 2)
    (0.83, 0.67)
    >>> round(pass_probability_at(0.01, 200, 0, 400), 2)
    0.15
    """
    weight = max(2.0, trials_seen * optimism)
    r = min(max(rate, 1e-9), 1 - 1e-9)
    return _out(betabinom_cdf(allowed, np.maximum(trials, 0), r * weight, (1 - r) * weight))


def count_interval(population: int, sampled: int, hits: int, confidence: float = 0.95) -> tuple[int, int]:
    """Exact two-sided interval for how many of ``population`` frames are true, from ``hits``
    true among ``sampled`` drawn uniformly at random without replacement: the hypergeometric
    inverted, (1 − confidence)/2 in each tail. Valid whatever the frames' temporal correlation,
    since the draw is uniform.

    >>> count_interval(1000, 1000, 37), count_interval(1000, 0, 0)    # all sampled; none
    ((37, 37), (0, 1000))
    >>> count_interval(36000, 3000, 300)
    (3238, 3989)
    """
    if sampled >= population:
        return hits, hits
    if sampled <= 0:
        return 0, population
    tail = (1 - confidence) / 2
    lo, hi = hits, population - (sampled - hits)  # the counts that could give this sample

    def first(holds, a: int, b: int) -> int:  # the least k in [a, b] where a monotone test turns true
        while a < b:
            mid = (a + b) // 2
            a, b = (a, mid) if holds(mid) else (mid + 1, b)
        return a

    # P(X >= hits) grows with the count, P(X <= hits) shrinks: bisect each (scipy's hypergeom)
    low = first(lambda k: stats.hypergeom.sf(hits - 1, population, k, sampled) > tail, lo, hi) if hits else 0
    high = first(lambda k: stats.hypergeom.cdf(hits, population, k + 1, sampled) <= tail, lo, hi)
    return int(low), int(high)


def count_sample_size(population: int, rate: float, half_width: float, confidence: float = 0.95) -> int:
    """The fewest frames to draw (uniformly, without replacement) from ``population`` for both ends
    of the exact interval of :func:`count_interval` to lie within ``half_width`` frames of the
    estimate when a share ``rate`` of the draws is true (bisection on the interval itself, so it
    also holds where the normal approximation fails: rates near 0 or 1). A plan, not a bound.

    >>> count_sample_size(36000, 0.1, 360), count_sample_size(36000, 0.5, 3600), count_sample_size(600, 0.99, 60)
    (3428, 104, 34)
    """
    if population <= 0:
        return 0

    def wide(n: int) -> bool:  # either end further than half_width from the point estimate
        hits = round(rate * n)
        low, high = count_interval(population, n, hits, confidence)
        point = population * hits / n
        return max(point - low, high - point) > half_width

    a, b = 1, population
    while a < b:
        mid = (a + b) // 2
        a, b = (mid + 1, b) if wide(mid) else (a, mid)
    return a
