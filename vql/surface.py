"""The SQL around a query over videos: subqueries, parameters, and DuckDB's errors said in the
user's terms.

- A subquery over tables works anywhere in a query over a video (``frame IN (SELECT ...)``,
  ``EXISTS (...)``, a scalar ``(SELECT ...)``, ``JOIN (SELECT ...) e``): DuckDB runs its text as
  written. One that reads a video is refused by name, except a query whose only video is read in
  one subquery of its FROM (``SELECT * FROM (SELECT frame FROM cam WHERE ...) t``): that
  subquery is the query over the video, and the outer SELECT wraps its SQL.
- Parameters (``?``, ``$1``, ``$name``) reach DuckDB as parameters. In a model predicate's
  arguments and in ``WITH (...)`` they are bound here, from a dict of named parameters.
- DuckDB's errors about the SQL vql generated name the user's video, predicates and statement,
  never ``vql_frames_cam``, ``vql_a0`` or the generated text.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

from vql import ast
from vql.binder import MODEL_FUNCTIONS, Catalog, video_refs
from vql.errors import BindError
from vql.plan import SqlQuery
from vql.sqlgen import to_sql


def _where(pos: ast.Pos | None) -> str:
    return f" (line {pos.line}, column {pos.column})" if pos else ""


def subqueries(node: ast.Node) -> Iterator[ast.Subquery]:
    """The subqueries directly inside a node (not those nested in them)."""
    return (n for n in ast.walk(node) if isinstance(n, ast.Subquery))


def _reads(select: ast.Select) -> Iterator[ast.TableRef]:
    """Every named table a SELECT reads, its subqueries' included."""
    for table in select.tables:
        if isinstance(table, ast.TableRef):
            yield table
    for sub in subqueries(select):
        yield from _reads(sub.select)


def _calls(select: ast.Select) -> Iterator[ast.Call]:
    for n in ast.walk(select):
        if isinstance(n, ast.Call):
            yield n
    for sub in subqueries(select):
        yield from _calls(sub.select)


def reads_video(select: ast.Select, catalog: Catalog) -> bool:
    return any(catalog.video(t.name) for t in _reads(select))


def _check_inside(sub: ast.Subquery, catalog: Catalog, construct: str) -> None:
    """A subquery of a query over a video reads tables only and calls no model predicate."""
    for table in _reads(sub.select):
        if catalog.video(table.name):
            raise BindError(f"{construct} that reads video {table.name!r}{_where(sub.pos)} is not supported; subqueries "
                            "over tables work (frame IN (SELECT frame FROM events)), and a video is read by the outer "
                            "query's FROM (join it with the table instead)")
    for call in _calls(sub.select):
        if call.name in MODEL_FUNCTIONS:
            raise BindError(f"{call.name}() inside a subquery{_where(call.pos)} is not supported: model predicates go "
                            "in the query that reads the video")


def _construct(sub: ast.Subquery, select: ast.Select) -> str:
    if any(isinstance(t, ast.DerivedTable) and t.subquery is sub for t in select.tables):
        return "a subquery in FROM"
    return "a subquery"


def video_query(select: ast.Select, catalog: Catalog) -> tuple[ast.Select, Callable[[SqlQuery], SqlQuery]] | None:
    """The SELECT over videos to bind, and how to wrap its plan; None when no video is read.

    Usually the query itself. When its only video is read by one subquery in its FROM, that
    subquery (with the outer ``WITH (...)`` options) is the query over the video, and the plan's
    SQL becomes the outer query around the subquery's SQL."""
    if video_refs(select, catalog):
        for sub in subqueries(select):
            _check_inside(sub, catalog, _construct(sub, select))
        return select, lambda plan: plan
    if not reads_video(select, catalog):
        return None
    derived = [t for t in select.tables if isinstance(t, ast.DerivedTable) and reads_video(t.subquery.select, catalog)]
    if len(derived) > 1:
        raise BindError(f"{len(derived)} subqueries in FROM read videos{_where(derived[1].pos)}; a query reads videos "
                        "in its own FROM or in one subquery of its FROM")
    if not derived:
        sub = next(s for s in subqueries(select) if reads_video(s.select, catalog))
        video = next(t.name for t in _reads(sub.select) if catalog.video(t.name))
        raise BindError(f"a subquery that reads video {video!r}{_where(sub.pos)} is not supported there: a query reads "
                        f"a video in its own FROM (SELECT ... FROM {video} ...) or in one subquery of its FROM")
    table = derived[0]
    for sub in subqueries(select):
        if sub is not table.subquery:
            _check_inside(sub, catalog, _construct(sub, select))
    for call in _calls(replace(select, from_=None, joins=())):
        if call.name in MODEL_FUNCTIONS:
            raise BindError(f"{call.name}(){_where(call.pos)} is outside the subquery that reads the video: model "
                            "predicates go in the query that reads the video")
    inner = table.subquery.select
    found = video_query(replace(inner, options=inner.options + select.options), catalog)
    assert found is not None
    query, wrap_inner = found

    def wrap(plan: SqlQuery) -> SqlQuery:
        plan = wrap_inner(plan)
        sub = replace(table.subquery, sql=f"({plan.sql})")
        outer = replace(select, options=(),
                        from_=replace(table, subquery=sub) if select.from_ is table else select.from_,
                        joins=tuple(replace(j, table=replace(table, subquery=sub)) if j.table is table else j
                                    for j in select.joins))
        # the outer query may filter or aggregate the rows: a LIMIT inside bounds no scan
        return replace(plan, sql=to_sql(outer), stop_after=None)

    return query, wrap


