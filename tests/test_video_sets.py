"""Video sets: ``CREATE VIDEO cams FROM 'footage/*.avi'`` registers every matching file as a member
video; a query over the set is the union of the per-video queries, with a ``video`` column."""

from __future__ import annotations

import json

import duckdb
import pytest
from patches import Patches, clip

import vql
from vql.errors import BindError, VideoError

MARKED = {"gate-1": range(5, 15), "gate 2": range(0, 3), "yard": range(20, 40)}


@pytest.fixture
def cams(tmp_path):
    folder = tmp_path / "footage"
    folder.mkdir()
    for name, marked in MARKED.items():
        clip(folder / f"{name}.avi", 48, marked)
    (folder / "notes.txt").write_text("not a video, not matched")
    con = vql.connect(str(tmp_path / "v.duckdb"), progress=False)
    con._models["centernet"] = Patches()  # the stand-in reference
    con.sql(f"CREATE VIDEO cams FROM '{folder}/*.avi'")
    yield con, folder
    con.close()


def test_a_set_is_its_member_videos_with_a_video_column(cams):
    con, _ = cams
    members = ["cams_gate_1", "cams_gate_2", "cams_yard"]
    shown = con.sql("SHOW VIDEOS").fetchall()
    assert [r[0] for r in shown] == ["cams"] + members
    assert shown[0][1] == 3 * 48 and "video set of 3" in shown[0][7]
    assert [r[0] for r in con.sql("DESCRIBE cams").fetchall()] == ["video", "frame", "ts"]
    for query in ("SELECT video, frame FROM cams WHERE contains('person') ORDER BY video, frame WITH (exact)",
                  "SELECT video, frame FROM cams WHERE contains('person') ORDER BY video, frame"):
        got = con.sql(query).fetchall()
        single = [(m, f) for m in members for (f,) in
                  con.sql(f"SELECT frame FROM {m} WHERE contains('person') ORDER BY frame WITH (exact)").fetchall()]
        assert got == single
    assert {m: n for m, n in con.sql("SELECT video, count(*) FROM cams WHERE object_count('person') >= 1 "
                                     "GROUP BY video").fetchall()} == {"cams_gate_1": 10, "cams_gate_2": 3, "cams_yard": 20}
    # results are kept per member video, and the query log names them
    stored = con.sql("SELECT DISTINCT video FROM vql_frame_results ORDER BY video").fetchall()
    assert [r[0] for r in stored] == members
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN SELECT count(*) FROM cams WHERE contains('person') "
                                           "WITH (fpr := 0.05, fnr := 0.05)").fetchall())
    assert plan.count("EvaluatePredicates cams") == 3 and "union bound" in plan


def test_a_set_joins_tables_by_video_name(cams):
    con, _ = cams
    con.sql("CREATE TABLE cameras AS SELECT * FROM (VALUES ('cams_gate_1', 'north'), ('cams_gate_2', 'north'), "
            "('cams_yard', 'south')) t(name, place)")
    rows = con.sql("SELECT m.place, count(*) AS n FROM cams c JOIN cameras m ON c.video = m.name "
                   "WHERE contains('person') GROUP BY m.place ORDER BY m.place WITH (exact)").fetchall()
    assert rows == [("north", 13), ("south", 20)]


def test_sets_persist_and_are_dropped_whole(cams, tmp_path):
    con, folder = cams
    con.close()
    with vql.connect(str(tmp_path / "v.duckdb"), progress=False) as again:
        assert again.store.video_sets() == {"cams": ("cams_gate_2", "cams_gate_1", "cams_yard")}  # in path order
        with pytest.raises(BindError, match="belongs to the video set 'cams'"):
            again.sql("DROP VIDEO cams_yard")
        with pytest.raises(BindError, match="already exists"):
            again.sql(f"CREATE VIDEO cams FROM '{folder}/*.avi'")
        clip(folder / "zoo.avi", 8, ())
        assert "4 videos" in again.sql(f"CREATE OR REPLACE VIDEO cams FROM '{folder}/*.avi'").fetchall()[0][0]
        assert "its 4 videos" in again.sql("DROP VIDEO cams").fetchall()[0][0]
        assert again.sql("SHOW VIDEOS").fetchall() == [] and again.store.video_sets() == {}


def test_bad_sets_are_clear_errors_and_register_nothing(cams, tmp_path):
    con, folder = cams
    with pytest.raises(VideoError, match="no video file matches"):
        con.sql(f"CREATE VIDEO other FROM '{tmp_path}/nowhere/*.mp4'")
    (folder / "broken.avi").write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="video set other:.*broken.avi"):
        con.sql(f"CREATE VIDEO other FROM '{folder}/*.avi'")
    assert con.store.video_set("other") is None and len(con.store.videos()) == 3
    with pytest.raises(BindError, match="no column 'place'"):
        con.sql("SELECT place FROM cams")
    with pytest.raises(BindError, match="over a video set is not supported yet"):
        con.sql("SELECT count(*) FROM cams WHERE contains('person') WITH (error := 0.1)")


def test_a_schema_3_file_gains_video_sets(tmp_path):
    path = str(tmp_path / "old.duckdb")
    vql.connect(path).close()
    raw = duckdb.connect(path)
    raw.execute("DROP TABLE vql_video_sets")
    raw.execute("UPDATE vql_meta SET value = '3' WHERE key = 'schema_version'")
    raw.close()
    with vql.connect(path) as con:
        assert con.store.video_sets() == {}


