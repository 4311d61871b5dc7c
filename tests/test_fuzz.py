"""Issue 13, part 7: a property-based fuzzer. Whatever the text, ``Connection.sql`` returns a
Result or raises a :class:`~vql.errors.VqlError`; nothing else escapes.

Two generators: (a) statements built from vql's grammar (SELECT over a video with model
predicates and their options, WITH options, EXPLAIN, SET, SHOW VIDEOS, DESCRIBE, DROP, CREATE
VIDEO / FUNCTION with odd paths, deep nesting), and (b) mutations of real statements (characters
inserted, deleted and replaced: unicode line separators, NUL, quotes, semicolons, huge numbers).
They run against a tiny synthetic clip registered as ``cam``, so model predicates run the real
CenterNet; its labels are cached after the first run. Deterministic (``derandomize``)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vql
from vql.errors import VqlError

COUNTS = {"statements": 0, "results": 0, "vql_errors": 0}
KINDS: Counter = Counter()  # the VqlErrors seen, by class and first words (printed at the end with -s)

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))


class Session:
    """One connection shared by the examples (the reference loads once, labels stay cached), with
    ``cam`` put back when a statement dropped it."""

    def __init__(self, clip):
        self.clip = clip
        self.con = vql.connect(progress=False)
        self.con.sql(f"CREATE VIDEO cam FROM '{clip}'")
        self.con.sql("CREATE TABLE events(frame BIGINT, label VARCHAR); INSERT INTO events VALUES (1, 'a'), (3, 'b')")

    def run(self, text: str) -> None:
        COUNTS["statements"] += 1
        try:
            result = self.con.sql(text)
        except VqlError as e:
            COUNTS["vql_errors"] += 1
            KINDS[f"{type(e).__name__}: {' '.join(str(e).split()[:4])}"] += 1
        else:
            assert isinstance(result, vql.Result)
            COUNTS["results"] += 1
        if "cam" not in self.con.store.videos():
            self.con.sql(f"CREATE VIDEO cam FROM '{self.clip}'")


@pytest.fixture(scope="module")
def session(tiny_clip, tmp_path_factory):
    s = Session(tiny_clip)
    s.tmp = tmp_path_factory.mktemp("fuzz")
    yield s
    s.con.close()
    print(f"\nfuzz: {COUNTS['statements']} statements, {COUNTS['results']} results, "
          f"{COUNTS['vql_errors']} VqlErrors, 0 other exceptions")
    for kind, n in KINDS.most_common(25):
        print(f"  {n:5d}  {kind}")


# --- (a) grammar-directed ----------------------------------------------------------------------

ODD = ["\u2028", "\u2029", "\x85", "\x1c", "\x00", "\udc80", "é", "'", '"', ";", "$", "\\", "\t", "\n"]

numbers = st.one_of(
    st.integers(-3, 12).map(str),
    st.sampled_from(["0", "0.5", ".5", "1e309", "1e-400", "99999999999999999999", "9" * 60, "1e400", "2.5e3",
                     "0.0001", "7", "1.", "00", "9" * 5000]),
)
strings = st.one_of(
    st.sampled_from(["'person'", "'car'", "'bus'", "'nope'", "''", "'it''s'", "'a;b'", "'%a%'"]),
    st.text(st.sampled_from(list("ab ") + ODD), max_size=6).map(lambda t: "'" + t.replace("'", "''") + "'"),
)
names = st.one_of(st.sampled_from(["cam", "CAM", "events", "nope", "frame", "ts", "x", "c", "my table"]),
                  st.text(st.sampled_from(list("ab_") + ODD), min_size=1, max_size=5))


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


name_refs = st.one_of(st.sampled_from(["cam", "events", "nope", "x", "Cam"]), names.map(quoted))
columns = st.sampled_from(["frame"] * 4 + ["ts"] * 3 + ["cam.frame", "c.ts", "frames", "nope", "cam.nope", "label",
                                                         "events.frame"])
classes = st.sampled_from(["'person'"] * 4 + ["'car'", "'bus'", "'nope'", "1", "frame", "'PERSON'"])
option_values = st.one_of(numbers, st.sampled_from(["-0.1", "(0, 0, 1, 1)", "(0, 0.5, 0.5, 1)", "(1, 0, 0, 1)",
                                                     "(0, 0, 99999999999999999999999, 1)", "'centernet'",
                                                     "centernet", "'nope'", "(0, 0, 1)", "NULL"]))
predicate_options = st.lists(st.tuples(st.sampled_from(["min_score", "region", "model", "nope"]), option_values),
                             max_size=2).map(lambda opts: "".join(f", {k} := {v}" for k, v in opts))
model_calls = st.builds(lambda fn, cls, opts: f"{fn}({cls}{opts})",
                        st.sampled_from(["contains", "object_count", "CONTAINS"]), classes, predicate_options)
atoms = st.one_of(numbers, strings, columns, model_calls,
                  st.sampled_from(["NULL", "TRUE", "FALSE", "?", "$1", "$n", "frame::INT", "ts::DECIMAL(6, 2)",
                                   "(SELECT max(frame) FROM events)", "(frame IN (SELECT frame FROM events))",
                                   "EXISTS (SELECT 1 FROM events e WHERE e.frame = frame)", "EXISTS (SELECT 1 FROM cam)",
                                   "(SELECT contains('person') FROM events)"]),
                  st.builds(lambda c, k: f"(object_count({c}) >= {k})", classes, numbers))


def extend(expr):
    operator = st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "AND", "OR", "LIKE"])
    wrap = st.sampled_from(["({})"] * 4 + ["{}"])  # mostly parenthesized: valid more often, precedence still tried
    return st.one_of(
        st.builds(lambda w, a, op, b: w.format(f"{a} {op} {b}"), wrap, expr, operator, expr),
        st.builds(lambda w, a: w.format(f"NOT {a}"), wrap, expr),
        st.builds(lambda w, a: w.format(f"- {a}"), wrap, expr),
        st.builds(lambda a: f"({a})", expr),
        st.builds(lambda a, lo, hi, neg: f"({a} {neg}BETWEEN {lo} AND {hi})", expr, expr, expr, st.sampled_from(["", "NOT "])),
        st.builds(lambda a, items: f"({a} IN ({', '.join(items)}))", expr, st.lists(expr, min_size=1, max_size=3)),
        st.builds(lambda a, neg: f"({a} IS {neg}NULL)", expr, st.sampled_from(["", "NOT "])),
        st.builds(lambda c, v, d: f"CASE WHEN {c} THEN {v} ELSE {d} END", expr, expr, expr),
        st.builds(lambda a, t: f"CAST({a} AS {t})", expr, st.sampled_from(["INTEGER", "DOUBLE", "VARCHAR", "BOOLEAN", "nope"])),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["abs", "round", "count", "sum", "max", "nope", "floor"]), expr),
    )


expressions = st.recursive(atoms, extend, max_leaves=8)


def deep(expr: str, kind: str, n: int) -> str:
    if kind == "paren":
        return "(" * n + expr + ")" * n
    if kind == "not":
        return "NOT " * n + expr
    if kind == "minus":
        return "- " * n + expr
    if kind == "and":
        return " AND ".join([expr] * n)
    if kind == "or":
        return " OR ".join([expr] * n)
    return "abs(" * n + expr + ")" * n


deep_expressions = st.builds(deep, expressions, st.sampled_from(["paren", "not", "minus", "and", "or", "call"]),
                             st.sampled_from([50, 150, 199, 200, 201, 250, 490, 1000]))

query_options = st.lists(st.one_of(st.just("exact"), st.builds(lambda k, v: f"{k} := {v}",
                                                               st.sampled_from(["fpr", "fnr", "audit", "exact", "nope"]),
                                                               option_values)),
                         min_size=1, max_size=2).map(lambda o: f" WITH ({', '.join(o)})")


@st.composite
def selects(draw, where_exprs=expressions) -> str:
    items = draw(st.lists(st.one_of(expressions, st.sampled_from(["*", "frame", "ts", "count(*)", "cam.*"]),
                                    st.builds(lambda e, a: f"{e} AS {a}", expressions, st.sampled_from(["n", "x", '"a b"']))),
                          min_size=1, max_size=3))
    source = draw(st.sampled_from(["cam"] * 6 + ["cam AS c", "CAM", "cam JOIN events ON cam.frame = events.frame",
                                   "cam c CROSS JOIN events", "events", "nope", 'cam AS "odd; alias"',
                                   "cam, events", "cam c, events e", "(SELECT frame, ts FROM cam WHERE frame < 4) t",
                                   "cam JOIN (SELECT frame FROM events) e ON cam.frame = e.frame",
                                   "(SELECT frame FROM events)"]))
    text = f"SELECT {draw(st.sampled_from(['', 'DISTINCT ']))}{', '.join(items)} FROM {source}"
    if draw(st.booleans()):
        text += f" WHERE {draw(where_exprs)}"
    if draw(st.integers(0, 4)) == 0:
        text += f" GROUP BY {draw(st.one_of(expressions, st.just('ALL')))}"
    if draw(st.integers(0, 3)) == 0:
        text += f" ORDER BY {draw(st.one_of(expressions, st.just('ALL')))}{draw(st.sampled_from(['', ' DESC', ' ASC']))}"
    if draw(st.integers(0, 3)) == 0:
        text += f" LIMIT {draw(numbers)}" + (f" OFFSET {draw(numbers)}" if draw(st.booleans()) else "")
    if draw(st.integers(0, 3)) == 0:
        text += draw(query_options)
    return text


paths = st.one_of(
    st.sampled_from(["CLIP", "/nonexistent.avi", "/tmp", "/etc/hostname", "a" * 300, "/tmp/" + "b" * 256 + "/x",
                     "\udc80.avi", "a\x00b", "", "~nobody_here/x.avi", "/x" * 2100, "it''s.avi"]),
    st.text(st.sampled_from(list("ab./") + ODD), max_size=8).map(lambda t: t.replace("'", "''")),
)


@st.composite
def statements(draw) -> str:
    kind = draw(st.sampled_from(["select"] * 8 + ["deep"] * 2 + ["explain", "set", "show", "describe", "drop",
                                                                 "create_video", "create_function", "script"]))
    if kind == "select":
        return draw(selects())
    if kind == "deep":
        return draw(selects(deep_expressions))
    if kind == "explain":
        return f"EXPLAIN {draw(st.sampled_from(['', 'ANALYZE ']))}{draw(selects())}"
    if kind == "set":
        return f"SET {draw(st.sampled_from(['min_score', 'fpr', 'fnr', 'FPR']))} = {draw(option_values)}"
    if kind == "show":
        return draw(st.sampled_from(["SHOW VIDEOS", "show videos", "SHOW  VIDEOS;;"]))
    if kind == "describe":
        return f"{draw(st.sampled_from(['DESCRIBE', 'DESC']))} {draw(name_refs)}"
    if kind == "drop":
        return draw(st.sampled_from(["DROP VIDEO ", "DROP VIDEO IF EXISTS ", "DROP RESULTS "])) + draw(name_refs)
    if kind == "create_video":
        return f"CREATE VIDEO {draw(name_refs)} FROM '{draw(paths)}'"
    if kind == "create_function":
        kind_name = draw(st.sampled_from(["onnx", "tfjs", "torchvision", "ultralytics", "nope"]))
        options = draw(st.sampled_from(["", " WITH (labels := 'coco', boxes := 'b', scores := 's')", " WITH (arch := 'x')",
                                        " WITH (classes := (1, 2))"]))
        return f"CREATE FUNCTION {draw(name_refs)} TYPE {kind_name} MODEL '{draw(paths)}'{options}"
    return "; ".join(draw(st.lists(selects(), min_size=2, max_size=3)))


def _run(session, text: str) -> None:
    session.run(text.replace("CLIP", str(session.clip)))


@settings(max_examples=1000, **SETTINGS)
@given(statements())
def test_fuzz_grammar(session, text):
    _run(session, text)


# --- (b) mutations of real statements -----------------------------------------------------------

SEEDS = [
    "SELECT frame, ts FROM cam WHERE contains('person') AND ts > 0.2 ORDER BY frame LIMIT 3",
    "SELECT count(*) FROM cam WHERE object_count('car', min_score := 0.6, region := (0, 0.5, 1, 1)) >= 1",
    "SELECT frame FROM cam WHERE NOT contains('person') OR frame BETWEEN 2 AND 4 WITH (fpr := 0.05, fnr := 0)",
    "EXPLAIN ANALYZE SELECT frame FROM cam WHERE contains('person') WITH (audit := 3)",
    "SELECT c.frame, e.label FROM cam AS c JOIN events e ON c.frame = e.frame WHERE contains('person')",
    "SET min_score = 0.4; SHOW VIDEOS; DESCRIBE cam",
    "CREATE VIDEO cam2 FROM 'CLIP'",
    "DROP VIDEO IF EXISTS cam2; DROP RESULTS cam",
    "CREATE FUNCTION det TYPE onnx MODEL 'x.onnx' WITH (labels := 'coco', boxes := 'boxes', scores := 'scores')",
    "SELECT frame FROM cam WHERE frame IN (1, 2, 3) AND ts < 1e309 GROUP BY frame HAVING count(*) > 0",
    "SELECT CASE WHEN contains('person') THEN 'yes' ELSE 'no' END AS p, CAST(ts AS INTEGER) FROM cam",
    "SELECT $$a;b$$, E'it\\'s; fine', 'x' FROM cam /* c /* nested */ */ -- tail",
    'DESCRIBE "my table"; SELECT "frame" FROM "cam" WHERE (((frame > 1)))',
    "SELECT c.frame::INT, count(*) FROM cam c, events e WHERE c.frame IN (SELECT frame FROM events) GROUP BY ALL "
    "ORDER BY ALL DESC",
    "SELECT * FROM (SELECT frame FROM cam WHERE contains('person') AND frame < $n) t WHERE EXISTS (SELECT 1)",
    "WITH t AS (SELECT 1) SELECT label, count(*) FROM events GROUP BY ALL",
]
INSERTS = ODD + ["(", ")", "((((", "NOT ", "-", "9" * 30, "1e999", ",", " AND ", "*", "'", "$$", "/*", "--", ":=", "::",
           " (SELECT ", " ALL ", "$x", " cam ", "contains(", " WITH (", "?", "\r", "\x1e"]


@st.composite
def mutations(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 6)))
        if op == "insert":
            text = text[:i] + draw(st.sampled_from(INSERTS)) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(INSERTS)) + text[j:]
        else:
            text = text[:j] + text[i:j] * draw(st.integers(1, 3)) + text[j:]
    return text


@settings(max_examples=1500, **SETTINGS)
@given(mutations())
def test_fuzz_mutations(session, text):
    _run(session, text)


def test_fuzz_counts(session):
    """Runs after the fuzzers in this module (pytest keeps file order): they ran their examples,
    and some statements got through to a result (the fuzzer is not only testing error paths)."""
    if COUNTS["statements"] == 0:  # run on its own (-k)
        pytest.skip("the fuzzers did not run in this session")
    assert COUNTS["statements"] >= 2000
    assert COUNTS["results"] >= 100
