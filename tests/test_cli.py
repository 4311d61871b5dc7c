"""The command line: -c, -f, formats, exit status, the shell's pieces, and the vtest query of
the language issue's definition of done."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vql.cli import SAMPLE_VIDEO, main
from vql.repl import ShellState, dot_command, run_statements, statement_complete
from vql.udfs.tfjs_detector import centernet


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_c_prints_each_result_as_csv(tmp_path, capsys):
    db = str(tmp_path / "db.duckdb")
    code, out, err = run(capsys, db, "-c", f"CREATE VIDEO v FROM '{SAMPLE_VIDEO}'; "
                         "SELECT frame, ts FROM v WHERE frame BETWEEN 10 AND 12", "--format", "csv", "--no-progress")
    assert code == 0, err
    assert out.splitlines() == ["result", '"video v: 150 frames, 768x576, 10 fps"', "frame,ts", "10,1.0", "11,1.1", "12,1.2"]
    code, out, _ = run(capsys, db, "-c", "SHOW VIDEOS", "--format", "json")
    assert json.loads(out)[0]["name"] == "v"


def test_errors_exit_1_with_one_line_on_stderr(tmp_path, capsys):
    db = str(tmp_path / "db.duckdb")
    code, out, err = run(capsys, db, "-c", "SELECT frame FROM")
    assert code == 1 and out == "" and err.startswith("Error: syntax error at line 1, column 18")
    code, _, err = run(capsys, db, "-c", "CREATE VIDEO v FROM '/no/such/file.mp4'")
    assert code == 1 and err == "Error: video file not found: /no/such/file.mp4\n"
    assert "Traceback" not in err


def test_script_file_prints_each_result(tmp_path, capsys):
    script = tmp_path / "s.vql"
    script.write_text(f"CREATE VIDEO v FROM '{SAMPLE_VIDEO}';\n-- a comment; with a semicolon\n"
                      "SELECT count(*) AS n FROM v WHERE frame < 5;\nSELECT 41 + 1 AS answer;\n")
    code, out, err = run(capsys, str(tmp_path / "db.duckdb"), "-f", str(script), "--format", "csv", "--no-progress")
    assert code == 0, err
    assert "n\n5" in out and out.rstrip().endswith("answer\n42")
    code, _, err = run(capsys, "-f", str(tmp_path / "missing.vql"))
    assert code == 1 and "cannot read" in err


def test_shell_pieces(tmp_path):
    import vql

    con = vql.connect(None, progress=False)
    state = ShellState()
    assert statement_complete("select 1;") and not statement_complete("select 1") and statement_complete(".help")
    assert ".mode" in dot_command(con, ".help", state)
    dot_command(con, ".mode csv", state)
    dot_command(con, ".timer on", state)
    out = run_statements(con, "CREATE TABLE t AS SELECT 1 AS a; SELECT a FROM t;", state)
    assert "a\n1" in out and "Run Time:" in out
    assert dot_command(con, ".tables", state) == "t"
    script = tmp_path / "x.vql"
    script.write_text("SELECT 2 AS b;")
    assert "b\n2" in dot_command(con, f".read {script}", state)
    with pytest.raises(vql.VqlError, match="unknown command .nope"):
        dot_command(con, ".nope", state)
    dot_command(con, ".quit", state)
    assert state.done


def test_vtest_persons_at_least_seven(tmp_path, capsys, vtest_path):
    """The definition of done of the language issue, on the real clip: frames where CenterNet sees
    at least seven persons scoring ≥ 0.5 (about 6% of the clip), checked against the reference run
    directly on a sample of frames."""
    code, out, err = run(capsys, str(tmp_path / "db"), "-c",
                         f"CREATE VIDEO v FROM '{vtest_path}'; SELECT frame FROM v WHERE object_count('person') >= 7",
                         "--format", "csv", "--no-progress")
    assert code == 0, err
    lines = out.splitlines()
    lines = lines[lines.index("frame"):]  # after CREATE VIDEO's result
    frames = {int(x) for x in lines[1:]}
    assert 0.03 * 795 <= len(frames) <= 0.10 * 795
    rng = np.random.default_rng(0)
    check = sorted(set(rng.choice(795, 24, replace=False).tolist()) | set(list(frames)[:8]))
    cap = cv2.VideoCapture(str(vtest_path))
    images, index = {}, 0
    while index <= check[-1]:
        ok, frame = cap.read()
        assert ok
        if index in check:
            images[index] = frame
        index += 1
    model = centernet()
    for f, dets in zip(check, model.detect([images[f] for f in check])):
        assert (dets.count(model.class_index("person"), 0.5) >= 7) == (f in frames), f
