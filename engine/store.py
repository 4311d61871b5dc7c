"""The DuckDB store: catalog, label cache and frame-level results, in one database file.

Tables (``vql_`` prefix; users read them through the documented views):

- ``vql_videos``: name, path, fps, frames, width, height, fingerprint (content hash).
- ``vql_models``: user-registered reference models (``CREATE FUNCTION``).
- ``vql_labels``: every detection the reference ever produced, keyed by video fingerprint,
  model version and frame; ``vql_labelled_frames`` lists the frames labelled (also those with
  no detection). Labels are never recomputed.
- ``vql_results``: frame-level values of the model predicates of each query.
- ``vql_query_accuracy``: per query and scan with model tests, the plan's strategy, what is
  certified (the WHERE clause, or each test), the targets, and the certified upper bounds of the
  false-positive and false-negative rates with their joint confidence and the certification
  frames and positives they rest on (0 bounds and confidence 1 for the exact plan).
- ``vql_calibration``: per-frame costs measured on this machine (decoding per video, the
  reference per model version and device), measured once and reused by every later plan.

Views: ``vql_detections`` (labels with video names and timestamps), ``vql_frame_results``.
Every write is one transaction of Arrow batches: an interrupted labelling run keeps every
batch committed before the interruption, and the file stays consistent.
"""

from __future__ import annotations

import json
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
from vql.udfs.reference import Detections

