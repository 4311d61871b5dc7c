"""The shell's pieces, without a terminal: completion (fed Document objects), dot-commands,
results printed as they come, and a multi-line statement read as one input (one history entry)
through prompt_toolkit's pipe input."""

from __future__ import annotations

import pytest
from prompt_toolkit.document import Document

import vql
from vql.cli import SAMPLE_VIDEO
from vql.repl import ShellState, completer, dot_command, key_bindings, run_input, run_statements


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    c = vql.connect(tmp_path_factory.mktemp("shell") / "db.duckdb", progress=False)
    c.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    c.sql("CREATE TABLE events (start_s DOUBLE, end_s DOUBLE, label VARCHAR)")
    c.sql("CREATE VIEW calm AS SELECT label FROM events")
    yield c
    c.close()


def complete(con, text: str) -> list[tuple[str, int]]:
    found = completer(con).get_completions(Document(text, len(text)), None)
    return [(c.text, c.start_position) for c in found]


def test_completion_anywhere_in_a_statement(con):
    assert set(complete(con, "SELECT fr")) >= {("frame", -2), ("FROM", -2)}
    assert ("start_s", -3) in complete(con, "SELECT frame, sta")  # a table's column
    assert complete(con, "SELECT frame FROM c") == [("calm", -1), ("cam", -1)]  # relations only after FROM
    assert ("events", -1) in complete(con, "SELECT c.frame FROM cam AS c JOIN e")
    assert ("object_count(", -3) in complete(con, "SELECT frame\nFROM cam\nWHERE obj")  # multi-line
    assert ("vql_queries", -7) in complete(con, "SELECT * FROM vql_que")
    assert complete(con, "SELECT frame FROM cam WHERE label = 'fr") == []  # inside a plain string
    assert complete(con, "SELECT frame FROM cam ") == []  # nothing typed: nothing offered


def test_class_names_inside_the_model_functions(con):
    classes = con.model("centernet").classes
    assert complete(con, "SELECT frame FROM cam WHERE contains('per") == [("person", -3)]
    got = complete(con, "SELECT frame FROM cam WHERE object_count( 'tr")
    assert got == [(c, -2) for c in classes if c.startswith("tr")] and ("truck", -2) in got
    assert len(complete(con, "SELECT frame FROM cam WHERE contains('")) == len(set(classes))


def test_class_completion_loads_no_model(monkeypatch):
    """The packaged model's class names come from its labels file: the first Tab inside
    contains(' answers at once instead of waiting seconds for torch and the weights."""
    c = vql.connect(None, progress=False)
    monkeypatch.setattr(c, "model", lambda name: pytest.fail(f"model {name} loaded to complete a class name"))
    assert complete(c, "SELECT frame FROM cam WHERE contains('pe") == [("person", -2)]
    c.close()


def test_dot_command_completion(con):
    assert complete(con, ".mo") == [(".mode", -3)]
    assert complete(con, ".mode c") == [("csv", -1)]
    assert complete(con, ".bail o") == [("on", -1), ("off", -1)]
    assert ("events", -2) in complete(con, ".schema ev")


def test_tables_and_schema(con):
    state = ShellState()
    assert dot_command(con, ".tables", state) == "calm  cam  events"
    text = dot_command(con, ".schema", state)
    assert f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}';  -- 150 frames, 768x576, 10 fps" in text
    assert 'CREATE TABLE events(start_s DOUBLE, end_s DOUBLE, "label" VARCHAR);' in text and "CREATE VIEW calm" in text
    assert "vql_" not in text
    assert dot_command(con, ".schema EVENTS", state).startswith("CREATE TABLE events")
    assert "CREATE TABLE vql_queries" in dot_command(con, ".schema vql_queries", state)
    with pytest.raises(vql.VqlError, match="no video, table or view named 'nope'"):
        dot_command(con, ".schema nope", state)


def test_output_once_bail_echo(con, tmp_path):
    state = ShellState(mode="csv")
    target, once = tmp_path / "out.csv", tmp_path / "once.csv"
    assert dot_command(con, f".output {target}", state) == ""
    assert run_input(con, "SELECT 1 AS a; SELECT 2 AS b;", state) == ""
    assert run_input(con, "SELECT nope FROM cam;", state).startswith("Error:")  # errors stay on the screen
    dot_command(con, ".output", state)
    assert target.read_text() == "a\n1\nb\n2\n"
    assert run_input(con, "SELECT 3 AS c;", state) == "c\n3"
    dot_command(con, f".once {once}", state)
    assert run_input(con, "SELECT 4 AS d;", state) == "" and run_input(con, "SELECT 5 AS e;", state) == "e\n5"
    assert once.read_text() == "d\n4\n"
    assert run_input(con, "SELECT 6 AS f; SELECT nope FROM cam; SELECT 7 AS g;", state).splitlines()[-1].startswith(
        "Error:")  # bail on (the default): g never runs
    dot_command(con, ".bail off", state)
    dot_command(con, ".echo on", state)
    out = run_input(con, "SELECT 6 AS f; SELECT nope FROM cam; SELECT 7 AS g;", state).splitlines()
    assert out[:3] == ["SELECT 6 AS f", "f", "6"] and out[4].startswith("Error:") and out[-3:] == ["SELECT 7 AS g", "g", "7"]
    for bad in (".bail maybe", ".echo", ".once", f".output {tmp_path}/no/such/dir/x"):
        with pytest.raises(vql.VqlError):
            dot_command(con, bad, state)


def test_read_prints_each_result_as_it_finishes(con, tmp_path):
    printed: list[str] = []
    state = ShellState(mode="csv", emit=printed.append)
    script = tmp_path / "s.vql"
    script.write_text("SELECT 1 AS a;\nSELECT 2 AS b;\n")
    con_sql = con.sql

    def spy(text, *a, **k):  # each result is out before the next statement starts
        printed.append(f"run {text}")
        return con_sql(text, *a, **k)

    con.sql = spy
    try:
        assert dot_command(con, f".read {script}", state) == ""
    finally:
        del con.sql
    assert printed == ["run SELECT 1 AS a", "a\n1", "run SELECT 2 AS b", "b\n2"]


def test_show_draws_the_last_result(con, tmp_path):
    state = ShellState()
    with pytest.raises(vql.VqlError, match="run a SELECT first"):
        dot_command(con, ".show", state)
    run_statements(con, "SELECT frame FROM cam WHERE frame < 3;", state)
    assert dot_command(con, f".show {tmp_path / 'm.png'}", state) == f"wrote {tmp_path / 'm.png'}"
    assert (tmp_path / "m.png").stat().st_size > 0
    run_statements(con, "SELECT 1 AS x;", state)
    assert run_input(con, f".show {tmp_path / 'n.png'}", state).startswith("Error: the result comes from no video")


def test_a_multi_line_statement_is_one_input_and_one_history_entry():
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    history = InMemoryHistory()
    with create_pipe_input() as pipe:
        session = PromptSession(input=pipe, output=DummyOutput(), history=history, multiline=True,
                                key_bindings=key_bindings())
        pipe.send_text("SELECT 1\r  AS one\r;\r.tables\r")
        assert session.prompt("vql> ") == "SELECT 1\n  AS one\n;"
        assert session.prompt("vql> ") == ".tables"
        pipe.send_text("\x1b[A\x1b[A\r")  # up twice: the whole statement comes back
        assert session.prompt("vql> ") == "SELECT 1\n  AS one\n;"
    assert list(history.get_strings())[:2] == ["SELECT 1\n  AS one\n;", ".tables"]
