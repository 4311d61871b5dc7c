"""Issue 13, parts 5 and 6: no input gives a traceback, and names never get pasted into SQL.

One test (or one parametrized case) per root cause the outside fuzzing found; tests/test_fuzz.py
looks for new ones."""

from __future__ import annotations

import math
import re
import sys

import duckdb
import pytest

import vql
from vql import ast
from vql.binder import check_option
from vql.errors import BindError, ModelError, ParseError, VideoError, VqlError
from vql.parser import MAX_DEPTH, parse_statement, split_raw, split_statements


@pytest.fixture()
def con(tiny_clip):
    c = vql.connect()
    c.sql(f"CREATE VIDEO cam FROM '{tiny_clip}'")
    yield c
    c.close()


def frames(result) -> list[int]:
    return [row[0] for row in result.fetchall()]


def deep_stack(depth: int, fn):
    """Call ``fn`` from ``depth`` extra Python frames: the parser's depth limit must leave room
    for callers (pytest, a shell, a notebook) on top of every later recursive stage."""
    return fn() if depth == 0 else deep_stack(depth - 1, fn)


# --- 1. nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [
    "(" * 490 + "frame > 1" + ")" * 490,
    "NOT " * 490 + "frame > 1",
    "frame > " + "- " * 490 + "1",
    "frame > " + " + ".join(["1"] * 490),
    "frame IN (" * 300 + "1" + ")" * 300,
])
def test_deep_nesting_is_a_clear_parse_error(con, where):
    with pytest.raises(ParseError, match=rf"query nested too deeply: more than {MAX_DEPTH} levels .* \(at line 1, column \d+\)"):
        con.sql(f"SELECT frame FROM cam WHERE {where}")


@pytest.mark.parametrize("terms", [491, 1000])
def test_long_and_chains_work(con, terms):
    where = " AND ".join(["frame > 1"] * (terms - 1) + ["frame < 6"])
    assert frames(con.sql(f"SELECT frame FROM cam WHERE {where} ORDER BY frame")) == [2, 3, 4, 5]
    ors = " OR ".join([f"frame = {9 + i}" for i in range(terms - 1)] + ["frame = 3"])
    assert frames(con.sql(f"SELECT frame FROM cam WHERE {ors}")) == [3]


def test_short_and_chains_keep_their_shape():
    where = parse_statement("SELECT 1 WHERE a AND b AND c AND d").where
    assert where.left.left.left == ast.Column("a") and where.right == ast.Column("d")


def _deepest(make) -> str:
    """The deepest statement of a family the parser still accepts (binary search on nesting)."""
    lo, hi = 1, 1000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            parse_statement(make(mid))
            lo = mid
        except ParseError:
            hi = mid - 1
    assert lo < 1000, "no depth limit"
    return make(lo)


@pytest.mark.parametrize("make", [
    lambda n: "SELECT frame FROM cam WHERE " + "(" * n + "contains('person') OR frame = 2" + ")" * n,
    lambda n: "SELECT frame FROM cam WHERE " + "NOT " * n + "contains('person')",
    lambda n: "SELECT frame FROM cam WHERE frame = " + "- " * n + "-2 AND object_count('car') = 0",
    lambda n: "SELECT frame FROM cam WHERE frame = " + "abs(" * n + "2" + ")" * n,
    lambda n: "SELECT " + "CASE WHEN frame > 1 THEN " * n + "1" + " ELSE 0 END" * n + " AS x FROM cam",
    lambda n: "SELECT frame FROM cam WHERE " + "(frame + " * n + "0" + ")" * n + " = 2 AND contains('person')",
    lambda n: "SELECT frame FROM cam WHERE frame BETWEEN 0 AND " + "CAST(" * n + "2" + " AS INTEGER)" * n,
])
def test_every_stage_takes_the_deepest_accepted_query(con, make):
    text = _deepest(lambda n: "EXPLAIN ANALYZE " + make(n))[len("EXPLAIN ANALYZE "):]
    assert _deepest(make).count("(") - text.count("(") <= 2  # EXPLAIN costs a level or two, no more
    result = deep_stack(150, lambda: con.sql(text))
    assert isinstance(result, vql.Result)
    assert deep_stack(150, lambda: con.sql("EXPLAIN " + text)).table.num_rows > 0
    assert deep_stack(150, lambda: con.sql("EXPLAIN ANALYZE " + text)).table.num_rows > 0


# --- 2. line separators ------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\u2028", "\x1c", "\x1d", "\x1e", "\x85", "\u2029"])
def test_line_separators_lark_does_not_count(sep):
    with pytest.raises(ParseError) as e:
        vql.connect().sql(f"show{sep}videos")
    assert str(e.value) == f"syntax error at line 1, column 5: unexpected character {sep!r}\n  show?videos\n      ^"