# --- parameters ---------------------------------------------------------------------------------


def _param_uses(select: ast.Select) -> Counter:
    """How often each named parameter occurs in a SELECT, its subqueries included."""
    return Counter(n.text[1:] for n in _params(select))


def _params(select: ast.Select) -> Iterator[ast.Param]:
    yield from (n for n in ast.walk(select) if isinstance(n, ast.Param))
    for sub in subqueries(select):
        yield from _params(sub.select)


def param_values(statement: ast.Select, params) -> Callable[[ast.Param], object]:
    """Each parameter's value as DuckDB will bind it (None where unknown): ``$name`` from a dict,
    ``$k`` and ``?`` (in the order they occur in the text) from a list."""
    if isinstance(params, dict):  # DuckDB matches names ignoring case
        named = {str(k).lower(): v for k, v in params.items()}
        return lambda p: named.get(p.text[1:].lower())
    values = list(params or [])
    marks = sorted((p.pos.line, p.pos.column) for p in _params(statement) if p.text == "?" and p.pos)
    index = {pos: i for i, pos in enumerate(marks)}

    def value(p: ast.Param):
        i = int(p.text[1:]) - 1 if p.text[1:].isdigit() else index.get((p.pos.line, p.pos.column) if p.pos else None)
        return values[i] if i is not None and 0 <= i < len(values) else None

    return value


def _value(value, param: ast.Param) -> ast.Node:
    if isinstance(value, (list, tuple)):
        return ast.Tuple(tuple(_value(v, param) for v in value), param.pos)
    if value is None or isinstance(value, (str, int, float, bool)):
        return ast.Literal(value, param.pos)
    raise BindError(f"parameter {param.text}{_where(param.pos)}: a model predicate's argument or a query option takes "
                    f"a string, a number or a tuple of numbers, got {type(value).__name__}")


def bind_params(select: ast.Select, params, statement: ast.Select | None = None) -> tuple[ast.Select, object]:
    """Bind the parameters of model predicates' arguments and of ``WITH (...)`` options, which
    vql reads before any SQL runs: named ones (``$cls``) from a dict; anything else there is a
    BindError. The others stay parameters: the dict keeps the names the SQL still uses
    (``statement``: the whole statement ``select`` is part of, when it is a subquery of it)."""
    given = params if isinstance(params, dict) else {}
    used: Counter = Counter()

    def bind(node: ast.Node, what: str) -> ast.Node:
        def one(n: ast.Node) -> ast.Node:
            if not isinstance(n, ast.Param):
                return n
            name = n.text[1:]
            if n.text == "?" or name.isdigit() or name not in given:
                raise BindError(f"parameter {n.text} in {what}{_where(n.pos)}: vql reads these before the query "
                                f"runs, so they take named parameters given in a dict (e.g. $cls with "
                                f"params={{'cls': 'person'}})" + ("" if n.text == "?" or name.isdigit()
                                                                  else f"; no parameter {name!r} was given"))
            used[name] += 1
            return _value(given[name], n)

        return ast.transform(node, one)

    def calls(n: ast.Node) -> ast.Node:
        if isinstance(n, ast.Call) and n.name in MODEL_FUNCTIONS:
            return bind(n, f"{n.name}()")
        return n

    options = tuple(bind(o, f"option {o.name}") for o in select.options)
    bound = replace(ast.transform(replace(select, options=()), calls), options=options)
    if used:
        uses = _param_uses(statement or select)
        params = {k: v for k, v in params.items() if k not in used or uses[k] > used[k]}
    return bound, params


