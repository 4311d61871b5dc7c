"""Honest error bounds: exact (Clopper–Pearson) binomial confidence limits.

A rate measured as k errors in n trials is only a point estimate; the planner keeps a rate under
its target only when the *upper* confidence limit is under it. With no error at all, n trials
bound the rate at about 3/n (95%): a 1% target needs about 300 positives.

>>> round(upper_bound(0, 300), 4)
0.0099
>>> round(upper_bound(5, 100), 4)
0.1023
"""

from __future__ import annotations

import math


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(0, k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def upper_bound(errors: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper limit of a rate observed as ``errors`` of ``trials``."""
    if trials <= 0:
        return 1.0
    if errors >= trials:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = errors / trials, 1.0
    for _ in range(60):  # bisection: cdf(errors; trials, p) decreases in p
        mid = (lo + hi) / 2
        if _binom_cdf(errors, trials, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def trials_needed(target: float, confidence: float = 0.95) -> int:
    """The fewest trials whose zero-error upper bound meets ``target``.

    >>> trials_needed(0.01)
    299
    """
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log1p(-target)))
