"""How a query over a video may end before every frame is answered: a LIMIT in frame order
(the exact scan, stopped when enough rows are found), a LIMIT without ORDER BY over model tests
(a search the reference confirms, ``engine/search.py``), and ``COUNT(*) ... WITH (error := e)``
(a sampled count with an exact interval, ``engine/estimate.py``). The binder asks these rules.
"""

from __future__ import annotations

from vql import ast
from vql.errors import BindError
from vql.plan import CountEstimate, EvaluatePredicates, LimitSearch
from vql.sqlgen import ident


def count_estimate(select: ast.Select, inputs: list[EvaluatePredicates], options: dict) -> tuple[CountEstimate, str]:
    """``SELECT COUNT(*) [AS n] FROM video WHERE <model tests> WITH (error := e)``: the estimate
    and the SQL reading its one-row table (columns n, n_low, n_high; ``count`` without alias)."""
    node = inputs[0] if len(inputs) == 1 else None
    items = select.items
    shape = (len(items) == 1 and isinstance(items[0], ast.SelectItem) and isinstance(items[0].expr, ast.Call)
             and items[0].expr.name.lower() == "count" and items[0].expr.star and not items[0].expr.distinct
             and node is not None and not (select.group_by or select.having or select.distinct or select.joins
                                           or select.order_by or select.limit or select.offset))
    if not shape:
        raise BindError("option error estimates SELECT COUNT(*) FROM video WHERE <model tests> WITH (error := 0.1): "
                        "one count over one video, without GROUP BY, ORDER BY or LIMIT (other aggregates are not "
                        "estimated yet)")
    if "audit" in options:
        raise BindError("option audit judges a cascade's answers; a count estimate states its own interval")
    if not node.atoms:
        raise BindError("option error: the WHERE clause has no model test vql can estimate a count of: contains(...) "
                        "or object_count(...) compared with an integer (>= 2, = 0...), under AND, OR, NOT")
    if node.where is None:
        raise BindError("option error: the WHERE clause reads more than each frame (another table, a subquery or a "
                        "parameter); a count is estimated only over a clause about each frame")
    name = items[0].alias or "count"
    sql = (f"SELECT estimate AS {ident(name)}, low AS {ident(name + '_low')}, high AS {ident(name + '_high')} "
           f"FROM {ident(node.table)}")
    return CountEstimate(float(options["error"]), float(options.get("confidence", 0.95))), sql


def check_search_options(options: dict, search: LimitSearch | None, written: set[str]) -> None:
    """``gap`` only spaces a LIMIT search's rows; ``audit`` judges certified answers, and a
    search's rows are each confirmed by the reference; the ``fpr``/``fnr`` targets (``written``:
    the options the query itself gives) are a cascade's, and neither a search nor a count
    estimate runs one."""
    if written & {"fpr", "fnr"} and (search is not None or "error" in options):
        what = "a LIMIT without ORDER BY returns only frames the reference confirmed" if search is not None else \
            "a count estimate states its own interval"
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
