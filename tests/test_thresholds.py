"""Threshold fitting on constructed score distributions, and the confidence bounds behind it."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from vql import binder
from vql.engine import difference, executor
from vql.planner import cost, sampling, stats, thresholds
from vql.planner.stats import trials_needed, upper_bound
from vql.planner.thresholds import allowed_errors, fit_cascade, fit_thresholds


@pytest.mark.parametrize("module", [stats, thresholds, cost, sampling, difference, executor, binder])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_upper_bound_matches_known_values():
    # scipy.stats.beta.ppf(0.95, k + 1, n - k) for the one-sided 95% Clopper–Pearson limit
    assert upper_bound(5, 100) == pytest.approx(0.1022534, abs=1e-6)
    assert upper_bound(0, 300) == pytest.approx(0.0099361, abs=1e-6)
    assert upper_bound(0, 0) == 1.0 and upper_bound(10, 10) == 1.0
    assert upper_bound(1, 50, confidence=0.99) > upper_bound(1, 50, confidence=0.9)
    assert trials_needed(0.01) == 299 and upper_bound(0, 299) <= 0.01 < upper_bound(0, 298)


def test_separable_scores_decide_everything():
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(0, 0.3, 3000), rng.uniform(0.7, 1, 3000)]
    labels = np.r_[np.zeros(3000, bool), np.ones(3000, bool)]
    t = fit_thresholds(scores, labels, fnr=0.01, fpr=0.01)
    assert t.pass_rate == 0.0 and t.decides_anything
    assert t.fnr_bound <= 0.01 and t.fpr_bound <= 0.01


def test_overlap_goes_to_the_reference_and_bounds_hold():
    rng = np.random.default_rng(1)
    neg = rng.normal(0.3, 0.15, 5000)
    pos = rng.normal(0.7, 0.15, 5000)
    scores, labels = np.r_[neg, pos], np.r_[np.zeros(5000, bool), np.ones(5000, bool)]
    t = fit_thresholds(scores, labels, fnr=0.02, fpr=0.01)
    assert 0 < t.pass_rate < 1
    assert t.c_low < t.c_high
    # the bounds are honest on the fit set itself...
    fn = (pos < t.c_low).sum()
    fp = (neg > t.c_high).sum()
    assert upper_bound(int(fn), 5000) <= 0.02 and upper_bound(int(fp), 5000) <= 0.01
    # ...and on fresh draws from the same distributions the rates stay under target
    neg2, pos2 = rng.normal(0.3, 0.15, 20000), rng.normal(0.7, 0.15, 20000)
    assert (pos2 < t.c_low).mean() <= 0.02 and (neg2 > t.c_high).mean() <= 0.01


def test_too_few_positives_fall_back_to_the_reference():
    rng = np.random.default_rng(2)
    scores = np.r_[rng.uniform(0, 0.3, 2000), rng.uniform(0.7, 1, 60)]  # 60 positives: 1% unprovable
    labels = np.r_[np.zeros(2000, bool), np.ones(60, bool)]
    t = fit_thresholds(scores, labels, fnr=0.01, fpr=0.01)
    assert t.c_low == -np.inf  # nothing may be called negative without the reference
    assert "60 positives cannot certify a false-negative rate of 0.01" in t.note
    assert t.c_high < 0.7  # the negative side is well supported: "yes" can still be decided
    assert t.pass_rate == pytest.approx(2000 / 2060, abs=0.01)


def test_no_negatives_at_all():
    t = fit_thresholds(np.linspace(0.5, 1, 500), np.ones(500, bool), fnr=0.01, fpr=0.01)
    assert t.c_high == np.inf and "0 negatives" in t.note
    assert t.c_low > 0.5  # the lowest positives' share is what the fnr budget allows


def test_cascade_fit_splits_the_false_negative_budget_between_stages():
    """The detector and the model share one false-negative budget: every split certifies the
    whole cascade on the fit set, and fresh draws stay under the target."""
    rng = np.random.default_rng(3)
    n_pos, n_neg = 3000, 12000
    diff = np.r_[rng.gamma(9, 20, n_pos), rng.gamma(2, 10, n_neg)]  # positives differ from the background
    cnn = np.r_[rng.beta(6, 2, n_pos), rng.beta(2, 6, n_neg)]
    labels = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    options = fit_cascade(diff, cnn, labels, fnr=0.01, fpr=0.01)
    budget = allowed_errors(n_pos, 0.01)
    assert budget > 5 and len(options) == budget + 2  # no detector, and each of budget + 1 splits
    for t in options:
        said_no = (diff < t.delta) | (cnn < t.c_low)
        said_yes = (diff >= t.delta) & (cnn > t.c_high)
        assert (labels & said_no).sum() <= budget
        assert t.fnr_bound <= 0.01 and t.fpr_bound <= 0.01
        assert t.pass_rate == pytest.approx((~said_no & ~said_yes).mean())
    with_detector = [t for t in options if t.delta > -np.inf]
    assert min(t.diff_pass for t in with_detector) < 0.5  # the detector rules out most negatives
    best = min(options, key=lambda t: t.pass_rate)
    d2 = np.r_[rng.gamma(9, 20, 50000), rng.gamma(2, 10, 50000)]
    c2 = np.r_[rng.beta(6, 2, 50000), rng.beta(2, 6, 50000)]
    y2 = np.r_[np.ones(50000, bool), np.zeros(50000, bool)]
    no = (d2 < best.delta) | (c2 < best.c_low)
    yes = (d2 >= best.delta) & (c2 > best.c_high)
    assert (y2 & no).sum() / 50000 <= 0.01 and (~y2 & yes & ~no).sum() / 50000 <= 0.01


def test_cascade_fit_without_enough_positives_never_says_no():
    diff = np.r_[np.full(60, 500.0), np.zeros(3000)]
    labels = np.r_[np.ones(60, bool), np.zeros(3000, bool)]
    options = fit_cascade(diff, None, labels, fnr=0.01, fpr=0.01)
    assert options == []  # no detector split can be certified and there is no model: only exact remains
    (t,) = fit_cascade(None, np.r_[np.full(60, 0.9), np.full(3000, 0.1)], labels, fnr=0.01, fpr=0.01)
    assert t.c_low == -np.inf and t.fnr_bound == 0.0 and "60 positives cannot certify" in t.note
    assert t.c_high < 0.9 and t.pass_rate == pytest.approx(3000 / 3060)  # "yes" is still certified
