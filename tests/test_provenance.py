"""The query log (``vql_queries``, schema 3): every query over a video leaves its text, times,
frames labelled and, per model test, the strategy and certified bounds; nothing in read-only
mode; a schema-2 file is migrated."""

from __future__ import annotations

import json

import duckdb
import pytest

import vql
from vql.engine.store import SCHEMA_VERSION, Store


@pytest.fixture(scope="module")
def logged(vtest_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "db.duckdb"
    with vql.connect(path, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        first = con.sql("SELECT frame FROM cam WHERE contains('person') AND frame < 6")
        second = con.sql("SELECT frame, object_count('person') AS n FROM cam WHERE frame BETWEEN 2 AND 7 WITH (exact)")
    return path, first, second


def test_every_query_over_a_video_is_logged_with_its_text_and_strategy(logged):
    path, first, second = logged
    con = duckdb.connect(str(path), read_only=True)  # plain duckdb reads it
    rows = con.execute("SELECT query_id, text, started <= finished, videos, result_rows, frames_labelled, "
                       "frames_cached, predicates FROM vql_queries ORDER BY query_id").fetchall()
    assert [r[0] for r in rows] == [first.metadata["query_id"], second.metadata["query_id"]]
    assert rows[0][1] == "SELECT frame FROM cam WHERE contains('person') AND frame < 6"
    assert rows[0][2:7] == (True, "cam", len(first), 6, 0)
    assert rows[1][5:7] == (2, 4)  # frames 6, 7 labelled now; 2..5 from the first query
    (test,) = json.loads(rows[0][7])
    assert test["predicate"] == "contains('person', min_score := 0.5)"
    assert test["strategy"] == "exact" and test["frames"] == [0, 5] and test["fpr_bound"] == 0.0
    (count,) = json.loads(rows[1][7])
    assert count["predicate"] == "object_count('person', min_score := 0.5)" and count["frames"] == [2, 7]
    joined = con.execute("SELECT DISTINCT query FROM vql_query_results WHERE query_id = ?",
                         [second.metadata["query_id"]]).fetchall()
    assert joined == [(second.metadata["text"],)]
    assert con.execute("SELECT count(*) FROM vql_query_results").fetchall() == [(12,)]
    con.close()


def test_read_only_logs_nothing(logged):
    path, _, _ = logged
    with vql.connect(path, read_only=True, progress=False) as ro:
        ro.sql("SELECT frame FROM cam WHERE contains('person') AND frame < 6")
        assert ro.sql("SELECT count(*) FROM vql_queries").fetchall() == [(2,)]


def test_a_schema_2_file_is_migrated_to_the_query_log(tmp_path, vtest_path):
    path = tmp_path / "v2.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))  # what vql with schema 2 wrote: no query log
    con.execute("DROP VIEW vql_query_results")
    con.execute("DROP TABLE vql_queries")
    con.execute("DROP TABLE vql_video_sets")  # schema 4's
    con.execute("UPDATE vql_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(vql.ExecutionError, match="schema 2 .*open it once read-write"):
        vql.connect(path, read_only=True)
    with vql.connect(path, progress=False) as new:
        assert new.sql("SELECT value FROM vql_meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
        new.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        r = new.sql("SELECT frame FROM cam WHERE contains('person') AND frame < 2")
        assert new.sql("SELECT query_id, text FROM vql_queries").fetchall() == [(r.metadata["query_id"], r.metadata["text"])]
