"""Binding: names and arguments checked with clear messages, frame ranges, EXPLAIN golden text."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import vql
from vql.binder import frame_bounds
from vql.cli import SAMPLE_VIDEO
from vql.engine.video import VideoInfo
from vql.errors import BindError, VideoError
from vql.parser import parse_statement

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture()
def con():
    c = vql.connect(None, progress=False)
    c.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    c.sql("CREATE TABLE events AS SELECT 'a' AS label, 1.0 AS start_s, 2.0 AS end_s")
    yield c
    c.close()


@pytest.mark.parametrize(
    "query, message",
    [
        ("SELECT nope FROM cam", "video 'cam' has no column 'nope' (line 1, column 8); its columns are frame, ts"),
        ("SELECT frame FROM cam WHERE contains('persn')", "model 'centernet' has no class 'persn'; did you mean 'person'?"),
        ("SELECT frame FROM cam WHERE contains(person)", "contains(): the class must be a string literal, e.g. contains('person'); got person"),
        ("SELECT frame FROM cam WHERE contains('person', 'car')", "contains() takes one class name"),
        ("SELECT frame FROM cam WHERE object_count('car', size := 3) > 1", "object_count(): unknown option 'size'; options are min_score, region, model"),
        ("SELECT frame FROM cam WHERE contains('car', min_score := 1.5)", "contains(): min_score must be between 0.2 and 1, got 1.5"),
        ("SELECT frame FROM cam WHERE contains('car', region := (0.5, 0, 0.2, 1))", "contains(): region must satisfy 0 <= x0 < x1 <= 1"),
        ("SELECT frame FROM cam WHERE contains('car', region := 3)", "contains(): region must be (x0, y0, x1, y1)"),
        ("SELECT frame FROM cam WHERE contains('car', model := 'yolo')", "unknown model 'yolo'; registered models: centernet"),
        ("SELECT frame FROM cam WITH (fast)", "unknown query option 'fast'; options are exact, fpr, fnr"),
        ("SELECT frame FROM cam WITH (fpr := 2)", "option fpr must be in [0, 1), got 2"),
        ("SELECT frame FROM cam WHERE no_such_fn(frame)", "no_such_fn"),
        ("SELECT * FROM missing_table", "missing_table"),
    ],
)
def test_bind_errors(con, query, message):
    with pytest.raises(BindError) as info:
        con.sql(query)
    assert message in str(info.value)


def test_video_errors_leave_the_catalog_untouched(con, tmp_path):
    with pytest.raises(VideoError, match="video file not found"):
        con.sql(f"CREATE VIDEO v FROM '{tmp_path / 'none.mp4'}'")
    (tmp_path / "junk.avi").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(VideoError, match="cannot open video|no frame could be decoded"):
        con.sql(f"CREATE VIDEO v FROM '{tmp_path / 'junk.avi'}'")
    with pytest.raises(BindError, match="already exists"):
        con.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    with pytest.raises(BindError, match="a table named 'events' already exists"):
        con.sql(f"CREATE VIDEO events FROM '{SAMPLE_VIDEO}'")
    assert con.sql("SHOW VIDEOS").fetchall()[0][0] == "cam" and len(con.sql("SHOW VIDEOS")) == 1


def test_frame_bounds_from_where():
    info = VideoInfo("x", 10.0, 1000, 64, 48, "fp")

    def bounds(where):
        return frame_bounds(parse_statement(f"SELECT frame FROM cam WHERE {where}").where, "cam", info, True)

    assert bounds("ts BETWEEN 10 AND 60") == (100, 600)
    assert bounds("frame < 100 AND contains('x')") == (0, 99)
    assert bounds("frame > 5 AND frame <= 7") == (6, 7)
    assert bounds("ts >= 2.55") == (26, 999)
    assert bounds("100 > frame") == (0, 99)
    assert bounds("ts < 1 OR frame > 900") == (0, 999)  # not a conjunct: no bound
    assert bounds("ts BETWEEN 200 AND 300") == (1000, 999)  # empty: first clamped to the end
    assert bounds("frame > 99999999999999999999999999") == (1000, 999)  # no int overflow in range()
    assert bounds("ts < 1e309") == (0, 999)  # infinity narrows nothing
    assert bounds("frame BETWEEN -1e400 AND 5") == (0, 999)  # nor does a BETWEEN with an infinite end
    assert bounds("frame IN (40, 2, 7) AND frame < 30") == (2, 29)  # from the least to the greatest
    assert bounds("ts IN (0.3, 2.9)") == (3, 29)
    assert bounds("frame IN (2.5)") == (3, 2)  # no frame is 2.5: empty
    assert bounds("ts IN (1e308, 0.2)") == bounds("ts < 1e308") == bounds("ts BETWEEN 0 AND 1e308") == (0, 999)
    assert bounds("frame IN (2, 1e309)") == bounds("frame NOT IN (2, 3)") == bounds("frame IN (2, x)") == (0, 999)


def mask_measured(text: str) -> str:
    """Measured costs vary run to run: golden files keep their place, not their value."""
    text = re.sub(r"\d+\.\d+(?= ms/frame)", "#", text)
    text = re.sub(r"\(\d+\.\dx\)", "(#x)", text)
    return re.sub(r"(specialized|reference) \d+\.\d+", r"\1 #", text)


def golden(name: str, text: str) -> None:
    text = mask_measured(text)
    path = GOLDEN / name
    if os.environ.get("VQL_UPDATE_GOLDEN") == "1":  # pytest --update-golden (tests/conftest.py)
        path.write_text(text + "\n")
    assert path.exists(), f"no golden file {path}: run pytest --update-golden once and review it"
    assert text + "\n" == path.read_text(), f"EXPLAIN output changed; compare with {path}"


def test_explain_golden(con):
    plan = con.sql(
        "EXPLAIN SELECT frames, ts, object_count('person') AS n FROM cam WHERE object_count('person') >= 3 "
        "AND ts BETWEEN 2 AND 4 AND contains('person', region := (0, 0.5, 1, 1), min_score := 0.6) "
        "AND object_count('person') >= 3"
    )
    golden("explain_count_region.txt", "\n".join(r[0] for r in plan.fetchall()))


def test_explain_top_k_and_recall_golden(con):
    """A top-k search and a recall selection, as EXPLAIN states them (engine/topk.py, engine/recall.py)."""
    top = con.sql("EXPLAIN SELECT frame, object_count('person') AS n FROM cam WHERE ts >= 2 ORDER BY n DESC "
                  "LIMIT 5 WITH (miss := 0.01)")
    golden("explain_top_k.txt", "\n".join(r[0] for r in top.fetchall()))
    chosen = con.sql("EXPLAIN SELECT frame FROM cam WHERE contains('person') AND NOT contains('car') "
                     "WITH (recall := 0.95, budget := 500)")
    golden("explain_recall.txt", "\n".join(r[0] for r in chosen.fetchall()))


def test_explain_cascade_golden(con):
    """Boolean tests in WHERE are cascade atoms; on a 21-frame scan the planner rightly picks exact."""
    plan = con.sql(
        "EXPLAIN SELECT frame FROM cam WHERE (object_count('person') >= 3 OR NOT contains('car')) AND frame < 21 "
        "WITH (fpr := 0.02)"
    )
    golden("explain_cascade_short.txt", "\n".join(r[0] for r in plan.fetchall()))


def test_explain_join_golden(con):
    plan = con.sql(
        "EXPLAIN SELECT c.frame, e.label FROM cam AS c JOIN events AS e ON c.ts BETWEEN e.start_s AND e.end_s "
        "WHERE contains('person') ORDER BY c.frame LIMIT 20"
    )
    golden("explain_join.txt", "\n".join(r[0] for r in plan.fetchall()))
