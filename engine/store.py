"""The DuckDB store: catalog, label cache and frame-level results, in one database file.

Tables (``vql_`` prefix; users read them through the documented views):

- ``vql_meta``: ``schema_version`` (:data:`SCHEMA_VERSION`); an older file is migrated when
  opened read-write, a newer one refused.
- ``vql_videos``: name, path, fps, frames (those the file holds), width, height, fingerprint (a
  hash of the whole file), the size and mtime it was hashed at, a note on damage, seekable.
- ``vql_models``: user-registered reference models (``CREATE FUNCTION``).
- ``vql_labels``: every detection the reference ever produced, keyed by (video fingerprint,
  model version, frame, rank of the detection in the frame); ``vql_labelled_frames`` lists the
  frames labelled (also those with no detection), keyed by (fingerprint, version, frame).
  Labels are never recomputed, and a frame's labels are written once: a batch another writer
  stored first is skipped.
- ``vql_results``: frame-level values of the model predicates of each query, with the video's
  name and content hash (DROP VIDEO and CREATE OR REPLACE VIDEO remove them).
- ``vql_plans``: certified query plans, keyed by what they depend on (content hash, model
  versions, predicates, targets, range), stored as data (``planner/plan_format.py``).
- ``vql_query_accuracy``: per query and scan with model tests, the plan's strategy, what is
  certified (the WHERE clause, or each test), the targets, and the certified upper bounds of the
  false-positive and false-negative rates with their joint confidence and the certification
  frames and positives they rest on (0 bounds and confidence 1 for the exact plan).
- ``vql_queries``: one row per query over a video: its text, when it started and finished (UTC),
  the rows it returned, the frames it labelled and found cached, and per model test (JSON text)
  the video, the strategy and the certified bounds (schema 3).
- ``vql_video_sets``: video sets (``CREATE VIDEO cams FROM 'footage/*.mp4'``): the set's name,
  the pattern, and its member videos in order (each a video of ``vql_videos``) (schema 4).
- ``vql_calibration``: per-frame costs measured on this machine (decoding and the seek gap per
  video, the reference per model version and device), measured once and reused by every later plan.

Views: ``vql_detections`` (labels with video names and timestamps), ``vql_frame_results``,
``vql_query_results`` (``vql_frame_results`` with each query's text and times).
Every write is one transaction (labels: one per batch of Arrow rows; a query's results: one):
an interrupted run keeps every batch committed before the interruption, and the file stays
consistent. A failed COMMIT (a full disk, a conflict) raises its own cause.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from vql.engine.video import VideoInfo
from vql.errors import ExecutionError
from vql.sqlgen import ident
from vql.udfs.reference import Detections

SCHEMA_VERSION = 4
WRITE_RETRIES = 5

ACCURACY = """CREATE TABLE vql_query_accuracy (
    query_id BIGINT NOT NULL, video VARCHAR NOT NULL, claim VARCHAR NOT NULL, strategy VARCHAR NOT NULL,
    fpr_target DOUBLE, fnr_target DOUBLE, fpr_bound DOUBLE, fnr_bound DOUBLE, confidence DOUBLE,
    certification_frames BIGINT, certification_positives BIGINT, expected_speedup DOUBLE
);
"""

VIEWS = """
CREATE OR REPLACE VIEW vql_detections AS
    SELECT v.name AS video, l.frame, l.frame / v.fps AS ts, l.model_version, l.class, l.score,
           l.x1, l.y1, l.x2, l.y2
    FROM vql_labels l JOIN vql_videos v ON l.video_fp = v.fingerprint;
CREATE OR REPLACE VIEW vql_frame_results AS
    SELECT r.query_id, r.video, r.predicate, r.frame, r.frame / v.fps AS ts, r.value, r.model_version
    FROM vql_results r JOIN vql_videos v ON r.video = v.name AND r.video_fp = v.fingerprint;
