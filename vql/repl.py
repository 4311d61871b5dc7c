"""The interactive shell, in the style of the duckdb and sqlite3 shells (prompt_toolkit).

Statements may span lines and run at ``;``; each statement is one history entry (recalled
whole, in ``~/.vql_history``). Tab completes anywhere in a statement (:class:`VqlCompleter`).
Dot-commands: see :data:`HELP`. Results are printed as each statement finishes (``.read``
too), or written where ``.output`` / ``.once`` say.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from vql.errors import VqlError, internal_error
from vql.formatting import FORMATS, render
from vql.scripts import ends_statement, split_statements
from vql.sqlgen import literal

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "GROUP BY ALL", "HAVING", "ORDER BY", "ORDER BY ALL", "LIMIT", "OFFSET",
    "JOIN", "CROSS JOIN", "ON", "AS", "EXISTS",
    "AND", "OR", "NOT", "BETWEEN", "IN", "IS NULL", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "DISTINCT",
    "CREATE VIDEO", "CREATE OR REPLACE VIDEO", "LOAD VIDEO", "SHOW VIDEOS", "DESCRIBE", "DROP VIDEO",
    "DROP RESULTS", "CREATE FUNCTION", "TYPE", "MODEL", "EXPLAIN", "EXPLAIN ANALYZE", "SET", "WITH", "exact",
    "min_score", "region", "model", "fpr", "fnr", "audit", "gap", "error", "confidence", "miss",
    "recall", "budget", "max_count", "workers",
)
FUNCTIONS = ("contains(", "object_count(", "count(", "avg(", "min(", "max(", "sum(")
COLUMNS = ("frame", "ts")
DOT_COMMANDS = (".help", ".videos", ".tables", ".schema", ".mode", ".timer", ".bail", ".echo", ".output", ".once",
                ".read", ".show", ".quit", ".exit")
RELATION_BEFORE = re.compile(r"\b(FROM|JOIN|DESCRIBE|VIDEO|RESULTS|INTO|TABLE)\s+[\w\".]*$", re.IGNORECASE)
CLASS_ARGUMENT = re.compile(r"\b(contains|object_count)\s*\(\s*'([^']*)$", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")

HELP = """\
Statements end with ';' and may span lines. Examples:
  CREATE VIDEO cam FROM 'street.mp4';
  SELECT frame, ts FROM cam WHERE object_count('person') >= 3;
  SELECT count(*) FROM cam WHERE contains('car', region := (0, 0.5, 0.5, 1), min_score := 0.6);
  EXPLAIN SELECT ...;   SET min_score = 0.4;   SHOW VIDEOS;   DESCRIBE cam;
