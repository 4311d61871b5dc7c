"""How a query over a video may end before every frame is answered: a LIMIT in frame order
(the exact scan, stopped when enough rows are found), a LIMIT without ORDER BY over model tests
(a search the reference confirms, ``engine/search.py``), and ``COUNT(*) ... WITH (error := e)``
(a sampled count with an exact interval, ``engine/estimate.py``), and ``ORDER BY
object_count(...) DESC LIMIT k`` (a top-k search with a certified miss share, ``engine/topk.py``),
and ``WITH (recall := r)`` (a selection with a recall guarantee, ``engine/recall.py``).
The binder asks these rules.
"""

from __future__ import annotations

from vql import ast
from vql.errors import BindError
from vql.plan import (DEFAULT_BUDGET, DEFAULT_MISS, CountEstimate, EvaluatePredicates, LimitSearch, ModelPredicate,
                      RecallSelect, TopK)
from vql.sqlgen import ident, to_sql


def outside_where(select: ast.Select, node: EvaluatePredicates) -> bool:
    """Whether a model predicate of ``node`` is read outside the WHERE clause (the SELECT list,
    GROUP BY, HAVING, ORDER BY): then WHERE's tests are not extracted as atoms."""
    columns = {p.column for p in node.predicates}
    parts = (*select.items, *select.group_by, *(o.expr for o in select.order_by),
             *([select.having] if select.having is not None else []))
    return any(isinstance(n, ast.Column) and n.name in columns for part in parts for n in ast.walk(part))


def _is_count_star(item) -> bool:
    return (isinstance(item, ast.SelectItem) and isinstance(item.expr, ast.Call) and item.expr.name.lower() == "count"
            and item.expr.star and not item.expr.distinct)


def _mean_of(item, node: EvaluatePredicates | None):
    """``AVG(object_count(...))`` or ``SUM(object_count(...))`` as (aggregate, predicate)."""
    if node is None or not isinstance(item, ast.SelectItem) or not isinstance(item.expr, ast.Call):
        return None
    call = item.expr
    if call.name.lower() not in ("avg", "sum") or call.star or call.distinct or len(call.args) != 1:
        return None
    arg = call.args[0]
    found = [p for p in node.predicates if isinstance(arg, ast.Column) and p.column == arg.name]
    return (call.name.lower(), found[0]) if found and found[0].function == "object_count" else None


def _frame_sql(expr: ast.Node, node: EvaluatePredicates) -> str | None:
    """``expr`` as SQL over the scan's per-frame table when it depends on each frame alone, else None."""
    from vql.binder import frame_local_where  # the binder imports this module

    return frame_local_where(expr, node.scan.alias, set(), True) if node.scan else to_sql(expr)


def _mean_shape(select: ast.Select, node: EvaluatePredicates) -> str | None:
    """AVG/SUM of a count: the frame filter (SQL about each frame alone), or a BindError."""
    if len(node.predicates) > 1:
        raise BindError("option error: AVG or SUM of one object_count(...) is estimated, over frames WHERE chooses by "
                        "frame and ts alone; other model predicates (in WHERE, GROUP BY or the SELECT list) are not")
    where = select.where
    if where is None:
        return None
    if any(isinstance(n, ast.Column) and n.name == node.predicates[0].column for n in ast.walk(where)):
        raise BindError("option error: WHERE tests a model: an average over the frames where a test holds is a ratio "
                        "of two estimates, not estimated yet; WHERE may choose the frames by frame and ts")
    sql = _frame_sql(where, node)
    if sql is None:
        raise BindError("option error: the WHERE clause reads more than each frame (another table, a subquery or a "
                        "parameter); an average is estimated only over frames chosen by frame and ts")
    return sql


