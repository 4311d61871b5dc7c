"""Running a logical plan: label what the reference has not seen, evaluate predicates, run SQL.

Each plan operator has one function here, picked by type (``run_operator`` dispatches on the
node's class). Labelling decodes in a background thread, runs the reference in batches and
commits each batch to the store, so an interrupted run loses at most one batch.
"""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import singledispatch
from typing import Any

import numpy as np
import pyarrow as pa

from vql.engine import video
from vql.engine.store import Store, arrow_table
from vql.engine.video import VideoInfo, read_frames
from vql.errors import ExecutionError
from vql.plan import (Atom, CountEstimate, EvaluatePredicates, LabelFrames, LimitSearch, ModelPredicate, RecallSelect,
                      SqlQuery, TopK)
from vql.progress import Progress
from vql.sqlgen import ident, literal
from vql.udfs.reference import ReferenceModel

LABEL_BATCH = 16
LIMIT_CHUNK = 64  # first chunk of a LIMIT-bounded scan; doubles each round


class Calibration(dict):
    """Measured per-frame costs (and each video's seek gap: ``sparse_seek_gap``), read from the
    store once and written back as they are measured (so a cost is calibrated once per machine,
    not once per session).

    >>> from vql.engine.store import Store
    >>> store = Store(None)
    >>> Calibration(store, "box")["decode_cost:abc"] = [0.0012, 0.0005]
    >>> Calibration(store, "box"), Calibration(store, "other")
    ({'decode_cost:abc': [0.0012, 0.0005]}, {})
    """

    def __init__(self, store: Store, machine: str | None = None) -> None:
        self.store = store
        self.prefix = f"{machine or socket.gethostname()}|"  # a database moved elsewhere measures again
        super().__init__({k[len(self.prefix):]: v for k, v in store.load_calibration().items() if k.startswith(self.prefix)})

    def __setitem__(self, key: str, value) -> None:
        super().__setitem__(key, value)
        self.store.save_calibration(self.prefix + key, value)


@dataclass
class Context:
    """What operators need: the store, models by name, how to show progress, and counters."""

    store: Store
    model: Callable[[str], ReferenceModel]
    progress: bool | None = None  # None: on when stderr is a terminal
    stats: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # measured costs (Calibration), kept per session
    plan_query: Callable | None = None  # EvaluatePredicates -> planner.query.QueryPlan, cached by the session
    plans: dict[str, object] = field(default_factory=dict)  # per-frame table -> the QueryPlan used
    choices: dict[str, object] = field(default_factory=dict)  # an atom's key (EvaluatePredicates.key) -> its CascadeChoice
    audit: int = 0  # WITH (audit := N): frames to judge the answers on after the run
    workers: object | None = None  # engine.workers.Workers: SET workers = N, labelling in N processes
    recipe: Callable[[ReferenceModel], tuple | None] | None = None  # how a worker rebuilds a model, if it can
    labelled: set = field(default_factory=set)  # LabelFrames a set's members' labelling did (engine/members.py)
    evaluated: set = field(default_factory=set)  # EvaluatePredicates a set's members' cascades did (the same)
    text: str = ""  # the statement, for the query log (vql_queries)

    def count(self, key: str, value: float) -> None:
        self.stats[key] = self.stats.get(key, 0) + value


@singledispatch
def run_operator(node, ctx: Context) -> None:
    raise ExecutionError(f"no operator for plan node {type(node).__name__}")


# A way of answering a scan's model tests other than cascades or the exact scan, by the plan's spec
# type: the module and function doing it (imported when a query needs it; they import this module).
ANSWERS = {LimitSearch: ("vql.engine.search", "run_search"), CountEstimate: ("vql.engine.estimate", "run_count"),
           TopK: ("vql.engine.topk", "run_topk"), RecallSelect: ("vql.engine.recall", "run_recall")}


