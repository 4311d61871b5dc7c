"""A confidence sequence for the mean of a finite population sampled without replacement, by betting.

The values are known to lie in [0, 1] (a count divided by the most a frame can count). The frames
are drawn one by one in a uniformly random order, without replacement. For every candidate mean
``m`` of the whole population (drawn and not), a gambler bets on each draw against "the mean of
the frames still undrawn is what ``m`` implies": ``μ_t(m) = (N m - S_{t-1}) / (N - t + 1)``.

If ``m`` is the truth, each draw's conditional mean is exactly ``μ_t(m)``, so the capital is a
nonnegative martingale that starts at 1. By Ville's inequality, it ever reaches 1/α with
probability at most α, whatever the temporal correlation of the video: the randomness is vql's
order, not the frames'. The candidates never rejected form the interval. It holds at every
sample size at once, so the sampler may stop as soon as the interval is narrow enough.

This is the hedged capital of Waudby-Smith & Ramdas, "Estimating means of bounded random
variables by betting" (JRSS B, 2023), in its without-replacement form:

- half the capital bets the mean is above ``μ_t(m)``, half below;
- the predictable plug-in bets use the variance estimated from the draws before;
- the bets are truncated at ``c / μ_t(m)`` and ``c / (1 - μ_t(m))``, so no draw in [0, 1] can
  take more than a share ``c`` of either half.

A candidate whose ``μ_t(m)`` leaves [0, 1] is impossible given the draws, and is rejected.

>>> rng = np.random.default_rng(3)
>>> population = (rng.random(5000) < 0.1) * rng.integers(1, 4, 5000) / 10   # values in [0, 1]
>>> low, high = mean_interval(population[rng.permutation(5000)][:800], 5000, 0.05)
>>> bool(low <= population.mean() <= high), round(high - low, 3)
(True, 0.013)
"""

from __future__ import annotations

import math

import numpy as np

BET_CAP = 0.75  # c: the share of either half of the capital one draw may put at risk
GRID = 16  # candidate means per refinement of an end of the interval
REFINE = 7  # refinements: each end is found to within 1/16**7 of its first bracket


def variances(x: np.ndarray) -> np.ndarray:
    """The running variance estimate after each draw, (1/4 + Σ (x_i - μ_i)²) / (t + 1), with
    μ_t = (1/2 + Σ x_i) / (t + 1): shrunk towards the widest a [0, 1] value can have."""
    t = np.arange(1, len(x) + 1)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    return (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)


def _bets(x: np.ndarray, alpha: float, horizons: np.ndarray | None) -> np.ndarray:
    """The predictable plug-in bet before each draw, sqrt(2 log(2/α) / (σ²_{t-1} h_t)): ``h_t`` is
    the sample size the bet is tuned for, t log(1 + t) without ``horizons`` (the sampler's plan,
    fixed before the draw: any positive choice made before the draw keeps the capital a
    martingale; a good one narrows the interval near the planned size)."""
    t = np.arange(1, len(x) + 1)
    before = np.r_[0.25, variances(x)[:-1]]
    h = t * np.log1p(t) if horizons is None else np.asarray(horizons, np.float64)
    return np.sqrt(2 * math.log(2 / alpha) / (before * h))


def log_capital(x: np.ndarray, population: int, means: np.ndarray, alpha: float,
                horizons: np.ndarray | None = None) -> np.ndarray:
    """For each candidate population mean, the largest log capital the hedged bets reached over
    the draws ``x`` (in order); ``inf`` where the candidate is impossible given the draws."""
    x = np.asarray(x, np.float64)
    means = np.asarray(means, np.float64)[:, None]
    n = len(x)
    if not n:
        return np.zeros(len(means))
    drawn = np.cumsum(x)
    before = np.r_[0.0, drawn[:-1]]
    left = population - np.arange(n)  # frames undrawn before each draw
    mu = (population * means - before) / left  # the undrawn frames' mean, if the candidate is true
    rest = (population * means[:, 0] - drawn[-1]) / max(population - n, 1)  # and after the last draw
    impossible = ((mu < -1e-12) | (mu > 1 + 1e-12)).any(axis=1)
    if population > n:
        impossible |= (rest < -1e-12) | (rest > 1 + 1e-12)
    mu = np.clip(mu, 0.0, 1.0)
    lam = _bets(x, alpha, horizons)
    with np.errstate(divide="ignore"):
        up = np.minimum(lam, BET_CAP / mu)
        down = np.minimum(lam, BET_CAP / (1 - mu))
    gain = x - mu
    high = np.cumsum(np.log1p(up * gain), axis=1)
    low = np.cumsum(np.log1p(-down * gain), axis=1)
    hedged = np.logaddexp(high, low) - math.log(2)
    best = np.maximum(hedged.max(axis=1), 0.0)
    return np.where(impossible, np.inf, best)


def mean_interval(x: np.ndarray, population: int, alpha: float,
                  horizons: np.ndarray | None = None) -> tuple[float, float]:
    """The interval (at 1 - ``alpha``, valid at every sample size) for the mean of a population of
    ``population`` values in [0, 1], from the first ``len(x)`` of a uniformly random order
    (``horizons``: the sample size each draw's bet was tuned for, see :func:`_bets`)."""
    x = np.asarray(x, np.float64)
    if not len(x):
        return 0.0, 1.0
    if len(x) >= population:
        return float(x.mean()), float(x.mean())
    bar = math.log(1 / alpha)

    def rejected(means: np.ndarray) -> np.ndarray:
        return log_capital(x, population, means, alpha, horizons) >= bar

    centre = float(x.mean())
    if rejected(np.array([centre]))[0]:  # rare: centre on the least rejected candidate of a grid
        grid = np.linspace(0, 1, 4097)
        capital = log_capital(x, population, grid, alpha, horizons)
        centre = float(grid[int(np.argmin(capital))])
        if capital.min() >= bar:  # every candidate rejected to grid precision: its neighbours bound it
            return max(0.0, centre - 1 / 4096), min(1.0, centre + 1 / 4096)

    # each end lies between the centre (not rejected) and 0 or 1; the accepted set is an interval
    # (the hedged capital is quasiconvex in the candidate), so each refinement keeps the last
    # candidate not rejected and the first rejected going outwards: both ends in one evaluation
    inside, outside = np.array([centre, centre]), np.array([0.0, 1.0])
    done = ~rejected(outside)  # an end at 0 or 1 itself
    for _ in range(REFINE):
        if done.all():
            break
        grids = inside[:, None] + (outside - inside)[:, None] * np.arange(1, GRID + 1)[None, :] / GRID
        hit = rejected(grids.ravel()).reshape(2, GRID)
        hit[:, -1] |= ~done  # the outer end is known rejected unless done
        first = np.argmax(hit, axis=1)
        for side in np.flatnonzero(~done):
            inside[side] = grids[side, first[side] - 1] if first[side] else inside[side]
            outside[side] = grids[side, first[side]]
    return float(outside[0]), float(outside[1])