SCHEMA = """
CREATE TABLE IF NOT EXISTS vql_videos (
    name VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, fps DOUBLE NOT NULL, frames BIGINT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, fingerprint VARCHAR NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS vql_models (
    name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, path VARCHAR, options VARCHAR NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS vql_labelled_frames (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS vql_labels (
    video_fp VARCHAR NOT NULL, model_version VARCHAR NOT NULL, frame BIGINT NOT NULL,
    class_id INTEGER NOT NULL, class VARCHAR NOT NULL, score FLOAT NOT NULL,
    x1 FLOAT NOT NULL, y1 FLOAT NOT NULL, x2 FLOAT NOT NULL, y2 FLOAT NOT NULL
);
CREATE TABLE IF NOT EXISTS vql_results (
    query_id BIGINT NOT NULL, video VARCHAR NOT NULL, predicate VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, frame BIGINT NOT NULL, value DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS vql_plans (
    key VARCHAR PRIMARY KEY, video_fp VARCHAR NOT NULL, plan BLOB NOT NULL,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS vql_query_accuracy (
    query_id BIGINT NOT NULL, video VARCHAR NOT NULL, claim VARCHAR NOT NULL, strategy VARCHAR NOT NULL,
    fpr_target DOUBLE, fnr_target DOUBLE, fpr_bound DOUBLE, fnr_bound DOUBLE, confidence DOUBLE,
    certification_frames BIGINT, certification_positives BIGINT, expected_speedup DOUBLE
);
CREATE TABLE IF NOT EXISTS vql_calibration (
    key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, measured TIMESTAMP DEFAULT current_timestamp
);
CREATE SEQUENCE IF NOT EXISTS vql_query_ids START 1;
CREATE OR REPLACE VIEW vql_detections AS
    SELECT v.name AS video, l.frame, l.frame / v.fps AS ts, l.model_version, l.class, l.score,
           l.x1, l.y1, l.x2, l.y2
    FROM vql_labels l JOIN vql_videos v ON l.video_fp = v.fingerprint;
CREATE OR REPLACE VIEW vql_frame_results AS
    SELECT r.query_id, r.video, r.predicate, r.frame, r.frame / v.fps AS ts, r.value, r.model_version
    FROM vql_results r JOIN vql_videos v ON r.video = v.name;
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
    """vql's tables inside a DuckDB connection (a file, or in memory)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path in (None, ":memory:") else Path(path)
        try:
            self.con = duckdb.connect(str(self.path) if self.path else ":memory:")
            old = self.con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'vql_query_accuracy' "
                                   "AND column_name = 'eval_fpr'").fetchone()[0]
            if old:  # held-out rates of the earlier planner, which certified nothing: replaced by bounds
                self.con.execute("DROP TABLE vql_query_accuracy")
            self.con.execute(SCHEMA)
        except duckdb.Error as e:
            raise ExecutionError(f"cannot open database {path}: {e}") from e

    def close(self) -> None:
        self.con.close()

    # --- catalog -------------------------------------------------------------------------

    def add_video(self, name: str, info: VideoInfo) -> None:
        self.con.execute(
            "INSERT INTO vql_videos (name, path, fps, frames, width, height, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [name, info.path, info.fps, info.frames, info.width, info.height, info.fingerprint],
        )

    def videos(self) -> dict[str, VideoInfo]:
        rows = self.con.execute(
            "SELECT name, path, fps, frames, width, height, fingerprint FROM vql_videos ORDER BY name"
        ).fetchall()
        return {r[0]: VideoInfo(*r[1:]) for r in rows}

    def video(self, name: str) -> VideoInfo | None:
        for key, info in self.videos().items():
            if key.lower() == name.lower():
                return info
        return None

    def drop_video(self, name: str) -> None:
        self.con.execute("DELETE FROM vql_videos WHERE lower(name) = lower(?)", [name])

    def table_exists(self, name: str) -> bool:
        rows = self.con.execute(
            "SELECT 1 FROM information_schema.tables WHERE lower(table_name) = lower(?)", [name]
        ).fetchall()
        return bool(rows)

    def add_model(self, record: ModelRecord) -> None:
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
        """Store one batch of reference output in one transaction."""
        counts = [len(d) for d in detections]
        total = sum(counts)
        frame_col = np.repeat(np.asarray(frames, np.int64), counts)
        class_ids = np.concatenate([d.classes for d in detections]) if total else np.zeros(0, np.int32)
        boxes = np.concatenate([d.boxes for d in detections]) if total else np.zeros((0, 4), np.float32)
        scores = np.concatenate([d.scores for d in detections]) if total else np.zeros(0, np.float32)
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
        })
        done = pa.table({
            "video_fp": pa.array([video_fp] * len(frames), pa.string()),
            "model_version": pa.array([model_version] * len(frames), pa.string()),
            "frame": pa.array(np.asarray(frames, np.int64), pa.int64()),
        })
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("vql_new_labels", labels)
            con.register("vql_new_frames", done)
            con.execute("INSERT INTO vql_labels SELECT * FROM vql_new_labels")
            con.execute("INSERT INTO vql_labelled_frames SELECT * FROM vql_new_frames")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("vql_new_labels")
            con.unregister("vql_new_frames")

    # --- cached cascade plans -------------------------------------------------------------

    def load_plan(self, key: str) -> bytes | None:
        row = self.con.execute("SELECT plan FROM vql_plans WHERE key = ?", [key]).fetchone()
        return bytes(row[0]) if row else None

    def save_plan(self, key: str, video_fp: str, blob: bytes) -> None:
        self.con.execute("INSERT OR REPLACE INTO vql_plans (key, video_fp, plan) VALUES (?, ?, ?)", [key, video_fp, blob])

    def load_calibration(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM vql_calibration").fetchall()}

    def save_calibration(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO vql_calibration (key, value) VALUES (?, ?)", [key, json.dumps(value)])

    # --- results -------------------------------------------------------------------------

    def next_query_id(self) -> int:
        return int(self.con.execute("SELECT nextval('vql_query_ids')").fetchone()[0])

    def drop_results(self, video: str) -> int:
        n = self.con.execute("SELECT count(*) FROM vql_results WHERE lower(video) = lower(?)", [video]).fetchone()[0]
        self.con.execute("DELETE FROM vql_results WHERE lower(video) = lower(?)", [video])
        self.con.execute("DELETE FROM vql_query_accuracy WHERE lower(video) = lower(?)", [video])
        return int(n)
