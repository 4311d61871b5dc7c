"""Issue 17, item 4: the SQL around videos. SELECTs that read no video run on DuckDB as written;
comma joins, subqueries, ``::`` casts, GROUP BY ALL / ORDER BY ALL and parameters work in queries
over videos (or fail naming the construct); DuckDB's errors about vql's SQL are in the user's
terms. Queries with model predicates stay on a few frames of the tiny clip."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

import vql
from vql import ast
from vql.binder import frame_local_where
from vql.errors import BindError, ParseError
from vql.parser import parse_statement
from vql.sqlgen import to_sql
from vql.surface import unknown_table, user_terms


@pytest.fixture()
def con(tiny_clip):
    c = vql.connect(progress=False)
    c.sql(f"CREATE VIDEO cam FROM '{tiny_clip}'")
    c.sql("CREATE TABLE events(frame INT, kind VARCHAR, price DECIMAL(10,2))")
    c.sql("INSERT INTO events VALUES (1, 'a', 1.50), (2, 'b', 2.25), (5, 'a', 3.00)")
    yield c
    c.close()


def rows(result) -> list[tuple]:
    return result.fetchall()


def explain(con, query: str, params=None) -> str:
    return "\n".join(r[0] for r in con.sql("EXPLAIN " + query, params).fetchall())


# --- 1. a SELECT that reads no video is DuckDB's, as written ----------------------------------------


def test_group_by_all_and_order_by_all_over_a_table(con):
    assert rows(con.sql("SELECT kind, count(*) FROM events GROUP BY ALL ORDER BY ALL")) == [("a", 2), ("b", 1)]


def test_decimals_stay_decimals(con):
    result = con.sql("SELECT price, 1.50 AS lit FROM events ORDER BY frame LIMIT 1")
    assert rows(result) == [(Decimal("1.50"), Decimal("1.50"))]
    assert result.table.schema.field("lit").type == pa.decimal128(3, 2)  # regenerated, 1.50 would be 1.5


def test_named_and_positional_parameters_over_a_table(con):
    assert rows(con.sql("SELECT kind FROM events WHERE price > $p ORDER BY ALL", {"p": 2})) == [("a",), ("b",)]
    assert rows(con.sql("SELECT frame FROM events WHERE kind = ? AND frame > ?", ["a", 1])) == [(5,)]


def test_query_options_on_a_table_are_refused(con):
    with pytest.raises(BindError, match=r"WITH \(fpr\): these options apply to queries over videos, and this query "
                                        r"reads none \(videos: cam\)"):
        con.sql("SELECT kind FROM events WITH (fpr := 0.1)")


def test_explain_of_a_table_query_is_duckdbs(con):
    assert "physical_plan" in [r[0] for r in con.sql("EXPLAIN SELECT kind FROM events").fetchall()]


# --- 2. GROUP BY ALL / ORDER BY ALL over a video ----------------------------------------------------


def test_group_by_all_over_a_video(con):
    query = "SELECT frame % 2 AS odd, count(*) AS n FROM cam WHERE frame < 4 GROUP BY ALL ORDER BY ALL"
    assert rows(con.sql(query)) == [(0, 2), (1, 2)]
    assert rows(con.sql(query + " DESC")) == [(1, 2), (0, 2)]


# --- 3. comma joins ----------------------------------------------------------------------------------


def test_comma_join(con):
    query = "SELECT c.frame, e.kind FROM cam c, events e WHERE c.frame = e.frame AND c.frame < 3 ORDER BY 1"
    assert rows(con.sql(query)) == [(1, "a"), (2, "b")]


def test_comma_join_keeps_duckdbs_precedence():
    # `a, b RIGHT JOIN c` is `a, (b RIGHT JOIN c)`: written back with a comma, never as a flat CROSS JOIN
    select = parse_statement("SELECT * FROM cam, events e RIGHT JOIN t ON e.frame = t.frame")
    assert [j.kind for j in select.joins] == ["COMMA", "RIGHT"]
    assert to_sql(select) == "SELECT * FROM cam, events AS e RIGHT JOIN t ON (e.frame = t.frame)"


def test_model_tests_under_a_comma_join_are_certified_each_on_its_own(con):
    text = explain(con, "SELECT c.frame FROM cam c, events e WHERE c.frame = e.frame AND contains('person')")
    assert "(each on its own: WHERE reads more than the frame)" in text


# --- 4. :: casts ---------------------------------------------------------------------------------


def test_double_colon_casts(con):
    result = con.sql("SELECT frame::INT AS f, -frame::DOUBLE AS g FROM cam WHERE frame < 3")
    assert rows(result) == [(0, -0.0), (1, -1.0), (2, -2.0)]
    assert result.table.schema.field("f").type == pa.int32()
    assert to_sql(parse_statement("SELECT -x::DECIMAL(8, 2) FROM t")) == "SELECT (-CAST(x AS DECIMAL(8, 2))) FROM t"


# --- 5. parameters -------------------------------------------------------------------------------


def test_parameters_in_a_video_query(con):
    assert rows(con.sql("SELECT frame FROM cam WHERE frame < $n", {"n": 3})) == [(0,), (1,), (2,)]
    assert rows(con.sql("SELECT frame FROM cam WHERE frame < ? AND frame > ?", [3, 0])) == [(1,), (2,)]
    assert rows(con.sql("SELECT frame FROM cam WHERE frame < $1", [2])) == [(0,), (1,)]


def test_parameters_bound_the_scan(con):
    assert "frames 0..1 (2 of 8" in explain(con, "SELECT frame FROM cam WHERE contains('person') AND frame < $n",
                                            {"n": 2})
    assert "frames 2..4 (3 of 8" in explain(con, "SELECT frame FROM cam WHERE contains('person') AND frame "
                                                 "BETWEEN ? AND ?", [2, 4])


def test_named_parameters_in_model_predicates(con):
    params = {"cls": "person", "n": 2, "score": 0.7, "f": 0.02}
    text = explain(con, "SELECT frame FROM cam WHERE contains($cls, min_score := $score) AND frame < $n "
                        "WITH (fpr := $f)", params)
    assert "contains('person', min_score := 0.7)" in text and "fpr = 0.02" in text
    # $cls and $score are vql's; DuckDB gets only $n (an unused parameter would be its error)
    params = {"cls": "person", "n": 2}
    assert rows(con.sql("SELECT frame FROM cam WHERE contains($cls) AND frame < $n", params)) == []


@pytest.mark.parametrize("query, params, message", [
    ("SELECT frame FROM cam WHERE contains(?) AND frame < 2", ["person"],
     r"parameter \? in contains\(\) \(line 1, column 38\): vql reads these before the query runs, so they take named "
     r"parameters given in a dict \(e.g. \$cls with params=\{'cls': 'person'\}\)$"),
    ("SELECT frame FROM cam WHERE object_count($1) > 1", ["person"], r"parameter \$1 in object_count\(\)"),
    ("SELECT frame FROM cam WHERE contains($cls)", {"c": "person"}, r"; no parameter 'cls' was given$"),
    ("SELECT frame FROM cam WHERE contains($cls)", {"cls": object()}, r"got object$"),
])
def test_parameters_vql_cannot_bind(con, query, params, message):
    with pytest.raises(BindError, match=message):
        con.sql(query, params)


# --- 6. subqueries -------------------------------------------------------------------------------


@pytest.mark.parametrize("where, frames", [
    ("frame IN (SELECT frame FROM events)", [1, 2, 5]),
    ("frame NOT IN (SELECT frame FROM events) AND frame < 4", [0, 3]),
    ("EXISTS (SELECT 1 FROM events e WHERE e.frame = cam.frame AND e.price > 2)", [2, 5]),
    ("frame >= (SELECT max(frame) FROM events)", [5, 6, 7]),
    ("frame IN (SELECT frame FROM events WHERE price > $p)", [2, 5]),
])
def test_subqueries_over_tables_in_a_video_query(con, where, frames):
    result = con.sql(f"SELECT frame FROM cam WHERE {where} ORDER BY frame", {"p": 2} if "$p" in where else None)
    assert [r[0] for r in rows(result)] == frames


def test_join_with_a_subquery(con):
    query = ("SELECT c.frame, e.n FROM cam c JOIN (SELECT frame, count(*) AS n FROM events GROUP BY frame) e "
             "ON c.frame = e.frame ORDER BY 1")
    assert rows(con.sql(query)) == [(1, 1), (2, 1), (5, 1)]


def test_a_video_query_in_from(con):
    assert rows(con.sql("SELECT * FROM (SELECT frame FROM cam WHERE frame < 2)")) == [(0,), (1,)]
    inner = "SELECT frame FROM cam WHERE frame > 2 AND contains('person') LIMIT 1 WITH (exact)"
    query = f"SELECT count(*) FROM ({inner}) t"
    assert "scan bounded by LIMIT" in explain(con, inner)
    assert "scan bounded by LIMIT" not in explain(con, query)  # the outer count would stop it after one row
    assert rows(con.sql(query)) == [(0,)]


def test_subqueries_keep_their_text():
    select = parse_statement("SELECT frame FROM cam WHERE frame IN (SELECT frame  FROM t WHERE p > 1.50)")
    assert isinstance(select.where, ast.InSubquery)
    assert select.where.subquery.sql == "(SELECT frame  FROM t WHERE p > 1.50)"
    assert to_sql(select) == "SELECT frame FROM cam WHERE (frame IN (SELECT frame  FROM t WHERE p > 1.50))"


def test_rewrites_do_not_reach_inside_subqueries():
    select = parse_statement("SELECT frame FROM cam WHERE EXISTS (SELECT kind FROM events)")
    seen = []
    ast.transform(select, lambda n: seen.append(n) or n)
    assert ast.Column("kind") not in seen and ast.Column("kind") not in list(ast.walk(select))


def test_a_subquery_makes_model_tests_certified_each_on_its_own(con):
    where = parse_statement("SELECT 1 FROM cam WHERE vql_a0 AND frame IN (SELECT frame FROM events)").where
    assert frame_local_where(where, "cam", {"vql_a0"}, True) is None
    text = explain(con, "SELECT frame FROM cam WHERE contains('person') AND frame IN (SELECT frame FROM events)")
    assert "(each on its own: WHERE reads more than the frame)" in text


@pytest.mark.parametrize("query, message", [
    ("SELECT frame FROM cam WHERE frame IN (SELECT frame FROM cam)",
     "a subquery that reads video 'cam' (line 1, column 38) is not supported; subqueries over tables work"),
    ("SELECT frame FROM cam c JOIN (SELECT frame FROM cam) d ON c.frame = d.frame",
     "a subquery in FROM that reads video 'cam' (line 1, column 30) is not supported"),
    ("SELECT frame FROM events WHERE frame IN (SELECT frame FROM cam)",
     "a subquery that reads video 'cam' (line 1, column 41) is not supported there: a query reads a video in its "
     "own FROM (SELECT ... FROM cam ...) or in one subquery of its FROM"),
    ("SELECT * FROM (SELECT frame FROM cam) a, (SELECT frame FROM cam) b",
     "2 subqueries in FROM read videos (line 1, column 42)"),
    ("SELECT * FROM (SELECT frame FROM cam) a WHERE frame IN (SELECT frame FROM cam)",
     "a subquery that reads video 'cam' (line 1, column 56) is not supported"),
    ("SELECT frame FROM cam WHERE EXISTS (SELECT 1 FROM events WHERE contains('person'))",
     "contains() inside a subquery (line 1, column 64) is not supported: model predicates go in the query that "
     "reads the video"),
    ("SELECT contains('person') FROM (SELECT frame FROM cam)",
     "contains() (line 1, column 8) is outside the subquery that reads the video"),
])
def test_subqueries_over_videos_are_refused_by_name(con, query, message):
    with pytest.raises(BindError) as info:
        con.sql(query)
    assert message in str(info.value)


def test_what_the_grammar_still_lacks_over_a_video(con):
    with pytest.raises(ParseError, match="syntax error"):
        con.sql("SELECT frame FROM cam QUALIFY frame > 1")


# --- 7. unknown videos ----------------------------------------------------------------------------


def test_unknown_video_suggests_names(con):
    with pytest.raises(BindError) as info:
        con.sql("SELECT frame FROM camera WHERE contains('person')")
    assert str(info.value) == "no video or table named 'camera'; did you mean cam? (videos: cam; tables: events)"
    with pytest.raises(BindError, match=r"^no video or table named 'evnts'; did you mean events\?"):
        con.sql("SELECT frame FROM cam WHERE frame < 2 AND frame IN (SELECT frame FROM evnts)")
    assert unknown_table("Catalog Error: Table with name zzz does not exist!", ["cam"], []) == \
        "no video or table named 'zzz' (videos: cam)"
    with pytest.raises(BindError, match=r"^no video or table named 'my cam'; did you mean cam\?"):
        con.sql('SELECT frame FROM cam c JOIN "my cam" ON true WHERE frame < 2')
    with pytest.raises(BindError, match=r"^no video or table named 'evnt'; did you mean events\?"):
        con.sql("DESCRIBE evnt")


# --- 8. DuckDB's errors about vql's SQL in the user's terms -----------------------------------------


def test_errors_on_generated_sql_quote_the_users_statement(con):
    query = "SELECT frame FROM cam WHERE contain('person') AND frame < 2"
    with pytest.raises(BindError) as info:
        con.sql(query)
    text = str(info.value)
    assert text.startswith("Catalog Error: Scalar Function with name contain does not exist!")
    assert "vql_" not in text and "EXPLAIN" not in text
    assert text.endswith(f"\n  {query}\n  {' ' * query.index('contain(')}^")


def test_errors_name_model_tests_not_their_columns(con):
    with pytest.raises(BindError) as info:
        con.sql("SELECT zzz FROM cam c JOIN events e ON c.frame = e.frame WHERE contains('person')")
    assert "vql_" not in str(info.value) and "zzz" in str(info.value)


def test_user_terms_replaces_generated_names():
    from vql.engine.video import VideoInfo
    from vql.plan import Atom, EvaluatePredicates, ModelPredicate, SqlQuery, VideoScan

    scan = VideoScan("cam", "c", VideoInfo("x", 10.0, 8, 96, 64, "fp"), 0, 7)
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
    plan = SqlQuery("...", (EvaluatePredicates(scan, (), (), "vql_frames_c", (atom,)),))
    message = ('Binder Error: cannot compare "c"."vql_a0" in vql_frames_c\n\nLINE 1: SELECT frame FROM vql_frames_c '
               'AS c WHERE c.vql_a0 = frame\n                                                 ^')
    assert user_terms(message, plan, "SELECT frame FROM cam c WHERE contains('person') = frame") == \
        "Binder Error: cannot compare contains('person', min_score := 0.5) in cam"


def test_drop_of_an_unknown_video_suggests_names(con):
    with pytest.raises(BindError, match=r"^no video named 'cma'; did you mean cam\? \(videos: cam\)$"):
        con.sql("DROP VIDEO cma")
    with pytest.raises(BindError, match=r"^no video named 'camm'; did you mean cam\?"):
        con.sql("DROP RESULTS camm")


def test_a_cte_naming_a_video_is_refused_by_name(con):
    with pytest.raises(ParseError, match=r"^a statement that starts with a common table expression \(WITH name AS"):
        con.sql("WITH t AS (SELECT frame FROM events) SELECT frame FROM cam WHERE frame IN (SELECT frame FROM t)")
    # a video's name in a string or a comment is no video: DuckDB runs these
    assert rows(con.sql("WITH t AS (SELECT 'cam' AS v) SELECT v FROM t -- cam")) == [("cam",)]
    assert rows(con.sql("SELECT 'cam' AS v, row_number() OVER () AS n QUALIFY n = 1")) == [("cam", 1)]
