"""How often a cascade's bands would err on frames the selection frames never showed it.

A band placed on the selection frames errs on none or few of them; the plans of the
certification ladder (``planner/query.py: CAUTION``) move every band further out, past all the
positives (negatives) seen, so the selection frames count no error for any of them and cannot
tell the steps apart. What tells them apart is how far each band lies beyond the scores seen,
measured in how spread out their tail is. Per stage, in the stage's own scale
(``StageKind.scale``: log for a difference detector, log-odds for a model), the lowest scores of
the positives (for a "no") and the highest of the negatives (for a "yes") are fitted with an
exponential tail, the peaks-over-threshold estimate of extreme-value statistics with shape 0:

    P(score < t) = (k / n) * exp(-(u - t) / s)   for t below u, the k-th lowest of the n scores,
                                                  s the mean distance below u of the k - 1 lower

and counted empirically above u. A cascade's rate of each error is at most the sum over its
stages (a union bound).

The prediction only sizes the certification sample and weighs the ladder's steps against each
other (``planner/query.py: propose``): a wrong one costs time, never the guarantee, which rests
on the certification frames alone.

>>> z = np.random.default_rng(0).normal(0, 1, 1000)
>>> round(tail_share(z, -2.0), 3), round(tail_share(z, -3.0), 4)   # normal: 0.023, 0.0013 (a lighter tail)
(0.023, 0.0037)
>>> tail_share(z, -np.inf), tail_share(z, 10.0)
(0.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TAIL = 0.05  # share of the scores the exponential tail is fitted to
MIN_TAIL = 5  # scores it is fitted to, at least
MIN_SEEN = 20  # scores of a class needed to fit anything


def tail_share(z: np.ndarray, t: float) -> float:
    """The predicted share of a population whose scores ``z`` were seen that scores below ``t``."""
    if t == -np.inf:
        return 0.0
    z = np.sort(np.asarray(z, np.float64))
    n = len(z)
    k = min(n, max(MIN_TAIL, math.ceil(TAIL * n)))
    u = z[k - 1]
    if t >= u:
        return float(np.searchsorted(z, t, "left")) / n
    s = max(float(np.mean(u - z[: k - 1])) if k > 1 else 0.0, 1e-9)
    return k / n * math.exp(-(u - t) / s)


def error_rates(stages: Sequence, scores: Sequence[np.ndarray], truth: np.ndarray) -> tuple[float, float] | None:
    """Predicted (false-negative rate, false-positive rate) of a cascade's ``stages`` whose
    scores on the selection frames are ``scores`` (reference answers ``truth``); None when a
    class holds fewer than MIN_SEEN frames there.

    >>> from vql.planner.stages import Band, NO_ONLY, PROBABILITY, Stage, register
    >>> class Cnn:
    ...     name, size = "m", 32
    >>> register(Cnn, PROBABILITY)
    >>> y = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    >>> p = np.r_[np.linspace(0.001, 0.3, 900), np.linspace(0.2, 0.999, 100)]
    >>> fn, fp = error_rates([Stage(Cnn(), Band(0.2, 0.31))], [p], y)
    >>> fn < 0.02, fp < 0.01
    (True, True)
    >>> fn2, _ = error_rates([Stage(Cnn(), Band(0.05, 0.31))], [p], y)     # a band further out
    >>> fn2 < fn / 5
    True
    """
    y = np.asarray(truth, bool)
    if y.sum() < MIN_SEEN or (~y).sum() < MIN_SEEN:
        return None
    fn = fp = 0.0
    for stage, s in zip(stages, scores):
        kind, band = stage.kind, stage.band
        z = kind.scale(np.asarray(s, np.float64))
        if band.low == np.inf:
            fn += 1.0
        elif band.low != -np.inf:
            fn += tail_share(z[y], float(kind.scale(np.array([band.low]))[0]))
        if band.high == -np.inf:
            fp += 1.0
        elif band.high != np.inf and kind.says_yes:
            fp += tail_share(-z[~y], -float(kind.scale(np.array([band.high]))[0]))
    return min(1.0, fn), min(1.0, fp)
