"""Statements -> syntax trees: vql's statements parsed with ``grammar.lark`` (scripts are split
on ``;`` by :mod:`vql.scripts`).

Statements vql does not own (``CREATE TABLE``, ``COPY``, ``INSERT``...) become
:class:`~vql.ast.Passthrough` and DuckDB runs them unchanged. A ``SELECT`` that our grammar
cannot parse is also passed through, unless it names a video (then the syntax error is ours).

>>> parse_statement("SELECT frame FROM cam WHERE contains('bus')").where.name
'contains'
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.grammar import Rule
from lark.lexer import TerminalDef
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from vql import ast
from vql.errors import ParseError
from vql.scripts import ends_statement, names_in, split_raw, split_statements, strip_comments  # noqa: F401 - re-exported

# The statements vql owns, by their first word(s); anything else goes to DuckDB.
_OWNED = re.compile(
    r"^\s*(?:(?:create(?:\s+or\s+replace)?|drop)\s+video\b|load\s+video\b|show\s+videos\b|drop\s+results\b|"
    r"create\s+function\s+\S+\s+type\b|explain\b|set\s+(?:min_score|fpr|fnr|workers|executor)\b|select\b|describe\b|desc\b)",
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
    "DCOLON": "'::'",
    "STAR": "'*'",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'/' or '%'",
    "$END": "the end of the statement",
}


_OPTIONS = dict(parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


def cache_dir() -> Path:
    """Where vql keeps what it can rebuild (the parser's tables): ``$VQL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/vql``, else ``~/.cache/vql``."""
    if os.environ.get("VQL_CACHE_DIR"):
        return Path(os.environ["VQL_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vql"


def _int_keys(d: dict) -> dict:
    return {int(k) if k.lstrip("-").isdigit() else k: v for k, v in d.items()}


@functools.cache
def _parser() -> Lark:
    """The LALR parser of grammar.lark. Building its tables takes ~0.3-1 s, so they are kept as
    JSON (data, never pickle) in ``cache_dir()``, keyed by the grammar, the options and Lark's
    version; a missing, stale or unreadable file is rebuilt, and an unwritable cache only costs
    time."""
    text = (resources.files("vql") / "grammar.lark").read_text(encoding="utf-8")
    key = hashlib.sha256(f"{text}|{sorted(_OPTIONS.items())}|{lark.__version__}".encode()).hexdigest()[:24]
    path = cache_dir() / f"grammar-{key}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), object_hook=_int_keys)
        if doc.get("key") == key:
            return Lark._load_from_dict(doc["data"], doc["memo"])
    except Exception:  # noqa: BLE001 - absent or damaged: rebuilt below
        pass
    parser = Lark(text, **_OPTIONS)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"key": key, "data": data, "memo": memo}), encoding="utf-8")
        os.replace(tmp, path)  # whole or not at all, whoever writes it concurrently
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return parser


def _pos(meta_or_token) -> ast.Pos | None:
    line = getattr(meta_or_token, "line", None)
    column = getattr(meta_or_token, "column", None)
    return ast.Pos(line, column) if line is not None else None


def _unquote(text: str) -> str:
    return text[1:-1].replace(text[0] * 2, text[0])


