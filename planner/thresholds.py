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
    delta: float = -np.inf  # difference-detector score below: answered "no" (−inf: no detector)
    diff_pass: float = 1.0  # share of fit frames the difference detector passes on
    gate_delta: float = np.inf  # skipping: t−Δ score below which a frame inherits its anchor's answer
    gate_pass: float = 0.0  # share of frames off an anchor the t−Δ gate sends through the stages

    @property
    def cnn_pass(self) -> float:
        """Share of the frames reaching the specialized model that it leaves to the reference."""
        return self.pass_rate / self.diff_pass if self.diff_pass > 0 else 0.0

    @property
    def decides_anything(self) -> bool:
        return self.pass_rate < 1.0


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, fnr: float, fpr: float,
                   confidence: float = 0.95) -> Thresholds:
    """Widest decision regions whose error-rate upper bounds meet ``fnr`` and ``fpr``, for a
    specialized model alone (``fit_cascade`` without a detector).

    >>> s = np.r_[np.linspace(0, 0.4, 2000), np.linspace(0.6, 1, 2000)]
    >>> t = fit_thresholds(s, s > 0.5, fnr=0.01, fpr=0.01)
    >>> bool(0.4 < t.c_low <= 0.6 and 0.4 <= t.c_high < 0.6), t.pass_rate
    (True, 0.0)
    """
    (option,) = fit_cascade(None, np.asarray(scores, np.float64), labels, fnr, fpr, confidence)
    return option


def allowed_errors(n: int, target: float, confidence: float = 0.95) -> int:
    """The most errors among ``n`` trials whose upper bound still meets ``target`` (−1: none).

    >>> allowed_errors(299, 0.01), allowed_errors(1000, 0.01), allowed_errors(100, 0.01)
    (0, 4, -1)
    """
    if n <= 0 or upper_bound(0, n, confidence) > target:
        return -1
    k = 0
    while k < n and upper_bound(k + 1, n, confidence) <= target:
        k += 1
    return k


