"""The progress bar (vql/progress.py, tqdm): on a terminal it names the work, shows a rate and an
ETA, and clears itself when the work ends, normally or not; elsewhere it writes nothing. End to
end through the CLI: the bar goes to stderr, names the predicate as written, and never reaches
stdout."""

from __future__ import annotations

import io
import re
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from vql.cli import SAMPLE_VIDEO, main
from vql.plan import Atom, ModelPredicate
from vql.progress import Progress

LABEL = "labelling training frames for contains('person')"
CONTROL = re.compile(r"(\r|\n|\x1b\[[0-9;]*[A-Za-z])")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: carriage returns move back to column 0 and
    later characters overwrite earlier ones; ESC[K erases to the end of the line."""
    lines, col = [""], 0
    for part in CONTROL.split(text):
        if part == "\r":
            col = 0
        elif part == "\n":
            lines.append("")
            col = 0
        elif part.startswith("\x1b["):
            if part.endswith("2K"):
                lines[-1] = ""
            elif part.endswith("K"):
                lines[-1] = lines[-1][:col]
        elif part:
            lines[-1] = lines[-1][:col] + part + lines[-1][col + len(part):]
            col += len(part)
    return lines


def blank(text: str) -> bool:
    """Nothing of the bar is left on the screen."""
    return not any(line.strip() for line in screen(text))


def test_screen_shows_residue():  # what the checks below catch: the old bar's "2.3 frames/ss", or its last line
    assert screen("\r12.3 frames/s\r2.3 frames/s") == ["2.3 frames/ss"]
    assert not blank("\rx: 3/10 frames\n") and blank("\rabc\r   \r") and blank("abc\x1b[2K\r\x1b[K")


def draw(stream, total: int = 10, steps: int = 5) -> None:
    with Progress(total, "frames", LABEL, stream=stream) as bar:
        for _ in range(steps):
            time.sleep(0.06)  # past tqdm's 0.1 s between redraws every other step
            bar.update(1)


def test_bar_names_the_work_shows_rate_and_eta_and_clears_itself():
    term = Terminal()
    draw(term)
    text = term.getvalue()
    frames = [f for f in text.split("\r") if f.strip()]
    assert frames and all(f.startswith(LABEL + ":") for f in frames), frames
    assert any(re.search(r"\b[1-9]/10 frames \[\d\d:\d\d<\d\d:\d\d, \d+\.\d+ frames/s\]", f) for f in frames), frames
    assert "\n" not in text  # redrawn in place, never scrolled
    assert text.endswith("\r") and blank(text), repr(text[-200:])


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_bar_is_cleared_on_error_and_ctrl_c(error):
    term = Terminal()
    with pytest.raises(error):
        with Progress(100, "frames", LABEL, stream=term) as bar:
            bar.update(7)
            raise error()
    assert LABEL in term.getvalue() and blank(term.getvalue()), repr(term.getvalue())


def test_no_echo_while_the_bar_is_shown(monkeypatch):
    """Keys typed during the work, and Ctrl-C's ^C, are not echoed after the bar (where clearing
    the bar would leave them, or a wrapped half of the line); echo is back afterwards."""
    termios = pytest.importorskip("termios")
    import os
    import pty

    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)

        def echo() -> bool:
            return bool(termios.tcgetattr(slave)[3] & termios.ECHO)

        assert echo()
        with pytest.raises(KeyboardInterrupt):
            with Progress(10, "frames", LABEL, stream=Terminal()) as bar:
                bar.update(2)
                assert not echo()
                raise KeyboardInterrupt
        assert echo()
        with Progress(10, "frames", LABEL, stream=io.StringIO(), enabled=True):  # forced, not a terminal
            assert echo()
    os.close(master)


def test_silent_unless_a_terminal_or_forced():
    plain = io.StringIO()
    draw(plain, steps=2)
    assert plain.getvalue() == ""
    term = Terminal()
    with Progress(10, "frames", LABEL, stream=term, enabled=False) as bar:  # --no-progress
        bar.update(3)
    assert term.getvalue() == "" and bar.done == 3
    forced = io.StringIO()
    with Progress(10, "frames", LABEL, stream=forced, enabled=True) as bar:  # progress=True
        bar.update(3)
    assert LABEL in forced.getvalue() and blank(forced.getvalue())


def test_default_stream_is_stderr(capsys):
    with Progress(4, "frames", LABEL, enabled=True) as bar:
        bar.update(4)
    out, err = capsys.readouterr()
    assert out == "" and LABEL in err


def test_planning_labels_name_the_tests(monkeypatch):
    """The training prefix and certification frames say what they are labelled for."""
    import vql.planner.labelling as labelling

    seen = []

    def sample_pass(ctx, info, model, version, frames, views=(), label=""):
        seen.append(label)
        return {}, None

    monkeypatch.setattr(labelling, "sample_pass", sample_pass)
    monkeypatch.setattr(labelling, "atom_truth", lambda ctx, info, version, atom, frames: np.zeros(len(frames), bool))
    ctx = SimpleNamespace(model=lambda name: SimpleNamespace(version="v1"))
    atoms = [Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "vql_a0"), column="vql_a0"),
             Atom(ModelPredicate("object_count", "car", 2, 0.6, None, "centernet", "vql_a1"), ">=", 2, column="vql_a1")]
    truth = {"vql_a0": {}, "vql_a1": {}}
    labelling._label(ctx, SimpleNamespace(info=None), atoms, np.arange(4), {}, truth, "certification")
    assert seen == ["labelling certification frames for contains('person'), object_count('car', min_score := 0.6) >= 2"]


def test_cli_bar_on_stderr_names_the_predicate_and_stays_out_of_stdout(tmp_path, capsys, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)  # stderr is a terminal: the bar is on (no --no-progress)
    code = main([str(tmp_path / "db.duckdb"), "--format", "csv", "-c",
                 f"CREATE VIDEO v FROM '{SAMPLE_VIDEO}'; "
                 "SELECT count(*) AS n FROM v WHERE contains('person') AND frame < 20 WITH (exact)"])
    out, _ = capsys.readouterr()
    err = term.getvalue()
    assert code == 0, err
    assert out.splitlines()[-2:] == ["n", "20"]  # every frame of vtest's start has someone in view
    assert "frames/s" not in out and "\r" not in out
    assert "labelling v for contains('person'):" in err and "vql_a0" not in err, err
    assert "/20 frames" in err and blank(err), repr(err[-300:])

    term.seek(0)
    term.truncate()
    assert main([str(tmp_path / "db.duckdb"), "--no-progress", "-c",
                 "SELECT count(*) FROM v WHERE contains('car') AND frame BETWEEN 20 AND 25"]) == 0
    assert term.getvalue() == ""  # --no-progress: nothing on stderr, though it is a terminal
