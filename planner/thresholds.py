"""Placing a cascade's bands on the selection frames: the δ / c_low / c_high decision, written
once.

Every stage but the last answers "no" below its ``low`` (a difference detector's δ: a frame
like the background holds nothing); the last stage, when its kind may say "yes" (a specialized
model), answers "no" below ``c_low`` and "yes" above ``c_high``; the reference answers the rest
(right by definition). Given how many errors of each kind the plan may make on the selection
frames (``allowed``: false negatives, false positives), the bands go as far out as that allows:
each "no"-only stage takes a share of the false-negative allowance (every split is one
placement), the last stage the rest, and its "yes" side the false-positive allowance. Bands are
*placed* here, never certified: certification happens once, later, on frames these choices
never saw (``planner/certify.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vql.planner.stages import Band, Stage, measured


@dataclass(frozen=True)
class Placement:
    """A cascade's stages with their bands placed and their pass shares measured on the
    selection frames, and the share of frames they leave to the reference there."""

    stages: tuple[Stage, ...]
    pass_rate: float


def place(stages: Sequence[Stage], scores: Sequence[np.ndarray], labels: np.ndarray,
          allowed: tuple[int, int]) -> list[Placement]:
    """Every way of splitting the false-negative allowance among the stages (one ``Placement``
    per split), the false-positive allowance going to the last stage's "yes"; the errors of the
    whole cascade on these frames stay within ``allowed``.

    >>> from vql.planner.stages import NO_ONLY, PROBABILITY, register
    >>> class Det:
    ...     name, size = "d", 32
    >>> class Cnn:
    ...     name, size = "c", 32
    >>> register(Det, NO_ONLY); register(Cnn, PROBABILITY)
    >>> y = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    >>> d = np.r_[np.linspace(0, 1, 2000), np.linspace(0.5, 2, 2000)]   # negatives overlap
    >>> c = np.r_[np.linspace(0, 0.6, 2000), np.linspace(0.4, 1, 2000)]
    >>> options = place([Stage(Det()), Stage(Cnn())], [d, c], y, (4, 4))
    >>> len(options), all(_errors(o, [d, c], y) <= (4, 4) for o in options)
    (5, True)
    >>> best = min(options, key=lambda o: o.pass_rate); round(best.pass_rate, 2) < 0.5
    True
    >>> [round(o.pass_rate, 2) for o in place([Stage(Cnn())], [c], y, (0, 0))]     # the model alone
    [0.33]
    """
    labels = np.asarray(labels, bool)
    scores = [np.asarray(s, np.float64) for s in scores]
    n = len(labels)
    fn_budget, fp_budget = allowed
    out = []
    for bands in _splits(list(stages), scores, labels, np.ones(n, bool), fn_budget, fp_budget):
        placed, rate = measured([Stage(s.op, b, s.seconds) for s, b in zip(stages, bands)], scores, n)
        out.append(Placement(placed, rate))
    return out


def _splits(stages: list[Stage], scores: list[np.ndarray], labels: np.ndarray, reach: np.ndarray, fn_left: int,
            fp_budget: int) -> list[list[Band]]:
    """The bands of ``stages`` (frames ``reach`` reaching the first), each "no"-only stage
    taking 0..fn_left of the false negatives left, the last "yes"-capable one the rest."""
    if not stages:
        return [[]]
    stage, s = stages[0], scores[0]
    last = len(stages) == 1
    if last and stage.kind.says_yes:
        rest = np.sort(s[labels & reach])
        low = -np.inf if fn_left < 0 else rest[fn_left] if fn_left < len(rest) else np.inf
        neg = np.sort(s[~labels & reach])
        high = neg[len(neg) - 1 - fp_budget] if fp_budget < len(neg) else -np.inf
        if high < low:  # overlapping classes: the reference settles the disputed band
            high = low = (high + low) / 2 if np.isfinite(high + low) else low
        return [[Band(float(low), float(high))]]
    positives = np.sort(s[labels & reach])
    out = []
    for k in range(max(0, fn_left) + 1):
        low = float(positives[k]) if k < len(positives) else np.inf
        passing = reach & (s >= low)
        missed = int((labels & reach & ~passing).sum())
        out += [[Band(low)] + rest for rest in _splits(stages[1:], scores[1:], labels, passing, fn_left - missed,
                                                        fp_budget)]
    return out


def _errors(p: Placement, scores, labels) -> tuple[int, int]:
    from vql.planner.stages import answer

    a = answer(p.stages, scores, labels)
    return int((labels & ~a).sum()), int((~labels & a).sum())