@v_args(meta=True, inline=True)
class _ToAst(Transformer_NonRecursive):
    """Lark tree -> vql.ast nodes. One method per grammar alias; non-recursive, so a deep tree
    costs no Python stack here (:data:`MAX_DEPTH` bounds it for the stages after parsing)."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text  # the statement: a subquery keeps its own text

    # names and literals
    def name(self, meta, token):
        return str(token)

    def quoted_name(self, meta, token):
        return _unquote(str(token))

    def number(self, meta, token):
        text = str(token)
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:  # more digits than Python converts to an int: as large as a float gets
            value = float(text)
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

    def pg_cast(self, meta, expr, _colons, type_name):
        return ast.Cast(expr, type_name, _pos(meta))

    def subquery(self, meta, select):
        return ast.Subquery(select, self.text[meta.start_pos:meta.end_pos], _pos(meta))

    def in_subquery(self, meta, expr, *rest):
        return ast.InSubquery(expr, rest[-1], len(rest) == 3, _pos(meta))

    def exists(self, meta, _exists, subquery):
        return ast.Exists(subquery, _pos(meta))

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

    def derived_table(self, meta, subquery, *rest):
        return ast.DerivedTable(subquery, rest[-1] if rest else None, _pos(meta))

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
        table = next(p for p in parts if isinstance(p, (ast.TableRef, ast.DerivedTable)))
        return ast.Join(kind, table, parts[-1])

    def cross_join(self, meta, _cross, _join, table):
        return ast.Join("CROSS", table, None)

    def comma_join(self, meta, table):
        return ast.Join("COMMA", table, None)

    def from_clause(self, meta, _from, table, *joins):
        return ("from", table, tuple(joins))

    def where_clause(self, meta, _w, expr):
        return ("where", expr)

    def group_clause(self, meta, _g, _b, *exprs):
        return ("group_by", tuple(exprs))

    def group_all(self, meta, _g, _b, _all):
        return ("group_by", (ast.AllColumns(_pos(meta)),))

    def having_clause(self, meta, _h, expr):
        return ("having", expr)

    def order_item(self, meta, expr, *direction):
        return ast.OrderItem(expr, bool(direction) and direction[0].type == "DESC")

    def order_clause(self, meta, _o, _b, *items):
        return ("order_by", tuple(items))

    def order_all(self, meta, _o, _b, _all, *direction):
        descending = bool(direction) and direction[0].type == "DESC"
        return ("order_by", (ast.OrderItem(ast.AllColumns(_pos(meta)), descending),))

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
_EXPRESSION_STARTS = {"NUMBER", "STRING", "PARAM", "CASE", "CAST", "NOT", "NULL", "TRUE", "FALSE", "LPAR", "ADD_OP",
                      "EXISTS"}


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


def _lines(text: str) -> list[str]:
    """The statement's lines as Lark counts them: split on ``\\n`` only (``str.splitlines`` also
    splits on ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``... which Lark's positions do not).

    >>> _lines("show\\u2028videos\\nx")
    ['show\\u2028videos', 'x']
    """
    return text.split("\n")


def caret(text: str, line: int, column: int) -> str:
    lines = _lines(text)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    source = "".join(c if c.isprintable() or c == "\t" else "?" for c in source)  # one column each
    return f"  {source}\n  {' ' * max(column - 1, 0)}^"


def syntax_error(text: str, e: UnexpectedInput) -> ParseError:
    """A one-paragraph syntax error: where, what was found, what was expected, and a caret."""
    line, column = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    lines = _lines(text)
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        found = "end of statement"
        line, column = len(lines), len(lines[-1]) + 1
    elif isinstance(e, UnexpectedToken):
        found = repr(str(e.token))
    elif isinstance(e, UnexpectedCharacters):
        pos = getattr(e, "pos_in_stream", None)
        found = repr(text[pos]) if isinstance(pos, int) and 0 <= pos < len(text) else "a character"
        return ParseError(f"syntax error at line {line}, column {column}: unexpected character {found}\n"
                          f"{caret(text, line, column)}")
    else:
        found = "end of statement"
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None) or ()
    message = f"syntax error at line {line}, column {column}: unexpected {found}"
    if expected:
        message += f"; expected {_expected(expected)}"
    return ParseError(f"{message}\n{caret(text, line, column)}")


MAX_DEPTH = 200
"""How deeply a statement may nest (parentheses, NOT, signs, operators: levels of its syntax
tree). Deeper statements are a :class:`ParseError`; everything after parsing (binding, SQL
generation, planning) is recursive and is safe to this depth. Long ``AND``/``OR`` chains do not
count as nesting: they are rebuilt as balanced trees (1,000 AND-ed terms nest 10 deep)."""

_CHAIN = 16  # AND/OR chains longer than this are balanced; shorter ones keep their left-deep shape


def _balance_chain(node: Tree) -> Tree:
    """``((a AND b) AND c) AND ...`` of more than ``_CHAIN`` terms -> a balanced tree of the same
    terms in the same order (AND and OR are associative, NULLs included)."""
    op, terms, tokens, top = node.data, [], [], node
    while isinstance(node, Tree) and node.data == op:
        left, token, right = node.children
        terms.append(right)
        tokens.append(token)
        node = left
    terms.append(node)
    if len(terms) <= _CHAIN:
        return top
    terms.reverse()
    tokens.reverse()

    def build(lo: int, hi: int):
        if hi - lo == 1:
            return terms[lo]
        mid = (lo + hi) // 2
        return Tree(op, [build(lo, mid), tokens[mid - 1], build(mid, hi)], top.meta)

    return build(0, len(terms))


def _check_depth(tree: Tree) -> Tree:
    """Balance long AND/OR chains, then refuse a tree deeper than :data:`MAX_DEPTH` (iteratively:
    the check itself must not overflow Python's stack)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = getattr(node, "meta", None)
            where = f" (at line {meta.line}, column {meta.column})" if meta is not None and not meta.empty else ""
            raise ParseError(f"query nested too deeply: more than {MAX_DEPTH} levels of parentheses, NOT, "
                             f"signs or operators{where}")
        for i, child in enumerate(node.children):
            if isinstance(child, Tree):
                if child.data in ("and_", "or_"):
                    child = node.children[i] = _balance_chain(child)
                stack.append((child, depth + 1))
    return tree


def parse_statement(text: str) -> ast.Node:
    """Parse one statement (no trailing ``;``) with vql's grammar."""
    try:
        tree = _parser().parse(text)
        return _ToAst(text).transform(_check_depth(tree))
    except UnexpectedInput as e:
        raise syntax_error(text, e) from None
    except VisitError as e:  # a bug in the transformer, never the user's fault
        raise ParseError(f"internal error while reading the statement: {e.orig_exc}") from e


def is_owned(statement: str) -> bool:
    """Whether the statement starts like one of vql's own (else DuckDB runs it)."""
    return bool(_OWNED.match(strip_comments(statement)))


def parse(statement: str, video_names: frozenset[str] = frozenset()) -> ast.Node:
    """One statement -> AST; DuckDB's statements (and SELECTs over no video) -> Passthrough."""
    videos = {v.lower() for v in video_names}
    if not is_owned(statement):
        if re.match(r"\s*with\b", strip_comments(statement), re.IGNORECASE) and names_in(statement) & videos:
            raise ParseError("a statement that starts with a common table expression (WITH name AS (...)) and names a "
                             "video is not supported: write the CTE's query as a subquery over tables, or query the "
                             "video in a subquery in FROM")
        return ast.Passthrough(statement)
    try:
        node = parse_statement(statement)
    except ParseError as e:
        head = strip_comments(statement).split(None, 1)[0].lower()
        if head in ("select", "describe", "desc", "explain") and not names_in(statement) & videos:
            return ast.Passthrough(statement, str(e))
        raise
    return node
