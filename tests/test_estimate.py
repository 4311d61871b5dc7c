"""``SELECT COUNT(*) ... WITH (error := e)``: counts with an exact interval (engine/estimate.py).

The coverage test runs the real estimator on many simulated scans whose truth comes in long
episodes (frames far from independent) and checks that the interval holds the true count in at
least 95% of them, within Monte Carlo error; the same estimator fed a contiguous stretch of the
scan instead of a uniform random order fails it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from patches import clip, session
from simulate import episodes, in_parallel, seeds

from vql.engine.estimate import estimate_count
from vql.errors import BindError

TRIALS = 400


def shuffled(rng, n: int) -> np.ndarray:
    """A uniform random order of the scan's frames (what the estimator is built on)."""
    return rng.permutation(n)


def stretch(rng, n: int) -> np.ndarray:
    """Consecutive frames from a random start: not a uniform sample of an episodic scan."""
    start = int(rng.integers(n))
    return (start + np.arange(n)) % n


def scan(seed, order_of) -> tuple[int, float, float, object, bool]:
    """One simulated scan: its length, presence, the error asked for, the estimate, and whether
    its interval holds the true count."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([2_000, 6_000, 12_000]))
    presence = float(rng.choice([0.03, 0.1, 0.3, 0.6]))
    truth, _ = episodes(rng, n, presence)
    error = float(rng.choice([0.05, 0.1, 0.2]))
    est = estimate_count(order_of(rng, n), 0, lambda f: truth[f], error)
    return n, presence, error, est, bool(est.low <= int(truth.sum()) <= est.high)


def coverage(order_of, seed: int = 0) -> tuple[float, list]:
    """Share of simulated scans whose true count lies in the interval; ``order_of(rng, n)``
    gives the order the estimator labels frames in."""
    runs = in_parallel(scan, [(s, order_of) for s in seeds(seed, TRIALS)])
    return sum(inside for *_, inside in runs) / TRIALS, [r[:4] for r in runs]


def test_the_interval_covers_the_true_count_on_correlated_scans():
    share, runs = coverage(shuffled)
    slack = 3 * math.sqrt(0.95 * 0.05 / TRIALS)
    assert share >= 0.95 - slack, share
    # and the intervals are about as tight as asked where the plan did not fall back to every frame
    planned = [(e, est) for n, p, e, est in runs if not est.exact and est.count > 0]
    assert planned
    widths = [max(est.count - est.low, est.high - est.count) / est.count / e for e, est in planned]
    assert np.median(widths) < 1.3, np.median(widths)
    # with fewer frames than the scan: a real saving
    assert np.median([est.pilot + est.sampled for _, _, _, est in runs]) < 0.7 * np.median([n for n, *_ in runs])


def test_a_contiguous_sample_fails_the_same_check():
    """A stretch of consecutive frames (a random start) is not a uniform sample of a scan whose
    truth comes in episodes: the same estimator's intervals miss far more often."""
    share, _ = coverage(stretch, seed=1)
    assert share < 0.8, share


def test_known_frames_count_exactly_and_a_full_sample_is_exact():
    truth = np.zeros(3_000, bool)
    truth[100:400] = True
    order = np.random.default_rng(0).permutation(np.arange(1_000, 3_000))   # frames 0..999 known
    est = estimate_count(order, known_true=300, judge=lambda f: truth[f], error=0.001, known=1_000)
    assert est.exact and est.count == est.low == est.high == 300 and est.known_true == 300


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> tuple[str, int]:
    """2,000 frames, the patch in 600 of them (30%), in episodes."""
    rng = np.random.default_rng(3)
    truth, _ = episodes(rng, 2_000, 0.3)
    return clip(tmp_path_factory.mktemp("estimate") / "crowd.avi", 2_000, np.flatnonzero(truth)), int(truth.sum())


