"""``SELECT AVG(object_count(...)) ... WITH (error := e)`` (and SUM): a betting interval
(planner/betting.py) from frames drawn in a random order until it is narrow enough
(engine/mean.py).

The coverage test runs the real estimator on many simulated scans whose counts come in long
episodes (frames far from independent), each stopped by its own data-dependent rule, and checks
that the interval holds the true sum in at least 95% of them, within Monte Carlo error. The same
estimator fed a contiguous stretch of the scan instead of a uniform random order fails it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from patches import clip, logged, session
from simulate import episodes, in_parallel, seeds

from vql.engine.mean import estimate_mean
from vql.errors import BindError, ExecutionError
from vql.planner.betting import log_capital, mean_interval

TRIALS = 300
CAP = 8


def counts_in_episodes(rng, n: int) -> np.ndarray:
    """Counts of 1..5 objects held through episodes of 20-120 frames, covering 5-50% of the scan."""
    truth, segment = episodes(rng, n, float(rng.choice([0.05, 0.15, 0.5])))
    level = rng.integers(1, 6, segment.max() + 1)[segment]
    return np.where(truth, level, 0)


def shuffled(rng, n: int) -> np.ndarray:
    """A uniform random order of the scan's frames (what the estimator is built on)."""
    return rng.permutation(n)


def stretch(rng, n: int) -> np.ndarray:
    """Consecutive frames from a random start: not a uniform sample of an episodic scan."""
    start = int(rng.integers(n))
    return (start + np.arange(n)) % n


def scan(seed, order_of) -> tuple[int, float, object, bool]:
    """One simulated scan: its length, the error asked for, the estimate, and whether its
    interval holds the true sum."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1_500, 4_000]))
    counts = counts_in_episodes(rng, n)
    error = float(rng.choice([0.15, 0.3]))
    est = estimate_mean(order_of(rng, n), lambda f: counts[f], 0, 0, CAP, error)
    return n, error, est, bool(est.total_low <= int(counts.sum()) <= est.total_high)


def coverage(order_of, seed: int = 0, trials: int = TRIALS) -> tuple[float, list]:
    """Share of simulated scans whose true sum lies in the interval; ``order_of(rng, n)`` gives
    the order the estimator labels frames in."""
    runs = in_parallel(scan, [(s, order_of) for s in seeds(seed, trials)])
    return sum(inside for *_, inside in runs) / trials, [r[:3] for r in runs]


def test_the_interval_covers_the_true_sum_on_correlated_scans():
    share, runs = coverage(shuffled)
    slack = 3 * math.sqrt(0.95 * 0.05 / TRIALS)
    assert share >= 0.95 - slack, share
    stopped = [(n, e, est) for n, e, est in runs if not est.exact]
    assert len(stopped) > TRIALS / 2
    # where it stopped early, the interval is within the error asked for (the stopping rule)
    assert all(max(est.total_high - est.total, est.total - est.total_low) <= e * est.total + 1 for _, e, est in stopped)
    # and it stopped well before the end of the scan
    assert np.median([est.sampled / n for n, _, est in stopped]) < 0.5


def test_a_contiguous_sample_fails_the_same_check():
    """Consecutive frames from a random start are not a uniform sample of a scan whose counts come
    in episodes: the same estimator's intervals miss far more often."""
    share, _ = coverage(stretch, seed=1, trials=50)   # it misses so often that 50 scans show it (0.10 inside)
    assert share < 0.8, share


def test_candidates_the_draws_rule_out_are_rejected_and_a_full_sample_is_exact():
    x = np.array([1.0, 1.0, 0.0, 1.0])
    # 10 values, 3 of the 4 drawn are 1: the mean is at least 0.3 and at most 0.9
    capital = log_capital(x, 10, np.array([0.2, 0.5, 0.95]), 0.05)
    assert math.isinf(capital[0]) and math.isinf(capital[2]) and not math.isinf(capital[1])
    low, high = mean_interval(x, 10, 0.05)
    assert 0.29 <= low and high <= 0.91
    assert mean_interval(np.array([0.25, 0.5]), 2, 0.05) == (0.375, 0.375)
    counts = np.arange(100) % 3
    est = estimate_mean(np.arange(40, 100), lambda f: counts[f], int(counts[:40].sum()), 40, 2, 0.0001)
    assert est.exact and est.total == est.total_low == est.total_high == counts.sum() and est.known == 40


def test_an_exact_sum_is_added_in_integers():
    """Every frame labelled: the sum is the counts' sum, not rebuilt from fractions of the cap."""
    counts = np.random.default_rng(2).integers(9_000_000, 10_000_000, 100)
    est = estimate_mean(np.arange(100), lambda f: counts[f], 5, 3, 10_000_000, 1e-9)
    assert est.exact and est.total == est.total_low == est.total_high == int(counts.sum()) + 5


def test_a_count_above_the_stated_cap_is_an_error_not_an_interval():
    counts = np.zeros(1_000, int)
    counts[500] = 9
    with pytest.raises(ExecutionError, match="frame 500 counts 9 objects"):
        estimate_mean(np.arange(1_000), lambda f: counts[f], 0, 0, 8, 0.1)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> tuple[str, np.ndarray]:
    """3,000 frames; 1-4 patches (people) held through episodes covering about 30% of them."""
    rng = np.random.default_rng(5)
    truth, segment = episodes(rng, 3_000, 0.3)
    counts = np.where(truth, rng.integers(1, 5, segment.max() + 1)[segment], 0)
    path = clip(tmp_path_factory.mktemp("mean") / "crowd.avi", 3_000, (),
                counts={int(f): int(c) for f, c in enumerate(counts) if c})
    return path, counts


