"""Start-up: what a statement that runs no model imports, and the parser's table cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vql import parser
from vql.cli import SAMPLE_VIDEO

HEAVY = ("torch", "cv2", "scipy", "safetensors")


def _imported_after(tmp_path, argv: list[str]) -> set[str]:
    """The heavy modules a fresh interpreter has imported after running the CLI with ``argv``."""
    code = ("import sys, contextlib, io\nfrom vql.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as e:\n"
            "        rc = e.code or 0\n"
            f"print(rc, ' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = dict(os.environ, VQL_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rc, *mods = out.stdout.split()
    assert rc == "0", out.stdout
    return set(mods)


def test_statements_that_run_no_model_import_neither_torch_nor_opencv(tmp_path):
    db = str(tmp_path / "db.duckdb")
    from vql.cli import main

    assert main([db, "-c", f"CREATE VIDEO v FROM '{SAMPLE_VIDEO}'", "--no-progress"]) == 0
    for sql in ("SHOW VIDEOS", "DESCRIBE v", "SELECT 42", "CREATE TABLE t AS SELECT 1 AS x", "EXPLAIN SELECT frame FROM v"):
        assert _imported_after(tmp_path, [db, "-c", sql]) == set(), sql
    assert _imported_after(tmp_path, ["--version"]) == set()


def test_the_parser_tables_are_cached_as_json_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("VQL_CACHE_DIR", str(tmp_path / "cache"))
    parser._parser.cache_clear()
    try:
        expected = parser.parse_statement("SELECT frame FROM cam WHERE contains('person') AND ts > 3")
        files = list((tmp_path / "cache").glob("grammar-*.json"))
        assert len(files) == 1 and json.loads(files[0].read_text())["key"] in files[0].name
        parser._parser.cache_clear()
        assert parser.parse_statement("SELECT frame FROM cam WHERE contains('person') AND ts > 3") == expected  # from the file
        files[0].write_text('{"key": "x", "data": ')  # damaged: rebuilt and rewritten
        parser._parser.cache_clear()
        assert parser.parse_statement("SELECT frame FROM cam WHERE contains('person') AND ts > 3") == expected
        assert json.loads(files[0].read_text())["key"] in files[0].name
        with pytest.raises(parser.ParseError, match="line 1, column 8"):
            parser.parse_statement("SELECT FROM cam")
        monkeypatch.setenv("VQL_CACHE_DIR", str(files[0]))  # a file where the folder should be: no cache, same parser
        parser._parser.cache_clear()
        assert parser.parse_statement("SELECT frame FROM cam WHERE contains('person') AND ts > 3") == expected
    finally:
        parser._parser.cache_clear()