def test_count_with_error_through_sql(crowd):
    path, true_count = crowd
    con, model = session(path)
    result = con.sql("SELECT COUNT(*) AS people FROM cam WHERE contains('person') WITH (error := 0.1)")
    assert result.columns == ["people", "people_low", "people_high"]
    ((n, low, high),) = result.fetchall()
    assert low <= true_count <= high and low <= n <= high
    est = result.metadata["estimate"]["vql_frames_cam"]
    assert model.calls == est["pilot"] + est["sampled"] < 2_000
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN SELECT COUNT(*) FROM cam WHERE contains('person') "
                                           "WITH (error := 0.1, confidence := 0.99)").fetchall())
    assert "COUNT estimate" in plan and "99%" in plan
    analyzed = "\n".join(r[0] for r in con.sql("EXPLAIN ANALYZE SELECT COUNT(*) FROM cam WHERE contains('person') "
                                               "WITH (error := 0.1)").fetchall())
    assert "-- COUNT estimate: " in analyzed and "hypergeometric" in analyzed
    # the frames labelled are counted exactly next time: a second, tighter count labels only what it lacks
    again = con.sql("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 0.02)")
    assert again.columns == ["count", "count_low", "count_high"]
    ((n2, low2, high2),) = again.fetchall()
    assert low2 <= true_count <= high2 and high2 - low2 < high - low
    assert again.metadata["estimate"]["vql_frames_cam"]["known"] >= model.calls - again.metadata.get("frames_labelled", 0)


def test_counts_per_time_bucket_hold_jointly(crowd):
    """GROUP BY keys about each frame: one count per group, each with its own sample, the
    intervals jointly at 95% (each at 1 - 0.05 / groups)."""
    path, _ = crowd
    truth, _ = episodes(np.random.default_rng(3), 2_000, 0.3)   # the fixture's truth
    con, model = session(path)
    result = con.sql("SELECT floor(ts / 50) AS bucket, COUNT(*) AS n FROM cam WHERE contains('person') "
                     "GROUP BY bucket ORDER BY bucket WITH (error := 0.2)")
    assert result.columns == ["bucket", "n", "n_low", "n_high"]
    rows = result.fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3]  # 2,000 frames at 10 fps: four buckets of 50 s
    for bucket, n, low, high in rows:
        true = int(truth[int(bucket) * 500:(int(bucket) + 1) * 500].sum())
        assert low <= true <= high and low <= n <= high, (bucket, true, low, high)
    est = result.metadata["estimate"]["vql_frames_cam"]
    assert len(est["groups"]) == 4 and round(est["group_confidence"], 4) == 0.9875
    assert model.calls == est["pilot"] + est["sampled"] < 2_000
    assert sum(r[1] for r in rows) == est["count"]
    by_n = con.sql("SELECT floor(ts / 50) AS bucket, COUNT(*) AS n FROM cam WHERE contains('person') "
                   "GROUP BY bucket ORDER BY 2 DESC WITH (error := 0.2)").fetchall()
    assert [r[1] for r in by_n] == sorted((r[1] for r in by_n), reverse=True)
    analyzed = "\n".join(r[0] for r in con.sql("EXPLAIN ANALYZE SELECT floor(ts / 50), COUNT(*) FROM cam WHERE "
                                               "contains('person') GROUP BY 1 WITH (error := 0.2)").fetchall())
    assert "COUNT estimate per group of" in analyzed and "-- COUNT estimates for 4 groups" in analyzed


