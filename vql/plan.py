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

import operator
import re
from dataclasses import dataclass

from vql.engine.video import VideoInfo
from vql.sqlgen import literal


DEFAULT_MIN_SCORE = 0.5  # min_score when neither the call nor SET gives one
DEFAULT_BUDGET = 2_000  # reference calls of a recall selection
DEFAULT_MISS = 0.002  # a top-k search's certified share of unlabelled frames that may outrank its last row


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
        """Every option spelt out: the name results and plans are kept under."""
        return self._text(short=False)

    @property
    def short_text(self) -> str:
        """As a user would write it: options at their defaults left out (progress bars).

        >>> p = ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "vql_a0")
        >>> p.short_text, p.text
        ("contains('person')", "contains('person', min_score := 0.5)")
        >>> ModelPredicate("contains", "car", 2, 0.3, (0, 0, 0.5, 1), "centernet", "vql_a1").short_text
        "contains('car', min_score := 0.3, region := (0, 0, 0.5, 1))"
        """
        return self._text(short=True)

    def _text(self, short: bool) -> str:
        args = [literal(self.class_name)]
        if not short or self.min_score != DEFAULT_MIN_SCORE:
            args.append(f"min_score := {self.min_score:g}")
        if self.region is not None:
            args.append("region := (" + ", ".join(f"{v:g}" for v in self.region) + ")")
        if self.model != "centernet":
            args.append(f"model := {literal(self.model)}")
        return f"{self.function}({', '.join(args)})"

    @property
    def sql_type(self) -> str:
        return "BOOLEAN" if self.function == "contains" else "INTEGER"


# of stored plans (planner/plan_format.py); here, where reading it needs no torch. 6: specialized
# CNNs with channels-last weights, scored in batches of 64 (their scores differ from version 5's
# in the last float digits, and a certificate holds for the scores it checked): a version-5 plan
# is planned again, its labels reused. 7: difference detectors on 64-pixel frames and a training
# prefix split in thirds (the plan's EXPLAIN says how its prefix was used): a version-6 plan is
# planned again, its labels reused. 8: a specialized CNN's architecture holds the precision it
# was trained in and is scored in (bfloat16 where the CPU has it): a version-7 plan is planned
# again, its labels reused
PLAN_FORMAT_VERSION = 8

_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "=": operator.eq,
            "<>": operator.ne}


@dataclass(frozen=True, slots=True)
class Atom:
    """A boolean test of one frame's labels: ``contains(...)`` or ``object_count(...) op k``.

    >>> import numpy as np
    >>> a = Atom(ModelPredicate("object_count", "car", 2, 0.5, None, "centernet", "n"), ">=", 2)
    >>> a.holds(np.array([0, 2, 3])).tolist(), a.text
    ([False, True, True], "object_count('car', min_score := 0.5) >= 2")
    """

    predicate: ModelPredicate
    op: str = ">="
    k: int = 1
    column: str = ""

    def holds(self, counts):
        return _COMPARE[self.op](counts, self.k)

    @property
    def text(self) -> str:
        if self.predicate.function == "contains":
            return self.predicate.text
        return f"{self.predicate.text} {self.op} {self.k}"

    @property
    def short_text(self) -> str:
        """:attr:`text` with options at their defaults left out, as in ``ModelPredicate``."""
        if self.predicate.function == "contains":
            return self.predicate.short_text
        return f"{self.predicate.short_text} {self.op} {self.k}"


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
    where: str | None = None  # the WHERE clause as SQL when it depends on each frame alone: what is certified
    in_set: bool = False  # one member video of a video set (its results are reported under its name)

    def key(self, column: str) -> str:
        """How results and statistics name an atom of this scan: its column, prefixed with the
        member's name in a video set (whose members share the columns)."""
        return f"{self.scan.video}:{column}" if self.in_set else column


@dataclass(frozen=True, slots=True)
class LimitSearch:
    """A LIMIT without ORDER BY over model tests: SQL asks for *any* ``rows`` rows, so the
    reference confirms frames in the order of a cheap proxy's score (engine/search.py) until that
    many frames satisfy the WHERE clause, ``gap`` frames apart at least (``WITH (gap := n)``)."""

    rows: int  # LIMIT + OFFSET
    gap: int = 0

    def explain_line(self) -> str:
        spacing = f", at least {self.gap} frames apart" if self.gap else ""
        return (f"LIMIT search: the reference confirms frames in the order of a difference-to-background proxy "
                f"(a quarter to three quarters drawn uniformly at random, as the proxy pays) until {self.rows} "
                f"frames satisfy WHERE{spacing}; every row returned is true by the reference")

    def covers(self, node) -> bool:
        return bool(node.atoms)


