"""The store keeps one answer per frame whatever happens: concurrent labelling, kill -9 in the
middle of a run, read-only use, older and newer files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import pytest

import vql
from vql.engine.store import SCHEMA_VERSION, Store
from vql.engine.video import legacy_fingerprint, probe

SCAN = "frame < 48"


def consistent(con) -> None:
    """Labels exist only for frames marked labelled, and no frame or detection is stored twice."""
    orphans = con.sql("SELECT count(*) FROM vql_labels l WHERE NOT EXISTS (SELECT 1 FROM vql_labelled_frames f "
                      "WHERE f.video_fp = l.video_fp AND f.model_version = l.model_version AND f.frame = l.frame)")
    assert orphans.fetchall() == [(0,)]
    twice = con.sql("SELECT count(*) - count(DISTINCT (video_fp, model_version, frame)) FROM vql_labelled_frames")
    assert twice.fetchall() == [(0,)]
    dets = con.sql("SELECT count(*) - count(DISTINCT (video_fp, model_version, frame, det)) FROM vql_labels")
    assert dets.fetchall() == [(0,)]


@pytest.fixture(scope="module")
def clean(vtest_path, tmp_path_factory):
    """Per-frame person counts of the first 48 frames, from a clean run."""
    con = vql.connect(tmp_path_factory.mktemp("clean") / "db.duckdb", progress=False)
    con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
    return con.sql(f"SELECT frame, object_count('person') FROM cam WHERE {SCAN} ORDER BY frame").fetchall()


def test_two_connections_labelling_the_same_frames_at_once_store_each_frame_once(tmp_path, vtest_path, clean):
    path = tmp_path / "db.duckdb"
    with vql.connect(path, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
    cons = [vql.connect(path, progress=False) for _ in range(2)]  # one file, twice in one process
    sums, errors = [], []

    def run(con):
        try:
            sums.append(con.sql(f"SELECT sum(object_count('person')) FROM cam WHERE {SCAN} WITH (exact)").fetchall()[0][0])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in cons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = sum(n for _, n in clean)
    assert sums == [expected, expected]
    assert cons[0].sql("SELECT count(*) FROM vql_labelled_frames").fetchall() == [(48,)]
    consistent(cons[0])
    assert cons[1].sql(f"SELECT sum(object_count('person')) FROM cam WHERE {SCAN}").fetchall() == [(expected,)]
    for c in cons:
        c.close()


KILLED = textwrap.dedent("""
    import sys, vql
    con = vql.connect(sys.argv[1], progress=False)
    con.sql("CREATE VIDEO cam FROM '" + sys.argv[2] + "'")
    print("labelling", flush=True)
    con.sql("SELECT count(*) FROM cam WHERE frame < 400 AND contains('person') WITH (exact)")
    print("done", flush=True)
