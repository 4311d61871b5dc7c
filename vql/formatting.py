"""Printing results: aligned table, CSV (with a header row), JSON, markdown."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "markdown")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def render(table: pa.Table, fmt: str = "table", max_rows: int | None = None) -> str:
    """Format an Arrow table as text."""
    columns = table.column_names
    rows = list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)))) if columns else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in r] for r in rows])
        return out.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], default=str)
    shown = rows if max_rows is None or len(rows) <= max_rows else rows[: max_rows // 2] + [None] + rows[-(max_rows // 2):]
    cells = [[_cell(v) for v in r] if r is not None else ["…"] * len(columns) for r in shown]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    import pyarrow as pa

    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) for f in table.schema]

    def line(values):
        return "│ " + " │ ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)) + " │"

    bar = "─┼─".join("─" * w for w in widths)
    out = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐", line(columns), "├─" + bar + "─┤"]
    out += [line(c) for c in cells]
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    out.append(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")
    return "\n".join(out)