def test_avg_and_sum_through_sql(crowd):
    path, counts = crowd
    con, model = session(path)
    result = con.sql("SELECT AVG(object_count('person')) FROM cam WITH (error := 0.2)")
    assert result.columns == ["avg", "avg_low", "avg_high"]
    ((avg, low, high),) = result.fetchall()
    assert low <= counts.mean() <= high and low <= avg <= high and max(high - avg, avg - low) <= 0.2 * avg + 1e-3
    est = result.metadata["estimate"]["vql_frames_cam"]
    assert model.calls == est["sampled"] < 3_000 and est["cap"] == 8   # the stand-in's limit: 8 slots
    # SUM over the frames WHERE chooses by frame and ts; the frames labelled above count exactly
    calls = model.calls
    result = con.sql("SELECT SUM(object_count('person')) AS people FROM cam WHERE frame % 2 = 0 AND ts < 200 "
                     "WITH (error := 0.2, max_count := 4)")
    assert result.columns == ["people", "people_low", "people_high"]
    ((total, low, high),) = result.fetchall()
    assert low <= int(counts[0:2000:2].sum()) <= high and low <= total <= high
    est = result.metadata["estimate"]["vql_frames_cam"]
    assert est["frames"] == 1_000 and est["known"] > 0 and model.calls - calls == est["sampled"]
    (row,) = logged(con)
    assert row["strategy"] == "sum-estimate" and (row["sum_low"], row["sum_high"]) == (low, high)
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN SELECT AVG(object_count('person')) FROM cam "
                                           "WITH (error := 0.1, max_count := 4)").fetchall())
    assert "AVG estimate of object_count('person')" in plan and "no frame counts more than 4" in plan
    assert "strategy=sample" in plan
    analyzed = "\n".join(r[0] for r in con.sql("EXPLAIN ANALYZE SELECT SUM(object_count('person')) FROM cam "
                                               "WITH (error := 0.2)").fetchall())
    assert "-- SUM estimate: average" in analyzed and "betting" in analyzed


def test_averages_per_time_bucket_hold_jointly(crowd):
    path, counts = crowd
    con, _ = session(path)
    result = con.sql("SELECT floor(ts / 100) AS bucket, AVG(object_count('person')) AS a FROM cam GROUP BY bucket "
                     "ORDER BY bucket WITH (error := 0.3)")
    assert result.columns == ["bucket", "a", "a_low", "a_high"]
    rows = result.fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]
    for bucket, a, low, high in rows:
        true = counts[int(bucket) * 1000:(int(bucket) + 1) * 1000].mean()
        assert low <= true <= high and low <= a <= high, (bucket, true, low, high)
    est = result.metadata["estimate"]["vql_frames_cam"]
    assert len(est["groups"]) == 3 and round(est["group_confidence"], 4) == 0.9833
    # no frames: no groups, and SQL's NULL for an aggregate over nothing
    assert con.sql("SELECT floor(ts / 100) AS b, SUM(object_count('person')) FROM cam WHERE frame % 7 = 8 "
                   "GROUP BY b WITH (error := 0.3)").fetchall() == []
    assert con.sql("SELECT floor(ts / 100) AS b, COUNT(*) FROM cam WHERE contains('person') AND frame < 0 "
                   "GROUP BY b WITH (error := 0.3)").fetchall() == []
    assert con.sql("SELECT SUM(object_count('person')) FROM cam WHERE frame % 7 = 8 WITH (error := 0.3)"
                   ).fetchall() == [(None, None, None)]


def test_an_assumed_cap_a_frame_breaks_and_a_model_without_one(crowd):
    path, counts = crowd
    con, model = session(path)
    with pytest.raises(ExecutionError, match="more than"):
        con.sql("SELECT AVG(object_count('person')) FROM cam WITH (error := 0.02, max_count := 2)").fetchall()
    model.max_objects = None
    with pytest.raises(ExecutionError, match="max_count := 50"):
        con.sql("SELECT AVG(object_count('person')) FROM cam WHERE frame > 2500 WITH (error := 0.1)").fetchall()
    assert con.sql("SELECT AVG(object_count('person')) FROM cam WHERE frame > 2500 "
                   "WITH (error := 0.1, max_count := 4)").fetchall()[0][0] is not None


def test_averages_refuse_what_they_cannot_bound(crowd):
    con, _ = session(crowd[0])
    for query, message in [
        ("SELECT AVG(object_count('person')), COUNT(*) FROM cam WITH (error := 0.2)", "one aggregate"),
        ("SELECT AVG(object_count('person')) FROM cam WHERE contains('car') WITH (error := 0.2)", "frame and ts alone"),
        ("SELECT AVG(object_count('person') + 1) FROM cam WITH (error := 0.2)", "option error estimates"),
        ("SELECT AVG(object_count('person')) FROM cam WHERE object_count('person') > 0 WITH (error := 0.2)",
         "ratio of two estimates"),
        ("SELECT MAX(object_count('person')) FROM cam WITH (error := 0.2)", "option error estimates"),
        ("SELECT AVG(object_count('person')) FROM cam WITH (max_count := 3)", "max_count bounds"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 0.2, max_count := 3)", "AVG or SUM"),
        ("SELECT AVG(object_count('person')) FROM cam WITH (error := 0.2, max_count := 0)", "a number of objects"),
    ]:
        with pytest.raises(BindError, match=message):
            con.sql(query)