def answer_atoms(spec, node: EvaluatePredicates, ctx: Context) -> None:
    """Answer a scan's model tests (or predicates) the way ``spec`` says (:data:`ANSWERS`)."""
    if type(spec) not in ANSWERS:
        raise ExecutionError(f"no way to answer model tests for {type(spec).__name__}")
    module, name = ANSWERS[type(spec)]
    getattr(importlib.import_module(module), name)(spec, node, ctx)


@run_operator.register
def _label_frames(node: LabelFrames, ctx: Context, tests: str = "") -> None:
    """Run the reference on every frame of the scan that has no stored labels yet (``tests``: the
    model tests it is for, as the progress bar names them)."""
    if node in ctx.labelled:  # labelled with the other members of its video set (engine/members.py)
        return
    scan = node.scan
    model = ctx.model(node.model)
    done, missing = missing_frames(ctx, node)
    ctx.count("frames_cached", len(done))
    label_frames(ctx, scan.info, model, missing,
                 f"labelling {scan.video} for {tests}" if tests else f"labelling {scan.video} with {model.name}")


def missing_frames(ctx: Context, node: LabelFrames) -> tuple[np.ndarray, np.ndarray]:
    """(the frames of the scan its model has labelled already, those it has not)."""
    scan = node.scan
    done = ctx.store.labelled_frames(scan.info.fingerprint, node.model_version, scan.first, scan.last)
    return done, np.setdiff1d(np.arange(scan.first, scan.last + 1, dtype=np.int64), done, assume_unique=True)


def label_frames(ctx: Context, info, model: ReferenceModel, frames: np.ndarray, label: str = "") -> None:
    """Run the reference on these frames and store the labels, one transaction per batch, with a
    progress bar (``label``: what it says is being done)."""
    if not len(frames):
        return
    with Progress(len(frames), "frames", label or f"labelling with {model.name}", enabled=ctx.progress) as bar:
        label_with(ctx, info, [model], frames, bar.update)


def label_with(ctx: Context, info, models, frames: np.ndarray, on_batch: Callable[[int], None] | None = None) -> float:
    """Run every one of ``models`` on these frames and store the labels, one transaction per
    batch and model (``on_batch``: told how many frames each batch held); seconds spent."""
    start = time.perf_counter()
    store = label_store(ctx, info, models, on_batch)
    recipes = pool_recipes(ctx, info, models, frames)
    gap = sparse_seek_gap(ctx, info, frames)
    if recipes is not None:
        ctx.workers.label(info, recipes, [m.version for m in models], frames, store, gap)
    else:
        for indices, batch in read_frames(info, frames, LABEL_BATCH, seek_gap=gap):
            store(indices, [model.detect(batch) for model in models])
    seconds = time.perf_counter() - start
    ctx.count("label_seconds", seconds)
    return seconds


def label_store(ctx: Context, info, models, on_batch: Callable[[int], None] | None = None) -> Callable:
    """``store(indices, detections per model)``: saves a batch's labels, one transaction per
    model, and counts the frames labelled (``on_batch``: told how many)."""
    def store(indices: np.ndarray, dets: list[list]) -> None:
        for model, found in zip(models, dets):
            ctx.store.save_labels(info.fingerprint, model.version, model.classes, indices.tolist(), found)
        ctx.count("frames_labelled", len(indices))
        if on_batch:
            on_batch(len(indices))

    return store


def pool_recipes(ctx: Context, info: VideoInfo, models, frames: np.ndarray, cascade: bool = False) -> list | None:
    """How the workers (or Ray) rebuild ``models``, where they take the labelling of these
    frames (``cascade``: a cascade's pass over them; ``Workers.fits``); None where this process
    does it."""
    recipes = [ctx.recipe(m) if ctx.recipe else None for m in models]
    return recipes if ctx.workers is not None and ctx.workers.fits(info, recipes, frames, cascade) else None


