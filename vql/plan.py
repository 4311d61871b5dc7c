"""The logical plan of a SELECT over videos, and its EXPLAIN text.

A plan is a tree of frozen nodes, leaves first:

- :class:`VideoScan`: the frames of one video the query needs (a ts/frame range bounds it);
- :class:`LabelFrames`: run a reference model on those frames (exact: every frame; labels
  already in the store are reused);
- :class:`EvaluatePredicates`: compute the model predicates of the query per frame from the
  labels, into a table DuckDB can read;
- :class:`SqlQuery`: the rest of the query, compiled to DuckDB SQL over those tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from vql.engine.video import VideoInfo
from vql.sqlgen import literal


@dataclass(frozen=True, slots=True)
class ModelPredicate:
    """``contains(...)`` or ``object_count(...)`` bound to a model, a class and its options."""

    function: str  # "contains" | "object_count"
    class_name: str
    class_id: int
    min_score: float
    region: tuple[float, float, float, float] | None
    model: str
    column: str

    @property
    def text(self) -> str:
        args = [literal(self.class_name), f"min_score := {self.min_score:g}"]
        if self.region is not None:
            args.append("region := (" + ", ".join(f"{v:g}" for v in self.region) + ")")
        if self.model != "centernet":
            args.append(f"model := {literal(self.model)}")
        return f"{self.function}({', '.join(args)})"

    @property
    def sql_type(self) -> str:
        return "BOOLEAN" if self.function == "contains" else "INTEGER"


@dataclass(frozen=True, slots=True)
class VideoScan:
    video: str
    alias: str
    info: VideoInfo
    first: int
    last: int

    @property
    def frame_count(self) -> int:
        return max(0, self.last - self.first + 1)


@dataclass(frozen=True, slots=True)
class LabelFrames:
    scan: VideoScan
    model: str
    model_version: str
    strategy: str = "exact"


@dataclass(frozen=True, slots=True)
class EvaluatePredicates:
    scan: VideoScan
    labels: tuple[LabelFrames, ...]
    predicates: tuple[ModelPredicate, ...]
    table: str
    atoms: tuple = ()  # planner.cascade.Atom: boolean tests answered by cascades
    combine: str | None = None  # "and" / "or": atoms short-circuit (see binder.short_circuit)


@dataclass(frozen=True, slots=True)
class SqlQuery:
    sql: str
    inputs: tuple[EvaluatePredicates, ...]
    options: tuple[tuple[str, object], ...] = ()
    stop_after: int | None = None  # LIMIT (+ OFFSET) rows in frame order: scan only until found


def explain(plan: SqlQuery, choices: dict | None = None) -> str:
    """The plan as an indented tree, one operator per line; ``choices`` are the cascade
    decisions (atom column -> CascadeChoice) when they are known."""
    lines = [f"SqlQuery: {plan.sql}"]
    if plan.options:
        lines.append("  options: " + ", ".join(f"{k} = {v}" for k, v in plan.options))
    if plan.stop_after is not None:
        lines.append(f"  scan bounded by LIMIT: frames labelled in growing chunks until {plan.stop_after} rows are found")
    for ev in plan.inputs:
        lines.append(f"  EvaluatePredicates {ev.scan.alias} -> {ev.table}")
        for p in ev.predicates:
            lines.append(f"    {p.column} {p.sql_type} = {p.text}")
        if ev.combine:
            lines.append(f"    atoms short-circuit under {ev.combine.upper()}: the one ruling out frames at the least "
                         f"cost runs first, the others only on the frames left open")
        for atom in ev.atoms:
            choice = (choices or {}).get(atom.column)
            if choice is None:
                lines.append(f"    {atom.column} BOOLEAN = {atom.text}: cascade planned at run time")
            else:
                lines += ["    " + line for line in choice.explain_lines()]
        for lf in ev.labels:
            lines.append(
                f"    LabelFrames model={lf.model} version={lf.model_version} strategy={lf.strategy}: "
                f"reference on every frame of the scan, stored labels reused"
            )
        s = ev.scan
        lines.append(
            f"      VideoScan {s.video} AS {s.alias}: frames {s.first}..{s.last} ({s.frame_count} of "
            f"{s.info.frames}, {s.info.fps:g} fps, {s.info.width}x{s.info.height})"
        )
    return "\n".join(lines)
