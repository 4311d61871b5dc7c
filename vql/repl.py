"""The interactive shell, in the style of the duckdb and sqlite3 shells (prompt_toolkit).

Statements may span lines and run at ``;``. Dot-commands: ``.help .videos .tables .mode
.timer .read .quit``. History is kept in ``~/.vql_history``; Tab completes keywords, videos,
tables and functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vql.errors import VqlError, internal_error
from vql.formatting import FORMATS, render
from vql.parser import ends_statement, split_statements

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "OFFSET", "JOIN", "ON", "AS",
    "AND", "OR", "NOT", "BETWEEN", "IN", "IS NULL", "CREATE VIDEO", "LOAD VIDEO", "SHOW VIDEOS",
    "DESCRIBE", "DROP VIDEO", "DROP RESULTS", "CREATE FUNCTION", "TYPE", "MODEL", "EXPLAIN",
    "EXPLAIN ANALYZE", "SET", "WITH", "exact", "min_score", "region", "fpr", "fnr", "frame", "ts",
)
FUNCTIONS = ("contains(", "object_count(", "count(", "avg(", "min(", "max(", "sum(")

HELP = """\
Statements end with ';' and may span lines. Examples:
  CREATE VIDEO cam FROM 'street.mp4';
  SELECT frame, ts FROM cam WHERE object_count('person') >= 3;
  SELECT count(*) FROM cam WHERE contains('car', region := (0, 0.5, 0.5, 1), min_score := 0.6);
  EXPLAIN SELECT ...;   SET min_score = 0.4;   SHOW VIDEOS;   DESCRIBE cam;
Dot-commands:
  .help                      this text
  .videos                    list videos
  .tables                    list DuckDB tables and views
  .mode table|csv|json|markdown   output format
  .timer on|off              print each statement's run time
  .read FILE                 run a script
  .quit / .exit              leave"""


@dataclass
class ShellState:
    mode: str = "table"
    timer: bool = False
    done: bool = False


def statement_complete(buffer: str) -> bool:
    """Whether the buffer can run: a dot-command, or text ending in a complete statement."""
    stripped = buffer.strip()
    return stripped.startswith(".") or ends_statement(buffer)


def run_statements(con, text: str, state: ShellState, out: list[str] | None = None) -> str:
    """Run the statements; what to print. ``out`` collects each result as it comes, so a caller
    catching an error still has the results of the statements before it."""
    out = [] if out is None else out
    for statement in split_statements(text):
        start = time.perf_counter()
        result = con.sql(statement)
        out.append(render(result.arrow(), state.mode, max_rows=40 if state.mode == "table" else None))
        if state.timer:
            out.append(f"Run Time: {time.perf_counter() - start:.3f} s")
    return "\n".join(out)


def run_input(con, text: str, state: ShellState) -> str:
    """One complete input of the shell (a dot-command or statements) -> what to print. Never
    raises for a statement: a VqlError is printed as ``Error: ...`` and anything else (a bug) as
    one ``internal error: ...`` line; either way the shell goes on."""
    out: list[str] = []
    try:
        if text.strip().startswith("."):
            out.append(dot_command(con, text, state))
        else:
            run_statements(con, text, state, out)
    except VqlError as e:
        out.append(f"Error: {e}")
    except KeyboardInterrupt:
        out.append("Interrupted (labels computed so far are kept).")
    except Exception as e:  # noqa: BLE001 - the shell must survive its own bugs
        out.append(internal_error(e))
    return "\n".join(o for o in out if o)


def dot_command(con, line: str, state: ShellState) -> str:
    """Run one dot-command; returns what to print."""
    parts = line.strip().split(None, 1)
    command, arg = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
    if command in (".quit", ".exit"):
        state.done = True
        return ""
    if command == ".help":
        return HELP
    if command == ".videos":
        return render(con.sql("SHOW VIDEOS").arrow(), state.mode)
    if command == ".tables":
        rows = con.duckdb.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name NOT LIKE 'vql\\_%' ESCAPE '\\' "
            "ORDER BY 1"
        ).fetchall()
        return "  ".join(r[0] for r in rows) or "(no tables)"
    if command == ".mode":
        if arg not in FORMATS:
            raise VqlError(f".mode takes one of: {', '.join(FORMATS)}")
        state.mode = arg
        return ""
    if command == ".timer":
        if arg not in ("on", "off"):
            raise VqlError(".timer takes on or off")
        state.timer = arg == "on"
        return ""
    if command == ".read":
        if not arg:
            raise VqlError(".read needs a file name")
        try:
            text = Path(arg).expanduser().read_text(encoding="utf-8")
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
            raise VqlError(f"cannot read {arg!r}: {getattr(e, 'strerror', None) or e}") from e
        return run_statements(con, text, state)
    raise VqlError(f"unknown command {command}; try .help")


def repl(con, args) -> int:  # pragma: no cover - needs a terminal; the pieces above are tested
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory

    state = ShellState(mode=args.format)
    where = args.db or "a transient in-memory database (nothing is saved; pass a file name to keep it)"
    print(f"vql — connected to {where}. Enter .help for help; statements end with ';'.")
    session = PromptSession(history=FileHistory(str(Path.home() / ".vql_history")))
    buffer = ""
    while not state.done:
        videos = list(con.store.videos())
        completer = WordCompleter(list(KEYWORDS) + list(FUNCTIONS) + videos, ignore_case=True, sentence=True)
        try:
            line = session.prompt("vql> " if not buffer else "...> ", completer=completer)
        except KeyboardInterrupt:
            buffer = ""
            continue
        except EOFError:
            break
        buffer = f"{buffer}\n{line}" if buffer else line
        if not statement_complete(buffer):
            continue
        text, buffer = buffer, ""
        output = run_input(con, text, state)
        if output:
            print(output)
    return 0
