"""WITH (recall := r): a selection with a recall guarantee (engine/recall.py).

The engine tests run the real selection on small synthetic clips with a stand-in reference (a
bright patch in the top-left corner is a "person", tests/patches.py); the coverage test runs
:func:`select` itself on many simulated, temporally correlated scans.
"""

from __future__ import annotations


import numpy as np
import pytest
from patches import clip, logged, session
from simulate import in_parallel

from vql.engine.recall import select
from vql.errors import BindError

N = 3_000
MARKED = {f for start in range(100, N, 300) for f in range(start, start + 30)}  # 10%, in episodes of 30


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    """3,000 frames, the patch in 300 of them; half as many frames again hold a dark blob (the proxy
    notices it, the reference does not)."""
    blobs = {f for start in range(1000, 1450, 150) for f in range(start, start + 50)}
    return clip(tmp_path_factory.mktemp("recall") / "video.avi", N, MARKED, blobs=blobs)


def frames_of(result) -> set[int]:
    return {r[0] for r in result.fetchall()}


def test_the_selection_holds_the_recall_from_the_budget_and_says_its_precision(video):
    con, model = session(video)
    result = con.sql("SELECT frame FROM cam WHERE contains('person') WITH (recall := 0.9, budget := 600)")
    rows = frames_of(result)
    recall = len(rows & MARKED) / len(MARKED)
    precision = len(rows & MARKED) / len(rows)
    assert recall >= 0.9 and model.calls == 600 and len(rows) < N / 3, (recall, len(rows))
    (st,) = result.metadata["recall"].values()
    assert st["labelled"] == 600 and not st["exact"] and 0.9 <= st["recall_bound"] <= recall
    assert st["precision_low"] <= precision <= st["precision_high"], (precision, st)
    row = logged(con)[0]
    assert row["strategy"] == "recall-select" and row["recall_bound"] == st["recall_bound"]
    text = "\n".join(r[0] for r in con.sql("EXPLAIN ANALYZE SELECT frame FROM cam WHERE contains('person') "
                                           "WITH (recall := 0.9, budget := 600)").fetchall())
    assert "recall selection: the reference labels 600 frames" in text and "-- recall selection: " in text


def test_a_negated_test_and_a_condition_on_the_frame(video):
    con, model = session(video)
    result = con.sql("SELECT frame FROM cam WHERE NOT contains('person') AND (frame < 1000 OR frame >= 2000) "
                     "WITH (recall := 0.8, budget := 500)")
    rows = frames_of(result)
    wanted = {f for f in [*range(1000), *range(2000, N)] if f not in MARKED}
    assert rows <= set(range(1000)) | set(range(2000, N)) and len(rows & wanted) >= 0.8 * len(wanted)
    # only frames where WHERE can hold are candidates (and sampled)
    assert model.calls == 500 and result.metadata["recall"]["vql_frames_cam"]["unknown"] == 2000


def test_a_budget_near_every_frame_gives_the_exact_answer(tmp_path):
    path = clip(tmp_path / "short.avi", 400, range(50, 90))
    con, model = session(path)
    result = con.sql("SELECT frame FROM cam WHERE contains('person') WITH (recall := 0.95, budget := 380)")
    assert frames_of(result) == set(range(50, 90)) and model.calls == 400
    assert result.metadata["recall"]["vql_frames_cam"]["exact"]


