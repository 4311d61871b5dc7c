"""Seeing the answers: contact sheets, timelines, clips, HTML tables (vql/pictures.py, vql/clips.py)."""

from __future__ import annotations

import av
import pyarrow as pa
import pytest
from matplotlib.patches import Rectangle

import vql
from vql.api import Result
from vql.cli import main
from vql.clips import Segment, segments

QUERY = "SELECT frame, ts FROM cam WHERE contains('person') AND frame < 24 ORDER BY frame"


@pytest.fixture(scope="module")
def db(vtest_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "db.duckdb"
    with vql.connect(path, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        con.sql(f"CREATE VIDEO cam2 FROM '{vtest_path}'")
        con.sql("SELECT count(*) FROM cam WHERE frame < 24 AND contains('person')")  # labels frames 0..23
    return path


@pytest.fixture()
def con(db):
    with vql.connect(db, progress=False) as c:
        yield c


def test_the_contact_sheet_draws_spread_matches_with_the_references_boxes(con, tmp_path):
    result = con.sql(QUERY)
    frames = [r[0] for r in result.fetchall()]
    fig = result.show(tmp_path / "sheet.png", n=5)
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.axes
    assert len(axes) == 5
    picked = [int(ax.get_xlabel().split()[1]) for ax in axes]
    assert picked[0] == frames[0] and picked[-1] == frames[-1] and picked == sorted(set(picked))
    assert axes[0].get_xlabel() == f"frame {frames[0]} · ts {frames[0] / 10:.1f} s"
    for ax, frame in zip(axes, picked):
        expected = con.duckdb.execute("SELECT count(*) FROM vql_detections WHERE video = 'cam' AND frame = ? AND "
                                      "class = 'person' AND score >= 0.5", [frame]).fetchone()[0]
        assert sum(isinstance(p, Rectangle) for p in ax.patches) == expected > 0
    assert f"5 of {len(frames)} matching frames of cam" in fig._suptitle.get_text()


def test_the_sheet_uses_the_queries_min_score_and_draws_its_region(con):
    result = con.sql("SELECT frame FROM cam WHERE frame = 3 AND contains('person', min_score := 0.3, "
                     "region := (0, 0.4, 1, 1))")
    (ax,) = result.show().axes
    counted = con.duckdb.execute("SELECT count(*) FROM vql_detections WHERE video = 'cam' AND frame = 3 AND "
                                 "class = 'person' AND score >= 0.3 AND (y1 + y2) / 2 / 576 >= 0.4").fetchone()[0]
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == 1 and len(ax.patches) == counted + 1
    assert counted < con.duckdb.execute("SELECT count(*) FROM vql_detections WHERE video = 'cam' AND frame = 3 AND "
                                        "class = 'person' AND score >= 0.3").fetchone()[0]  # one is above the region


def test_the_timeline_has_a_lane_per_test_from_the_stored_values(con, tmp_path):
    result = con.sql("SELECT frame FROM cam WHERE frame < 24 AND object_count('person') >= 4")
    fig = result.timeline(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0
    stored = con.duckdb.execute("SELECT count(*) FILTER (WHERE value > 0), count(*) FROM vql_results WHERE query_id = ?",
                                [result.metadata["query_id"]]).fetchone()
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [f"object_count('person', min_score := 0.5) >= 4  —  {stored[0]} of {stored[1]} frames",
                      f"result: {len(result)} frames"]
    assert fig.axes[-1].get_xlim() == (0.0, 2.4)
    counts = con.sql("SELECT frame, object_count('person') AS n FROM cam WHERE frame < 24").timeline()
    assert counts.axes[0].get_title(loc="left").startswith("object_count('person', min_score := 0.5)  —  max ")


def test_read_only_timelines_fall_back_to_the_returned_frames(db):
    with vql.connect(db, read_only=True, progress=False) as ro:
        fig = ro.sql(QUERY).timeline()
    assert len(fig.axes) == 1 and "not stored" in fig.axes[0].get_title(loc="left")


def test_what_cannot_be_drawn_is_a_clear_error(con, tmp_path):
    with pytest.raises(vql.VqlError, match="no frame column"):
        con.sql("SELECT count(*) AS n FROM cam WHERE frame < 4").show()
    with pytest.raises(vql.VqlError, match="does not come from video 'other'"):
        con.sql(QUERY).show(video="other")
    with pytest.raises(vql.VqlError, match="comes from no video"):
        con.sql("SELECT 1 AS frame").show()
    with pytest.raises(vql.VqlError, match="several videos"):
        con.sql("SELECT a.frame FROM cam AS a JOIN cam2 AS b ON a.frame = b.frame WHERE a.frame < 2").show()
    with pytest.raises(vql.VqlError, match="nothing to draw"):
        con.sql("SELECT frame FROM cam WHERE frame < 0").show()
    with pytest.raises(vql.VqlError, match="written as"):
        con.sql(QUERY).show(tmp_path / "sheet.txt")
    with pytest.raises(vql.VqlError, match="no connection"):
        Result(pa.table({"frame": [1]})).show()
    joined = con.sql("SELECT b.frame FROM cam AS a JOIN cam2 AS b ON a.frame = b.frame WHERE a.frame < 2")
    assert len(joined.show(video="cam2").axes) == 2


def test_html_shows_the_first_50_rows_escaped():
    text = Result(pa.table({"<b>": list(range(60))}))._repr_html_()
    assert "<th>&lt;b&gt;</th>" in text and text.count("<tr>") == 51 and "60 rows × 1 columns, first 50 shown" in text


def test_segments_merge_close_runs_and_keep_margins_inside_the_video():
    assert segments([0, 1, 2, 40, 41, 99], fps=10, total=100, gap=2, margin=1) == [
        Segment(0, 12, 3), Segment(30, 51, 2), Segment(89, 99, 1)]
    assert segments([0, 25, 50], fps=10, total=100, gap=2.5, margin=0) == [Segment(0, 50, 3)]
    assert segments([10, 30], fps=10, total=100, gap=1, margin=1) == [Segment(0, 40, 2)]  # margins overlap
    assert segments([], fps=10, total=100) == []
    with pytest.raises(vql.VqlError, match="at least 0"):
        segments([1], fps=10, total=100, gap=-1)


def test_the_cli_draws_and_cuts(db, tmp_path, capsys):
    sheet, line, clip = tmp_path / "m.png", tmp_path / "t.png", tmp_path / "m.mp4"
    assert main(["show", str(db), QUERY, "--out", str(sheet), "-n", "4", "--no-progress"]) == 0
    assert main(["timeline", str(db), QUERY, "--out", str(line), "--no-progress"]) == 0
    assert sheet.stat().st_size > 0 and line.stat().st_size > 0
    capsys.readouterr()
    query = "SELECT frame FROM cam WHERE frame IN (2, 3, 4, 20) AND contains('person')"
    assert main(["clip", str(db), query, "--out", str(clip), "--gap", "1", "--margin", "0.2", "--format", "csv",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == ["segment,from_s,to_s,first_frame,last_frame,frames,matching_frames",
                                    "1,0.0,0.7,0,6,7,3", "2,1.8,2.3,18,22,5,1"]
    with av.open(str(clip)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    assert main(["clip", str(db), query, "--out", str(tmp_path / "m.txt")]) == 1
    assert main(["show", str(db), "SELECT count(*) FROM cam WHERE frame < 3", "--out", str(sheet)]) == 1
    assert "no frame column" in capsys.readouterr().err