def sparse_seek_gap(ctx: Context, info: VideoInfo, frames: np.ndarray) -> int | None:
    """The gap past which reading ``frames`` should seek (``engine/video.py: seek_gap``),
    measured once per video and machine (vql_calibration, an int); None (read_frames' default)
    where the frames are not sparse (on average closer than 2 apart) or the video is not
    seekable."""
    frames = np.asarray(frames)
    if not len(frames) or not info.seekable or int(frames.max()) - int(frames.min()) + 1 < 2 * len(frames):
        return None
    key = f"seek_gap:{info.fingerprint}"
    if key not in ctx.calibration:
        ctx.calibration[key] = video.seek_gap(info.path, info.frames, decode_cost(ctx, info, frames))
    return int(ctx.calibration[key])


def pass_readers(ctx: Context, info: VideoInfo) -> int:
    """Decoding threads for a pass that takes its frames in any order (``video.read_frames``):
    ``video.default_readers()`` where six seeks spread over this video landed where asked
    (``video.seek_cost``; measured once per video and machine, vql_calibration), else one: a piece
    of the scan after the first starts with a seek, and where seeks miss, each would decode
    from the start."""
    if not info.seekable:
        return 1
    key = f"seeks_land:{info.fingerprint}"
    if key not in ctx.calibration:
        ctx.calibration[key] = int(video.seek_cost(info.path, info.frames) is not None)
    return video.default_readers() if ctx.calibration[key] else 1


def decode_cost(ctx: Context, info: VideoInfo, frames: np.ndarray) -> tuple[float, float]:
    """(read, grab) seconds per frame of this video (``engine/video.py: decode_costs``, from the
    middle of ``frames``), measured once per video and machine (vql_calibration)."""
    key = f"decode_cost:{info.fingerprint}"
    if key not in ctx.calibration:
        ctx.calibration[key] = video.decode_costs(info.path, start=int(np.median(frames)))
    read, grab = ctx.calibration[key]
    return read, grab


def atom_models(ctx: Context, node: EvaluatePredicates) -> list[ReferenceModel]:
    """The reference models a scan's model tests use, each once."""
    return [ctx.model(name) for name in dict.fromkeys(a.predicate.model for a in node.atoms)]


def labelled_by_all(ctx: Context, scan, models) -> np.ndarray:
    """The frames of the scan every one of ``models`` has labelled already (sorted)."""
    frames = np.arange(scan.first, scan.last + 1, dtype=np.int64)
    for model in models:
        frames = np.intersect1d(frames, ctx.store.labelled_frames(scan.info.fingerprint, model.version, scan.first,
                                                                  scan.last), assume_unique=True)
    return frames