@dataclass(frozen=True, slots=True)
class CountEstimate:
    """``SELECT COUNT(*) ... WITH (error := e)``: the count of frames where WHERE holds, from a
    uniform random sample the reference labels, with an exact interval (engine/estimate.py); or
    ``SELECT AVG(object_count(...))`` / ``SUM(...)``: the average or sum of a count over the
    frames, with a betting interval (engine/mean.py)."""

    error: float  # the relative half-width the sample is planned for
    confidence: float = 0.95
    keys: tuple[str, ...] = ()  # GROUP BY keys, SQL about each frame: one count per group
    aggregate: str = "count"  # "count" (of frames where WHERE holds), "avg" or "sum" (of ``value``)
    value: ModelPredicate | None = None  # the object_count(...) averaged or summed
    max_count: int | None = None  # WITH (max_count := m): no frame counts more (else: the model's limit)
    filter: str | None = None  # AVG/SUM: the WHERE clause (about each frame alone) choosing the frames

    def explain_line(self) -> str:
        groups = (f" per group of {', '.join(self.keys)} (each group its own sample; the intervals hold jointly)"
                  if self.keys else "")
        if self.aggregate != "count":
            cap = (f"no frame counts more than {self.max_count} (max_count, checked on every frame labelled)"
                   if self.max_count else "no frame counts more than the model reports on one frame")
            return (f"{self.aggregate.upper()} estimate of {self.value.short_text}{groups}: frames drawn uniformly at "
                    f"random from the scan are labelled by the reference until a betting confidence sequence (valid "
                    f"at every sample size) is within ±{self.error:g} of the estimate, at {self.confidence:.0%}, "
                    f"given that {cap}; frames already labelled counted exactly")
        return (f"COUNT estimate{groups}: frames drawn uniformly at random from the scan (within strata of a "
                f"difference-to-background proxy where that needs fewer) are labelled by the reference; a pilot sizes "
                f"the sample for about ±{self.error:g} of the count; the interval is exact (hypergeometric) at "
                f"{self.confidence:.0%}, frames already labelled counted exactly")

    def covers(self, node) -> bool:
        return bool(node.atoms) if self.value is None else self.value in node.predicates


@dataclass(frozen=True, slots=True)
class TopK:
    """``ORDER BY object_count(...) DESC LIMIT k`` over one video: the reference labels frames in a
    proxy's order, and a uniform random sample then bounds the share of the frames it did not
    label that would outrank the answer's last row (engine/topk.py)."""

    rows: int  # LIMIT + OFFSET
    column: str  # the per-frame column ordered by (an object_count predicate)
    descending: bool = True
    miss: float = DEFAULT_MISS  # the share of unlabelled frames allowed to outrank the answer's last row
    confidence: float = 0.95
    by: str = ""  # the predicate ordered by, as the user wrote it

    def explain_line(self) -> str:
        way = "highest" if self.descending else "lowest"
        return (f"top-k search: the {self.rows} frames with the {way} {self.by or self.column}; the reference labels "
                f"frames in a difference-to-background proxy's order (and the neighbours of the best found), then "
                f"frames drawn uniformly at random from the rest certify, at {self.confidence:.0%}, that at most "
                f"{self.miss:g} of the frames not labelled would outrank the last row (or every frame is labelled: exact)")

    def covers(self, node) -> bool:
        return any(p.column == self.column for p in node.predicates)


@dataclass(frozen=True, slots=True)
class RecallSelect:
    """``WHERE <model tests> WITH (recall := r)``: frames returned so that at least a share ``r``
    of the frames where WHERE holds are among them, with probability ``confidence``, from
    ``budget`` reference calls on random frames (engine/recall.py)."""

    recall: float
    budget: int = DEFAULT_BUDGET
    confidence: float = 0.95

    def explain_line(self) -> str:
        return (f"recall selection: the reference labels {self.budget} frames drawn uniformly at random (every frame, "
                f"for an exact answer, where that is 90% of the scan or more); the frames "
                f"a difference-to-background proxy ranks highest are returned, as few as exact bounds certify for "
                f"recall >= {self.recall:g} at {self.confidence:.0%} (fixed-sequence tests, largest set first); "
                f"precision is reported")

    def covers(self, node) -> bool:
        return bool(node.atoms)


@dataclass(frozen=True, slots=True)
class SqlQuery:
    sql: str
    inputs: tuple[EvaluatePredicates, ...]
    options: tuple[tuple[str, object], ...] = ()
    stop_after: int | None = None  # LIMIT (+ OFFSET) rows in frame order: scan only until found
    search: LimitSearch | None = None  # LIMIT without ORDER BY over model tests: a proxy-ordered search
    estimate: CountEstimate | None = None  # COUNT(*) WITH (error := e): a sampled count with its interval
    top: TopK | None = None  # ORDER BY object_count(...) DESC LIMIT k: a top-k search with a certified miss share
    selection: RecallSelect | None = None  # WITH (recall := r): a selection with a recall guarantee
    unions: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # a video set's table: (member, its table), ...

    @property
    def cascades(self) -> bool:
        """Whether the model tests are answered by cascades (planned per query), not by a LIMIT
        search, a count estimate, a top-k search or a recall selection."""
        return self.special is None

    @property
    def special(self):
        """The LIMIT search, count estimate, top-k search or recall selection answering this
        query, if any."""
        return self.search or self.estimate or self.top or self.selection