# --- DuckDB's errors in the user's terms ---------------------------------------------------------

_UNKNOWN_TABLE = re.compile(r"Table with name (.+?) does not exist")
_LINE = re.compile(r"\n*LINE (\d+): ([^\n]*)\n( *)\^[^\n]*", re.S)


def _close(name: str, names: list[str]) -> list[str]:
    by_lower = {n.lower(): n for n in names}
    return [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]


def no_video(name: str, videos: list[str]) -> str:
    """``no video named 'x'``, with the nearest names.

    >>> no_video("camera", ["cam", "street"])
    "no video named 'camera'; did you mean cam? (videos: cam, street)"
    """
    close = _close(name, videos)
    return (f"no video named {name!r}" + (f"; did you mean {' or '.join(close)}?" if close else "")
            + f" (videos: {', '.join(sorted(videos)) or 'none'})")


def unknown_table(message: str, videos: list[str], tables: list[str]) -> str | None:
    """DuckDB's 'Table with name x does not exist' as vql says it, with the nearest names
    among videos and tables; None for any other message.

    >>> unknown_table('Catalog Error: Table with name camera does not exist!', ['cam'], ['events'])
    "no video or table named 'camera'; did you mean cam? (videos: cam; tables: events)"
    """
    m = _UNKNOWN_TABLE.search(message)
    if m is None or m.group(1).lower().startswith("vql_frames_"):
        return None
    name = m.group(1)
    close = _close(name, [*tables, *videos])
    text = f"no video or table named {name!r}"
    if close:
        text += f"; did you mean {' or '.join(close)}?"
    known = [f"videos: {', '.join(sorted(videos)) or 'none'}"] + ([f"tables: {', '.join(sorted(tables)[:20])}"]
                                                                    if tables else [])
    return f"{text} ({'; '.join(known)})"


def _caret(message: str, statement: str) -> str:
    """DuckDB's ``LINE n: <generated SQL>`` and caret -> the user's line with a caret under the
    same word when it occurs once in the statement; else nothing."""
    m = _LINE.search(message)
    if m is None:
        return message
    head = message[:m.start()].rstrip()
    shown, offset = m.group(2), len(m.group(3)) - len(f"LINE {m.group(1)}: ")
    word = re.match(r"[A-Za-z_][\w.]*\w|[A-Za-z_]|\S", shown[max(offset, 0):])
    if word is None or "vql_" in word.group().lower():
        return head
    pattern = re.escape(word.group()) + (r"\b" if word.group()[-1].isalnum() else "")
    hits = [h for h in re.finditer(r"(?<![A-Za-z0-9_])" + pattern, statement, re.IGNORECASE)]
    if len(hits) != 1:
        return head
    from vql.parser import caret

    start = hits[0].start()
    line = statement.count("\n", 0, start) + 1
    column = start - (statement.rfind("\n", 0, start) + 1) + 1
    return f"{head}\n{caret(statement, line, column)}"


def _short_lists(message: str, keep: int = 4) -> str:
    """DuckDB's lists of candidate functions (one per tab-indented line) cut to a few.

    >>> _short_lists("No match. Candidates:\\n\\ta\\n\\tb\\n\\tc\\nLINE 1", keep=1).split("\\n")
    ['No match. Candidates:', '\\ta', '\\t... (2 more)', 'LINE 1']
    """
    out: list[str] = []
    for indented, run in itertools.groupby(message.split("\n"), lambda line: line.startswith("\t")):
        run = list(run)
        out += run if not indented or len(run) <= keep else run[:keep] + [f"\t... ({len(run) - keep} more)"]
    return "\n".join(out)


def user_terms(message: str, plan: SqlQuery, statement: str) -> str:
    """A DuckDB error about a plan's SQL, in the user's terms: the per-frame tables named by their
    video, the columns of model tests by the tests, DuckDB's quote of the generated SQL replaced
    by the user's statement (a caret under the same word when it is unambiguous)."""
    names = {}
    for ev in plan.inputs:
        names[ev.table] = ev.scan.video
        names.update({a.column: a.text for a in ev.atoms})
        names.update({p.column: p.text for p in ev.predicates})
    message = _caret(_short_lists(message), statement)
    if not names:
        return message
    pattern = r'(?:"?\w+"?\.)?"?\b(' + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r')\b"?'
    return re.sub(pattern, lambda m: names[m.group(1)], message)