def judge_frames(ctx: Context, node: EvaluatePredicates, frames: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """On labelled ``frames``: each atom's value from the stored labels, and the WHERE clause's
    truth (``node.where``, evaluated by DuckDB)."""
    info = node.scan.info
    values = {a.column: atom_truth(ctx, info, ctx.model(a.predicate.model).version, a, frames) for a in node.atoms}
    return values, where_truth(ctx, node)(frames, values)


def predicate_condition(pred: ModelPredicate, info) -> str:
    """Which rows of ``vql_labels`` are objects the predicate counts: its class, at its score,
    centred in its region."""
    cond = [f"class_id = {pred.class_id}", f"score >= {pred.min_score!r}"]
    if pred.region is not None:
        x0, y0, x1, y1 = pred.region
        cx, cy = f"((x1 + x2) / 2 / {float(info.width)!r})", f"((y1 + y2) / 2 / {float(info.height)!r})"
        cond += [f"{cx} BETWEEN {x0!r} AND {x1!r}", f"{cy} BETWEEN {y0!r} AND {y1!r}"]
    return " AND ".join(cond)


def predicate_sql(pred: ModelPredicate, info) -> str:
    """The aggregate counting a predicate's objects in one frame's labels."""
    return f"count(*) FILTER (WHERE {predicate_condition(pred, info)}) AS {ident(pred.column)}"


def predicate_extents(ctx: Context, info: VideoInfo, version: str, pred: ModelPredicate,
                      frames: np.ndarray) -> np.ndarray:
    """[n, 2]: the height and the width, as fractions of the frame's, of each object ``pred``
    counts on the labelled ``frames``."""
    frames = np.asarray(frames, np.int64)
    if not len(frames):
        return np.zeros((0, 2))
    with ctx.store.registered("vql_wanted_frames", pa.table({"frame": frames})) as con:
        rows = con.execute(
            f"SELECT (y2 - y1) / {float(info.height)!r} AS h, (x2 - x1) / {float(info.width)!r} AS w FROM vql_labels "
            f"WHERE video_fp = ? AND model_version = ? AND frame IN (SELECT frame FROM vql_wanted_frames) AND "
            f"{predicate_condition(pred, info)}", [info.fingerprint, version]).fetchnumpy()
    return np.stack([np.asarray(rows["h"], float), np.asarray(rows["w"], float)], 1)


def atom_counts(ctx: Context, info: VideoInfo, version: str, atom: Atom, first: int, last: int) -> dict[int, int]:
    """Per labelled frame in [first, last]: the number of objects the atom's predicate counts."""
    pred = replace(atom.predicate, column="n")
    rows = ctx.store.con.execute(
        f"SELECT f.frame, coalesce(l.n, 0) FROM vql_labelled_frames f LEFT JOIN ("
        f"SELECT frame, {predicate_sql(pred, info)} "
        f"FROM vql_labels WHERE video_fp = ? AND model_version = ? AND frame BETWEEN ? AND ? GROUP BY frame) l "
        f"ON l.frame = f.frame WHERE f.video_fp = ? AND f.model_version = ? AND f.frame BETWEEN ? AND ?",
        [info.fingerprint, version, first, last, info.fingerprint, version, first, last],
    ).fetchall()
    return {int(f): int(n) for f, n in rows}


def atom_truth(ctx: Context, info: VideoInfo, version: str, atom: Atom, frames: np.ndarray) -> np.ndarray:
    """The atom's truth on labelled ``frames`` (a frame without detections counts 0 objects)."""
    return np.asarray(atom.holds(predicate_counts(ctx, info, version, atom.predicate, frames)), bool)


def predicate_counts(ctx: Context, info: VideoInfo, version: str, pred: ModelPredicate, frames: np.ndarray) -> np.ndarray:
    """How many objects ``pred`` counts on each of the labelled ``frames`` (0 without detections)."""
    frames = np.asarray(frames, np.int64)
    if not len(frames):
        return np.zeros(0, np.int64)
    pred = replace(pred, column="n")
    wanted = pa.table({"frame": frames, "i": np.arange(len(frames))})
    with ctx.store.registered("vql_wanted_frames", wanted) as con:  # only these frames' labels are read
        rows = con.execute(
            f"SELECT coalesce(l.n, 0) FROM vql_wanted_frames w LEFT JOIN (SELECT frame, {predicate_sql(pred, info)} "
            f"FROM vql_labels WHERE video_fp = ? AND model_version = ? AND frame IN (SELECT frame FROM "
            f"vql_wanted_frames) GROUP BY frame) l ON l.frame = w.frame ORDER BY w.i",
            [info.fingerprint, version]).fetchnumpy()
    return np.asarray(rows[next(iter(rows))], np.int64)


def atom_order(node: EvaluatePredicates, choices: dict) -> list:
    """The order in which to evaluate a node's atoms. Under AND, a frame found False needs no
    other atom, so the atom with the least cost per frame it rules out goes first (expected cost
    / share of frames where it is False); under OR, the same with True. Otherwise as written.

    >>> from types import SimpleNamespace as NS
    >>> a, b = NS(column="a"), NS(column="b")
    >>> node = NS(atoms=(a, b), combine="and")
    >>> choices = {"a": NS(expected_per_frame=1.0, positive_rate=0.9), "b": NS(expected_per_frame=2.0, positive_rate=0.1)}
    >>> [x.column for x in atom_order(node, choices)]     # b rules out 90% of frames at 2 ms: first
    ['b', 'a']
    """
    if node.combine not in ("and", "or"):
        return list(node.atoms)

    def rank(atom) -> float:
        c = choices[atom.column]
        settles = 1.0 - c.positive_rate if node.combine == "and" else c.positive_rate
        return c.expected_per_frame / max(settles, 1e-6)

    return sorted(node.atoms, key=rank)


def evaluate_steps(node: EvaluatePredicates, ctx: Context):
    """Answer each atom with its cascade; materialise frame, ts and one column per atom. Under a
    top-level AND (OR) of atoms, each atom runs only on the frames the ones before left open; the
    others get NULL, which AND (OR) resolves the same way.

    As steps (``engine/cascade.py: cascade_steps``): it yields each cascade pass it needs and is
    sent its result, so that a video set's members' passes can run together (``engine/members.py``);
    ``engine/cascade.py: drive`` runs it alone."""
    from vql.engine.cascade import cascade_steps, timed

    scan, info = node.scan, node.scan.info
    frames = np.arange(scan.first, scan.last + 1, dtype=np.int64)
    columns = {"frame": pa.array(frames), "ts": pa.array(frames / info.fps)}
    ctx.plans[node.table] = plan = ctx.plan_query(node)
    choices = {atom.column: plan.choice(atom.column) for atom in node.atoms}
    ctx.choices.update({node.key(column): choice for column, choice in choices.items()})
    open_frames = np.ones(len(frames), bool)
    operators = ctx.stats.setdefault("operators", {})
    for atom in atom_order(node, choices):
        model = ctx.model(atom.predicate.model)
        took = [0.0]
        answer, ops = yield from timed(cascade_steps(ctx, info, model, model.version, choices[atom.column],
                                                     scan.first, scan.last, open_frames.copy()), took)
        operators[node.key(atom.column)] = {"ops": [o.row() for o in ops], "seconds": took[0],
                                  "frames": int(open_frames.sum())}
        columns[atom.column] = pa.array(answer, mask=~open_frames)
        if node.combine == "and":
            open_frames &= answer
        elif node.combine == "or":
            open_frames &= ~answer
    table = pa.table({k: columns[k] for k in ["frame", "ts"] + [a.column for a in node.atoms]})
    ctx.store.materialise(node.table, table)
    if ctx.audit:
        from vql.engine.audit import audit

        ctx.stats.setdefault("audit", {}).update({node.key(k): v for k, v in audit(node, ctx, ctx.audit).items()})


@run_operator.register
def _evaluate(node: EvaluatePredicates, ctx: Context) -> None:
    """Materialise the per-frame table: frame, ts and one column per model predicate."""
    if node in ctx.evaluated:  # with the other members of its video set (engine/members.py)
        return
    if node.atoms:
        from vql.engine.cascade import drive

        drive(ctx, evaluate_steps(node, ctx))
        return
    for labels in node.labels:
        run_operator(labels, ctx, ", ".join(p.short_text for p in node.predicates if p.model == labels.model))
    scan, info = node.scan, node.scan.info
    selects = ["f.frame AS frame", f"f.frame / {float(info.fps)!r} AS ts"]
    joins = []
    for i, labels in enumerate(node.labels):
        preds = [p for p in node.predicates if p.model == labels.model]
        if not preds:
            continue
        aggs = ", ".join(predicate_sql(p, info) for p in preds)
        joins.append(
            f"LEFT JOIN (SELECT frame, {aggs} FROM vql_labels WHERE video_fp = '{info.fingerprint}' "
            f"AND model_version = '{labels.model_version}' AND frame BETWEEN {scan.first} AND {scan.last} "
            f"GROUP BY frame) l{i} ON l{i}.frame = f.frame"
        )
        for p in preds:
            value = f"coalesce(l{i}.{ident(p.column)}, 0)"
            selects.append(f"({value} > 0) AS {ident(p.column)}" if p.function == "contains"
                           else f"CAST({value} AS INTEGER) AS {ident(p.column)}")
    sql = (
        f"CREATE OR REPLACE TEMP TABLE {ident(node.table)} AS SELECT {', '.join(selects)} "
        f"FROM range({scan.first}, {scan.last + 1}) f(frame) {' '.join(joins)} ORDER BY f.frame"
    )
    ctx.store.con.execute(sql)


def record_results(con, node: EvaluatePredicates, ctx: Context, query_id: int) -> None:
    """Keep the frame-level predicate values in ``vql_results``, keyed by the video's name and
    content hash, with the plan's accuracy record, inside the caller's transaction (``con``;
    see :func:`record_query`)."""
    video, fp = node.scan.video, node.scan.info.fingerprint
    if node.table in ctx.stats.get("estimate", {}):  # a count: no frame-level values to keep
        return
    for atom in node.atoms:  # frames a short-circuit left open (NULL) are not recorded
        version = ctx.model(atom.predicate.model).version
        con.execute(
            f"INSERT INTO vql_results SELECT ?, ?, ?, ?, frame, CAST({ident(atom.column)} AS DOUBLE), ? "
            f"FROM {ident(node.table)} WHERE {ident(atom.column)} IS NOT NULL",
            [query_id, video, atom.text, version, fp],
        )
    plan = ctx.plans.get(node.table)
    if plan is not None and node.atoms:
        cert = plan.certificate if plan.strategy == "cascade" else None
        con.execute(
            "INSERT INTO vql_query_accuracy VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [query_id, video, " AND ".join(plan.claims), plan.strategy, plan.fpr, plan.fnr,
             cert.fpr_bound if cert else 0.0, cert.fnr_bound if cert else 0.0, cert.confidence if cert else 1.0,
             cert.frames if cert else 0, sum(c.positives for c in cert.claims) if cert else 0,
             plan.exact_seconds / max(plan.expected_seconds, 1e-12) if plan.expected_seconds else 1.0],
        )
    for p in node.predicates:
        version = next(lf.model_version for lf in node.labels if lf.model == p.model)
        con.execute(
            f"INSERT INTO vql_results SELECT ?, ?, ?, ?, frame, CAST({ident(p.column)} AS DOUBLE), ? "
            f"FROM {ident(node.table)}",
            [query_id, video, p.text, version, fp],
        )


