"""Text -> statements: split a script on ``;``, parse vql's statements with ``grammar.lark``.

Statements vql does not own (``CREATE TABLE``, ``COPY``, ``INSERT``...) become
:class:`~vql.ast.Passthrough` and DuckDB runs them unchanged. A ``SELECT`` that our grammar
cannot parse is also passed through, unless it names a video (then the syntax error is ours).

>>> parse_statement("SELECT frame FROM cam WHERE contains('bus')").where.name
'contains'
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from vql import ast
from vql.errors import ParseError

# The statements vql owns, by their first word(s); anything else goes to DuckDB.
_OWNED = re.compile(
    r"^\s*(?:(?:create(?:\s+or\s+replace)?|drop)\s+video\b|load\s+video\b|show\s+videos\b|drop\s+results\b|"
    r"create\s+function\s+\S+\s+type\b|explain\b|set\s+(?:min_score|fpr|fnr)\b|select\b|describe\b|desc\b)",
    re.IGNORECASE,
)

_TOKEN_NAMES = {
    "NAME": "a name",
    "QUOTED_NAME": "a quoted name",
    "STRING": "a string",
    "NUMBER": "a number",
    "PARAM": "a parameter",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "EQUAL": "'='",
    "ASSIGN": "':='",
    "STAR": "'*'",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'/' or '%'",
    "$END": "the end of the statement",
}


@functools.cache
def _parser() -> Lark:
    text = (resources.files("vql") / "grammar.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


def _pos(meta_or_token) -> ast.Pos | None:
    line = getattr(meta_or_token, "line", None)
    column = getattr(meta_or_token, "column", None)
    return ast.Pos(line, column) if line is not None else None


def _unquote(text: str) -> str:
    return text[1:-1].replace(text[0] * 2, text[0])


@v_args(meta=True, inline=True)
class _ToAst(Transformer):
    """Lark tree -> vql.ast nodes. One method per grammar alias."""

    # names and literals
    def name(self, meta, token):
        return str(token)

    def quoted_name(self, meta, token):
        return _unquote(str(token))

    def number(self, meta, token):
        text = str(token)
        value = float(text) if any(c in text for c in ".eE") else int(text)
        return ast.Literal(value, _pos(meta))

    def string(self, meta, token):
        return ast.Literal(_unquote(str(token)), _pos(meta))

    def true(self, meta, _):
        return ast.Literal(True, _pos(meta))

    def false(self, meta, _):
        return ast.Literal(False, _pos(meta))

    def null(self, meta, _):
        return ast.Literal(None, _pos(meta))

    def param(self, meta, token):
        return ast.Param(str(token), _pos(meta))

    def column(self, meta, name):
        return ast.Column(name, None, _pos(meta))

    def qualified_column(self, meta, table, name):
        return ast.Column(name, table, _pos(meta))

    # expressions
    def or_(self, meta, left, _op, right):
        return ast.Binary("OR", left, right, _pos(meta))

    def and_(self, meta, left, _op, right):
        return ast.Binary("AND", left, right, _pos(meta))

    def not_(self, meta, _op, operand):
        return ast.Unary("NOT", operand, _pos(meta))

    def compare(self, meta, left, op, right):
        return ast.Binary("<>" if str(op) == "!=" else str(op), left, right, _pos(meta))

    def equals(self, meta, left, right):
        return ast.Binary("=", left, right, _pos(meta))

    def arith(self, meta, left, op, right):
        return ast.Binary(str(op), left, right, _pos(meta))

    def negate(self, meta, op, operand):
        return ast.Unary(str(op), operand, _pos(meta))

    def between(self, meta, expr, *rest):
        negated = len(rest) == 5
        _, low, _, high = rest[-4:]
        return ast.Between(expr, low, high, negated, _pos(meta))

    def is_null(self, meta, expr, *rest):
        return ast.IsNull(expr, len(rest) == 3, _pos(meta))

    def in_list(self, meta, expr, *rest):
        negated = isinstance(rest[0], Token) and rest[0].type == "NOT"
        items = tuple(r for r in rest if not isinstance(r, Token))
        return ast.InList(expr, items, negated, _pos(meta))

    def like(self, meta, left, *rest):
        negated = len(rest) == 3
        node = ast.Binary("LIKE", left, rest[-1], _pos(meta))
        return ast.Unary("NOT", node, _pos(meta)) if negated else node

    def paren(self, meta, expr):
        return expr

    def tuple(self, meta, *items):
        return ast.Tuple(tuple(items), _pos(meta))

    def when(self, meta, _w, cond, _t, value):
        return (cond, value)

    def case(self, meta, _case, *rest):
        whens = tuple(r for r in rest if isinstance(r, tuple))
        default = None
        if len(rest) >= 3 and isinstance(rest[-3], Token) and rest[-3].type == "ELSE":
            default = rest[-2]
        return ast.Case(whens, default, _pos(meta))

    def type_name(self, meta, name, *size):
        return str(name).upper() + (f"({', '.join(str(n) for n in size)})" if size else "")

    def cast(self, meta, _cast, expr, _as, type_name):
        return ast.Cast(expr, type_name, _pos(meta))

    def positional_arg(self, meta, expr):
        return expr

    def named_arg(self, meta, name, _assign, value):
        return ast.NamedArg(name.lower(), value, _pos(meta))

    def call_star(self, meta, name, _star):
        return ast.Call(name.lower(), (), (), False, True, _pos(meta))

    def call(self, meta, name, *args):
        distinct = bool(args) and args[0] == "DISTINCT"
        args = args[1:] if distinct else args
        positional = tuple(a for a in args if not isinstance(a, ast.NamedArg))
        named = tuple(a for a in args if isinstance(a, ast.NamedArg))
        return ast.Call(name.lower(), positional, named, distinct, False, _pos(meta))

    def distinct(self, meta, _):
        return "DISTINCT"

    # SELECT
    def star(self, meta, _):
        return ast.Star(None, _pos(meta))

    def qualified_star(self, meta, table, _):
        return ast.Star(table, _pos(meta))

    def item(self, meta, expr):
        return ast.SelectItem(expr)

    def aliased_item(self, meta, expr, *rest):
        return ast.SelectItem(expr, rest[-1])

    def select_list(self, meta, *items):
        return tuple(items)

    def table_ref(self, meta, name):
        return ast.TableRef(name, None, _pos(meta))

    def aliased_table_ref(self, meta, name, *rest):
        return ast.TableRef(name, rest[-1], _pos(meta))

    def inner(self, meta, *_):
        return "INNER"

    def left(self, meta, *_):
        return "LEFT"

    def right(self, meta, *_):
        return "RIGHT"

    def full(self, meta, *_):
        return "FULL"

    def join(self, meta, *parts):
        kind = parts[0] if isinstance(parts[0], str) and not isinstance(parts[0], Token) else "INNER"
        table = next(p for p in parts if isinstance(p, ast.TableRef))
        return ast.Join(kind, table, parts[-1])

    def cross_join(self, meta, _cross, _join, table):
        return ast.Join("CROSS", table, None)

    def from_clause(self, meta, _from, table, *joins):
        return ("from", table, tuple(joins))

    def where_clause(self, meta, _w, expr):
        return ("where", expr)

    def group_clause(self, meta, _g, _b, *exprs):
        return ("group_by", tuple(exprs))

    def having_clause(self, meta, _h, expr):
        return ("having", expr)

    def order_item(self, meta, expr, *direction):
        return ast.OrderItem(expr, bool(direction) and direction[0].type == "DESC")

    def order_clause(self, meta, _o, _b, *items):
        return ("order_by", tuple(items))

    def limit_clause(self, meta, _l, limit, *rest):
        return ("limit", limit, rest[-1] if rest else None)

    def flag_option(self, meta, name):
        return ast.NamedArg(name.lower(), ast.Literal(True), _pos(meta))

    def value_option(self, meta, name, _assign, value):
        return ast.NamedArg(name.lower(), value, _pos(meta))

    def options(self, meta, _with, *opts):
        return ("options", tuple(opts))

    def select(self, meta, _select, *parts):
        fields: dict = {}
        for part in parts:
            if part == "DISTINCT":
                fields["distinct"] = True
            elif isinstance(part, tuple) and part and isinstance(part[0], str) and part[0] in (
                "from", "where", "group_by", "having", "order_by", "limit", "options"
            ):
                tag = part[0]
                if tag == "from":
                    fields["from_"], fields["joins"] = part[1], part[2]
                elif tag == "limit":
                    fields["limit"], fields["offset"] = part[1], part[2]
                else:
                    fields[tag] = part[1]
            else:
                fields["items"] = part
        return ast.Select(**fields)

    # statements
    def create_video(self, meta, _c, *rest):
        *_, name, _from, path = rest
        return ast.CreateVideo(name, _unquote(str(path)), rest[0] == "OR REPLACE")

    def or_replace(self, meta, *_):
        return "OR REPLACE"

    def load_video(self, meta, _l, _v, path, _into, name):
        return ast.CreateVideo(name, _unquote(str(path)))

    def show_videos(self, meta, *_):
        return ast.ShowVideos()

    def describe(self, meta, _d, name):
        return ast.Describe(name)

    def if_exists(self, meta, *_):
        return "IF EXISTS"

    def drop_video(self, meta, _d, _v, *rest):
        return ast.DropVideo(rest[-1], len(rest) == 2)

    def drop_results(self, meta, _d, _r, name):
        return ast.DropResults(name)

    def create_function(self, meta, _c, _f, name, _t, kind, _m, path, *options):
        opts = options[0][1] if options else ()
        return ast.CreateFunction(name, kind.lower(), _unquote(str(path)), opts)

    def set_stmt(self, meta, _s, name, value):
        return ast.SetOption(name.lower(), value)

    def analyze(self, meta, _):
        return "ANALYZE"

    def explain(self, meta, _e, *rest):
        return ast.Explain(rest[-1], len(rest) == 2)


_SOFT_KEYWORDS = {"VIDEO", "VIDEOS", "RESULTS", "TYPE", "MODEL", "ANALYZE", "LOAD", "DESC", "FUNCTION", "SHOW",
                  "REPLACE"}
_EXPRESSION_STARTS = {"NUMBER", "STRING", "PARAM", "CASE", "CAST", "NOT", "NULL", "TRUE", "FALSE", "LPAR", "ADD_OP"}


def _expected(names) -> str:
    """Terminal names -> what a user would call them; 'an expression' for the usual crowd."""
    names = set(names)
    if "NAME" in names:
        names -= _SOFT_KEYWORDS | {"QUOTED_NAME"}
        if {"NUMBER", "STRING"} <= names:
            names = (names - _EXPRESSION_STARTS - {"NAME"}) | {"EXPRESSION"}
    readable = sorted(
        "an expression" if n == "EXPRESSION" else _TOKEN_NAMES.get(n, n if not n.startswith("__") else repr(n))
        for n in names
    )
    if len(readable) > 12:
        readable = readable[:12] + ["..."]
    return ", ".join(readable)


def _caret(text: str, line: int, column: int) -> str:
    lines = text.splitlines() or [""]
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"  {source}\n  {' ' * (column - 1)}^"


def syntax_error(text: str, e: UnexpectedInput) -> ParseError:
    """A one-paragraph syntax error: where, what was found, what was expected, and a caret."""
    line, column = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        found = "end of statement"
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    elif isinstance(e, UnexpectedToken):
        found = repr(str(e.token))
    elif isinstance(e, UnexpectedCharacters):
        found = repr(text.splitlines()[line - 1][column - 1]) if text else "a character"
    else:
        found = "end of statement"
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None) or ()
    message = f"syntax error at line {line}, column {column}: unexpected {found}"
    if expected:
        message += f"; expected {_expected(expected)}"
    return ParseError(f"{message}\n{_caret(text, line, column)}")


def parse_statement(text: str) -> ast.Node:
    """Parse one statement (no trailing ``;``) with vql's grammar."""
    try:
        return _ToAst().transform(_parser().parse(text))
    except UnexpectedInput as e:
        raise syntax_error(text, e) from None
    except VisitError as e:  # a bug in the transformer, never the user's fault
        raise ParseError(f"internal error while reading the statement: {e.orig_exc}") from e