def count_estimate(select: ast.Select, inputs: list[EvaluatePredicates], options: dict) -> tuple[CountEstimate, str]:
    """``SELECT [keys,] COUNT(*) [AS n] FROM video WHERE <model tests> [GROUP BY keys] [ORDER BY ...]
    WITH (error := e)``, the keys about each frame (``floor(ts / 60)``): the estimate and the SQL
    reading its table (the keys, then n, n_low, n_high; ``count`` without alias). Or the same with
    ``AVG(object_count(...))`` or ``SUM(...)`` in place of ``COUNT(*)``, over frames WHERE chooses
    by frame and ts (``avg``, ``avg_low``, ``avg_high`` without alias).

    >>> from vql.parser import parse_statement
    >>> q = parse_statement("SELECT floor(ts / 60) AS m, COUNT(*) FROM cam GROUP BY m ORDER BY m")
    >>> node = EvaluatePredicates(None, (), (), "vql_frames_cam", atoms=("a",), where="vql_a0")
    >>> count_estimate(q, [node], {"error": 0.1})[1]
    'SELECT k0 AS m, estimate AS count, low AS count_low, high AS count_high FROM vql_frames_cam ORDER BY m'
    """
    node = inputs[0] if len(inputs) == 1 else None
    means = [(i, m) for i in select.items if (m := _mean_of(i, node))]
    counts = [i for i in select.items if _is_count_star(i)] + [i for i, _ in means]
    shape = (node is not None and len(counts) == 1 and all(isinstance(i, ast.SelectItem) for i in select.items)
             and not (select.having or select.distinct or select.joins or select.limit or select.offset))
    usage = ("option error estimates SELECT COUNT(*) FROM video WHERE <model tests> WITH (error := 0.1), or "
             "SELECT AVG(object_count('car')) FROM video WITH (error := 0.1) (or SUM), or either per group of keys "
             "about each frame: SELECT floor(ts / 60) AS minute, COUNT(*) ... GROUP BY minute WITH (error := 0.1); one "
             "aggregate over one video, without HAVING, DISTINCT or LIMIT")
    if not shape:
        raise BindError(usage)
    if "audit" in options:
        raise BindError("option audit judges a cascade's answers; a count estimate states its own interval")
    aggregate, value, filter_sql = "count", None, None
    if means:
        aggregate, value = means[0][1]
        filter_sql = _mean_shape(select, node)
    elif "max_count" in options:
        raise BindError("option max_count bounds each frame's count for AVG or SUM of object_count(...), e.g. SELECT "
                        "AVG(object_count('person')) FROM cam WITH (error := 0.1, max_count := 20)")
    elif not node.atoms and outside_where(select, node):
        raise BindError("option error: model predicates outside WHERE (a GROUP BY key, another aggregate) are not "
                        "estimated: GROUP BY keys are about each frame alone (frame, ts); COUNT(*) is estimated, and "
                        "AVG or SUM of one object_count(...)")
    elif not node.atoms:
        raise BindError("option error: the WHERE clause has no model test vql can estimate a count of: contains(...) "
                        "or object_count(...) compared with an integer (>= 2, = 0...), under AND, OR, NOT")
    elif node.where is None:
        raise BindError("option error: the WHERE clause reads more than each frame (another table, a subquery or a "
                        "parameter); a count is estimated only over a clause about each frame")
    aliases = {i.alias.lower(): i.expr for i in select.items if i.alias}
    keys = []
    for g in select.group_by:  # an alias or a position in the SELECT list stands for its expression
        key = aliases.get(g.name.lower(), g) if isinstance(g, ast.Column) and g.table is None else g
        if isinstance(g, ast.Literal) and isinstance(g.value, int):
            if not 1 <= g.value <= len(select.items):
                raise BindError(f"GROUP BY {g.value}: a position must be between 1 and {len(select.items)}")
            key = select.items[g.value - 1].expr
        sql = _frame_sql(key, node)
        if sql is None or any(isinstance(n, ast.Call) and n.name in AGGREGATES for n in ast.walk(key)):
            raise BindError(f"option error: GROUP BY {to_sql(g)} is not about each frame alone (frame, ts and "
                            f"constants): counts are estimated per group of frames, e.g. GROUP BY floor(ts / 60)")
        keys.append(sql)
    name = counts[0].alias or aggregate
    columns, outputs = [], {}
    for item in select.items:
        if item is counts[0]:
            columns += [f"estimate AS {ident(name)}", f"low AS {ident(name + '_low')}", f"high AS {ident(name + '_high')}"]
            continue
        sql = to_sql(item.expr)
        if sql not in keys:
            raise BindError(f"option error: {sql} in the SELECT list is neither COUNT(*) nor a GROUP BY key")
        shown = item.alias or sql
        columns.append(f"k{keys.index(sql)} AS {ident(shown)}")
        outputs[sql] = shown
    names = {n.lower() for n in [name] + list(outputs.values())}
    order = []
    for item in select.order_by:
        e = item.expr
        if isinstance(e, ast.Literal) and isinstance(e.value, int) and 1 <= e.value <= len(select.items):
            chosen = select.items[e.value - 1]  # a position of the SELECT list
            e = ast.Column(name) if chosen is counts[0] else (ast.Column(chosen.alias) if chosen.alias else chosen.expr)
        if isinstance(e, ast.Column) and e.table is None and e.name.lower() in names:
            text = ident(e.name)
        elif to_sql(e) in keys:
            text = f"k{keys.index(to_sql(e))}"
        else:
            raise BindError(f"option error: ORDER BY {to_sql(e)}: a count estimate's rows are ordered by its columns "
                            f"({', '.join(sorted(names))})")
        order.append(text + (" DESC" if item.descending else ""))
    sql = f"SELECT {', '.join(columns)} FROM {ident(node.table)}" + (f" ORDER BY {', '.join(order)}" if order else "")
    return CountEstimate(float(options["error"]), float(options.get("confidence", 0.95)), tuple(keys), aggregate, value,
                         options.get("max_count"), filter_sql), sql