def test_refusals(video):
    con, _ = session(video)
    for sql, words in [
        ("SELECT frame FROM cam WHERE contains('person') LIMIT 5 WITH (recall := 0.9)", "does not go with LIMIT"),
        ("SELECT COUNT(*) FROM cam WHERE contains('person') WITH (recall := 0.9)", "aggregates"),
        ("SELECT frame FROM cam WHERE contains('person') WITH (budget := 100)", "option budget is a recall"),
        ("SELECT frame FROM cam WHERE contains('person') WITH (recall := 0.9, exact)", "does not go with exact"),
        ("SELECT frame FROM cam WHERE contains('person') WITH (recall := 0.9, fpr := 0.1)", "certifies its recall"),
        ("SELECT frame FROM cam WHERE frame < 10 WITH (recall := 0.9)", "no model test"),
        ("SELECT frame, object_count('person') AS n FROM cam WHERE contains('person') WITH (recall := 0.9)",
         "outside WHERE"),
        ("SELECT frame FROM cam WHERE contains('person') WITH (recall := 1)", r"must be in \(0, 1\)"),
        ("SELECT frame FROM cam WHERE contains('person') WITH (recall := 0.9, budget := 0.5)", "number of frames"),
    ]:
        with pytest.raises(BindError, match=words):
            con.sql(sql)


# -- coverage: many simulated scans through select ----------------------------------------------


def simulated_scan(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Episodic truth (5-30% of 4,000-12,000 frames) and a proxy that ranks true frames higher, with
    overlap, but is blind to some episodes (0-25% of the true frames, scored like the
    background); and the share of true frames it is blind to."""
    n = int(rng.integers(4_000, 12_001))
    truth, visible = np.zeros(n, bool), np.ones(n, bool)
    target, hidden = rng.uniform(0.05, 0.3) * n, rng.uniform(0, 0.25)
    while truth.sum() < target:
        s = int(rng.integers(0, n - 80))
        e = s + int(rng.integers(5, 80))
        truth[s:e] = True
        if (~visible & truth).sum() < hidden * target:
            visible[s:e] = False
    key = np.where(truth & visible, 1.0, 0.0) + rng.normal(0, rng.uniform(0.2, 0.6), n)
    return truth, key, float((truth & ~visible).sum() / truth.sum())


class Contiguous:
    """A broken design: the "uniform sample" is a stretch of consecutive frames."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def choice(self, u, n, replace=False):
        start = int(self.rng.integers(0, u - n + 1))
        return np.arange(start, start + n)


def uniform(rng: np.random.Generator) -> np.random.Generator:
    """The selection's own design: its sample drawn uniformly (``rng.choice``)."""
    return rng


def scan(t: int, target: float, sampler) -> tuple[bool, float | None]:
    """Scan ``t``: whether the returned set's recall is below ``target``, and where the proxy is
    blind to under 2% of the true frames, the share of frames returned over the share true."""
    truth, key, blind = simulated_scan(np.random.default_rng(5000 + t))
    sel = select(key, 0, 600, sampler(np.random.default_rng(t)), lambda i: truth[i], target)
    returned = sel.chosen | sel.labelled_true
    return bool(returned[truth].mean() < target), (returned.mean() / truth.mean() if blind < 0.02 else None)


def coverage(trials: int, target: float, sampler) -> tuple[float, float]:
    """(share of scans whose returned set's recall is below ``target``, median share of the frames
    returned where the proxy is blind to under 2% of the true frames, over the share true)."""
    runs = in_parallel(scan, [(t, target, sampler) for t in range(trials)])
    excess = [e for _, e in runs if e is not None]
    return sum(m for m, _ in runs) / trials, float(np.median(excess)) if excess else float("nan")


def test_coverage_of_the_recall_guarantee_on_correlated_scans():
    """The returned set's recall is at least the target in at least 95% of scans within Monte
    Carlo error; the same selection fed a contiguous stretch of frames as its sample fails it."""
    trials = 200
    rate, excess = coverage(trials, 0.9, uniform)
    assert rate <= 0.05 + 2.5 * (0.05 * 0.95 / trials) ** 0.5, rate
    assert excess < 4, excess  # where the proxy sees the episodes, the set is far from everything (median 1/0.17)
    broken, _ = coverage(100, 0.9, Contiguous)  # 0.25 of 100 scans
    assert broken > 0.15 and broken > 3 * rate, (broken, rate)
