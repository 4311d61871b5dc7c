"""AST -> DuckDB SQL text, one function per node type (``functools.singledispatch``).

>>> from vql.parser import parse_statement
>>> to_sql(parse_statement("select a.x, count(*) from t as a where x between 1 and 2 limit 3"))
'SELECT a.x, count(*) FROM t AS a WHERE (x BETWEEN 1 AND 2) LIMIT 3'
"""

from __future__ import annotations

import math
import re
from functools import singledispatch

from vql import ast

_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_RESERVED = {  # DuckDB's reserved keywords (duckdb_keywords() WHERE keyword_category = 'reserved')
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast", "check",
    "collate", "column", "constraint", "create", "default", "deferrable", "desc", "describe", "distinct", "do",
    "else", "end", "except", "false", "fetch", "for", "foreign", "from", "group", "having", "in", "initially",
    "intersect", "into", "lambda", "lateral", "leading", "limit", "not", "null", "offset", "on", "only", "or",
    "order", "pivot", "pivot_longer", "pivot_wider", "placing", "primary", "qualify", "references", "returning",
    "select", "show", "some", "summarize", "symmetric", "table", "then", "to", "trailing", "true", "union",
    "unique", "unpivot", "using", "variadic", "when", "where", "window", "with",
    # and words that are not reserved there but begin or join clauses in vql's SQL
    "by", "is", "like", "between", "join", "left", "right", "full", "inner", "outer", "cross",
}


def ident(name: str) -> str:
    """Quote an identifier unless it is plainly safe: every name from a statement goes through
    here on its way into SQL text (tables, aliases, columns, DESCRIBE).

    >>> ident("cam"), ident("my table"), ident('a"; DROP TABLE t; --'), ident("table")
    ('cam', '"my table"', '"a""; DROP TABLE t; --"', '"table"')
    """
    if _PLAIN_NAME.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def literal(value) -> str:
    """A Python constant as DuckDB SQL.

    >>> literal("it's"), literal(1e309), literal(-10**400), literal(2.5)
    ("'it''s'", "CAST('inf' AS DOUBLE)", "CAST('-inf' AS DOUBLE)", '2.5')
    """
    if value is None:
        return "NULL"
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int) and abs(value) >= 2**127:  # beyond DuckDB's HUGEINT: a DOUBLE
        try:
            value = float(value)
        except OverflowError:
            value = math.inf if value > 0 else -math.inf
    if isinstance(value, float) and not math.isfinite(value):
        return f"CAST('{value!r}' AS DOUBLE)"
    return repr(value)


@singledispatch
def to_sql(node: ast.Node) -> str:
    raise TypeError(f"no SQL for {type(node).__name__}")


@to_sql.register
def _(node: ast.Literal) -> str:
    return literal(node.value)


@to_sql.register
def _(node: ast.Param) -> str:
    return node.text


@to_sql.register
def _(node: ast.Column) -> str:
    return f"{ident(node.table)}.{ident(node.name)}" if node.table else ident(node.name)


@to_sql.register
def _(node: ast.Star) -> str:
    return f"{ident(node.table)}.*" if node.table else "*"


@to_sql.register
def _(node: ast.NamedArg) -> str:
    return f"{ident(node.name)} := {to_sql(node.value)}"


@to_sql.register
def _(node: ast.Call) -> str:
    if node.star:
        return f"{node.name}(*)"
    args = ", ".join([to_sql(a) for a in node.args] + [to_sql(a) for a in node.named])
    return f"{node.name}({'DISTINCT ' if node.distinct else ''}{args})"


@to_sql.register
def _(node: ast.Tuple) -> str:
    return "(" + ", ".join(to_sql(i) for i in node.items) + ")"


@to_sql.register
def _(node: ast.Unary) -> str:
    if node.op == "NOT":
        return f"(NOT {to_sql(node.operand)})"
    return f"({node.op}{to_sql(node.operand)})"


@to_sql.register
def _(node: ast.Binary) -> str:
    return f"({to_sql(node.left)} {node.op} {to_sql(node.right)})"


@to_sql.register
def _(node: ast.Between) -> str:
    neg = "NOT " if node.negated else ""
    return f"({to_sql(node.expr)} {neg}BETWEEN {to_sql(node.low)} AND {to_sql(node.high)})"


@to_sql.register
def _(node: ast.IsNull) -> str:
    return f"({to_sql(node.expr)} IS {'NOT ' if node.negated else ''}NULL)"


@to_sql.register
def _(node: ast.InList) -> str:
    items = ", ".join(to_sql(i) for i in node.items)
    return f"({to_sql(node.expr)} {'NOT ' if node.negated else ''}IN ({items}))"


@to_sql.register
def _(node: ast.Cast) -> str:
    return f"CAST({to_sql(node.expr)} AS {node.type_name})"


@to_sql.register
def _(node: ast.AllColumns) -> str:
    return "ALL"


@to_sql.register
def _(node: ast.Subquery) -> str:
    return node.sql


@to_sql.register
def _(node: ast.InSubquery) -> str:
    return f"({to_sql(node.expr)} {'NOT ' if node.negated else ''}IN {to_sql(node.subquery)})"


@to_sql.register
def _(node: ast.Exists) -> str:
    return f"(EXISTS {to_sql(node.subquery)})"


@to_sql.register
def _(node: ast.DerivedTable) -> str:
    return to_sql(node.subquery) + (f" AS {ident(node.alias)}" if node.alias else "")


@to_sql.register
def _(node: ast.Case) -> str:
    parts = ["CASE"] + [f"WHEN {to_sql(c)} THEN {to_sql(v)}" for c, v in node.whens]
    if node.default is not None:
        parts.append(f"ELSE {to_sql(node.default)}")
    return " ".join(parts + ["END"])


@to_sql.register
def _(node: ast.SelectItem) -> str:
    return to_sql(node.expr) + (f" AS {ident(node.alias)}" if node.alias else "")


@to_sql.register
def _(node: ast.TableRef) -> str:
    return ident(node.name) + (f" AS {ident(node.alias)}" if node.alias else "")


@to_sql.register
def _(node: ast.Join) -> str:
    if node.kind == "COMMA":
        return f", {to_sql(node.table)}"
    if node.kind == "CROSS":
        return f"CROSS JOIN {to_sql(node.table)}"
    return f"{node.kind} JOIN {to_sql(node.table)} ON {to_sql(node.on)}"


@to_sql.register
def _(node: ast.OrderItem) -> str:
    return to_sql(node.expr) + (" DESC" if node.descending else "")


@to_sql.register
def _(node: ast.Select) -> str:
    parts = ["SELECT " + ("DISTINCT " if node.distinct else "") + ", ".join(to_sql(i) for i in node.items)]
    if node.from_ is not None:
        parts.append("FROM " + to_sql(node.from_) + "".join(("" if j.kind == "COMMA" else " ") + to_sql(j)
                                                            for j in node.joins))
    if node.where is not None:
        parts.append("WHERE " + to_sql(node.where))
    if node.group_by:
        parts.append("GROUP BY " + ", ".join(to_sql(g) for g in node.group_by))
    if node.having is not None:
        parts.append("HAVING " + to_sql(node.having))
    if node.order_by:
        parts.append("ORDER BY " + ", ".join(to_sql(o) for o in node.order_by))
    if node.limit is not None:
        parts.append("LIMIT " + to_sql(node.limit))
    if node.offset is not None:
        parts.append("OFFSET " + to_sql(node.offset))
    return " ".join(parts)