def test_caret_on_a_later_line_after_a_separator():
    c = vql.connect()
    c.sql("CREATE TABLE cam(frame INT)")
    with pytest.raises(ParseError) as e:  # str.splitlines() would call "' AS s, frame" line 2
        c.sql("select '\u2028' AS s, frame\nfrom cam where @ and x")
    assert str(e.value).startswith("syntax error at line 2, column 16: unexpected character '@'\n  from cam where @ and x\n")


# --- 3. empty and short scans with a model predicate -------------------------------------------


@pytest.fixture(scope="module")
def vt(vtest_path):
    c = vql.connect()
    c.sql(f"CREATE VIDEO vt FROM '{vtest_path}'")
    yield c
    c.close()


@pytest.mark.parametrize("where", ["contains('person') AND ts > 100", "contains('person') AND frame BETWEEN 20 AND 10",
                                   "object_count('person') >= 1 AND frame < 0"])
def test_empty_scan_with_a_model_predicate(vt, where):
    result = vt.sql(f"SELECT frame FROM vt WHERE {where}")
    assert frames(result) == [] and result.metadata.get("frames_labelled", 0) == 0


@pytest.mark.parametrize("low, high", [(5, 5), (5, 6)])
def test_one_or_two_frame_scans(vt, low, high):
    got = frames(vt.sql(f"SELECT frame FROM vt WHERE contains('person') AND frame BETWEEN {low} AND {high} ORDER BY 1"))
    counts = vt.sql(f"SELECT frame, object_count('person') FROM vt WHERE frame BETWEEN {low} AND {high} ORDER BY 1")
    assert got == [f for f, n in counts.fetchall() if n >= 1] == list(range(low, high + 1))  # vtest: people in view


# --- 4. fpr / fnr of 0: the exact plan ---------------------------------------------------------


@pytest.mark.parametrize("option", ["fpr", "fnr"])
def test_zero_error_targets_run_the_exact_plan(vt, option):
    query = "SELECT frame FROM vt WHERE contains('person') AND frame BETWEEN 40 AND 43"
    exact = frames(vt.sql(query + " ORDER BY 1 WITH (exact)"))
    assert frames(vt.sql(query + f" ORDER BY 1 WITH ({option} := 0)")) == exact
    plan = "\n".join(r[0] for r in vt.sql(f"EXPLAIN SELECT frame FROM vt WHERE contains('person') WITH ({option} := 0)").fetchall())
    assert "the exact plan" in plan
    analyzed = "\n".join(r[0] for r in vt.sql(f"EXPLAIN ANALYZE {query} WITH ({option} := 0)").fetchall())
    assert "strategy" in analyzed or "exact" in analyzed


def test_set_zero_error_targets(vt):
    c = vql.connect()
    c.sql(f"CREATE VIDEO vt FROM '{vt.store.video('vt').path}'")
    assert c.sql("SET fnr = 0").fetchall() == [("fnr = 0",)]
    assert c.sql("SET fpr = 0").fetchall() == [("fpr = 0",)]
    assert frames(c.sql("SELECT frame FROM vt WHERE contains('person') AND frame BETWEEN 40 AND 41 ORDER BY 1")) == [40, 41]
    assert "exact plan" in "\n".join(r[0] for r in c.sql("EXPLAIN SELECT frame FROM vt WHERE contains('person')").fetchall())


@pytest.mark.parametrize("statement, message", [
    ("SET fpr = -0.5", "fpr must be in [0, 1), got -0.5"),
    ("SET fnr = 1", "fnr must be in [0, 1), got 1"),
    ("SET fpr = 1e999", "fpr must be in [0, 1), got inf"),
    ("SET fpr = 'low'", "fpr must be a number, got 'low'"),
    ("SET fnr = CAST('nan' AS DOUBLE)", "fnr must be a number, got CAST('nan' AS DOUBLE)"),
    ("SELECT frame FROM cam WHERE contains('person') WITH (fpr := -0.1)", "option fpr must be in [0, 1), got -0.1"),
    ("SELECT frame FROM cam WHERE contains('person') WITH (fnr := 2)", "option fnr must be in [0, 1), got 2"),
    ("SELECT frame FROM cam WHERE contains('person') WITH (fnr := 'x')", "option fnr must be a number, got 'x'"),
])
def test_bad_error_targets(con, statement, message):
    with pytest.raises(BindError) as e:
        con.sql(statement)
    assert str(e.value) == message


def test_nan_error_target():
    with pytest.raises(BindError, match=r"option fpr must be in \[0, 1\), got nan"):
        check_option("fpr", ast.Literal(math.nan), "option fpr")


# --- 5. numbers out of range -------------------------------------------------------------------