def check_search_options(options: dict, search: LimitSearch | None, written: set[str]) -> None:
    """``gap`` only spaces a LIMIT search's rows; ``audit`` judges certified answers, and a
    search's rows are each confirmed by the reference; the ``fpr``/``fnr`` targets (``written``:
    the options the query itself gives) are a cascade's, and neither a search nor a count
    estimate runs one."""
    if written & {"fpr", "fnr"} and (search is not None or "error" in options or "recall" in options):
        what = "a LIMIT without ORDER BY returns only frames the reference confirmed" if search is not None else \
            "a count estimate states its own interval" if "error" in options else \
            "a recall selection certifies its recall and reports its precision"
        raise BindError(f"options fpr and fnr are targets for a cascade over the whole scan; {what}")
    if "gap" in options and search is None:
        raise BindError("option gap spaces the rows of a LIMIT without ORDER BY over model tests, e.g. SELECT frame "
                        "FROM cam WHERE contains('person') LIMIT 10 WITH (gap := 300)")
    if "audit" in options and search is not None:
        raise BindError("option audit judges a certified cascade's answers; a LIMIT without ORDER BY returns only "
                        "frames the reference confirmed (drop the LIMIT to audit a cascade over the whole scan)")


TIME_COLUMNS = ("frame", "frames", "ts")
AGGREGATES = {"count", "sum", "avg", "min", "max", "median", "mode", "quantile", "stddev", "variance",
              "list", "array_agg", "string_agg", "first", "last", "any_value", "bool_and", "bool_or",
              "count_if", "arg_min", "arg_max", "histogram"}


def stop_after(select: ast.Select) -> int | None:
    """Rows after which a scan may stop: a constant LIMIT over one video, in frame order, with
    nothing that needs every row (aggregates, GROUP BY, DISTINCT, other orderings, joins)."""
    if select.limit is None or select.joins or select.group_by or select.having is not None or select.distinct:
        return None
    limit = select.limit
    if not (isinstance(limit, ast.Literal) and isinstance(limit.value, int)):
        return None
    offset = 0
    if select.offset is not None:
        if not (isinstance(select.offset, ast.Literal) and isinstance(select.offset.value, int)):
            return None
        offset = select.offset.value
    for item in select.order_by:
        if item.descending or not (isinstance(item.expr, ast.Column) and item.expr.name.lower() in TIME_COLUMNS):
            return None
    if any(isinstance(n, ast.Call) and n.name in AGGREGATES for n in ast.walk(select)):
        return None
    return 0 if limit.value == 0 else limit.value + offset


def top_k(select: ast.Select, node: EvaluatePredicates, options: dict, alias: str) -> tuple[TopK, str | None] | None:
    """``SELECT ... FROM video [WHERE <about each frame>] ORDER BY object_count(...) [DESC] LIMIT k``
    (``select`` bound: model calls are columns of ``node``): the top-k search and the WHERE
    clause's SQL (None without one); None for any other shape (then the exact scan runs), a
    second ORDER BY key included: it orders frames tied on the count, which only the exact scan
    sees all of.

    >>> from vql.plan import VideoScan
    >>> p = ModelPredicate("object_count", "person", 0, 0.5, None, "centernet", "vql_p0")
    >>> node = EvaluatePredicates(None, (), (p,), "vql_frames_cam")
    >>> order = (ast.OrderItem(ast.Column("vql_p0", "cam"), descending=True),)
    >>> q = ast.Select((ast.SelectItem(ast.Column("frame")),), order_by=order, limit=ast.Literal(10))
    >>> top_k(q, node, {}, "cam")
    (TopK(rows=10, column='vql_p0', descending=True, miss=0.002, confidence=0.95, by="object_count('person')"), None)
    """
    if options.get("exact") or node.atoms or not node.predicates or select.limit is None or not select.order_by:
        return None
    if select.joins or select.group_by or select.having is not None or select.distinct:
        return None
    if any(isinstance(n, ast.Call) and n.name in AGGREGATES for n in ast.walk(select)):
        return None
    rows = 0
    for part in (select.limit, select.offset):
        if part is not None:
            if not (isinstance(part, ast.Literal) and isinstance(part.value, int) and not isinstance(part.value, bool)):
                return None
            rows += part.value
    if len(select.order_by) != 1:  # a second key orders frames tied on the count: only the exact scan knows them all
        return None
    item = select.order_by[0]
    expr = item.expr
    if isinstance(expr, ast.Literal) and isinstance(expr.value, int) and 1 <= expr.value <= len(select.items) \
            and isinstance(select.items[expr.value - 1], ast.SelectItem):  # ORDER BY a position of the SELECT list
        expr = select.items[expr.value - 1].expr
    if isinstance(expr, ast.Column) and expr.table is None:  # ORDER BY an alias of the SELECT list
        named = [i.expr for i in select.items if isinstance(i, ast.SelectItem) and i.alias
                 and i.alias.lower() == expr.name.lower()]
        expr = named[0] if len(named) == 1 else expr
    by: dict[str, ModelPredicate] = {p.column: p for p in node.predicates}
    if not (isinstance(expr, ast.Column) and expr.name in by and by[expr.name].function == "object_count"):
        return None
    where = None
    if select.where is not None:
        from vql.binder import frame_local_where  # the binder imports this module

        where = frame_local_where(select.where, alias, set(), True)
        if where is None:
            return None
    miss, confidence = float(options.get("miss", DEFAULT_MISS)), float(options.get("confidence", 0.95))
    return TopK(rows, expr.name, bool(item.descending), miss, confidence, by[expr.name].short_text), where