def plan_summary(plan, choice) -> dict:
    """What every result says of one atom's plan: its strategy and the query's certificate (the
    exact plan's, 0 bounds at confidence 1, when the atom had no plan)."""
    cert = plan.certificate if plan is not None and plan.strategy == "cascade" else None
    return {"strategy": choice.strategy if choice else "exact",
            "query_strategy": plan.strategy if plan else "exact", "claims": list(plan.claims) if plan else [],
            "fpr_target": plan.fpr if plan else 0.0, "fnr_target": plan.fnr if plan else 0.0,
            "fpr_bound": cert.fpr_bound if cert else 0.0, "fnr_bound": cert.fnr_bound if cert else 0.0,
            "confidence": cert.confidence if cert else 1.0, "certification_frames": cert.frames if cert else 0,
            "expected_speedup": choice.exact_per_frame / choice.expected_per_frame
            if choice and choice.expected_per_frame else 1.0}


def provenance(node: EvaluatePredicates, ctx: Context) -> list[dict]:
    """Per model test of one scan: how it was answered and what was certified (``vql_queries``)."""
    where = {"video": node.scan.video, "frames": [node.scan.first, node.scan.last]}
    plan = ctx.plans.get(node.table)
    rows = [dict(where, predicate=atom.text, **plan_summary(plan, plan.choice(atom.column) if plan else None))
            for atom in node.atoms]
    for kind, strategy in (("search", "limit-search"), ("estimate", "count-estimate"), ("recall", "recall-select")):
        if node.table in ctx.stats.get(kind, {}):  # no cascade, nothing certified: how it was answered
            rows = [dict(r, strategy=strategy, query_strategy=strategy) for r in rows]
    if node.table in ctx.stats.get("recall", {}):
        s = ctx.stats["recall"][node.table]
        rows = [dict(r, recall_target=s["recall"], recall_bound=s["recall_bound"], confidence=s["confidence"],
                     precision=s["precision"], precision_low=s["precision_low"], precision_high=s["precision_high"])
                for r in rows]
    shown = [dict(where, predicate=p.text, **plan_summary(None, None)) for p in node.predicates]
    e = ctx.stats.get("estimate", {}).get(node.table)
    if e is not None and e.get("aggregate", "count") == "count":  # the model tests' count and its interval
        rows = [dict(r, count=e["count"], count_low=e["low"], count_high=e["high"], confidence=e["confidence"])
                for r in rows]
    elif e is not None:  # AVG/SUM of a count: its sum's interval
        kind = f"{e['aggregate']}-estimate"
        shown = [dict(r, strategy=kind, query_strategy=kind, exact=e["exact"], sum=e["total"], sum_low=e["total_low"],
                      sum_high=e["total_high"], frames_averaged=e["frames"], confidence=e["confidence"]) for r in shown]
    top = ctx.stats.get("topk", {}).get(node.table)
    if top is not None:  # labelled frames only, ranked by the reference; the share outranking them certified
        shown = [dict(r, strategy="top-k", query_strategy="top-k", exact=top["exact"], miss_target=top["miss"],
                      outranking_bound=top["bound"], unlabelled=top["unlabelled"], confidence=top["confidence"])
                 for r in shown]
    return rows + shown