def test_out_of_range_bounds_work(con):
    assert frames(con.sql("SELECT frame FROM cam WHERE ts < 1e309 ORDER BY 1")) == list(range(8))
    assert frames(con.sql("SELECT frame FROM cam WHERE ts > -1e309 AND frame < 2 ORDER BY 1")) == [0, 1]
    assert frames(con.sql("SELECT frame FROM cam WHERE frame > 99999999999999999999999999")) == []
    assert frames(con.sql("SELECT frame FROM cam WHERE frame < " + "9" * 60 + " AND frame < 1")) == [0]
    assert frames(con.sql("SELECT frame FROM cam WHERE frame > " + "9" * 5000)) == []
    assert con.sql("SELECT 1e309 AS x").fetchall() == [(math.inf,)]


@pytest.mark.parametrize("statement, message", [
    ("SELECT frame FROM cam LIMIT 1e400", "LIMIT must be a number of rows from 0 to 9223372036854775807, got inf"),
    ("SELECT frame FROM cam LIMIT 99999999999999999999",
     "LIMIT must be a number of rows from 0 to 9223372036854775807, got 99999999999999999999"),
    ("SELECT frame FROM cam LIMIT 2 OFFSET -1", "OFFSET must be a number of rows from 0 to 9223372036854775807, got -1"),
    ("SELECT frame FROM cam WHERE contains('person', region := (0, 0, 99999999999999999999999, 1))",
     "contains(): region must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got (0, 0, 1e+23, 1)"),
    ("SELECT frame FROM cam WHERE contains('person', region := (0, 0, " + "9" * 400 + ", 1))",
     "contains(): region must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got (0, 0, inf, 1)"),
    ("SELECT frame FROM cam WHERE contains('person', min_score := 1e999)",
     "contains(): min_score must be between 0.2 and 1, got inf"),
])
def test_out_of_range_numbers_are_bind_errors(con, statement, message):
    with pytest.raises(BindError) as e:
        con.sql(statement)
    assert str(e.value) == message


# --- 6. paths the operating system cannot take -------------------------------------------------

BAD_PATHS = [
    ("/tmp/a\x00b.avi", "path contains a NUL byte (at character 7)"),
    ("\udc80.avi", "path is not valid text: a lone surrogate '\\udc80' at character 1"),
    ("a" * 300, "path has a name too long: 300 bytes, at most 255 per file or folder name"),
    ("/tmp/" + "b" * 256 + "/x.avi", "path has a name too long: 256 bytes, at most 255"),
    ("/x" * 2100, "path is too long: 4200 bytes, at most 4095"),
    ("", "path is empty"),
    ("~no_such_user_here/x.avi", "path '~no_such_user_here/x.avi': no home folder for '~no_such_user_here'"),
]


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_bad_video_paths(con, path, message):
    with pytest.raises(VideoError, match="^video file " + re.escape(message)):
        con.sql(f"CREATE VIDEO x FROM '{path}'")
    assert con.store.video("x") is None


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_bad_model_paths(con, path, message):
    with pytest.raises(ModelError, match="^model file " + re.escape(message)):
        con.sql(f"CREATE FUNCTION f TYPE onnx MODEL '{path}' WITH (labels := 'coco', boxes := 'b', scores := 's')")
    with pytest.raises(ModelError, match="^model file "):
        con.sql(f"CREATE FUNCTION g TYPE tfjs MODEL '{path}'")
    assert con.store.models() == {}


@pytest.mark.parametrize("statement", ['CREATE VIDEO "\udc80" FROM \'CLIP\'', "SELECT '\udc80'",
                                       'DESCRIBE "a\udc80"', "SELECT frame FROM cam WHERE contains('\udc80')"])
def test_lone_surrogates_outside_paths(con, tiny_clip, statement):  # found by tests/test_fuzz.py
    with pytest.raises(ParseError, match=r"^the statement is not valid text: a lone surrogate '\\udc80' at line 1, "
                                         r"column \d+ \(statements are UTF-8\)$"):
        con.sql(statement.replace("CLIP", str(tiny_clip)))


@pytest.mark.parametrize("statement, line, column", [
    ("\x00SELECT frame, ts FROM cam WHERE contains('person') AND ts > 0.2 ORDER BY frame LIMIT 3", 1, 1),
    ("\x00SELECT 1", 1, 1), ("CREATE TABLE t(a INT);\nINSERT INTO t VALUES (1)\x00, (2)", 1, 25)])
def test_a_nul_character_where_duckdb_reads_is_refused(con, statement, line, column):
    """DuckDB stops reading at a NUL: found by tests/test_fuzz.py, where DuckDB 1.5.6 returned no
    cursor for the first statement (an AttributeError escaped) and ran only part of the last."""
    with pytest.raises(ParseError, match=rf"^syntax error at line {line}, column {column}: a NUL character"):
        con.sql(statement)