def claim_names(atoms, where: str | None) -> tuple[str, ...]:
    """What the certificate is about, in the user's terms: the WHERE clause with each atom's
    column replaced by the test it stands for, or (``where`` None) each test on its own.

    >>> a = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
    >>> claim_names([a], "((NOT cam.vql_a0) AND (frame < 9))")
    ("WHERE ((NOT contains('person', min_score := 0.5)) AND (frame < 9))",)
    """
    if where is None:
        return tuple(a.text for a in atoms)
    text = {a.column: a.text for a in atoms}
    return ("WHERE " + re.sub(r"\b(?:\w+\.)?(vql_a\d+)\b", lambda m: text.get(m.group(1), m.group(0)), where),)


def explain(plan: SqlQuery, plans: dict | None = None, planning: dict | None = None) -> str:
    """The plan as an indented tree, one operator per line; ``plans`` are the query plans of the
    model tests (per-frame table -> planner.query.QueryPlan) when they are known, ``planning``
    what planning them will take otherwise (per-frame table -> a line)."""
    lines = [f"SqlQuery: {plan.sql}"]
    # fpr and fnr are a cascade's targets: shown where cascades answer the model tests
    shown = [(k, v) for k, v in plan.options if plan.cascades or k not in ("fpr", "fnr")]
    if shown:
        lines.append("  options: " + ", ".join(f"{k} = {v}" for k, v in shown))
    if plan.stop_after is not None:
        lines.append(f"  scan bounded by LIMIT: frames labelled in frame order, in growing chunks, until "
                     f"{plan.stop_after} rows are found (exact)")
    for special in (plan.search, plan.estimate, plan.top, plan.selection):
        if special is not None:
            lines.append("  " + special.explain_line())
    scans = {ev.table: ev.scan for ev in plan.inputs}
    for table, parts in plan.unions:
        scanned = sum(scans[part].last >= scans[part].first for _, part in parts)
        left = f" ({len(parts) - scanned} with no frame to scan)" if scanned < len(parts) else ""
        line = (f"  VideoSet -> {table}: the union of {len(parts)} videos' per-frame tables{left}, with a video "
                "column; each video is scanned, planned and certified on its own")
        if plan.cascades and any(ev.atoms for ev in plan.inputs) and dict(plan.options).get("exact") is not True:
            line += (f" (its targets hold for it at the confidence its plan states); the set's pooled fpr and fnr are "
                     f"weighted means of its videos' rates, so the targets hold for the whole set whenever they hold "
                     f"for every video: with probability at least 1 - {scanned} x (1 - that confidence), by the "
                     f"union bound")
        lines.append(line)
    for ev in plan.inputs:
        lines.append(f"  EvaluatePredicates {ev.scan.alias} -> {ev.table}")
        for p in ev.predicates:
            lines.append(f"    {p.column} {p.sql_type} = {p.text}")
        if ev.combine and plan.cascades:
            lines.append(f"    atoms short-circuit under {ev.combine.upper()}: the one ruling out frames at the least "
                         f"cost runs first, the others only on the frames left open")
        known = (plans or {}).get(ev.table)
        if known is not None:
            lines += ["    " + line for line in known.explain_lines()]
        else:
            for atom in ev.atoms:
                lines.append(f"    {atom.column} BOOLEAN = {atom.text}")
            if ev.atoms and plan.cascades:
                lines.append("    " + ((planning or {}).get(ev.table) or "cascades planned when the query runs"))
                lines.append("    targets certified for: " + " and ".join(claim_names(ev.atoms, ev.where))
                             + ("" if ev.where else " (each on its own: WHERE reads more than the frame)"))
        strategy, which = (("top-k", "frames the top-k search picks") if plan.top is not None and plan.top.covers(ev)
                           else ("sample", "frames the estimate draws at random")
                           if plan.estimate is not None and plan.estimate.covers(ev) else (None, None))
        for lf in ev.labels:
            lines.append(f"    LabelFrames model={lf.model} version={lf.model_version} strategy={strategy or lf.strategy}: "
                         f"{which or 'reference on every frame of the scan'}, stored labels reused")
        s = ev.scan
        lines.append(
            f"      VideoScan {s.video} AS {s.alias}: frames {s.first}..{s.last} ({s.frame_count} of "
            f"{s.info.frames}, {s.info.fps:g} fps, {s.info.width}x{s.info.height})"
        )
    return "\n".join(lines)