""")


def test_kill_9_during_labelling_leaves_a_consistent_file_and_the_rerun_equals_a_clean_run(tmp_path, vtest_path, clean):
    path = tmp_path / "db.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(vtest_path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "labelling"
    time.sleep(3.0)  # a few labelling batches (16 frames each) commit meanwhile
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    with vql.connect(path, progress=False) as con:
        labelled = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
        assert labelled < 400, "the run finished before it was killed: nothing was tested"
        consistent(con)
        result = con.sql(f"SELECT frame, object_count('person') FROM cam WHERE {SCAN} ORDER BY frame")
        assert result.fetchall() == clean
        assert result.metadata.get("frames_labelled", 0) == 48 - min(48, labelled)
        consistent(con)


def test_read_only_reads_what_is_cached_and_refuses_to_write(tmp_path, vtest_path, clean):
    path = tmp_path / "db.duckdb"
    with vql.connect(path, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        con.sql(f"SELECT object_count('person') FROM cam WHERE {SCAN}")
    with vql.connect(path, read_only=True, progress=False) as ro:
        got = ro.sql(f"SELECT frame, object_count('person') FROM cam WHERE {SCAN} ORDER BY frame").fetchall()
        assert got == clean
        with pytest.raises(vql.ExecutionError, match="read-only; labelling 16 frames"):
            ro.sql("SELECT count(*) FROM cam WHERE frame BETWEEN 100 AND 120 AND contains('person') WITH (exact)")
        for sql in (f"CREATE VIDEO other FROM '{vtest_path}'", "DROP VIDEO cam", "DROP RESULTS cam"):
            with pytest.raises(vql.VqlError, match="read-only"):
                ro.sql(sql)
        assert ro.sql("SELECT count(*) FROM vql_videos").fetchall() == [(1,)]
    with pytest.raises(vql.ExecutionError, match="does not exist"):
        vql.connect(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_the_cli_reads_read_only(tmp_path, vtest_path, capsys):
    from vql.cli import main

    path = tmp_path / "db.duckdb"
    with vql.connect(path, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
    assert main([str(path), "--readonly", "--format", "csv", "-c", "SELECT count(*) AS n FROM cam"]) == 0
    assert "795" in capsys.readouterr().out
    assert main([str(path), "--readonly", "-c", "DROP VIDEO cam"]) == 1
    assert "read-only" in capsys.readouterr().err


def test_the_schema_is_versioned_and_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "db.duckdb"
    Store(path).close()
    Store(path).close()  # opened again: nothing re-created
    con = duckdb.connect(str(path))
    assert con.execute("SELECT value FROM vql_meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    con.execute("UPDATE vql_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(vql.ExecutionError, match="written by a newer vql"):
        vql.connect(path)
    duckdb.connect(str(tmp_path / "plain.duckdb")).execute("CREATE TABLE t(x INT)").close()
    with pytest.raises(vql.ExecutionError, match="not a vql database"):
        vql.connect(tmp_path / "plain.duckdb", read_only=True)


SCHEMA_1 = """
CREATE TABLE vql_videos (name VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, fps DOUBLE NOT NULL, frames BIGINT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, fingerprint VARCHAR NOT NULL, created TIMESTAMP DEFAULT current_timestamp);
CREATE TABLE vql_models (name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, path VARCHAR, options VARCHAR NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp);
CREATE TABLE vql_labelled_frames (video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL);
CREATE TABLE vql_labels (video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    class_id INTEGER NOT NULL, class VARCHAR NOT NULL, score FLOAT NOT NULL,
    x1 FLOAT NOT NULL, y1 FLOAT NOT NULL, x2 FLOAT NOT NULL, y2 FLOAT NOT NULL);