def fit_cascade(diff: np.ndarray | None, cnn: np.ndarray | None, labels: np.ndarray, fnr: float, fpr: float,
                confidence: float = 0.95, budgets: tuple[int, int] | None = None,
                truth: np.ndarray | None = None) -> list[Thresholds]:
    """Every way of splitting the false-negative budget between a difference detector and a
    specialized model, each certified on the fit set (one ``Thresholds`` per split).

    The detector only answers "no" (a frame unlike the background holds nothing), so it spends
    false negatives; the model spends the rest below ``c_low`` and all of the false-positive
    budget above ``c_high``. The errors of the whole cascade are counted together, so the bound
    is on the cascade, not on each stage. ``diff`` or ``cnn`` None: that stage is absent.
    ``budgets`` (false negatives, false positives) replaces the certified budgets: the planner
    projects with (0, 0) what a cascade making no error on the fit set would pass on, before
    the fit set is big enough to certify anything (the bounds are still computed honestly).

    Frame skipping: the scores and ``labels`` are then those of each fit frame's *anchor* (the
    frame whose answer it inherits) and ``truth`` the fit frames' own labels; frames whose anchor
    disagrees with them spend their budget first, and the bounds count every frame's error.

    >>> y = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    >>> d = np.r_[np.linspace(0, 1, 2000), np.linspace(0.5, 2, 2000)]   # negatives overlap
    >>> c = np.r_[np.linspace(0, 0.6, 2000), np.linspace(0.4, 1, 2000)]
    >>> options = fit_cascade(d, c, y, fnr=0.01, fpr=0.01)
    >>> all(o.fnr_bound <= 0.01 and o.fpr_bound <= 0.01 for o in options)
    True
    >>> best = min(options, key=lambda o: o.pass_rate); round(best.pass_rate, 2) < 0.5
    True
    >>> few = fit_cascade(d[::20], c[::20], y[::20], fnr=0.01, fpr=0.01)    # 100 positives: nothing certified
    >>> [round(o.pass_rate, 2) for o in few]
    [1.0]
    >>> projected = fit_cascade(d[::20], c[::20], y[::20], 0.01, 0.01, budgets=(0, 0))
    >>> min(o.pass_rate for o in projected) < 0.5, max(o.fnr_bound for o in projected) > 0.01
    (True, True)
    >>> flicker = y.copy(); flicker[2000:2100] = False   # 5% of positives inherit a "no"
    >>> min(o.fnr_bound for o in fit_cascade(d, c, flicker, 0.01, 0.01, truth=y)) > 0.05
    True
    >>> len(fit_cascade(None, None, y, 0.01, 0.01)), len(fit_cascade(None, None, y, 0.01, 0.01, truth=y))
    (0, 1)
    """
    labels = np.asarray(labels, bool)
    skipping = truth is not None
    truth = labels if truth is None else np.asarray(truth, bool)
    n = len(labels)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    fn_budget = allowed_errors(n_pos, fnr, confidence)
    fp_budget = allowed_errors(n_neg, fpr, confidence)
    if budgets is not None:
        fn_budget, fp_budget = budgets
    notes = []
    if fn_budget < 0:
        notes.append(f"{n_pos} positives cannot certify a false-negative rate of {fnr:g}")
    if fp_budget < 0:
        notes.append(f"{n_neg} negatives cannot certify a false-positive rate of {fpr:g}")
    # thresholds are placed on the frames that agree with their anchor (all, without skipping);
    # the others are errors, or right, whatever the stages say
    agree = truth == labels
    inherited_fn, inherited_fp = int((truth & ~labels).sum()), int((~truth & labels).sum())
    splits: list[float | None] = [None]  # None: no detector
    if diff is not None and fn_budget >= 0:
        diff = np.asarray(diff, np.float64)
        pos_d = np.sort(diff[labels & agree])
        splits += [pos_d[k] if k < len(pos_d) else np.inf for k in range(fn_budget + 1)]
    options = []
    for delta in splits:
        passing = np.ones(n, bool) if delta is None else diff >= delta
        fn_d = int((labels & agree & ~passing).sum())
        c_low, c_high = -np.inf, np.inf
        if cnn is not None:
            cnn = np.asarray(cnn, np.float64)
            if fn_budget >= 0:
                rest = np.sort(cnn[labels & agree & passing])
                k = fn_budget - fn_d - inherited_fn
                c_low = -np.inf if k < 0 else rest[k] if k < len(rest) else np.inf
            if fp_budget >= 0:
                neg = np.sort(cnn[~labels & agree & passing])
                k = fp_budget - inherited_fp
                c_high = np.inf if k < 0 else neg[len(neg) - 1 - k] if k < len(neg) else -np.inf
            if c_high < c_low:  # overlapping regions: the reference settles the disputed band
                c_high = c_low = (c_high + c_low) / 2 if np.isfinite(c_high + c_low) else c_low
        elif delta is None and not skipping:
            continue  # neither stage nor skipping: that is the exact plan
        scores = cnn if cnn is not None else np.zeros(n)
        said_no = ~passing | (scores < c_low)
        said_yes = passing & (scores > c_high)
        answer = said_yes | (~said_no & labels)  # the reference answers the anchor's own label
        fn, fp = int((truth & ~answer).sum()), int((~truth & answer).sum())
        # a side that never answers without the reference makes no error at all (without skipping)
        fnr_bound = 0.0 if fn == 0 and not skipping and c_low == -np.inf and delta is None else upper_bound(fn, n_pos, confidence)
        fpr_bound = 0.0 if fp == 0 and not skipping and c_high == np.inf else upper_bound(fp, n_neg, confidence)
        options.append(Thresholds(
            float(c_low), float(c_high), fnr_bound, fpr_bound,
            float((~said_no & ~said_yes).mean()) if n else 1.0, n_pos, n_neg, "; ".join(notes),
            -np.inf if delta is None else float(delta), float(passing.mean()) if n else 1.0,
        ))
    return options