Dot-commands:
  .help                      this text
  .videos                    list videos
  .tables                    list videos, DuckDB tables and views
  .schema [NAME]             how videos, tables and views are defined
  .mode table|csv|json|markdown   output format
  .timer on|off              print each statement's run time
  .bail on|off               stop at the first error (on, the default) or go on with the next statement
  .echo on|off               print each statement before running it
  .output [FILE]             write results to FILE (none: back to the screen)
  .once FILE                 write the next input's results to FILE
  .read FILE                 run a script, printing each result as it finishes
  .show [FILE]               draw the last result's matched frames (default matches.png)
  .quit / .exit              leave"""


@dataclass
class ShellState:
    mode: str = "table"
    timer: bool = False
    done: bool = False
    bail: bool = True
    echo: bool = False
    output: TextIO | None = None  # .output / .once: results go here instead of the screen
    once: bool = False
    last: Any = None  # the last statement's Result, for .show
    emit: Callable[[str], None] | None = None  # the shell prints each result as it comes; None: collect

    def close_output(self) -> None:
        if self.output is not None:
            self.output.close()
        self.output, self.once = None, False


def statement_complete(buffer: str) -> bool:
    """Whether the buffer can run: a dot-command, or text ending in a complete statement."""
    stripped = buffer.strip()
    return stripped.startswith(".") or ends_statement(buffer)


def _deliver(state: ShellState, text: str, out: list[str], result: bool = True) -> None:
    """A result to the .output file, or to the screen now (``emit``), or into ``out``."""
    if not text:
        return
    if result and state.output is not None:
        state.output.write(text + "\n")
        state.output.flush()
    elif state.emit is not None:
        state.emit(text)
    else:
        out.append(text)


def run_statements(con, text: str, state: ShellState, out: list[str] | None = None) -> str:
    """Run the statements, delivering each result as it finishes; returns what is left to print
    (everything, when nothing prints as it comes). With ``.bail on`` the first error stops the
    rest (it propagates); with ``.bail off`` it is delivered as ``Error: ...`` and the next
    statement runs."""
    out = [] if out is None else out
    try:
        for statement in split_statements(text):
            if state.echo:
                _deliver(state, statement, out, result=False)
            start = time.perf_counter()
            try:
                result = con.sql(statement)
            except VqlError as e:
                if state.bail:
                    raise
                _deliver(state, f"Error: {e}", out, result=False)
                continue
            state.last = result
            _deliver(state, render(result.arrow(), state.mode, max_rows=40 if state.mode == "table" else None), out)
            if state.timer:
                _deliver(state, f"Run Time: {time.perf_counter() - start:.3f} s", out)
    finally:
        if state.once:
            state.close_output()
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


def _on_off(command: str, arg: str) -> bool:
    if arg.lower() not in ("on", "off"):
        raise VqlError(f"{command} takes on or off")
    return arg.lower() == "on"


def _relations(con) -> list[str]:
    """DuckDB tables and views (vql's own included), by name."""
    return [r[0] for r in con.duckdb.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]


def schema(con, name: str = "") -> str:
    """``CREATE`` statements of videos, tables and views: all of the user's, or the one named."""
    lines = []
    sets = con.store.video_sets()
    for video_set, members in sets.items():
        if not name or video_set.lower() == name.lower():
            lines.append(f"CREATE VIDEO {video_set} FROM {literal(con.store.set_pattern(video_set))};  -- a video "
                         f"set: {', '.join(members)}; columns video VARCHAR, frame BIGINT, ts DOUBLE")
    in_sets = {m.lower() for members in sets.values() for m in members}
    for video, info in con.store.videos().items():
        if (video.lower() == name.lower()) if name else video.lower() not in in_sets:
            quoted = info.path.replace("'", "''")
            lines.append(f"CREATE VIDEO {video} FROM '{quoted}';  -- {info.frames} frames, {info.width}x{info.height}, "
                         f"{info.fps:g} fps; columns frame BIGINT, ts DOUBLE")
    rows = con.duckdb.execute(
        "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary "
        "UNION ALL SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() "
        "AND NOT internal AND NOT temporary ORDER BY 1").fetchall()
    for table, sql in rows:
        if (table.lower() == name.lower()) if name else not table.lower().startswith("vql_"):
            lines.append(" ".join(sql.split()) if sql else f"-- {table}")
    if name and not lines:
        raise VqlError(f"no video, table or view named {name!r}")
    return "\n".join(lines)


def _open_output(arg: str) -> TextIO:
    try:
        return Path(arg).expanduser().open("w", encoding="utf-8")
    except (OSError, ValueError) as e:
        raise VqlError(f"cannot write {arg!r}: {getattr(e, 'strerror', None) or e}") from e


def dot_command(con, line: str, state: ShellState) -> str:
    """Run one dot-command; returns what to print."""
    parts = line.strip().split(None, 1)
    command, arg = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
    if command in (".quit", ".exit"):
        state.done = True
        state.close_output()
        return ""
    if command == ".help":
        return HELP
    if command == ".videos":
        return render(con.sql("SHOW VIDEOS").arrow(), state.mode)
    if command == ".tables":
        names = set(con.store.video_names()) | {t for t in _relations(con) if not t.lower().startswith("vql_")}
        return "  ".join(sorted(names, key=str.lower)) or "(no videos or tables)"
    if command == ".schema":
        return schema(con, arg) or "(no videos or tables)"
    if command == ".mode":
        if arg not in FORMATS:
            raise VqlError(f".mode takes one of: {', '.join(FORMATS)}")
        state.mode = arg
        return ""
    if command == ".timer":
        state.timer = _on_off(command, arg)
        return ""
    if command == ".bail":
        state.bail = _on_off(command, arg)
        return ""
    if command == ".echo":
        state.echo = _on_off(command, arg)
        return ""
    if command in (".output", ".once"):
        if command == ".once" and not arg:
            raise VqlError(".once needs a file name")
        state.close_output()
        if arg:
            state.output, state.once = _open_output(arg), command == ".once"
        return ""
    if command == ".show":
        if state.last is None:
            raise VqlError(".show draws the last result's frames: run a SELECT first")
        out = arg or "matches.png"
        state.last.show(out)
        return f"wrote {out}"
    if command == ".read":
        if not arg:
            raise VqlError(".read needs a file name")
        try:
            text = Path(arg).expanduser().read_text(encoding="utf-8")
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
            raise VqlError(f"cannot read {arg!r}: {getattr(e, 'strerror', None) or e}") from e
        return run_statements(con, text, state)
    raise VqlError(f"unknown command {command}; try .help")


class VqlCompleter:
    """Completions for the word at the cursor, anywhere in a statement: keywords, functions,
    videos, DuckDB tables and views, ``frame``/``ts`` and table columns; class names of the
    reference model inside ``contains('`` / ``object_count('``; after FROM/JOIN, relations only;
    dot-commands and their arguments. A prompt_toolkit ``Completer`` (see :func:`completer`)."""

    def __init__(self, con) -> None:
        self.con = con
        self._classes: tuple[str, list[str]] | None = None  # (model name, its classes)

    def classes(self) -> list[str]:
        """The class names of the session's default model; the packaged CenterNet's come from its
        labels file, so the first completion does not wait for torch and the weights."""
        from vql.udfs.registry import DEFAULT_MODEL, default_classes

        name = str(self.con.settings.get("model", DEFAULT_MODEL))
        if self._classes is None or self._classes[0] != name:
            try:
                names = default_classes() if name.lower() == DEFAULT_MODEL else self.con.model(name).classes
            except VqlError:
                names = ()
            self._classes = (name, list(names))
        return self._classes[1]

    def relations(self) -> list[str]:
        return sorted(set(self.con.store.video_names()) | set(_relations(self.con)), key=str.lower)

    def columns(self) -> list[str]:
        rows = self.con.duckdb.execute("SELECT DISTINCT column_name FROM information_schema.columns "
                                       "WHERE table_schema = 'main' AND table_name NOT LIKE 'vql\\_%' ESCAPE '\\'")
        return sorted(set(COLUMNS) | {r[0] for r in rows.fetchall()})

    def words(self, before: str) -> tuple[str, list[str]]:
        """(the prefix being completed, the candidates) for the text before the cursor."""
        quoted = CLASS_ARGUMENT.search(before)
        if quoted:
            return quoted.group(2), self.classes()
        if before.lstrip().startswith(".") and " " not in before.lstrip():
            return before.lstrip(), list(DOT_COMMANDS)
        if before.lstrip().startswith("."):
            command, _, arg = before.lstrip().partition(" ")
            options = {".mode": list(FORMATS), ".timer": ["on", "off"], ".bail": ["on", "off"],
                       ".echo": ["on", "off"], ".schema": self.relations()}.get(command.lower(), [])
            return arg.lstrip(), options
        if re.search(r"'[^']*$", before.replace("''", "")):
            return "", []  # inside some other string
        word = WORD.search(before)
        prefix = word.group(0) if word else ""
        if RELATION_BEFORE.search(before):
            return prefix, self.relations()
        if not prefix:
            return "", []
        return prefix, [*KEYWORDS, *FUNCTIONS, *self.relations(), *self.columns()]

    def complete(self, before: str) -> list[str]:
        """The candidates that extend the word at the cursor (case-insensitive), each once."""
        prefix, options = self.words(before)
        seen, out = set(), []
        for option in options:
            if option.lower().startswith(prefix.lower()) and option != prefix and option not in seen:
                seen.add(option)
                out.append(option)
        return out

    def get_completions(self, document, complete_event) -> Iterable:
        from prompt_toolkit.completion import Completion

        before = document.text_before_cursor
        prefix, _ = self.words(before)
        for option in self.complete(before):
            yield Completion(option, start_position=-len(prefix))


def completer(con):
    """A prompt_toolkit Completer over :class:`VqlCompleter`."""
    from prompt_toolkit.completion import Completer

    class _Completer(VqlCompleter, Completer):
        pass

    return _Completer(con)


def key_bindings():
    """Enter runs the buffer when it holds a complete statement (or a dot-command), else starts
    a new line: a multi-line statement is one buffer, so one history entry, recalled whole."""
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("enter")
    def _(event):
        buffer = event.current_buffer
        if not buffer.text.strip() or statement_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return bindings


def repl(con, args) -> int:  # pragma: no cover - needs a terminal; the pieces above are tested
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    state = ShellState(mode=args.format, emit=print)
    where = args.db or "a transient in-memory database (nothing is saved; pass a file name to keep it)"
    print(f"vql — connected to {where}. Enter .help for help; statements end with ';'.")
    session = PromptSession(history=FileHistory(str(Path.home() / ".vql_history")), multiline=True,
                            key_bindings=key_bindings(), completer=completer(con),
                            prompt_continuation=lambda width, line, wrap: "...> ".rjust(width))
    while not state.done:
        try:
            text = session.prompt("vql> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not text.strip():
            continue
        output = run_input(con, text, state)
        if output:
            print(output)
    state.close_output()
    return 0