CREATE TABLE vql_results (query_id BIGINT NOT NULL, video VARCHAR NOT NULL, predicate VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, frame BIGINT NOT NULL, value DOUBLE NOT NULL);
CREATE TABLE vql_plans (key VARCHAR PRIMARY KEY, video_fp VARCHAR NOT NULL, plan BLOB NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp);
CREATE TABLE vql_query_accuracy (query_id BIGINT NOT NULL, video VARCHAR NOT NULL, eval_fpr DOUBLE);
CREATE TABLE vql_calibration (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, measured TIMESTAMP DEFAULT current_timestamp);
CREATE SEQUENCE vql_query_ids START 1;
"""


def test_a_schema_1_file_is_migrated_keeping_the_labels_of_unchanged_videos(tmp_path, vtest_path):
    same, changed = tmp_path / "same.avi", tmp_path / "changed.avi"
    shutil.copy(vtest_path, same)
    shutil.copy(vtest_path, changed)
    version = vql.connect(progress=False).model("centernet").version
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA_1)
    for name, file in (("same", same), ("changed", changed)):
        fp = legacy_fingerprint(file) + ("" if name == "same" else "x")
        con.execute("INSERT INTO vql_videos (name, path, fps, frames, width, height, fingerprint) VALUES "
                    "(?, ?, 10, 795, 768, 576, ?)", [name, str(file), fp])
        for _ in range(2):  # schema 1 had no keys: the same frame labelled twice, twice stored
            con.execute("INSERT INTO vql_labelled_frames VALUES (?, ?, 0)", [fp, version])
            con.execute("INSERT INTO vql_labels VALUES (?, ?, 0, 0, 'person', 0.9, 1, 2, 30, 60)", [fp, version])
    con.execute("INSERT INTO vql_plans VALUES ('k', 'fp', 'pickle', current_timestamp)")
    con.close()
    with vql.connect(path, progress=False) as new:
        assert new.sql("SELECT count(*) FROM vql_plans").fetchall() == [(0,)]
        consistent(new)
        result = new.sql("SELECT object_count('person') FROM same WHERE frame = 0")
        assert result.fetchall() == [(1,)] and result.metadata.get("frames_labelled", 0) == 0  # re-keyed, once
        assert new.store.video("same").fingerprint == probe(same).fingerprint
        with pytest.raises(vql.VideoError, match="video changed changed since it was registered"):
            new.sql("SELECT object_count('person') FROM changed WHERE frame = 0")  # not proven the same content
        assert new.sql("SELECT count(*) FROM vql_query_accuracy").fetchall() == [(0,)]
        assert new.sql("SELECT text FROM vql_queries").fetchall() == [(result.metadata["text"],)]  # 1 -> 2 -> 3


def test_drop_video_takes_its_results_and_plans_with_it(tmp_path, vtest_path):
    with vql.connect(tmp_path / "db.duckdb", progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        con.sql("SELECT object_count('person') FROM cam WHERE frame < 4")
        assert con.sql("SELECT count(*) FROM vql_frame_results").fetchall() == [(4,)]
        con.store.save_plan("k", con.store.video("cam").fingerprint, b"VQLPLAN")
        assert "results and plans" in con.sql("DROP VIDEO cam").fetchall()[0][0]
        assert con.sql("SELECT count(*) FROM vql_results").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM vql_plans").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall() == [(4,)]  # labels stay
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        assert con.sql("SELECT count(*) FROM vql_frame_results").fetchall() == [(0,)]


def test_a_failed_commit_reports_its_own_cause(tmp_path):
    path = tmp_path / "db.duckdb"
    a, b = Store(path), Store(path)
    a.con.execute("BEGIN TRANSACTION")
    a.con.execute("INSERT INTO vql_calibration (key, value) VALUES ('k', '1')")
    with pytest.raises(duckdb.Error, match="PRIMARY KEY|constraint|Conflict"):
        with b.transaction() as con:
            con.execute("INSERT INTO vql_calibration (key, value) VALUES ('k', '2')")
            a.con.execute("COMMIT")
    a.close()
    b.close()


def test_models_run_with_duckdb_on_one_thread_and_the_users_setting_comes_back(tmp_path, vtest_path, monkeypatch):
    """While a statement runs models, DuckDB's pool would slow them on the cores they share
    (Store.one_thread); the user's own thread setting is restored afterwards, after an error too."""
    from vql.engine import executor

    seen = []
    detect = executor.label_with

    def spy(*args, **kwargs):
        seen.append(con.duckdb.execute("SELECT current_setting('threads')").fetchall()[0][0])
        return detect(*args, **kwargs)

    monkeypatch.setattr(executor, "label_with", spy)
    with vql.connect(tmp_path / "db.duckdb", progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        con.sql("SET threads = 2")
        con.sql("SELECT object_count('person') FROM cam WHERE frame < 4")
        assert seen and set(seen) == {1}
        assert con.duckdb.execute("SELECT current_setting('threads')").fetchall()[0][0] == 2
        with pytest.raises(RuntimeError, match="boom"):
            with con.store.one_thread():
                raise RuntimeError("boom")
        assert con.duckdb.execute("SELECT current_setting('threads')").fetchall()[0][0] == 2
