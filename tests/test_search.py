"""LIMIT without ORDER BY over model tests: the proxy-ordered search (engine/search.py).

Most tests run the real search on small synthetic clips with a stand-in reference (a bright patch
in the top-left corner is a "person"), so that what the search labels can be counted exactly; one
runs the real CenterNet on vtest.
"""

from __future__ import annotations


import pytest
from patches import clip, logged, session

import vql
from vql.engine import search
from vql.errors import BindError


@pytest.fixture(scope="module")
def rare(tmp_path_factory) -> str:
    """1,200 frames; the patch in 12 of them (1%), in three episodes of four."""
    marked = [*range(150, 154), *range(600, 604), *range(1000, 1004)]
    return clip(tmp_path_factory.mktemp("search") / "rare.avi", 1200, marked)


def frames_of(result) -> list[int]:
    return sorted(r[0] for r in result.fetchall())


TRUE_RARE = {*range(150, 154), *range(600, 604), *range(1000, 1004)}


def test_the_proxy_finds_rare_frames_with_few_reference_calls(rare, monkeypatch):
    con, model = session(rare)
    result = con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 3")
    rows = frames_of(result)
    assert len(rows) == 3 and set(rows) <= TRUE_RARE  # every row true by the reference
    stats = result.metadata["search"]["vql_frames_cam"]
    assert stats["labelled"] == model.calls <= 40, stats  # uniform random order needs ~300 for 3 of 12
    # the same search in uniform random order (the proxy off): many more reference calls
    con2, model2 = session(rare)
    monkeypatch.setattr(search.Search, "polarity", lambda self: 0)
    assert set(frames_of(con2.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 3"))) <= TRUE_RARE
    assert model2.calls > 3 * model.calls


def test_a_misleading_proxy_cannot_starve_the_search(tmp_path):
    """600 frames that the proxy ranks first hold nothing; the true frames look like the scene.
    The random share finds them long before the proxy's 600 are spent."""
    path = clip(tmp_path / "misleading.avi", 1200, marked=range(900, 1200), blobs=range(0, 600))
    con, model = session(path)
    rows = frames_of(con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 5"))
    assert len(rows) == 5 and all(900 <= f < 1200 for f in rows)
    assert model.calls < 150, model.calls


def test_gap_spaces_the_rows_and_the_scan_is_exhausted_when_too_few_exist(rare):
    con, model = session(rare)
    rows = frames_of(con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 3 WITH (gap := 100)"))
    assert len(rows) == 3 and set(rows) <= TRUE_RARE
    assert all(b - a >= 100 for a, b in zip(rows, rows[1:]))
    # more rows asked than exist: every frame is judged, the answer is exact (every true frame)
    result = con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 50")
    assert frames_of(result) == sorted(TRUE_RARE)
    stats = result.metadata["search"]["vql_frames_cam"]
    assert stats["exhausted"] and model.calls == 1200
    # all labelled now: the next search is answered from the label cache alone
    again = con.sql("SELECT frame, ts FROM cam WHERE contains('person') AND frame >= 600 LIMIT 2")
    assert len(again.fetchall()) == 2 and again.metadata.get("frames_labelled", 0) == 0 and model.calls == 1200


def test_negated_and_offset_searches(rare):
    con, model = session(rare)
    rows = frames_of(con.sql("SELECT frame FROM cam WHERE NOT contains('person') LIMIT 4 OFFSET 2"))
    assert len(rows) == 4 and not set(rows) & TRUE_RARE and model.calls <= 32
    # the query log names the strategy; the stored values are the reference's, on labelled frames only
    assert logged(con)[0]["strategy"] == "limit-search"
    stored = con.duckdb.execute("SELECT frame, value FROM vql_frame_results ORDER BY frame").fetchall()
    assert len(stored) == model.calls and all(v == float(f in TRUE_RARE) for f, v in stored)


def test_the_proxy_direction_follows_the_tests(rare, monkeypatch):
    """Empty frames first for a test true on empty frames; no proxy for a test not monotone in
    its count; and EXPLAIN ANALYZE says what the search did."""
    seen = []
    real = search.Search.polarity
    monkeypatch.setattr(search.Search, "polarity", lambda self: seen.append(real(self)) or seen[-1])
    for where in ("contains('person')", "object_count('person') = 0", "NOT contains('person') AND frame < 900",
                  "object_count('person') = 1", "object_count('person') <> 0"):
        con, _ = session(rare)  # a fresh store each: nothing answered from the label cache
        con.sql(f"SELECT frame FROM cam WHERE {where} LIMIT 1")
    assert seen == [1, -1, -1, 0, 1]
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN ANALYZE SELECT frame FROM cam WHERE contains('person') "
                                           "LIMIT 2").fetchall())
    assert "-- LIMIT search: " in plan and "wanted" in plan


def test_binding_picks_the_search_only_for_limit_without_order(rare):
    con, _ = session(rare)

    def plan(q: str) -> str:
        return "\n".join(r[0] for r in con.sql("EXPLAIN " + q).fetchall())

    assert "LIMIT search" in plan("SELECT frame FROM cam WHERE contains('person') LIMIT 5")
    in_time = plan("SELECT frame FROM cam WHERE contains('person') ORDER BY frame LIMIT 5")
    assert "scan bounded by LIMIT" in in_time and "LIMIT search" not in in_time  # the first frames: exact
    assert "LIMIT search" not in plan("SELECT count(*) FROM cam WHERE contains('person') LIMIT 5")
    assert "LIMIT search" not in plan("SELECT frame FROM cam WHERE contains('person') ORDER BY ts DESC LIMIT 5")
    with pytest.raises(BindError, match="option gap spaces the rows of a LIMIT"):
        con.sql("SELECT frame FROM cam WHERE contains('person') WITH (gap := 10)")
    with pytest.raises(BindError, match="option gap must be a number of frames"):
        con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 2 WITH (gap := -3)")
    with pytest.raises(BindError, match="option audit judges a certified cascade"):
        con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 2 WITH (audit := 100)")
    with pytest.raises(BindError, match="options fpr and fnr are targets for a cascade"):
        con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 2 WITH (fnr := 0.05)")
    assert con.sql("SELECT frame FROM cam WHERE contains('person') LIMIT 0 OFFSET 3").metadata.get(
        "frames_labelled", 0) == 0


def test_limit_on_vtest_with_the_real_reference(vtest_path):
    """CenterNet on vtest: every row is a person frame by the reference run directly, and the search
    labels a few frames of the 200 it could have."""
    from vql.engine.video import read_frames
    from vql.udfs.tfjs_detector import centernet

    con = vql.connect(None, progress=False)
    con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
    result = con.sql("SELECT frame, ts FROM cam WHERE object_count('person') >= 3 AND frame < 200 LIMIT 4")
    rows = result.fetchall()
    assert len(rows) == 4 and all(f < 200 and ts == pytest.approx(f / 10) for f, ts in rows)
    assert result.metadata["frames_labelled"] <= 32
    model, person = centernet(), centernet().class_index("person")
    for _, batch in read_frames(vtest_path, [f for f, _ in rows]):
        assert all(d.count(person, 0.5) >= 3 for d in model.detect(batch))
