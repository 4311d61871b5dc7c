"""Binding a SELECT over videos: names checked, model predicates resolved, a logical plan built.

>>> plan = bind_select(parse_statement(q), catalog)             # doctest: +SKIP
>>> print(explain(plan))                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

from vql import ast
from vql.engine.video import VideoInfo
from vql.errors import BindError, ModelError
from vql.early import check_search_options, check_top_options, count_estimate, recall_select, stop_after, top_k
from vql.plan import DEFAULT_MIN_SCORE, Atom, EvaluatePredicates, LabelFrames, LimitSearch, ModelPredicate, SqlQuery, VideoScan
from vql.sqlgen import to_sql
from vql.udfs.reference import SCORE_FLOOR, ReferenceModel

MODEL_FUNCTIONS = ("contains", "object_count")
VIDEO_COLUMNS = ("frame", "ts")
PREDICATE_OPTIONS = ("min_score", "region", "model")
QUERY_OPTIONS = ("exact", "fpr", "fnr", "audit", "gap", "error", "confidence", "miss", "recall", "budget", "max_count")


@dataclass
class Catalog:
    """What binding needs to know: videos, models (loaded on demand), session settings."""

    videos: dict[str, VideoInfo]
    load_model: Callable[[str], ReferenceModel]
    settings: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # video sets: their member videos
    collation: str = ""  # DuckDB's default_collation: "" compares strings exactly

    def video(self, name: str) -> tuple[str, tuple[tuple[str, VideoInfo], ...]] | None:
        """A video (one member: itself) or a video set (its members), by name: (name as
        registered, ((member, info), ...)); None if neither."""
        for key, info in self.videos.items():
            if key.lower() == name.lower():
                return key, ((key, info),)
        for key, members in self.sets.items():
            if key.lower() == name.lower():
                return key, tuple((m, self.videos[m]) for m in members)
        return None

    def is_set(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key in self.sets)


def _number(node: ast.Node, what: str) -> float:
    if isinstance(node, ast.Unary) and node.op in "+-" and isinstance(node.operand, ast.Literal):
        value = _number(node.operand, what)
        return -value if node.op == "-" else value
    if isinstance(node, ast.Literal) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        try:
            return float(node.value)
        except OverflowError:  # an integer beyond any float: as far out as a float goes
            return math.inf if node.value > 0 else -math.inf
    raise BindError(f"{what} must be a number, got {to_sql(node)}")


def check_option(name: str, node: ast.Node, what: str) -> float:
    """A query setting's value, the same for ``SET name = v`` and ``WITH (name := v)``:
    ``min_score`` in [SCORE_FLOOR, 1], ``fpr``/``fnr`` in [0, 1) (0: the exact plan, the reference
    on every frame). NaN and infinities fail the range check.

    >>> check_option("fpr", ast.Literal(0), "option fpr")
    0.0
    >>> check_option("fnr", ast.Unary("-", ast.Literal(1)), "SET fnr")
    Traceback (most recent call last):
    vql.errors.BindError: SET fnr must be in [0, 1), got -1
    """
    value = _number(node, what)
    if name == "min_score":
        if not SCORE_FLOOR <= value <= 1.0:
            raise BindError(f"{what} must be between {SCORE_FLOOR} and 1, got {value:g}")
    elif not 0 <= value < 1:
        raise BindError(f"{what} must be in [0, 1), got {value:g}")
    return value


MAX_ROWS = 2**63 - 1


def check_limit(select: ast.Select) -> None:
    """A constant LIMIT or OFFSET is a number of rows DuckDB can count (a BIGINT).

    >>> check_limit(ast.Select((ast.Star(),), limit=ast.Literal(float("inf"))))
    Traceback (most recent call last):
    vql.errors.BindError: LIMIT must be a number of rows from 0 to 9223372036854775807, got inf
    """
    for word, node in (("LIMIT", select.limit), ("OFFSET", select.offset)):
        sign = 1
        while isinstance(node, ast.Unary) and node.op in ("+", "-"):
            sign, node = (-sign if node.op == "-" else sign), node.operand
        if isinstance(node, ast.Literal) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            value = sign * node.value
            if not (math.isfinite(value) and 0 <= value <= MAX_ROWS):
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                raise BindError(f"{word} must be a number of rows from 0 to {MAX_ROWS}, got {shown}")


def bind_predicate(call: ast.Call, catalog: Catalog, column: str) -> ModelPredicate:
    """Check a ``contains``/``object_count`` call and resolve its class and options."""
    fn = call.name
    if call.star or call.distinct or len(call.args) != 1:
        raise BindError(f"{fn}() takes one class name, e.g. {fn}('person'), then named options ({', '.join(PREDICATE_OPTIONS)})")
    cls = call.args[0]
    if not (isinstance(cls, ast.Literal) and isinstance(cls.value, str)):
        raise BindError(f"{fn}(): the class must be a string literal, e.g. {fn}('person'); got {to_sql(cls)}")
    options = {}
    for arg in call.named:
        if arg.name not in PREDICATE_OPTIONS:
            raise BindError(f"{fn}(): unknown option {arg.name!r}; options are {', '.join(PREDICATE_OPTIONS)}")
        if arg.name in options:
            raise BindError(f"{fn}(): option {arg.name!r} given twice")
        options[arg.name] = arg.value
    min_score = float(catalog.settings.get("min_score", DEFAULT_MIN_SCORE))
    if "min_score" in options:
        min_score = check_option("min_score", options["min_score"], f"{fn}(): min_score")
    region = None
    if "region" in options:
        node = options["region"]
        if not (isinstance(node, ast.Tuple) and len(node.items) == 4):
            raise BindError(f"{fn}(): region must be (x0, y0, x1, y1) as fractions of the frame, got {to_sql(node)}")
        region = tuple(_number(v, f"{fn}(): region") for v in node.items)
        x0, y0, x1, y1 = region
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise BindError(f"{fn}(): region must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "
                            f"got ({', '.join(f'{v:g}' for v in region)})")
    model_name = catalog.settings.get("model", "centernet")
    if "model" in options:
        node = options["model"]
        if isinstance(node, ast.Literal) and isinstance(node.value, str):
            model_name = node.value
        elif isinstance(node, ast.Column) and node.table is None:
            model_name = node.name
        else:
            raise BindError(f"{fn}(): model must be a model name, got {to_sql(node)}")
    try:
        model = catalog.load_model(model_name)
        class_id = model.class_index(cls.value)
    except ModelError as e:
        raise BindError(str(e)) from e
    return ModelPredicate(fn, cls.value, class_id, min_score, region, model.name, column)


def _conjuncts(node: ast.Node | None) -> list[ast.Node]:
    if node is None:
        return []
    if isinstance(node, ast.Binary) and node.op == "AND":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _own_column(n: ast.Node, alias: str, single_table: bool) -> str | None:
    """The name of ``n`` where it is a column of the video named ``alias`` in the query (qualified
    by it, or unqualified in a query over that video alone)."""
    if isinstance(n, ast.Column) and ((n.table and n.table.lower() == alias.lower()) or
                                      (n.table is None and single_table)):
        return n.name
    return None


def frame_bounds(where: ast.Node | None, alias: str, info: VideoInfo, single_table: bool,
                 param: Callable[[ast.Param], Any] | None = None) -> tuple[int, int]:
    """The frame range a WHERE clause allows, from its top-level ``frame``/``ts`` conjuncts.

    Only constant bounds count (``ts BETWEEN 10 AND 60``, ``frame < 100``, ``ts >= 3``,
    ``frame IN (2, 40)``: frames 2 to 40), and
    parameters whose value ``param`` knows (``frame < $n``); anything else leaves the range as the
    whole video.
    """
    lo, hi = 0.0, float(info.frames - 1)

    def is_video_col(n: ast.Node) -> str | None:
        name = _own_column(n, alias, single_table)
        return name if name in VIDEO_COLUMNS else None

    def to_frames(col: str, value: float) -> float:
        return value * info.fps if col == "ts" else value

    def const(n: ast.Node) -> float | None:  # a finite constant; anything else narrows nothing
        if isinstance(n, ast.Param) and param is not None:
            n = ast.Literal(param(n))
        try:
            value = _number(n, "")
        except BindError:
            return None
        return value if math.isfinite(value) else None

    def at(col: str, n: ast.Node) -> float | None:  # a constant in frames, where finite (ts = 1e308 overflows)
        value = const(n)
        frames = to_frames(col, value) if value is not None else None
        return frames if frames is not None and math.isfinite(frames) else None

    for c in _conjuncts(where):
        if isinstance(c, ast.Between) and not c.negated and (col := is_video_col(c.expr)):
            a, b = at(col, c.low), at(col, c.high)
            if a is not None and b is not None:
                lo, hi = max(lo, math.ceil(a - 1e-9)), min(hi, math.floor(b + 1e-9))
        elif isinstance(c, ast.InList) and not c.negated and (col := is_video_col(c.expr)):
            values = [at(col, i) for i in c.items]  # the range from the least to the greatest
            if values and all(v is not None for v in values):
                lo = max(lo, min(math.ceil(v - 1e-9) for v in values))
                hi = min(hi, max(math.floor(v + 1e-9) for v in values))
        elif isinstance(c, ast.Binary) and c.op in ("<", "<=", ">", ">=", "="):
            left, right, op = c.left, c.right, c.op
            if is_video_col(right) and not is_video_col(left):
                left, right = right, left
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}[op]
            col = is_video_col(left)
            v = at(col, right) if col else None
            if v is None:
                continue
            if op in (">", ">="):
                bound = math.floor(v) + 1 if (op == ">" and col == "frame") else math.ceil(v - 1e-9)
                if op == ">" and col == "ts" and float(v).is_integer():
                    bound = int(v) + 1
                lo = max(lo, bound)
            elif op in ("<", "<="):
                bound = math.ceil(v) - 1 if (op == "<" and float(v).is_integer()) else math.floor(v + 1e-9)
                hi = min(hi, bound)
            else:
                lo, hi = max(lo, math.ceil(v - 1e-9)), min(hi, math.floor(v + 1e-9))
    # bounds far outside the video (frame > 1e30) stay within it: an empty range is first > last
    return int(min(max(lo, 0), info.frames)), int(max(min(hi, info.frames - 1), -1))


def member_where(where: ast.Node | None, alias: str, member: str, single_table: bool,
                 param: Callable[[ast.Param], Any] | None = None) -> tuple[bool, ast.Node | None]:
    """WHERE as one member of a video set sees it: (whether the member can give rows, WHERE
    without the conjuncts that hold on all its rows).

    Decided are the top-level conjuncts ``video = 'name'``, ``video <> 'name'``, ``video [NOT] IN
    ('a', 'b')`` with string constants (or parameters whose value ``param`` knows), compared
    exactly, as DuckDB compares strings under its default collation (the caller decides nothing
    under another). A comparison with NULL holds nowhere. One that fails drops the member; these
    conjuncts reject NULL too, so a member dropped from the nullable side of an outer join loses
    only rows the WHERE clause would drop. One that holds is left out of what remains, so that
    ``video IN (...) AND contains('car')`` is a claim about each frame alone.

    >>> v, car = ast.Column("video"), ast.Column("vql_a0")
    >>> w = ast.Binary("AND", ast.InList(v, (ast.Literal("a"), ast.Literal("b"))), car)
    >>> member_where(w, "cams", "a", True), member_where(w, "cams", "c", True)[0]
    ((True, Column(name='vql_a0', table=None, pos=None)), False)
    >>> member_where(ast.Binary("<>", ast.Literal("a"), v), "cams", "a", True)
    (False, None)
    >>> member_where(ast.Binary("=", v, ast.Column("name", "m")), "cams", "a", False)[0]  # a join: kept
    True
    """
    def is_video(n: ast.Node) -> bool:
        return _own_column(n, alias, single_table) == "video"

    def const(n: ast.Node) -> tuple[bool, str | None]:  # (known, value): a string, or None for NULL
        if isinstance(n, ast.Param):  # a parameter's None means "not known": it decides nothing
            value = param(n) if param is not None else None
            return isinstance(value, str), value if isinstance(value, str) else None
        if isinstance(n, ast.Literal) and (n.value is None or isinstance(n.value, str)):
            return True, n.value
        return False, None

    def holds(c: ast.Node) -> bool | None:  # None: not decided here
        if isinstance(c, ast.Binary) and c.op in ("=", "<>"):
            other = c.right if is_video(c.left) else c.left if is_video(c.right) else None
            known, value = const(other) if other is not None else (False, None)
            if known:
                return value is not None and (member == value) == (c.op == "=")
        elif isinstance(c, ast.InList) and is_video(c.expr):
            items = [const(i) for i in c.items]
            if all(known for known, _ in items):
                values = {v for _, v in items}
                return member not in values and None not in values if c.negated else member in values
        return None

    rest = []
    for c in _conjuncts(where):
        decided = holds(c)
        if decided is False:
            return False, None
        if decided is None:
            rest.append(c)
    return True, reduce(lambda a, b: ast.Binary("AND", a, b), rest) if rest else None


def _options(select: ast.Select, catalog: Catalog) -> tuple[tuple[str, object], ...]:
    out = {"fpr": catalog.settings.get("fpr", 0.01), "fnr": catalog.settings.get("fnr", 0.01)}
    for opt in select.options:
        if opt.name not in QUERY_OPTIONS:
            raise BindError(f"unknown query option {opt.name!r}; options are {', '.join(QUERY_OPTIONS)}")
        if opt.name == "exact":
            out["exact"] = bool(getattr(opt.value, "value", True))
        elif opt.name in ("audit", "gap", "budget", "max_count"):
            value = getattr(opt.value, "value", None)
            if isinstance(value, float) and value.is_integer():  # 1e3 frames is 1000 frames
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 10_000_000:
                example = {"audit": "audit := 500", "gap": "gap := 300", "budget": "budget := 2000",
                           "max_count": "max_count := 20"}[opt.name]
                what = "a number of objects" if opt.name == "max_count" else "a number of frames"
                raise BindError(f"option {opt.name} must be {what}, e.g. {example}")
            out[opt.name] = value
        elif opt.name in ("error", "confidence", "miss", "recall"):
            value = _number(opt.value, f"option {opt.name}")
            lo, shown = (0.5, "[0.5, 1)") if opt.name == "confidence" else (0.0, "(0, 1)")
            if not (lo <= value < 1 if opt.name == "confidence" else lo < value < 1):
                raise BindError(f"option {opt.name} must be in {shown}, got {value:g}")
            out[opt.name] = value
        else:
            out[opt.name] = check_option(opt.name, opt.value, f"option {opt.name}")
    if "confidence" in out and not {"error", "miss", "recall"} & set(out):
        raise BindError("option confidence goes with error (a count's interval), miss (a top-k search's bound) or "
                        "recall (a selection's), e.g. WITH (error := 0.1, confidence := 0.99)")
    if "max_count" in out and "error" not in out:
        raise BindError("option max_count bounds each frame's count for an estimate: SELECT AVG(object_count('person')) "
                        "FROM cam WITH (error := 0.1, max_count := 20)")
    if "error" in out and out.get("exact"):
        raise BindError("options error and exact exclude each other: error estimates a count, exact computes it")
    if "miss" in out and out.get("exact"):
        raise BindError("options miss and exact exclude each other: miss bounds a top-k search, exact ranks every frame")
    return tuple(sorted(out.items()))


def video_refs(select: ast.Select, catalog: Catalog) -> dict[str, tuple[ast.TableRef, str, tuple[tuple[str, VideoInfo], ...]]]:
    """The FROM entries that are videos or video sets, by the name columns are qualified with:
    (the entry, the name as registered, its member videos and their infos)."""
    refs = {}
    for ref in select.tables:
        found = catalog.video(ref.name)
        if found:
            refs[ref.ref.lower()] = (ref, found[0], found[1])
    return refs


def bind_select(select: ast.Select, catalog: Catalog, param: Callable[[ast.Param], Any] | None = None) -> SqlQuery:
    """A SELECT naming at least one video -> its logical plan (``param``: the values of its
    parameters, where known, for the frame range a WHERE clause allows)."""
    videos = video_refs(select, catalog)
    if not videos:
        raise BindError("the query names no video")
    check_limit(select)
    single_table = len(select.tables) == 1
    aliases = {i.alias.lower() for i in select.items if isinstance(i, ast.SelectItem) and i.alias}

    # 1. columns: `frames` is the paper's spelling of `frame`; video columns are frame and ts.
    def fix_column(node: ast.Node) -> ast.Node:
        if not isinstance(node, ast.Column):
            return node
        owner = node.table.lower() if node.table else (next(iter(videos)) if single_table else None)
        if owner not in videos or node.name in predicate_columns:
            return node
        name = "frame" if node.name.lower() == "frames" else node.name.lower()
        columns = ("video",) * catalog.is_set(videos[owner][1]) + VIDEO_COLUMNS
        if name not in columns:
            if node.table is None and name in aliases:
                return node
            video = videos[owner][1]
            where = f" (line {node.pos.line}, column {node.pos.column})" if node.pos else ""
            raise BindError(f"video {video!r} has no column {node.name!r}{where}; its columns are {', '.join(columns)}")
        return replace(node, name=name)

    # 2. model predicates -> columns of the per-frame table, one column per distinct predicate.
    if len(videos) > 1:
        owner_alias = None
    else:
        owner_alias = next(iter(videos))
    predicates: dict[tuple, ModelPredicate] = {}

    def bind_calls(node: ast.Node) -> ast.Node:
        if not (isinstance(node, ast.Call) and node.name in MODEL_FUNCTIONS):
            return node
        if owner_alias is None:
            raise BindError(f"{node.name}(): the query has several videos; model predicates over more than one video are not supported yet")
        pred = bind_predicate(node, catalog, column="")
        key = (pred.function, pred.class_id, pred.min_score, pred.region, pred.model)
        if key not in predicates:
            predicates[key] = replace(pred, column=f"vql_p{len(predicates)}")
        pred = predicates[key]
        ref = videos[owner_alias][0]
        return ast.Column(pred.column, ref.ref, node.pos)

    options = _options(select, catalog)
    atoms: dict[tuple, Atom] = {}
    combine = None
    # LIMIT in frame order asks for the first frames in time: the exact plan, scanned until found
    first_in_time = bool(select.order_by) and stop_after(select) is not None
    if owner_alias is not None and not dict(options).get("exact", False) and not first_in_time:
        select, atoms = _extract_atoms(select, catalog, videos[owner_alias][0])
        combine = short_circuit(select.where, {a.column for a in atoms.values()})
    bound = transform_select(select, bind_calls)
    predicate_columns = {p.column for p in predicates.values()} | {a.column for a in atoms.values()}
    bound = transform_select(bound, fix_column)

    # 3. one scan and one per-frame table per video; the SQL reads those tables. A video set is
    # one scan per member (each its own plan and certificate), read as their union with a
    # `video` column.
    inputs, unions = [], []
    renamed = {}
    for key, (ref, name, members) in videos.items():
        table = f"vql_frames_{ref.ref.lower()}"
        is_set = catalog.is_set(name)
        preds = tuple(predicates.values()) if key == owner_alias else ()
        atom_list = tuple(atoms.values()) if key == owner_alias else ()
        parts = []
        for i, (member, info) in enumerate(members):
            kept, own = member_where(bound.where, ref.ref, member, single_table, param) \
                if is_set and not catalog.collation else (True, bound.where)
            where = frame_local_where(own, ref.ref, {a.column for a in atom_list}, single_table) if atom_list else None
            # WHERE excludes a member not kept: an empty scan
            first, last = frame_bounds(bound.where, ref.ref, info, single_table, param) if kept else \
                (info.frames, info.frames - 1)
            scan = VideoScan(member, ref.ref, info, first, min(last, info.frames - 1))
            labels = tuple(
                LabelFrames(scan, m, catalog.load_model(m).version) for m in dict.fromkeys(p.model for p in preds)
            )
            part = f"{table}__member{i}" if is_set else table
            inputs.append(EvaluatePredicates(scan, labels, preds, part, atom_list, combine if atom_list else None, where,
                                             is_set))
            parts.append((member, part))
        if is_set:
            unions.append((table, tuple(parts)))
        renamed[ref] = ast.TableRef(table, ref.ref, ref.pos)
    tables = [n.table for n in inputs] + [t for t, _ in unions]
    if len(set(tables)) < len(tables):
        raise BindError("two videos of the query would share a per-frame table; give them other aliases "
                        "(FROM cams AS c, other AS o)")
    final = replace(
        bound,
        from_=renamed.get(bound.from_, bound.from_),
        joins=tuple(replace(j, table=renamed.get(j.table, j.table)) for j in bound.joins),
        options=(),
    )
    if unions:
        for name in ("error", "recall"):
            if name in dict(options):
                raise BindError(f"WITH ({name} := ...) over a video set is not supported yet; query its member "
                                "videos one by one (SHOW VIDEOS lists them)")
    # A LIMIT bounds exact scans in frame order; without ORDER BY, over model tests, it is a search
    # for any LIMIT true frames; a cascade is planned over its whole scan, so it keeps the scan.
    rows = stop_after(bound)
    search = None  # (over a video set, LIMIT applies to the union of the members' answers)
    if atoms and rows is not None and not bound.order_by and all(n.where is not None for n in inputs if n.atoms) \
            and not unions:
        search = LimitSearch(rows, int(dict(options).get("gap", 0)))
    # ORDER BY object_count(...) LIMIT k over one video: a top-k search
    top = None
    if not atoms and len(inputs) == 1 and inputs[0].predicates and not unions:
        found = top_k(bound, inputs[0], dict(options), inputs[0].scan.alias)
        if found is not None:
            top, where = found
            inputs[0] = replace(inputs[0], where=where)
    written = {o.name for o in select.options}
    check_search_options(dict(options), search, written)
    check_top_options(dict(options), top, written)
    sql, estimate = to_sql(final), None
    if "error" in dict(options):
        estimate, sql = count_estimate(bound, inputs, dict(options))
    selection = recall_select(bound, inputs, dict(options))
    return SqlQuery(sql, tuple(inputs), options, None if atoms or unions else rows, search, estimate, top, selection,
                    tuple(unions))


_ATOM_OPS = (">=", ">", "<=", "<", "=", "<>")
_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "=", "<>": "<>"}


def _atom_of(node: ast.Node) -> tuple[ast.Call, str, int] | None:
    """``contains(...)`` or ``object_count(...) op k`` (either side) as (call, op, k)."""
    if isinstance(node, ast.Call) and node.name == "contains":
        return node, ">=", 1
    if isinstance(node, ast.Binary) and node.op in _ATOM_OPS:
        for call, other, op in ((node.left, node.right, node.op), (node.right, node.left, _FLIP[node.op])):
            if isinstance(call, ast.Call) and call.name == "object_count" and isinstance(other, ast.Literal) \
                    and isinstance(other.value, int) and not isinstance(other.value, bool):
                return call, op, other.value
    return None


def _extract_atoms(select: ast.Select, catalog: Catalog, ref: ast.TableRef) -> tuple[ast.Select, dict]:
    """Replace the WHERE clause's boolean model tests by columns a cascade will answer.

    Only when every model predicate of the query is such a test: a count shown in the SELECT list
    needs the reference on every frame anyway, and then the exact plan is the right one.
    """
    atoms: dict[tuple, Atom] = {}

    def visit(node: ast.Node | None) -> ast.Node | None:
        if node is None:
            return None
        if isinstance(node, ast.Binary) and node.op in ("AND", "OR"):
            return replace(node, left=visit(node.left), right=visit(node.right))
        if isinstance(node, ast.Unary) and node.op == "NOT":
            return replace(node, operand=visit(node.operand))
        found = _atom_of(node)
        if found is None:
            return node
        call, op, k = found
        pred = bind_predicate(call, catalog, column="n")
        key = (pred.function, pred.class_id, pred.min_score, pred.region, pred.model, op, k)
        if key not in atoms:
            atoms[key] = Atom(pred, op, k, f"vql_a{len(atoms)}")
        return ast.Column(atoms[key].column, ref.ref, call.pos)

    where = visit(select.where)
    rest = replace(select, where=where)
    if not atoms or any(isinstance(n, ast.Call) and n.name in MODEL_FUNCTIONS for n in ast.walk(rest)):
        return select, {}
    return rest, atoms


def frame_local_where(where: ast.Node | None, alias: str, atom_columns: set[str], single_table: bool) -> str | None:
    """The WHERE clause as SQL when its truth per frame depends on that frame alone (its atoms,
    ``frame`` and ``ts``, constants): what a cascade's certificate is about. None when it reads
    anything else (another table's columns, parameters): then each atom is certified on its own.

    >>> a = ast.Column("vql_a0")
    >>> frame_local_where(ast.Unary("NOT", a), "cam", {"vql_a0"}, True)
    '(NOT vql_a0)'
    >>> frame_local_where(ast.Binary("AND", a, ast.Column("label", "e")), "cam", {"vql_a0"}, False) is None
    True
    """
    if where is None:
        return None
    allowed = atom_columns | set(VIDEO_COLUMNS)
    for n in ast.walk(where):
        if isinstance(n, (ast.Param, ast.Select, ast.Subquery, ast.Star)):
            return None
        if isinstance(n, ast.Column) and (n.name not in allowed or (n.table or alias).lower() != alias.lower()
                                          or (n.table is None and not single_table and n.name in VIDEO_COLUMNS)):
            return None
    return to_sql(where)


def _flatten(node: ast.Node | None, op: str) -> list[ast.Node]:
    if isinstance(node, ast.Binary) and node.op == op:
        return _flatten(node.left, op) + _flatten(node.right, op)
    return [] if node is None else [node]


def short_circuit(where: ast.Node | None, atom_columns: set[str]) -> str | None:
    """``"and"`` when every atom is a top-level conjunct of WHERE (a frame one of them rejects is
    rejected), ``"or"`` when WHERE is only a disjunction of atoms (a frame one of them accepts is
    accepted); otherwise None: each atom is needed on every frame.

    >>> a, b = ast.Column("vql_a0"), ast.Column("vql_a1")
    >>> short_circuit(ast.Binary("AND", a, ast.Binary("AND", b, ast.Column("ts"))), {"vql_a0", "vql_a1"})
    'and'
    >>> short_circuit(ast.Binary("OR", a, b), {"vql_a0", "vql_a1"}), short_circuit(ast.Unary("NOT", a), {"vql_a0"})
    ('or', None)
    """
    if len(atom_columns) < 2:
        return None
    for op in ("AND", "OR"):
        terms = _flatten(where, op)
        names = {t.name for t in terms if isinstance(t, ast.Column)}
        if atom_columns <= names and (op == "AND" or len(terms) == len(atom_columns)):
            return op.lower()
    return None


def transform_select(select: ast.Select, fn) -> ast.Select:
    """Apply an expression rewrite everywhere in a SELECT but its table references and options."""
    result = ast.transform(replace(select, options=()), lambda n: n if isinstance(n, ast.TableRef) else fn(n))
    return replace(result, options=select.options)
