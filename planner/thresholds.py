"""Fitting a specialized model's two thresholds under false-positive and false-negative targets.

Frames scoring below ``c_low`` are answered *no* without the reference, above ``c_high`` *yes*,
and the rest go to the reference (which is right by definition). On the threshold-fit set the
cascade's false-negative rate is (positives scored below ``c_low``) / positives and its
false-positive rate (negatives scored above ``c_high``) / negatives. Each threshold is chosen as
far out as it can go while the Clopper–Pearson upper bound of its rate stays within its budget;
when even a threshold that decides nothing cannot be certified (too few positives or negatives
in the sample), that side decides nothing and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vql.planner.stats import upper_bound


@dataclass(frozen=True, slots=True)
class Thresholds:
    c_low: float  # below: answered "no" (−inf: nothing is)
    c_high: float  # above: answered "yes" (+inf: nothing is)
    fnr_bound: float  # upper confidence bound of the false-negative rate on the fit set
    fpr_bound: float
    pass_rate: float  # share of fit frames left to the reference
    positives: int
    negatives: int
    note: str = ""

    @property
    def decides_anything(self) -> bool:
        return self.pass_rate < 1.0


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, fnr: float, fpr: float,
                   confidence: float = 0.95) -> Thresholds:
    """Widest decision regions whose error-rate upper bounds meet ``fnr`` and ``fpr``.

    >>> s = np.r_[np.linspace(0, 0.4, 2000), np.linspace(0.6, 1, 2000)]
    >>> t = fit_thresholds(s, s > 0.5, fnr=0.01, fpr=0.01)
    >>> bool(0.4 < t.c_low <= 0.6 and 0.4 <= t.c_high < 0.6), t.pass_rate
    (True, 0.0)
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    n_pos, n_neg = len(pos), len(neg)
    notes = []

    # c_low: the k lowest-scoring positives fall below it; the largest k whose bound fits.
    c_low, fnr_bound = -np.inf, 0.0
    if n_pos == 0 or upper_bound(0, n_pos, confidence) > fnr:
        notes.append(f"{n_pos} positives cannot certify a false-negative rate of {fnr:g}")
    else:
        k = 0
        while k < n_pos and upper_bound(k + 1, n_pos, confidence) <= fnr:
            k += 1
        # everything strictly below the (k+1)-th lowest positive may be called negative
        c_low = pos[k] if k < n_pos else np.inf
        fnr_bound = upper_bound(int((pos < c_low).sum()), n_pos, confidence)
    # c_high: the k highest-scoring negatives fall above it.
    c_high, fpr_bound = np.inf, 0.0
    if n_neg == 0 or upper_bound(0, n_neg, confidence) > fpr:
        notes.append(f"{n_neg} negatives cannot certify a false-positive rate of {fpr:g}")
    else:
        k = 0
        while k < n_neg and upper_bound(k + 1, n_neg, confidence) <= fpr:
            k += 1
        c_high = neg[n_neg - 1 - k] if k < n_neg else -np.inf
        fpr_bound = upper_bound(int((neg > c_high).sum()), n_neg, confidence)
    if c_high < c_low:  # overlapping regions: the reference settles the disputed band
        c_high = c_low = (c_high + c_low) / 2 if np.isfinite(c_high + c_low) else c_low
    undecided = (scores >= c_low) & (scores <= c_high)
    return Thresholds(float(c_low), float(c_high), fnr_bound, fpr_bound,
                      float(undecided.mean()) if len(scores) else 1.0, n_pos, n_neg, "; ".join(notes))
