"""Placing a cascade's thresholds on the selection frames: the δ / c_low / c_high decision,
written once.

A difference detector answers "no" below δ (a frame like the background holds nothing); a
specialized model answers "no" below ``c_low`` and "yes" above ``c_high``; the reference answers
the rest (right by definition). Given how many errors of each kind the plan may make on the
selection frames (``allowed``: false negatives, false positives), the thresholds go as far out
as that allows. They are *placed* here, never certified: certification happens once, later, on
frames these choices never saw (``planner/certify.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True, slots=True)
class Thresholds:
    c_low: float = -np.inf  # below: answered "no" (−inf: nothing is)
    c_high: float = np.inf  # above: answered "yes" (+inf: nothing is)
    delta: float = -np.inf  # difference-detector score below: answered "no" (−inf: no detector)
    pass_rate: float = 1.0  # share of frames left to the reference (on the selection frames)
    diff_pass: float = 1.0  # share of frames the difference detector passes on
    gate_delta: float = np.inf  # skipping: t−Δ score below which a frame inherits its anchor's answer
    gate_pass: float = 0.0  # share of frames off an anchor the t−Δ gate sends through the stages

    @property
    def cnn_pass(self) -> float:
        """Share of the frames reaching the specialized model that it leaves to the reference."""
        return self.pass_rate / self.diff_pass if self.diff_pass > 0 else 0.0

    def decide(self, diff: np.ndarray | None, cnn: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(answered "no", answered "yes") masks for ``n`` frames with these stage scores (None:
        that stage is absent)."""
        passing = np.ones(n, bool) if diff is None else np.asarray(diff) >= self.delta
        if cnn is None:
            return ~passing, np.zeros(n, bool)
        cnn = np.asarray(cnn)
        return ~passing | (cnn < self.c_low), passing & (cnn > self.c_high)

    def measured(self, diff: np.ndarray | None, cnn: np.ndarray | None, n: int) -> Thresholds:
        """These thresholds with the pass rates they give on ``n`` frames with these scores."""
        said_no, said_yes = self.decide(diff, cnn, n)
        passing = np.ones(n, bool) if diff is None else np.asarray(diff) >= self.delta
        return replace(self, pass_rate=float((~said_no & ~said_yes).mean()) if n else 1.0,
                       diff_pass=float(passing.mean()) if n else 1.0)

    def answer(self, diff: np.ndarray | None, cnn: np.ndarray | None, truth: np.ndarray) -> np.ndarray:
        """What the cascade answers on frames whose reference answer is ``truth``."""
        said_no, said_yes = self.decide(diff, cnn, len(truth))
        return said_yes | (~said_no & np.asarray(truth, bool))


def place(diff: np.ndarray | None, cnn: np.ndarray | None, labels: np.ndarray,
          allowed: tuple[int, int]) -> list[Thresholds]:
    """Every way of splitting the false-negative allowance between a difference detector and a
    specialized model (one ``Thresholds`` per split), the false-positive allowance going to
    ``c_high``; the errors of the whole cascade on these frames stay within ``allowed``.

    >>> y = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    >>> d = np.r_[np.linspace(0, 1, 2000), np.linspace(0.5, 2, 2000)]   # negatives overlap
    >>> c = np.r_[np.linspace(0, 0.6, 2000), np.linspace(0.4, 1, 2000)]
    >>> options = place(d, c, y, (4, 4))
    >>> len(options), all(((y & ~t.answer(d, c, y)).sum(), (~y & t.answer(d, c, y)).sum()) <= (4, 4) for t in options)
    (6, True)
    >>> best = min(options, key=lambda o: o.pass_rate); round(best.pass_rate, 2) < 0.5
    True
    >>> [round(t.pass_rate, 2) for t in place(None, c, y, (0, 0))]     # the model alone
    [0.33]
    >>> place(None, None, y, (0, 0))
    []
    """
    labels = np.asarray(labels, bool)
    n = len(labels)
    fn_budget, fp_budget = allowed
    splits: list[float | None] = [None]  # None: no detector
    if diff is not None:
        diff = np.asarray(diff, np.float64)
        pos_d = np.sort(diff[labels])
        splits += [pos_d[k] if k < len(pos_d) else np.inf for k in range(fn_budget + 1)]
    if cnn is not None:
        cnn = np.asarray(cnn, np.float64)
    options = []
    for delta in splits:
        if delta is None and cnn is None:
            continue  # no stage at all: that is the exact plan
        passing = np.ones(n, bool) if delta is None else diff >= delta
        c_low, c_high = -np.inf, np.inf
        if cnn is not None:
            rest = np.sort(cnn[labels & passing])
            k = fn_budget - int((labels & ~passing).sum())
            c_low = -np.inf if k < 0 else rest[k] if k < len(rest) else np.inf
            neg = np.sort(cnn[~labels & passing])
            c_high = neg[len(neg) - 1 - fp_budget] if fp_budget < len(neg) else -np.inf
            if c_high < c_low:  # overlapping regions: the reference settles the disputed band
                c_high = c_low = (c_high + c_low) / 2 if np.isfinite(c_high + c_low) else c_low
        t = Thresholds(float(c_low), float(c_high), -np.inf if delta is None else float(delta))
        options.append(t.measured(None if delta is None else diff, cnn, n))
    return options
