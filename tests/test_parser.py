"""The VQL grammar and parser: valid statements, exact syntax-error texts, script splitting."""

from __future__ import annotations

import pytest

from vql import ast
from vql.errors import ParseError
from vql.parser import ends_statement, is_owned, parse, parse_statement, split_statements
from vql.sqlgen import to_sql

ROUND_TRIPS = [
    ("SELECT frame, ts FROM cam WHERE contains('person')",
     "SELECT frame, ts FROM cam WHERE contains('person')"),
    ("select frame from cam where object_count('person') >= 7 and ts between 10 and 60",
     "SELECT frame FROM cam WHERE ((object_count('person') >= 7) AND (ts BETWEEN 10 AND 60))"),
    ("SELECT COUNT(*) FROM cam WHERE contains('car', region := (0.0, 0.5, 0.5, 1.0), min_score := 0.6)",
     "SELECT count(*) FROM cam WHERE contains('car', region := (0.0, 0.5, 0.5, 1.0), min_score := 0.6)"),
    ("SELECT c.frame, e.label FROM cam AS c JOIN events AS e ON c.ts BETWEEN e.start_s AND e.end_s "
     "WHERE contains('person') ORDER BY c.frame LIMIT 20",
     "SELECT c.frame, e.label FROM cam AS c INNER JOIN events AS e ON (c.ts BETWEEN e.start_s AND e.end_s) "
     "WHERE contains('person') ORDER BY c.frame LIMIT 20"),
    ("SELECT frame FROM cam WHERE NOT contains('bus') OR frame IN (1, 2) ORDER BY frame DESC",
     "SELECT frame FROM cam WHERE ((NOT contains('bus')) OR (frame IN (1, 2))) ORDER BY frame DESC"),
    ("SELECT CASE WHEN contains('car') THEN 'car' ELSE 'none' END AS what, -frame % 3 FROM cam",
     "SELECT CASE WHEN contains('car') THEN 'car' ELSE 'none' END AS what, ((-frame) % 3) FROM cam"),
    ("SELECT \"My Col\", 'it''s' FROM cam WHERE x != 1 AND y IS NOT NULL",
     "SELECT \"My Col\", 'it''s' FROM cam WHERE ((x <> 1) AND (y IS NOT NULL))"),
    ("SELECT count(DISTINCT frame), CAST(avg(ts) AS DECIMAL(8, 2)) FROM cam GROUP BY 1 HAVING count(*) > 2",
     "SELECT count(DISTINCT frame), CAST(avg(ts) AS DECIMAL(8, 2)) FROM cam GROUP BY 1 HAVING (count(*) > 2)"),
    # issue 17: GROUP BY ALL / ORDER BY ALL, comma joins, :: casts, $name parameters, subqueries
    ("SELECT frame % 2, count(*) FROM cam GROUP BY ALL ORDER BY ALL DESC",
     "SELECT (frame % 2), count(*) FROM cam GROUP BY ALL ORDER BY ALL DESC"),
    ("SELECT c.frame FROM cam c, events e, t WHERE c.frame = e.frame",
     "SELECT c.frame FROM cam AS c, events AS e, t WHERE (c.frame = e.frame)"),
    ("SELECT frame::INT, (ts + 1)::DECIMAL(8,2) FROM cam WHERE frame < $n AND ts > ? AND frame <> $2",
     "SELECT CAST(frame AS INT), CAST((ts + 1) AS DECIMAL(8, 2)) FROM cam WHERE (((frame < $n) AND (ts > ?)) AND "
     "(frame <> $2))"),
    ("SELECT frame FROM cam WHERE frame NOT IN (select f from t) AND EXISTS (select 1) AND ts < (select 2)",
     "SELECT frame FROM cam WHERE (((frame NOT IN (select f from t)) AND (EXISTS (select 1))) AND (ts < (select 2)))"),
    ("SELECT * FROM (select frame from cam) AS a JOIN (select 1 AS frame) b ON a.frame = b.frame",
     "SELECT * FROM (select frame from cam) AS a INNER JOIN (select 1 AS frame) AS b ON (a.frame = b.frame)"),
]


@pytest.mark.parametrize("text, sql", ROUND_TRIPS)
def test_select_round_trips(text, sql):
    assert to_sql(parse_statement(text)) == sql