def record_query(plan: SqlQuery, ctx: Context, query_id: int, started: datetime, rows: int) -> None:
    """Store a query's results (:func:`record_results`, per scan) and its row of ``vql_queries``
    (text, times, frames labelled, per model test the strategy and certified bounds) in one
    transaction; nothing on a read-only database, where results are not kept."""
    if ctx.store.read_only:
        return
    finished = datetime.now(timezone.utc).replace(tzinfo=None)
    with ctx.store.transaction() as con:
        for node in plan.inputs:
            record_results(con, node, ctx, query_id)
        ctx.store.record_query(con, query_id, ctx.text, started, finished, [n.scan.video for n in plan.inputs], rows,
                               int(ctx.stats.get("frames_labelled", 0)), int(ctx.stats.get("frames_cached", 0)),
                               [row for node in plan.inputs for row in provenance(node, ctx)])
    ctx.stats["results_stored"] = True


def where_truth(ctx: Context, node: EvaluatePredicates):
    """The WHERE clause's truth per frame from atom values, evaluated by DuckDB on the clause's
    own SQL (None when WHERE depends on more than the frame: each atom is then certified)."""
    if node.where is None:
        return None
    fps = float(node.scan.info.fps)

    def combine(frames: np.ndarray, values: dict) -> np.ndarray:
        frames = np.asarray(frames, np.int64)
        table = pa.table({"vql_row": np.arange(len(frames)), "frame": frames, "ts": frames / fps,
                          **{k: np.asarray(v, bool) for k, v in values.items()}})
        with ctx.store.registered("vql_claim_frames", table) as con:
            rows = con.execute(f"SELECT coalesce(({node.where}), FALSE) FROM vql_claim_frames AS "
                               f"{ident(node.scan.alias)} ORDER BY vql_row").fetchall()
        return np.array([bool(r[0]) for r in rows], bool)

    return combine