def split_statements(script: str) -> list[str]:
    """Split on ``;`` outside quotes and comments; drop empty statements.

    >>> split_statements("SELECT ';' ; -- a; comment\\nSHOW VIDEOS;")
    ["SELECT ';'", '-- a; comment\\nSHOW VIDEOS']
    """
    return [s.strip() for s in split_raw(script) if _strip_comments(s).strip()]


def ends_statement(text: str) -> bool:
    """Whether the text ends with a complete statement: a ';' followed only by comments or blanks.

    >>> ends_statement("select 1; -- done"), ends_statement("select 1 -- ;"), ends_statement("select ';'")
    (True, False, False)
    """
    pieces = split_raw(text)
    return len(pieces) > 1 and not _strip_comments(pieces[-1]).strip() and bool(_strip_comments(text).strip())


def split_raw(script: str) -> list[str]:
    """The pieces between top-level ``;`` (the last one is what follows the last ``;``)."""
    out, start, i, n = [], 0, 0, len(script)
    while i < n:
        c = script[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if script[j] == c:
                    if j + 1 < n and script[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif script.startswith("--", i):
            j = script.find("\n", i)
            i = n if j < 0 else j + 1
        elif script.startswith("/*", i):
            j = script.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ";":
            out.append(script[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(script[start:])
    return out


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)


def is_owned(statement: str) -> bool:
    """Whether the statement starts like one of vql's own (else DuckDB runs it)."""
    return bool(_OWNED.match(_strip_comments(statement)))


def parse(statement: str, video_names: frozenset[str] = frozenset()) -> ast.Node:
    """One statement -> AST; DuckDB's statements (and SELECTs over no video) -> Passthrough."""
    if not is_owned(statement):
        return ast.Passthrough(statement)
    try:
        node = parse_statement(statement)
    except ParseError as e:
        words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", _strip_comments(statement))}
        head = _strip_comments(statement).split(None, 1)[0].lower()
        if head in ("select", "describe", "desc") and not (words & {v.lower() for v in video_names}):
            return ast.Passthrough(statement, str(e))
        raise
    return node