def check_top_options(options: dict, top: TopK | None, written: set[str]) -> None:
    """``miss`` bounds a top-k search; a top-k search runs no cascade (``fpr``/``fnr``) and has no
    answers to audit: its rows' counts are the reference's."""
    if "miss" in options and top is None:
        raise BindError("option miss bounds a top-k search: SELECT frame FROM cam ORDER BY object_count('person') "
                        "DESC LIMIT 10 WITH (miss := 0.001), over one video, with a WHERE clause about each frame "
                        "alone if any")
    if top is not None and written & {"fpr", "fnr", "audit"}:
        raise BindError("options fpr, fnr and audit are for a cascade over the whole scan; a top-k search ranks "
                        "frames by the reference's own counts (its option is miss := share)")


MAX_SELECTION_TESTS = 4  # model tests in a recall selection's WHERE (2^m atom assignments are tried)


def recall_select(select: ast.Select, inputs: list[EvaluatePredicates], options: dict) -> RecallSelect | None:
    """``SELECT ... FROM video WHERE <model tests> WITH (recall := r[, budget := n])``: a selection
    with a recall guarantee; None without ``recall``. Other shapes are refused by name."""
    if "recall" not in options:
        if "budget" in options:
            raise BindError("option budget is a recall selection's number of reference calls, e.g. SELECT frame FROM "
                            "cam WHERE contains('person') WITH (recall := 0.9, budget := 2000)")
        return None
    example = "e.g. SELECT frame, ts FROM cam WHERE contains('person') WITH (recall := 0.9)"
    if options.get("exact") or "error" in options or "audit" in options:
        raise BindError("option recall does not go with exact, error or audit: it returns a selection whose recall "
                        "it certifies, and reports its precision")
    node = inputs[0] if len(inputs) == 1 else None
    if node is not None and not node.atoms and outside_where(select, node):
        raise BindError(f"option recall: model tests outside WHERE (in the SELECT list, GROUP BY or ORDER BY) are not "
                        f"supported in a recall selection, {example}")
    if node is None or not node.atoms:
        raise BindError(f"option recall selects the frames of one video where model tests hold, {example}: the WHERE "
                        f"clause has no model test vql can select by (contains(...), object_count(...) compared with "
                        f"an integer), or the query reads several videos")
    if node.where is None:
        raise BindError("option recall: the WHERE clause reads more than each frame (another table, a subquery or a "
                        "parameter); a recall is certified only over a clause about each frame")
    if len(node.atoms) > MAX_SELECTION_TESTS:
        raise BindError(f"option recall: at most {MAX_SELECTION_TESTS} distinct model tests in WHERE, got "
                        f"{len(node.atoms)}")
    if select.limit is not None or select.offset is not None or select.group_by or select.having is not None \
            or select.distinct or any(isinstance(n, ast.Call) and n.name in AGGREGATES for n in ast.walk(select)):
        raise BindError(f"option recall returns a set of frames, {example}; it does not go with LIMIT, OFFSET, "
                        f"DISTINCT, GROUP BY or aggregates (a count has WITH (error := e))")
    return RecallSelect(float(options["recall"]), int(options.get("budget", DEFAULT_BUDGET)),
                        float(options.get("confidence", 0.95)))
