"""The VQL syntax tree: frozen dataclasses with source positions, and one bottom-up ``transform``.

Rewrites build new trees and never mutate their input:

>>> e = Binary(">=", Call("object_count", (Literal("person"),)), Literal(7))
>>> transform(e, lambda n: Literal(8) if n == Literal(7) else n).right
Literal(value=8, pos=None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a node starts in the statement text (1-based line and column)."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Node:
    pass


# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any  # int | float | str | bool | None
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Param(Node):
    text: str  # "?" or "$1"
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Column(Node):
    name: str
    table: str | None = None
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Star(Node):
    table: str | None = None
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NamedArg(Node):
    name: str
    value: Node
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...] = ()
    named: tuple[NamedArg, ...] = ()
    distinct: bool = False
    star: bool = False
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Tuple(Node):
    items: tuple[Node, ...]
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "NOT" | "-" | "+"
    operand: Node
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # AND OR = <> < <= > >= + - * / % LIKE
    left: Node
    right: Node
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Between(Node):
    expr: Node
    low: Node
    high: Node
    negated: bool = False
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    expr: Node
    negated: bool = False
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class InList(Node):
    expr: Node
    items: tuple[Node, ...]
    negated: bool = False
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Cast(Node):
    expr: Node
    type_name: str
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AllColumns(Node):
    """``ALL`` in ``GROUP BY ALL`` / ``ORDER BY ALL`` (DuckDB: every non-aggregate item / every item)."""

    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Subquery(Node):
    """A parenthesized SELECT inside another statement. ``sql`` is its text as the user wrote it
    (parentheses included), which is what DuckDB runs; ``select`` is its tree, kept for checks
    (which tables it reads, which functions it calls) and opaque to :func:`transform` and
    :func:`walk`: rewrites of the outer query (its video columns, its model predicates) never
    reach inside."""

    select: Select = dataclasses.field(metadata={"opaque": True})
    sql: str = ""
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class InSubquery(Node):
    expr: Node
    subquery: Subquery
    negated: bool = False
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Exists(Node):
    subquery: Subquery
    pos: Pos | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Case(Node):
    whens: tuple[tuple[Node, Node], ...]
    default: Node | None = None
    pos: Pos | None = dataclasses.field(default=None, compare=False)


# --- SELECT ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectItem(Node):
    expr: Node
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class TableRef(Node):
    name: str
    alias: str | None = None
    pos: Pos | None = dataclasses.field(default=None, compare=False)

    @property
    def ref(self) -> str:
        """The name columns are qualified with."""
        return self.alias or self.name


@dataclass(frozen=True, slots=True)
class DerivedTable(Node):
    """``FROM (SELECT ...) [AS] alias``."""

    subquery: Subquery
    alias: str | None = None
    pos: Pos | None = dataclasses.field(default=None, compare=False)

    name = ""  # no catalog entry: never a video

    @property
    def ref(self) -> str:
        return self.alias or ""


@dataclass(frozen=True, slots=True)
class Join(Node):
    kind: str  # "INNER" | "LEFT" | "RIGHT" | "FULL" | "CROSS" | "COMMA" (``FROM a, b``: DuckDB's precedence kept)
    table: TableRef | DerivedTable
    on: Node | None = None


@dataclass(frozen=True, slots=True)
class OrderItem(Node):
    expr: Node
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Select(Node):
    items: tuple[Node, ...]
    from_: TableRef | DerivedTable | None = None
    joins: tuple[Join, ...] = ()
    where: Node | None = None
    group_by: tuple[Node, ...] = ()
    having: Node | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: Node | None = None
    offset: Node | None = None
    distinct: bool = False
    options: tuple[NamedArg, ...] = ()

    @property
    def tables(self) -> tuple[TableRef | DerivedTable, ...]:
        return ((self.from_,) if self.from_ else ()) + tuple(j.table for j in self.joins)


# --- statements --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateVideo(Node):
    name: str
    path: str
    replace: bool = False  # CREATE OR REPLACE VIDEO


@dataclass(frozen=True, slots=True)
class ShowVideos(Node):
    pass


@dataclass(frozen=True, slots=True)
class Describe(Node):
    name: str


@dataclass(frozen=True, slots=True)
class DropVideo(Node):
    name: str
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class DropResults(Node):
    name: str


@dataclass(frozen=True, slots=True)
class CreateFunction(Node):
    name: str
    kind: str
    path: str
    options: tuple[NamedArg, ...] = ()


@dataclass(frozen=True, slots=True)
class SetOption(Node):
    name: str
    value: Node


@dataclass(frozen=True, slots=True)
class Explain(Node):
    select: Select
    analyze: bool = False


@dataclass(frozen=True, slots=True)
class Passthrough(Node):
    """A statement vql does not own: DuckDB runs its text unchanged.

    ``our_error`` is vql's syntax error for a SELECT its grammar could not read; it is shown if
    DuckDB cannot parse the statement either."""

    sql: str
    our_error: str | None = dataclasses.field(default=None, compare=False)


N = TypeVar("N", bound=Node)


def _fields(node: Node) -> list[dataclasses.Field]:
    """A node's fields but the opaque ones (:class:`Subquery`'s tree)."""
    return [f for f in dataclasses.fields(node) if not f.metadata.get("opaque")]


def _parts(value: Any) -> list | None:
    """The children of a node (its field values) or of a tuple; None for a leaf value."""
    if isinstance(value, Node):
        return [getattr(value, f.name) for f in _fields(value)]
    if isinstance(value, tuple):
        return list(value)
    return None


def transform(node: N, fn: Callable[[Node], Node]) -> Node:
    """Rebuild ``node`` bottom-up: children first, then ``fn`` on the rebuilt node.

    Iterative (an explicit stack), so a deep tree never exhausts Python's stack here."""
    stack: list[tuple[Any, list, list]] = [(node, _parts(node), [])]
    while True:
        value, old, new = stack[-1]
        if len(new) < len(old):
            child = old[len(new)]
            parts = _parts(child)
            if parts is None:
                new.append(child)
            else:
                stack.append((child, parts, []))
            continue
        stack.pop()
        if isinstance(value, Node):
            changes = {f.name: n for f, o, n in zip(_fields(value), old, new) if n is not o and n != o}
            result = fn(dataclasses.replace(value, **changes) if changes else value)
        else:
            result = value if all(n is o for n, o in zip(new, old)) else tuple(new)
        if not stack:
            return result
        stack[-1][2].append(result)


def walk(node: Node):
    """Every node of the tree, parents before children (iterative, like :func:`transform`)."""
    stack: list[Any] = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, Node):
            yield value
        parts = _parts(value)
        if parts:
            stack.extend(reversed(parts))