def test_statements():
    assert parse_statement("CREATE VIDEO cam FROM 'videos/street.mp4'") == ast.CreateVideo("cam", "videos/street.mp4")
    assert parse_statement("LOAD VIDEO 'a.avi' INTO cam") == ast.CreateVideo("cam", "a.avi")
    assert parse_statement("show videos") == ast.ShowVideos()
    assert parse_statement("DESCRIBE cam") == ast.Describe("cam")
    assert parse_statement("DROP VIDEO IF EXISTS cam") == ast.DropVideo("cam", True)
    assert parse_statement("DROP RESULTS cam") == ast.DropResults("cam")
    assert parse_statement("SET min_score = 0.4") == ast.SetOption("min_score", ast.Literal(0.4))
    explain = parse_statement("EXPLAIN ANALYZE SELECT frame FROM cam")
    assert isinstance(explain, ast.Explain) and explain.analyze
    fn = parse_statement("CREATE FUNCTION yolo TYPE ONNX MODEL 'y.onnx' WITH (boxes := 'b', input_size := (640, 640))")
    assert (fn.name, fn.kind, fn.path) == ("yolo", "onnx", "y.onnx")
    assert [o.name for o in fn.options] == ["boxes", "input_size"]


def test_options_and_paper_spelling():
    select = parse_statement("SELECT frames FROM cam WHERE contains('person') WITH (exact, fpr := 0.02)")
    assert select.items[0].expr == ast.Column("frames")
    assert [(o.name, o.value.value) for o in select.options] == [("exact", True), ("fpr", 0.02)]


def test_soft_keywords_are_names():
    select = parse_statement("SELECT video, type, model FROM results_table")
    assert [i.expr.name for i in select.items] == ["video", "type", "model"]


def test_positions_are_recorded():
    select = parse_statement("SELECT frame\nFROM cam\nWHERE contains('bus')")
    assert select.where.pos == ast.Pos(3, 7)


SYNTAX_ERRORS = [
    ("SELECT FROM cam",
     "syntax error at line 1, column 8: unexpected 'FROM'; expected '*', DISTINCT, an expression\n"
     "  SELECT FROM cam\n"
     "         ^"),
    ("SELECT frame FROM cam WHERE",
     "syntax error at line 1, column 28: unexpected end of statement; expected an expression\n"
     "  SELECT frame FROM cam WHERE\n"
     "                             ^"),
    ("CREATE VIDEO cam FROM videos/a.mp4",
     "syntax error at line 1, column 23: unexpected 'videos'; expected a string\n"
     "  CREATE VIDEO cam FROM videos/a.mp4\n"
     "                        ^"),
    ("SELECT frame\nFROM cam\nWHERE contains('x') AND AND 1",
     "syntax error at line 3, column 25: unexpected 'AND'; expected an expression\n"
     "  WHERE contains('x') AND AND 1\n"
     "                          ^"),
    ("SELECT frame:: FROM cam",
     "syntax error at line 1, column 16: unexpected 'FROM'; expected a name\n"
     "  SELECT frame:: FROM cam\n"
     "                 ^"),
    ("SELECT frame FROM cam GROUP BY ALL, frame",
     "syntax error at line 1, column 35: unexpected ','; expected ')', HAVING, LIMIT, ORDER, WITH, the end of the statement\n"
     "  SELECT frame FROM cam GROUP BY ALL, frame\n"
     "                                    ^"),
    ("SELECT a FROM cam WHERE contains('x', region := )",
     "syntax error at line 1, column 49: unexpected ')'; expected an expression\n"
     "  SELECT a FROM cam WHERE contains('x', region := )\n"
     "                                                  ^"),
]


@pytest.mark.parametrize("text, message", SYNTAX_ERRORS)
def test_syntax_errors_are_exact(text, message):
    with pytest.raises(ParseError) as info:
        parse(text, frozenset({"cam"}))
    assert str(info.value) == message
    assert "__ANON" not in str(info.value)


def test_duckdb_statements_pass_through():
    assert parse("CREATE TABLE t (a INT)") == ast.Passthrough("CREATE TABLE t (a INT)")
    assert parse("INSERT INTO t VALUES (1)") == ast.Passthrough("INSERT INTO t VALUES (1)")
    assert parse("SET threads = 2") == ast.Passthrough("SET threads = 2")
    # a SELECT beyond vql's grammar runs on DuckDB when it names no video...
    fancy = "SELECT a::INT FROM t QUALIFY row_number() OVER () = 1"
    assert parse(fancy, frozenset({"cam"})) == ast.Passthrough(fancy)
    # ...but a syntax error in a query over a video is ours to report
    with pytest.raises(ParseError):
        parse("SELECT frame FROM cam QUALIFY frame > 1", frozenset({"cam"}))
    assert is_owned("  -- comment\n select 1") and not is_owned("copy t to 'x.csv'")


def test_split_statements():
    assert split_statements("SELECT ';' ; -- a; comment\nSHOW VIDEOS;;  ") == ["SELECT ';'", "-- a; comment\nSHOW VIDEOS"]
    assert split_statements("/* ; */ select 1") == ["/* ; */ select 1"]
    assert ends_statement("select 1; -- done") and not ends_statement("select 1 -- ;")
