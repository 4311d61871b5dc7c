"""Threshold placement on constructed score distributions, the confidence bounds, the
certificate, and the planning sample's random order."""

from __future__ import annotations

import numpy as np
import pytest

from vql.planner.certify import Claim, certify, chances, frames_needed, sizes
from vql.planner.sampling import Sample, grow, permutation, training_size
from vql.planner.stats import interval, pass_probability, trials_needed, upper_bound
from vql.planner.stages import Stage, answer
from vql.planner.thresholds import place

from simulate import SimDetector as Detector, SimModel as Model  # stage operators of each kind, scoring nothing


def test_bounds_match_known_values():
    # the one-sided 95% Clopper–Pearson limit is the 0.95 quantile of Beta(k + 1, n - k)
    assert upper_bound(5, 100) == pytest.approx(0.1022534, abs=1e-6)
    assert upper_bound(0, 300) == pytest.approx(0.0099361, abs=1e-6)
    assert upper_bound(0, 0) == 1.0 and upper_bound(10, 10) == 1.0
    assert upper_bound(1, 50, confidence=0.99) > upper_bound(1, 50, confidence=0.9)
    assert trials_needed(0.01) == 299 and upper_bound(0, 299) <= 0.01 < upper_bound(0, 298)
    n = trials_needed(0.02, 0.95, errors=3)
    assert upper_bound(3, n, 0.95) <= 0.02 < upper_bound(3, n - 1, 0.95)
    low, high = interval(26, 1537)  # the composed20 audit of the earlier planner: 0.0169
    assert low < 26 / 1537 < high and low > 0.0088  # wholly above the bound that planner claimed


def test_separable_scores_decide_everything():
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(0, 0.3, 3000), rng.uniform(0.7, 1, 3000)]
    labels = np.r_[np.zeros(3000, bool), np.ones(3000, bool)]
    (t,) = place([Stage(Model())], [scores], labels, (0, 0))
    band = t.stages[0].band
    assert t.pass_rate == 0.0 and 0.3 <= band.low <= 0.7 and 0.3 <= band.high <= 0.7
    assert (answer(t.stages, [scores], labels) == labels).all()


def test_overlap_goes_to_the_reference_within_the_allowance():
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0.3, 0.1, 4000), rng.normal(0.7, 0.1, 1000)]
    labels = np.r_[np.zeros(4000, bool), np.ones(1000, bool)]
    for allowed in [(0, 0), (5, 5), (20, 40)]:
        (t,) = place([Stage(Model())], [scores], labels, allowed)
        said = answer(t.stages, [scores], labels)
        assert (labels & ~said).sum() <= allowed[0] and (~labels & said).sum() <= allowed[1]
        assert 0 < t.pass_rate < 1
    wide, narrow = (place([Stage(Model())], [scores], labels, a)[0] for a in ((0, 0), (20, 40)))
    assert narrow.pass_rate < wide.pass_rate  # more errors allowed, fewer frames to the reference


def test_the_allowance_is_split_between_detector_and_model():
    rng = np.random.default_rng(2)
    y = rng.random(5000) < 0.2
    diff = np.where(y, rng.normal(3, 1, 5000), rng.normal(0, 1, 5000))
    cnn = np.where(y, rng.normal(0.7, 0.15, 5000), rng.normal(0.3, 0.15, 5000))
    options = place([Stage(Detector()), Stage(Model())], [diff, cnn], y, (6, 6))
    assert len(options) == 7  # the detector taking 0..6 of the false negatives
    for t in options:
        said = answer(t.stages, [diff, cnn], y)
        assert (y & ~said).sum() <= 6 and (~y & said).sum() <= 6
    alone = place([Stage(Model())], [cnn], y, (6, 6))[0]
    assert min(o.pass_rate for o in options) < alone.pass_rate  # the detector pays


def test_certificate_needs_every_bound_within_its_target():
    y = np.r_[np.ones(500, bool), np.zeros(4500, bool)]
    answer = y.copy()
    one = certify([Claim("q", y, answer)], 0.01, 0.01)
    assert one.fnr_bound == pytest.approx(upper_bound(0, 500, 0.95)) and one.passed and one.confidence == 0.95
    other = answer.copy()
    other[:3] = False  # three positives missed: 3 of 500 cannot certify 1%
    assert not certify([Claim("q", y, other)], 0.01, 0.01).passed
    both = certify([Claim("a", y, answer), Claim("b", y, other)], 0.01, 0.01)  # one claim over: not certified
    assert not both.passed and both.fnr_bound == pytest.approx(upper_bound(3, 500, 0.95))


def test_sizing_and_its_prediction():
    assert frames_needed(0.01, 0.01, 0.09) == 3323  # 299 positives at 95% with none missed
    clean = np.r_[np.ones(300, bool), np.zeros(2700, bool)]
    sure = sizes([0.1], 0.05, 0.05, available=50000)
    assert sure and sure == sorted(set(sure)) and all(frames <= 50000 for frames in sure)
    assert chances([Claim("q", clean, clean)], [0.1], sure, fpr=0.05, fnr=0.05).max() > 0.9
    missed = clean.copy()
    missed[:15] = False  # 5% of positives missed on the selection frames: 5% cannot be certified
    assert chances([Claim("q", clean, missed)], [0.1], sizes([0.1], 0.05, 0.05, 50000), fpr=0.05, fnr=0.05).max() < 0.2
    assert sizes([0.1], 0.01, 0.01, available=1000) == []
    assert pass_probability(0, 2000, 0, 100) > pass_probability(0, 200, 0, 100) > pass_probability(2, 200, 0, 100)


def test_the_random_order_is_shared_uniform_and_consumed_as_a_prefix():
    a, b = permutation("fp", 100, 10099), permutation("fp", 100, 10099)
    assert (a == b).all() and sorted(a.tolist()) == list(range(100, 10100))
    assert not (permutation("other", 100, 10099) == a).all()
    s = Sample(a, 2100, 2900)
    parts = [s.train, s.select, s.certify]
    assert [len(p) for p in parts] == [700, 1400, 2900]  # a third trains, two thirds select
    assert len(np.unique(np.concatenate(parts))) == 5000  # disjoint
    assert (Sample(a, 2100, 500).certify == s.certify[:500]).all()  # growing keeps the prefix
    # uniform over time: each tenth of the scan holds about a tenth of the prefix
    counts = np.histogram(s.prefix, bins=10, range=(100, 10100))[0]
    assert counts.min() > 160 and counts.max() < 260
    assert training_size(795, 0.01)[0] == 900  # more than the clip: the planner answers it exactly
    assert grow(600, 6000, rare=50) == 900 and grow(1400, 6000, rare=50) == 1500 and grow(600, 6000, rare=200) == 600