def test_the_shell_lists_sets(cams):
    from vql.repl import schema

    con, folder = cams
    text = schema(con)
    assert text.startswith(f"CREATE VIDEO cams FROM '{folder}/*.avi';") and "cams_yard FROM" not in text
    assert schema(con, "cams_yard").startswith("CREATE VIDEO cams_yard FROM")


def test_each_member_reports_its_own_plan(cams):
    con, _ = cams
    r = con.sql("SELECT count(*) FROM cams WHERE contains('person') WITH (fpr := 0.05, fnr := 0.05, audit := 8)")
    assert r.fetchall() == [(33,)]
    members = ("cams_gate_2", "cams_gate_1", "cams_yard")
    assert sorted(r.metadata["cascades"]) == sorted(f"{m}:vql_a0" for m in members)
    assert sorted(r.metadata["operators"]) == sorted(f"{m}:vql_a0" for m in members)
    assert len(r.metadata["audit"]) == 3
    logged = json.loads(con.duckdb.execute("SELECT predicates FROM vql_queries ORDER BY query_id DESC LIMIT 1").fetchone()[0])
    assert sorted(row["video"] for row in logged) == sorted(members)


def test_names_that_look_like_patterns_and_names_taken(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    clip(folder / "a[1].avi", 8, ())
    clip(folder / "north.avi", 8, ())
    with vql.connect(None, progress=False) as con:
        con._models["centernet"] = Patches()
        assert con.sql(f"CREATE VIDEO one FROM '{folder}/a[1].avi'").fetchall()[0][0].startswith("video one:")
        con.sql(f"CREATE VIDEO cams_north FROM '{folder}/north.avi'")  # a video named like a member
        con.sql(f"CREATE VIDEO cams FROM '{folder}/n*.avi'")
        assert con.store.video_sets() == {"cams": ("cams_north_2",)}
        with pytest.raises(vql.ExecutionError, match="belongs to the video set"):
            con.store.drop_video("cams_north_2")



def test_a_where_on_video_scans_only_the_members_it_allows(cams):
    con, _ = cams
    model = con._models["centernet"]
    every = con.sql("SELECT video, frame FROM cams WHERE contains('person') ORDER BY video, frame WITH (exact)")
    every = every.fetchall()
    everyone = {"cams_gate_1", "cams_gate_2", "cams_yard"}
    for where, members in (("video = 'cams_yard'", {"cams_yard"}),
                           ("'cams_yard' <> video", everyone - {"cams_yard"}),
                           ("c.video IN ('cams_gate_2', 'elsewhere')", {"cams_gate_2"}),
                           ("video NOT IN ('cams_gate_2', 'cams_yard')", {"cams_gate_1"}),
                           ("video NOT IN ('cams_gate_2', NULL)", set()),
                           ("video = NULL", set()),
                           ("video = 'CAMS_YARD'", set()),  # DuckDB compares strings exactly
                           ("video = $1", {"cams_gate_1"}),
                           ("(video = 'cams_yard' OR frame < 3)", everyone)):
        for table in ("vql_labels", "vql_labelled_frames"):
            con.store.con.execute(f"DELETE FROM {table}")
        model.calls = 0
        query = f"SELECT video, frame FROM cams c WHERE contains('person') AND {where} ORDER BY video, frame"
        for options in (" WITH (exact)", ""):
            got = con.sql(query + options, ["cams_gate_1"] if "$1" in where else None).fetchall()
            assert model.calls == 48 * len(members), where  # the others were not scanned
            if "frame" not in where:  # the full query's answer, filtered: nothing lost in the members kept
                assert got == [r for r in every if r[0] in members], where
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN SELECT frame FROM cams WHERE video = 'cams_yard' "
                                           "AND contains('person') WITH (fpr := 0.05, fnr := 0.05)").fetchall())
    assert plan.count("(0 of 48") == 2 and plan.count("(48 of 48") == 1, plan
    # the set's union bound counts the members scanned; within a member, `video` is a constant
    assert "(2 with no frame to scan)" in plan and "at least 1 - 1 x" in plan
    assert "certified for: WHERE contains('person'" in plan
    # a parameter is matched by name as DuckDB does (ignoring case); one not known prunes nothing
    model.calls = 0
    assert con.sql("SELECT count(*) FROM cams WHERE video = $V AND frame >= 0", {"v": "cams_yard"}).fetchall() == [(48,)]
    plan = "\n".join(r[0] for r in con.sql("EXPLAIN SELECT frame FROM cams WHERE video = $1 "
                                           "AND contains('person')").fetchall())
    assert "no frame to scan" not in plan and plan.count("(48 of 48") == 3
    # within a member `video` keeps the column's type: `video = 1 OR TRUE` is TRUE, not a cast error
    assert con.sql("SELECT count(*) FROM cams WHERE contains('person') AND (video = 1 OR TRUE) "
                   "WITH (audit := 10)").fetchall() == [(33,)]
    # under another collation DuckDB, not Python, compares the names
    con.sql("SET default_collation = 'nocase'")
    assert con.sql("SELECT count(*) FROM cams WHERE video = 'CAMS_YARD'").fetchall() == [(48,)]