def test_a_text_duckdb_finds_no_statement_in_is_an_error(con, monkeypatch):
    """DuckDB 1.5 returns no cursor for a text without a statement; vql says so."""
    class NoCursor:
        def execute(self, sql, params=None):
            return None

    monkeypatch.setattr(con.store, "con", NoCursor())
    with pytest.raises(ParseError, match="DuckDB found no statement to run in 'SELECT 1'"):
        con._duckdb("SELECT 1", None)


# --- 7. names never pasted into SQL ------------------------------------------------------------


def test_describe_injection(vt):
    vt.sql("SELECT frame FROM vt WHERE contains('person') AND frame BETWEEN 5 AND 5")
    before = vt.duckdb.execute("SELECT count(*) FROM vql_labels").fetchone()[0]
    assert before > 0
    with pytest.raises(BindError, match="vql_videos; DELETE FROM vql_labels"):
        vt.sql('DESCRIBE "vql_videos; DELETE FROM vql_labels"')
    assert vt.duckdb.execute("SELECT count(*) FROM vql_labels").fetchone()[0] == before


def test_describe_names_that_need_quotes(con):
    con.sql('CREATE TABLE "my table"(x INT); CREATE TABLE "Odd""Name"(y INT)')
    assert con.sql('DESCRIBE "my table"').fetchall()[0][:2] == ("x", "INTEGER")
    assert con.sql('DESCRIBE "Odd""Name"').fetchall()[0][:2] == ("y", "INTEGER")


def test_odd_aliases_reach_sql_quoted(con):
    got = con.sql('SELECT "a; DROP TABLE vql_labels --".frame FROM cam AS "a; DROP TABLE vql_labels --" '
                  "WHERE contains('person') OR frame = 1")
    assert frames(got) == [1]
    assert con.duckdb.execute("SELECT count(*) FROM vql_labels").fetchone() is not None


# --- 8. statement splitting agrees with DuckDB ---------------------------------------------------

SCRIPTS = [
    "SELECT $$a;b$$; SELECT 2",
    "SELECT $tag$ x ; $$ ; y $tag$ AS t; SELECT 'z'",
    "SELECT E'it\\'s; fine'; SELECT e'\\\\'; SELECT 3",
    "SELECT 'a\\'; SELECT 1",  # no E: the backslash is a character, the string ends at its quote
    "SELECT 1 /* a /* b ; */ c ; */; SELECT 2",
    "SELECT 1 AS a$$b; SELECT 2 -- x; y\n; SELECT \"q;\"\"\" FROM (SELECT 1 AS \"q;\"\"\")",
    "SELECT x'ff' = x'ff'; SELECT 'a;b' || $q$;$q$",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_split_agrees_with_duckdb(script):
    ours = [s for s in split_statements(script)]
    theirs = [s.query.strip().rstrip(";").strip() for s in duckdb.extract_statements(script)]
    assert ours == theirs
    whole = duckdb.connect().execute(script).fetchall()
    assert duckdb.connect().execute(ours[-1]).fetchall() == whole
    assert "".join(p + ";" for p in split_raw(script))[:-1] == script


# --- 9. the shell and the command line never show a traceback -----------------------------------


def test_shell_survives_errors_and_bugs(con, monkeypatch):
    from vql.repl import ShellState, run_input

    state = ShellState()
    assert run_input(con, "SELECT frame FROM cam WHERE " + "(" * 600 + "1" + ")" * 600 + ";", state).startswith(
        "Error: query nested too deeply")
    assert run_input(con, "show\u2028videos;", state).startswith("Error: syntax error at line 1, column 5")
    out = run_input(con, "SELECT 41 AS a; SELECT nope FROM cam; SELECT 43 AS c;", state)
    assert "41" in out and "Error: video 'cam' has no column 'nope'" in out and "43" not in out

    def bug(*_):
        raise KeyError("boom")

    monkeypatch.setattr(vql.Connection, "sql", bug)
    out = run_input(con, "SELECT 1;", state)
    assert out == "internal error: KeyError: 'boom' (a bug in vql; please report it with the statement)"
    assert run_input(con, ".videos", state).startswith("internal error: KeyError")
    assert not state.done


def test_cli_prints_one_line_for_a_bug(capsys, monkeypatch):
    from vql.cli import main

    assert main(["-c", "show\x85videos"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("Error: syntax error at line 1, column 5: unexpected character '\\x85'") and "Traceback" not in err

    def bug(*_):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(vql.Connection, "sql", bug)
    assert main(["-c", "SELECT 1"]) == 1
    out, err = capsys.readouterr()
    assert err == "internal error: RecursionError: maximum recursion depth exceeded (a bug in vql; please report it with the statement)\n"
    assert "Traceback" not in out + err


def test_every_error_is_a_vql_error():
    assert all(issubclass(e, VqlError) for e in (ParseError, BindError, VideoError, ModelError))
    assert sys.getrecursionlimit() >= 1000