"""

# Schema 3: the query log (provenance of every stored result).
QUERIES = """
CREATE TABLE vql_queries (
    query_id BIGINT PRIMARY KEY, text VARCHAR NOT NULL, started TIMESTAMP NOT NULL, finished TIMESTAMP NOT NULL,
    videos VARCHAR NOT NULL, result_rows BIGINT NOT NULL, frames_labelled BIGINT NOT NULL,
    frames_cached BIGINT NOT NULL, predicates VARCHAR NOT NULL
);
CREATE OR REPLACE VIEW vql_query_results AS
    SELECT q.query_id, q.text AS query, q.started, q.finished, r.video, r.predicate, r.frame, r.ts, r.value
    FROM vql_frame_results r JOIN vql_queries q ON q.query_id = r.query_id;
"""

SCHEMA = """
CREATE TABLE vql_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE vql_videos (
    name VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, fps DOUBLE NOT NULL, frames BIGINT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, fingerprint VARCHAR NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp, size BIGINT NOT NULL DEFAULT -1,
    mtime_ns BIGINT NOT NULL DEFAULT -1, note VARCHAR NOT NULL DEFAULT '', seekable BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE vql_models (
    name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, path VARCHAR, options VARCHAR NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE vql_labelled_frames (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    PRIMARY KEY (video_fp, model_version, frame)
);
CREATE TABLE vql_labels (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    class_id INTEGER NOT NULL, class VARCHAR NOT NULL, score FLOAT NOT NULL,
    x1 FLOAT NOT NULL, y1 FLOAT NOT NULL, x2 FLOAT NOT NULL, y2 FLOAT NOT NULL, det INTEGER NOT NULL,
    PRIMARY KEY (video_fp, model_version, frame, det)
);
CREATE TABLE vql_results (
    query_id BIGINT NOT NULL, video VARCHAR NOT NULL, predicate VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, frame BIGINT NOT NULL, value DOUBLE NOT NULL, video_fp VARCHAR
);
CREATE TABLE vql_plans (
    key VARCHAR PRIMARY KEY, video_fp VARCHAR NOT NULL, plan BLOB NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp
);
""" + ACCURACY + """CREATE TABLE vql_calibration (
    key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, measured TIMESTAMP DEFAULT current_timestamp
);
CREATE SEQUENCE vql_query_ids START 1;
""" + VIEWS + QUERIES + """
CREATE TABLE vql_video_sets (
    name VARCHAR NOT NULL, pattern VARCHAR NOT NULL, member VARCHAR NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (name, position)
);
"""
VIDEO_SETS = SCHEMA[SCHEMA.index("CREATE TABLE vql_video_sets"):]  # schema 3 -> 4

# Schema 1 (vql before 2026-11-29) -> 2: videos keyed by a hash of the whole file (re-hashed
# here), label tables with primary keys (duplicates from concurrent labelling removed), results
# with the video's content hash, no pickled plans.
MIGRATE_1_TO_2 = """
ALTER TABLE vql_videos ADD COLUMN size BIGINT NOT NULL DEFAULT -1;
ALTER TABLE vql_videos ADD COLUMN mtime_ns BIGINT NOT NULL DEFAULT -1;
ALTER TABLE vql_videos ADD COLUMN note VARCHAR NOT NULL DEFAULT '';
ALTER TABLE vql_videos ADD COLUMN seekable BOOLEAN NOT NULL DEFAULT true;
CREATE TABLE vql_labelled_frames_2 (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    PRIMARY KEY (video_fp, model_version, frame)
);
INSERT INTO vql_labelled_frames_2 SELECT DISTINCT video_fp, model_version, frame FROM vql_labelled_frames;
CREATE TABLE vql_labels_2 (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    class_id INTEGER NOT NULL, class VARCHAR NOT NULL, score FLOAT NOT NULL,
    x1 FLOAT NOT NULL, y1 FLOAT NOT NULL, x2 FLOAT NOT NULL, y2 FLOAT NOT NULL, det INTEGER NOT NULL,
    PRIMARY KEY (video_fp, model_version, frame, det)
);
INSERT INTO vql_labels_2 SELECT *, CAST(row_number() OVER (PARTITION BY video_fp, model_version, frame
    ORDER BY score DESC, class_id, x1, y1, x2, y2) - 1 AS INTEGER) FROM (SELECT DISTINCT * FROM vql_labels);
DROP VIEW IF EXISTS vql_detections;
DROP VIEW IF EXISTS vql_frame_results;
DROP TABLE vql_labelled_frames;
DROP TABLE vql_labels;
ALTER TABLE vql_labelled_frames_2 RENAME TO vql_labelled_frames;
ALTER TABLE vql_labels_2 RENAME TO vql_labels;
ALTER TABLE vql_results ADD COLUMN video_fp VARCHAR;
DELETE FROM vql_plans;
CREATE TABLE vql_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""



@dataclass(frozen=True, slots=True)
class ModelRecord:
    name: str
    kind: str
    path: str | None
    options: dict[str, Any]


def arrow_table(result) -> pa.Table:
    """A DuckDB result as an Arrow table, across DuckDB versions."""
    for method in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(result, method, None)
        if fn is not None:
            with warnings.catch_warnings():  # DuckDB 2 notes the copy a DB-API cursor makes
                warnings.simplefilter("ignore", UserWarning)
                return fn()
    raise ExecutionError("this DuckDB version cannot return Arrow tables")


class Store:
    """vql's tables inside a DuckDB connection (a file, or in memory).

    The schema is created once and versioned (``vql_meta.schema_version``); an older file is
    migrated when opened read-write, a newer one is refused. ``read_only`` opens the file
    without taking the write lock, so it can be read while another process holds it... when
    DuckDB allows it, and on read-only media: cached labels, plans and results are read, and
    anything that must write (labelling, storing results) says so.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = None if path in (None, ":memory:") else Path(path)
        self.read_only = bool(read_only and self.path)
        self._query_ids = 0
        if read_only and self.path and not self.path.exists():
            raise ExecutionError(f"cannot open database {path} read-only: the file does not exist")
        try:
            self.con = duckdb.connect(str(self.path) if self.path else ":memory:", read_only=self.read_only)
        except duckdb.Error as e:
            raise ExecutionError(f"cannot open database {path}: {e}") from e
        try:
            self._prepare_schema()
        except duckdb.Error as e:
            self.con.close()
            raise ExecutionError(f"cannot open database {path}: {e}") from e
        except ExecutionError:
            self.con.close()
            raise

    def _prepare_schema(self) -> None:
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()}
        if "vql_meta" in tables:
            version = self.one("SELECT value FROM vql_meta WHERE key = 'schema_version'")
            version = int(version[0]) if version else 0
        else:
            version = 1 if "vql_videos" in tables else 0
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise ExecutionError(f"database {self.path} was written by a newer vql (schema {version}; this vql reads "
                                 f"{SCHEMA_VERSION}): upgrade vql to open it")
        if self.read_only:
            raise ExecutionError(f"database {self.path} has schema {version} (this vql uses {SCHEMA_VERSION}); "
                                 "open it once read-write to migrate it" if version else
                                 f"{self.path} is not a vql database (no vql tables), and read-only cannot create them")
        with self.transaction():
            if version == 0:
                self.con.execute(SCHEMA)
            else:
                if version == 1:
                    self._migrate_1()
                if version <= 2:
                    self.con.execute(QUERIES)  # 2 -> 3
                self.con.execute(VIDEO_SETS)  # 3 -> 4
            self.con.execute("INSERT OR REPLACE INTO vql_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def _migrate_1(self) -> None:
        """Schema 1 -> 2, keeping the labels of every video whose file is unchanged as far as
        schema 1 could tell (its partial fingerprint still matches): they are re-keyed by the new
        whole-file hash. Labels of files that are gone or changed stay under the old key, unused."""
        from vql.engine.video import VideoError, legacy_fingerprint, probe

        old = self.one("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'vql_query_accuracy' "
                       "AND column_name = 'eval_fpr'")[0]
        if old:  # held-out rates of the earliest planner, which certified nothing
            self.con.execute("DROP TABLE vql_query_accuracy")
        self.con.execute(MIGRATE_1_TO_2 + (ACCURACY if old else "") + VIEWS)
        for name, path, fp in self.con.execute("SELECT name, path, fingerprint FROM vql_videos").fetchall():
            try:
                if legacy_fingerprint(Path(path)) != fp:
                    continue
                info = probe(path)
            except (VideoError, OSError):
                continue
            for table in ("vql_labels", "vql_labelled_frames"):  # schema-1 results have no video_fp: by name below
                self.con.execute(f"UPDATE {table} SET video_fp = ? WHERE video_fp = ?", [info.fingerprint, fp])
            self.con.execute("UPDATE vql_results SET video_fp = ? WHERE video = ?", [info.fingerprint, name])
            self._write_video(name, info, replace=True)

    def close(self) -> None:
        self.con.close()

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        """The first row of a query, its result fetched whole: a result left pending (as
        ``fetchone`` leaves it) makes DuckDB refuse the next ``register``."""
        rows = self.con.execute(sql, list(params)).fetchall()
        return rows[0] if rows else None

    @contextlib.contextmanager
    def registered(self, name: str, table: pa.Table):
        """An Arrow table readable by SQL as ``name`` inside the block (the connection is yielded)."""
        self.con.register(name, table)
        try:
            yield self.con
        finally:
            self.con.unregister(name)

    def materialise(self, name: str, table: pa.Table, order_by: str = "") -> None:
        """An Arrow table copied into the temporary table ``name`` (replaced if it exists)."""
        with self.registered("vql_materialised", table) as con:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(name)} AS SELECT * FROM vql_materialised"
                        + (f" ORDER BY {order_by}" if order_by else ""))

    @contextlib.contextmanager
    def transaction(self):
        """One transaction; on failure it is rolled back and the *original* error raised (a
        failed COMMIT, e.g. on a full disk, has no transaction left to roll back)."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
            self.con.execute("COMMIT")
        except BaseException:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the transaction was already aborted (a failed COMMIT): keep the cause
            raise

    @contextlib.contextmanager
    def one_thread(self):
        """DuckDB on one thread while a statement that runs vql's models runs (its SQL included),
        the database's ``threads`` setting restored afterwards (it is global to the database,
        not per connection). Where DuckDB refuses the change, nothing changes.

        With DuckDB's default (a thread per core), its pool slowed the reference on the 2 cores
        torch shares with it even between statements: 58 ms/frame against 45 labelling the same
        320 frames with every batch's labels saved, and 45 with DuckDB on one thread or with
        nothing saved (CenterNet, 2-core AMD EPYC; README, "Running a plan"). vql's own
        statements on the store are small next to the models'.
        """
        try:
            before = self.con.execute("SELECT current_setting('threads')").fetchall()[0][0]
            self.con.execute("SET threads = 1")
        except duckdb.Error:
            before = None
        try:
            yield
        finally:
            if before is not None:
                try:
                    self.con.execute(f"SET threads = {int(before)}")
                except duckdb.Error:
                    pass  # a connection that failed meanwhile: its error is the one to see

    def check_writable(self, what: str) -> None:
        if self.read_only:
            raise ExecutionError(f"the database is open read-only; {what} needs to write to it "
                                 "(open it without read_only / --readonly)")

    # --- catalog -------------------------------------------------------------------------

    def _write_video(self, name: str, info: VideoInfo, replace: bool = False) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.con.execute(
            f"{verb} INTO vql_videos (name, path, fps, frames, width, height, fingerprint, size, mtime_ns, note, "
            "seekable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, info.path, info.fps, info.frames, info.width, info.height, info.fingerprint, info.size,
             info.mtime_ns, info.note, info.seekable],
        )

    def add_video(self, name: str, info: VideoInfo, replace: bool = False) -> None:
        """Register a video; with ``replace``, the name's earlier video (and its results and
        plans) goes first, in the same transaction. Labels stay, keyed by content."""
        self.check_writable("CREATE VIDEO")
        with self.transaction():
            if replace:
                self._forget_set_or_video(name)
            self._write_video(name, info)

    def update_video(self, name: str, info: VideoInfo) -> None:
        """Record a re-checked file state (same content, newer mtime); skipped read-only."""
        if not self.read_only:
            self.con.execute("UPDATE vql_videos SET mtime_ns = ? WHERE lower(name) = lower(?) AND fingerprint = ?",
                             [info.mtime_ns, name, info.fingerprint])

    def videos(self) -> dict[str, VideoInfo]:
        rows = self.con.execute(
            "SELECT name, path, fps, frames, width, height, fingerprint, size, mtime_ns, note, seekable "
            "FROM vql_videos ORDER BY name"
        ).fetchall()
        return {r[0]: VideoInfo(*r[1:]) for r in rows}

    def video(self, name: str) -> VideoInfo | None:
        for key, info in self.videos().items():
            if key.lower() == name.lower():
                return info
        return None

    def _forget_video(self, name: str) -> None:
        row = self.one("SELECT fingerprint FROM vql_videos WHERE lower(name) = lower(?)", [name])
        self.con.execute("DELETE FROM vql_results WHERE lower(video) = lower(?)", [name])
        self.con.execute("DELETE FROM vql_query_accuracy WHERE lower(video) = lower(?)", [name])
        self.con.execute("DELETE FROM vql_videos WHERE lower(name) = lower(?)", [name])
        if row is not None:  # plans of that content, unless another name still holds the same file
            self.con.execute("DELETE FROM vql_plans WHERE video_fp = ? AND NOT EXISTS "
                             "(SELECT 1 FROM vql_videos WHERE fingerprint = ?)", [row[0], row[0]])

    def drop_video(self, name: str) -> None:
        """Unregister a video with its results and plans; its labels stay, keyed by content. A
        member of a video set goes only with its set (:meth:`drop_video_set`)."""
        self.check_writable("DROP VIDEO")
        owner = self.set_of(name)
        if owner is not None:
            raise ExecutionError(f"video {name!r} belongs to the video set {owner!r}; DROP VIDEO {owner} drops the set")
        with self.transaction():
            self._forget_video(name)

    def video_sets(self) -> dict[str, tuple[str, ...]]:
        """Video sets by name: their member videos, in order."""
        sets: dict[str, list[str]] = {}
        for name, member in self.con.execute("SELECT name, member FROM vql_video_sets ORDER BY name, position").fetchall():
            sets.setdefault(name, []).append(member)
        return {k: tuple(v) for k, v in sets.items()}

    def video_set(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """A set's name as registered and its members, or None."""
        return next(((k, v) for k, v in self.video_sets().items() if k.lower() == name.lower()), None)

    def set_pattern(self, name: str) -> str | None:
        """The pattern a set was registered from."""
        row = self.one("SELECT any_value(pattern) FROM vql_video_sets WHERE lower(name) = lower(?)", [name])
        return row[0] if row else None

    def video_names(self) -> list[str]:
        """The names a query can read: videos and video sets."""
        return list(self.videos()) + list(self.video_sets())

    def set_of(self, video: str) -> str | None:
        """The set a video belongs to, if any."""
        row = self.one("SELECT name FROM vql_video_sets WHERE lower(member) = lower(?)", [video])
        return row[0] if row else None

    def add_video_set(self, name: str, pattern: str, members: Sequence[tuple[str, VideoInfo]],
                      replace: bool = False) -> None:
        """Register a video set and its member videos in one transaction; with ``replace``, the
        name's earlier set (or video) and its members go first."""
        self.check_writable("CREATE VIDEO")
        with self.transaction():
            if replace:
                self._forget_set_or_video(name)
            for i, (member, info) in enumerate(members):
                self._write_video(member, info)
                self.con.execute("INSERT INTO vql_video_sets VALUES (?, ?, ?, ?)", [name, pattern, member, i])

    def _forget_set_or_video(self, name: str) -> None:
        found = self.video_set(name)
        if found is None:
            self._forget_video(name)
            return
        for member in found[1]:
            self._forget_video(member)
        self.con.execute("DELETE FROM vql_video_sets WHERE lower(name) = lower(?)", [name])

    def drop_video_set(self, name: str) -> None:
        """Unregister a set with its member videos, their results and plans (labels stay)."""
        self.check_writable("DROP VIDEO")
        with self.transaction():
            self._forget_set_or_video(name)

    def table_exists(self, name: str) -> bool:
        rows = self.con.execute(
            "SELECT 1 FROM information_schema.tables WHERE lower(table_name) = lower(?)", [name]
        ).fetchall()
        return bool(rows)

    def add_model(self, record: ModelRecord) -> None:
        self.check_writable("CREATE FUNCTION")
        self.con.execute(
            "INSERT INTO vql_models (name, kind, path, options) VALUES (?, ?, ?, ?)",
            [record.name, record.kind, record.path, json.dumps(record.options)],
        )

    def models(self) -> dict[str, ModelRecord]:
        rows = self.con.execute("SELECT name, kind, path, options FROM vql_models ORDER BY name").fetchall()
        return {r[0]: ModelRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows}

    # --- label cache ---------------------------------------------------------------------

    def labelled_frames(self, video_fp: str, model_version: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """The frames in [lo, hi] that already have labels."""
        hi = np.iinfo(np.int64).max if hi is None else hi
        rows = self.con.execute(
            "SELECT frame FROM vql_labelled_frames WHERE video_fp = ? AND model_version = ? "
            "AND frame BETWEEN ? AND ? ORDER BY frame",
            [video_fp, model_version, lo, hi],
        ).fetchnumpy()
        return rows["frame"].astype(np.int64)

    def save_labels(
        self, video_fp: str, model_version: str, classes: Sequence[str], frames: Sequence[int],
        detections: Sequence[Detections],
    ) -> None:
        """Store one batch of reference output in one transaction. Rows are keyed (frame, and
        the detection's rank in it): a batch another connection stored first is skipped, never
        stored twice; a write conflict with a concurrent writer is retried."""
        self.check_writable(f"labelling {len(frames)} frames with the reference")
        counts = [len(d) for d in detections]
        total = sum(counts)
        frame_col = np.repeat(np.asarray(frames, np.int64), counts)
        class_ids = np.concatenate([d.classes for d in detections]) if total else np.zeros(0, np.int32)
        boxes = np.concatenate([d.boxes for d in detections]) if total else np.zeros((0, 4), np.float32)
        scores = np.concatenate([d.scores for d in detections]) if total else np.zeros(0, np.float32)
        rank = np.concatenate([np.arange(c, dtype=np.int32) for c in counts]) if total else np.zeros(0, np.int32)
        names = np.asarray(classes, dtype=object)
        labels = pa.table({
            "video_fp": pa.array([video_fp] * total, pa.string()),
            "model_version": pa.array([model_version] * total, pa.string()),
            "frame": pa.array(frame_col, pa.int64()),
            "class_id": pa.array(class_ids.astype(np.int32), pa.int32()),
            "class": pa.array(names[class_ids] if total else [], pa.string()),
            "score": pa.array(scores, pa.float32()),
            "x1": pa.array(boxes[:, 0], pa.float32()), "y1": pa.array(boxes[:, 1], pa.float32()),
            "x2": pa.array(boxes[:, 2], pa.float32()), "y2": pa.array(boxes[:, 3], pa.float32()),
            "det": pa.array(rank, pa.int32()),
        })
        done = pa.table({
            "video_fp": pa.array([video_fp] * len(frames), pa.string()),
            "model_version": pa.array([model_version] * len(frames), pa.string()),
            "frame": pa.array(np.asarray(frames, np.int64), pa.int64()),
        })
        con = self.con
        con.register("vql_new_labels", labels)
        con.register("vql_new_frames", done)
        try:
            for attempt in range(WRITE_RETRIES):
                try:
                    with self.transaction():
                        # a frame another writer labelled first keeps that writer's rows, whole
                        con.execute("INSERT INTO vql_labels SELECT n.* FROM vql_new_labels n WHERE NOT EXISTS (SELECT 1 "
                                    "FROM vql_labelled_frames f WHERE f.video_fp = n.video_fp AND f.model_version = "
                                    "n.model_version AND f.frame = n.frame) ON CONFLICT DO NOTHING")
                        con.execute("INSERT INTO vql_labelled_frames SELECT * FROM vql_new_frames ON CONFLICT DO NOTHING")
                    return
                except (duckdb.TransactionException, duckdb.ConstraintException) as e:
                    # a concurrent writer committed the same keys first: at our COMMIT, or (when it
                    # committed after our transaction began) at our INSERT; the retry skips them
                    if attempt == WRITE_RETRIES - 1:
                        raise ExecutionError(f"storing labels failed after {WRITE_RETRIES} tries: {e}") from e
                    time.sleep(0.05 * (attempt + 1))
                except duckdb.Error as e:
                    raise ExecutionError(f"storing labels failed: {e}") from e
        finally:
            con.unregister("vql_new_labels")
            con.unregister("vql_new_frames")

    # --- cached cascade plans -------------------------------------------------------------

    def load_plan(self, key: str) -> bytes | None:
        row = self.one("SELECT plan FROM vql_plans WHERE key = ?", [key])
        return bytes(row[0]) if row else None

    def drop_plans_of_other_formats(self, prefix: str) -> None:
        """Rows of another plan format (older vql) are never read (their key differs): drop them."""
        if not self.read_only and self.one("SELECT count(*) FROM vql_plans WHERE NOT starts_with(key, ?)", [prefix])[0]:
            self.con.execute("DELETE FROM vql_plans WHERE NOT starts_with(key, ?)", [prefix])

    def save_plan(self, key: str, video_fp: str, blob: bytes) -> None:
        if self.read_only:
            return  # planned again next time
        self.con.execute("INSERT OR REPLACE INTO vql_plans (key, video_fp, plan) VALUES (?, ?, ?)", [key, video_fp, blob])

    def load_calibration(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM vql_calibration").fetchall()}

    def save_calibration(self, key: str, value: Any) -> None:
        if self.read_only:
            return  # kept for the session only
        self.con.execute("INSERT OR REPLACE INTO vql_calibration (key, value) VALUES (?, ?)", [key, json.dumps(value)])

    # --- results -------------------------------------------------------------------------

    def next_query_id(self) -> int:
        if self.read_only:  # results are not stored: ids count within the session
            self._query_ids += 1
            return self._query_ids
        return int(self.one("SELECT nextval('vql_query_ids')")[0])

    def record_query(self, con, query_id: int, text: str, started, finished, videos: Sequence[str], rows: int,
                     labelled: int, cached: int, predicates: list[dict]) -> None:
        """One row of ``vql_queries``, inside the caller's transaction (``con``)."""
        con.execute("INSERT OR REPLACE INTO vql_queries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [query_id, text, started, finished, ",".join(videos), rows, labelled, cached,
                     json.dumps(predicates, default=float)])

    def drop_results(self, video: str) -> int:
        self.check_writable("DROP RESULTS")
        n = self.one("SELECT count(*) FROM vql_results WHERE lower(video) = lower(?)", [video])[0]
        with self.transaction():
            self.con.execute("DELETE FROM vql_results WHERE lower(video) = lower(?)", [video])
            self.con.execute("DELETE FROM vql_query_accuracy WHERE lower(video) = lower(?)", [video])
        return int(n)