def check_sql(plan: SqlQuery, ctx: Context, params=None) -> None:
    """Let DuckDB bind the final SQL against empty per-frame tables, before any frame is labelled:
    an unknown table, column or function fails in milliseconds instead of after the reference ran."""
    for node in plan.inputs:
        columns = ["frame BIGINT", "ts DOUBLE"] + [f"{ident(p.column)} {p.sql_type}" for p in node.predicates]
        columns += [f"{ident(a.column)} BOOLEAN" for a in node.atoms]
        if plan.estimate is not None and plan.estimate.covers(node):  # an estimate's rows (engine/estimate.py)
            keys = "".join(f"({k}) AS k{i}, " for i, k in enumerate(plan.estimate.keys))
            kind = "DOUBLE" if plan.estimate.aggregate == "avg" else "BIGINT"
            ctx.store.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {ident(node.table)} AS SELECT {keys}0::{kind} AS estimate, "
                f"0::{kind} AS low, 0::{kind} AS high FROM (SELECT 0::BIGINT AS frame, 0.0::DOUBLE AS ts) AS "
                f"{ident(node.scan.alias)} LIMIT 0")
            continue
        ctx.store.con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(node.table)} ({', '.join(columns)})")
    create_unions(plan, ctx)
    ctx.store.con.execute("EXPLAIN " + plan.sql, params or []).fetchall()