def test_count_estimate_refuses_what_it_cannot_bound(crowd):
    con, _ = session(crowd[0])
    for query, message in [
        ("SELECT frame FROM cam WHERE contains('person') WITH (error := 0.1)", "option error estimates"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') HAVING COUNT(*) > 2 WITH (error := 0.1)",
         "option error estimates"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') GROUP BY object_count('car') WITH (error := 0.1)",
         "outside WHERE"),
        ("SELECT floor(ts) AS s, COUNT(*) FROM cam WHERE contains('person') GROUP BY 3 WITH (error := 0.1)",
         "between 1 and 2"),
        ("SELECT frame, COUNT(*) FROM cam WHERE contains('person') GROUP BY floor(ts) WITH (error := 0.1)",
         "neither COUNT"),
        ("SELECT floor(ts) AS s, COUNT(*) FROM cam WHERE contains('person') GROUP BY s ORDER BY frame "
         "WITH (error := 0.1)", "ordered by its columns"),
        ("SELECT COUNT(*) FROM cam WHERE frame < 10 WITH (error := 0.1)", "no model test"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 1.5)", "option error must be in (0, 1)"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 0.1, confidence := 0.2)",
         "option confidence must be in [0.5, 1)"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (confidence := 0.9)", "option confidence goes with error"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 0.1, fpr := 0.1)", "options fpr and fnr"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (error := 0.1, exact)", "exclude each other"),
        ("SELECT COUNT(*) FROM cam WHERE object_count('person') BETWEEN 1 AND 2 WITH (error := 0.1)",
         "no model test vql can estimate"),
    ]:
        with pytest.raises(BindError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            con.sql(query)


def test_a_predicate_true_almost_everywhere_gets_a_tight_interval_cheaply():
    """Where nearly every frame is true the normal approximation plans no sample at all; the plan
    on the exact interval itself gives one as narrow as asked, from a few frames."""
    truth = np.ones(3_000, bool)
    truth[::50] = False
    est = estimate_count(np.random.default_rng(2).permutation(3_000), 0, lambda f: truth[f], error=0.05)
    assert est.low <= int(truth.sum()) <= est.high
    assert (est.high - est.low) / 2 <= 0.05 * est.count * 1.1 and est.pilot + est.sampled < 300


def proxied_scan(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Episodic truth and a label-free proxy's keys: true frames score higher, with noise, except
    in episodes the proxy is blind to (up to 30% of them, scored like the background)."""
    n = int(rng.choice([6_000, 12_000, 24_000]))
    truth, _ = episodes(rng, n, float(rng.choice([0.03, 0.1, 0.3])))
    starts = np.flatnonzero(truth & ~np.r_[False, truth[:-1]])
    ends = np.flatnonzero(truth & ~np.r_[truth[1:], False]) + 1
    seen = truth.copy()
    for s, e in list(zip(starts, ends))[: int(rng.uniform(0, 0.3) * len(starts))]:
        seen[s:e] = False
    return truth, seen + rng.normal(0, rng.uniform(0.1, 0.5), n)


def stratified_scan(seed) -> tuple[bool, bool, float | None]:
    """One proxied scan: whether the interval holds the true count, whether the estimator
    stratified, and then its frames over those of the same estimate without the proxy."""
    rng = np.random.default_rng(seed)
    truth, key = proxied_scan(rng)
    error = float(rng.choice([0.05, 0.1, 0.2]))
    order = rng.permutation(len(truth))
    est = estimate_count(order, 0, lambda f: truth[f], error, keys=lambda f: key[f])
    hit = bool(est.low <= int(truth.sum()) <= est.high)
    if not est.strata:
        return hit, False, None
    uniform = estimate_count(order, 0, lambda f: truth[f], error)
    return hit, True, (est.pilot + est.sampled) / (uniform.pilot + uniform.sampled)


def test_stratified_intervals_cover_the_true_count_on_correlated_scans():
    """With a proxy, the estimator may stratify its sample (planner/strata.py); the summed exact
    intervals still hold the true count in at least 95% of scans within Monte Carlo error, and
    stratifying saves frames where the proxy separates well."""
    runs = in_parallel(stratified_scan, [(s,) for s in seeds(7, 300)])
    inside = sum(hit for hit, _, _ in runs)
    stratified = sum(strata for _, strata, _ in runs)
    inside_strata = sum(hit for hit, strata, _ in runs if strata)
    saved = [s for _, strata, s in runs if strata]
    slack = 3 * math.sqrt(0.95 * 0.05 / 300)
    assert inside / 300 >= 0.95 - slack, inside / 300
    assert stratified >= 60, stratified
    assert inside_strata / stratified >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / stratified), inside_strata / stratified
    assert np.median(saved) < 0.8, np.median(saved)