def create_unions(plan: SqlQuery, ctx: Context) -> None:
    """A video set's per-frame table: the union of its members' tables, with their names in a
    ``video`` column."""
    for table, parts in plan.unions:
        union = " UNION ALL ".join(f"SELECT {literal(member)} AS video, * FROM {ident(part)}" for member, part in parts)
        ctx.store.con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(table)} AS {union}")


def _run_once(plan: SqlQuery, ctx: Context, params, query_id: int) -> pa.Table:
    from vql.engine.members import evaluate_together, label_together

    label_together([node for node in plan.inputs if not node.atoms], ctx)  # a set's exact scans: at once
    evaluate_together([node for node in plan.inputs if node.atoms], ctx)  # its cascades' passes: at once
    for node in plan.inputs:
        run_operator(node, ctx)
    create_unions(plan, ctx)
    return arrow_table(ctx.store.con.execute(plan.sql, params or []))


def run_plan(plan: SqlQuery, ctx: Context, params=None) -> pa.Table:
    """Execute the plan and return the rows of its final SQL.

    With ``plan.stop_after`` (a LIMIT over one video, in frame order) frames are labelled in
    growing chunks, the query re-run on what is labelled, until enough rows are found. With
    ``plan.search`` (a LIMIT without ORDER BY over model tests) the reference confirms frames in a
    proxy's order until enough are true (``engine/search.py``).
    """
    check_sql(plan, ctx, params)
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    query_id = ctx.store.next_query_id()
    ctx.stats["query_id"] = query_id
    if not plan.cascades:
        for node in plan.inputs:
            if plan.special.covers(node):
                answer_atoms(plan.special, node, ctx)
            else:
                run_operator(node, ctx)
        create_unions(plan, ctx)
        table = arrow_table(ctx.store.con.execute(plan.sql, params or []))
    elif plan.stop_after is None:
        table = _run_once(plan, ctx, params, query_id)
    else:
        (node,) = plan.inputs
        scan, end, chunk = node.scan, node.scan.first - 1, LIMIT_CHUNK
        while True:
            end = min(end + chunk, scan.last)
            part = replace(node, scan=replace(scan, last=end),
                           labels=tuple(replace(lf, scan=replace(scan, last=end)) for lf in node.labels))
            table = _run_once(replace(plan, inputs=(part,)), ctx, params, query_id)
            if table.num_rows >= plan.stop_after or end >= scan.last:
                break
            chunk *= 2
        ctx.stats["frames_scanned"] = end - scan.first + 1
        # each round re-counted the frames of the rounds before: every scanned frame is either
        # labelled by this query or came from the cache
        ctx.stats["frames_cached"] = ctx.stats["frames_scanned"] - ctx.stats.get("frames_labelled", 0)
    record_query(plan, ctx, query_id, started, table.num_rows)
    return table


def drop_tables(plan: SqlQuery, ctx: Context) -> None:
    for table, _ in plan.unions:
        ctx.store.con.execute(f"DROP VIEW IF EXISTS {ident(table)}")
    for node in plan.inputs:
        ctx.store.con.execute(f"DROP TABLE IF EXISTS {ident(node.table)}")
