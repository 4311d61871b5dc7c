"""The Python API: ``vql.connect()`` and query results.

>>> con = vql.connect("cam.duckdb")                                          # doctest: +SKIP
>>> con.sql("CREATE VIDEO cam FROM 'street.mp4'")                            # doctest: +SKIP
>>> con.sql("SELECT frame, ts FROM cam WHERE object_count('person') >= 3").df()   # doctest: +SKIP
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass, field
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from vql import ast
from vql.binder import Catalog, bind_select, video_refs
from vql.engine.executor import Calibration, Context, drop_tables, run_plan
from vql.engine.store import ModelRecord, Store, arrow_table
from vql.engine.video import probe
from vql.errors import BindError, ExecutionError, ModelError, ParseError, VqlError
from vql.parser import parse, split_statements
from vql.plan import explain
from vql.udfs.reference import SCORE_FLOOR, ReferenceModel
from vql.udfs.registry import MODEL_KINDS, default_model, load_model

SETTINGS = {"min_score": 0.5, "fpr": 0.01, "fnr": 0.01}

PLAN_FORMAT = "plan3"  # part of every stored plan's key: a new format never reads an old pickle
MAX_GROWTH = 6  # rounds of growing the fit set (positives cluster in time, so one estimate can fall short)


@dataclass
class Result:
    """The outcome of one statement: an Arrow table, plus metadata (timings, counters)."""

    table: pa.Table
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def arrow(self) -> pa.Table:
        return self.table

    def df(self):
        return self.table.to_pandas()

    def fetchall(self) -> list[tuple]:
        columns = [self.table.column(i).to_pylist() for i in range(self.table.num_columns)]
        return list(zip(*columns)) if columns else []

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return f"<vql.Result {self.table.num_rows} rows × {self.table.num_columns} columns>"


def _message(text: str) -> Result:
    return Result(pa.table({"result": [text]}))


class Connection:
    """A vql session over one DuckDB database (a file, or in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", progress: bool | None = None) -> None:
        self.store = Store(path)
        self.device = device
        self.progress = progress
        self.settings = dict(SETTINGS)
        self._models: dict[str, ReferenceModel] = {}
        self._calibration = Calibration(self.store)
        self._choices: dict[str, object] = {}

    @property
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        return self.store.con

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- models --------------------------------------------------------------------------

    def model(self, name: str) -> ReferenceModel:
        key = name.lower()
        if key not in self._models:
            if key == "centernet":
                self._models[key] = default_model(self.device)
            else:
                record = next((r for n, r in self.store.models().items() if n.lower() == key), None)
                if record is None:
                    known = ["centernet", *self.store.models()]
                    raise ModelError(f"unknown model {name!r}; registered models: {', '.join(known)}")
                options = dict(record.options)
                options.setdefault("name", record.name)
                if record.kind != "ultralytics":
                    options.setdefault("device", self.device)
                self._models[key] = load_model(record.kind, record.path, **options)
        return self._models[key]

    def catalog(self) -> Catalog:
        return Catalog(self.store.videos(), self.model, self.settings)

    # --- statements ----------------------------------------------------------------------

    def sql(self, text: str, params: list | tuple | dict | None = None) -> Result:
        """Run one or more statements; returns the last one's result."""
        statements = split_statements(text)
        if not statements:
            raise BindError("no statement to run")
        result = None
        for statement in statements:
            node = parse(statement, frozenset(self.store.videos()))
            start = time.perf_counter()
            result = self._run(node, params)
            result.metadata.setdefault("seconds", time.perf_counter() - start)
        return result

    execute = sql

    @singledispatchmethod
    def _run(self, node: ast.Node, params) -> Result:
        raise VqlError(f"statement {type(node).__name__} is not supported")

    @_run.register
    def _passthrough(self, node: ast.Passthrough, params) -> Result:
        try:
            cursor = self.store.con.execute(node.sql, params or [])
        except duckdb.ParserException as e:
            if node.our_error:
                raise ParseError(node.our_error) from e
            raise ParseError(str(e)) from e
        except duckdb.CatalogException as e:
            raise BindError(str(e)) from e
        except duckdb.Error as e:
            raise ExecutionError(str(e)) from e
        if cursor.description is None:
            return _message("OK")
        return Result(arrow_table(cursor))

    @_run.register
    def _create_video(self, node: ast.CreateVideo, params) -> Result:
        if self.store.video(node.name) is not None:
            raise BindError(f"video {node.name!r} already exists (DROP VIDEO {node.name} first)")
        if self.store.table_exists(node.name):
            raise BindError(f"a table named {node.name!r} already exists")
        info = probe(node.path)
        self.store.add_video(node.name, info)
        return _message(f"video {node.name}: {info.frames} frames, {info.width}x{info.height}, {info.fps:g} fps")

    @_run.register
    def _show_videos(self, node: ast.ShowVideos, params) -> Result:
        rows = self.store.con.execute(
            "SELECT name, frames, fps, frames / fps AS seconds, width, height, path FROM vql_videos ORDER BY name"
        )
        return Result(arrow_table(rows))

    @_run.register
    def _describe(self, node: ast.Describe, params) -> Result:
        info = self.store.video(node.name)
        if info is None:
            return self._passthrough(ast.Passthrough(f"DESCRIBE {node.name}"), params)
        return Result(pa.table({
            "column_name": ["frame", "ts"],
            "column_type": ["BIGINT", "DOUBLE"],
            "description": [f"frame index, 0..{info.frames - 1}", f"seconds, frame / {info.fps:g}"],
        }))

    @_run.register
    def _drop_video(self, node: ast.DropVideo, params) -> Result:
        if self.store.video(node.name) is None:
            if node.if_exists:
                return _message("OK")
            raise BindError(f"no video named {node.name!r}")
        self.store.drop_video(node.name)
        return _message(f"dropped video {node.name} (its labels stay cached)")

    @_run.register
    def _drop_results(self, node: ast.DropResults, params) -> Result:
        if self.store.video(node.name) is None:
            raise BindError(f"no video named {node.name!r}")
        n = self.store.drop_results(node.name)
        return _message(f"dropped {n} stored results of {node.name} (labels and plans kept)")

    @_run.register
    def _create_function(self, node: ast.CreateFunction, params) -> Result:
        if node.kind not in MODEL_KINDS:
            raise BindError(f"unknown model type {node.kind!r}; one of: {', '.join(sorted(MODEL_KINDS))}")
        if node.name.lower() == "centernet" or node.name.lower() in {n.lower() for n in self.store.models()}:
            raise BindError(f"a model named {node.name!r} already exists")
        options = {}
        for opt in node.options:
            value = opt.value
            if isinstance(value, ast.Literal):
                options[opt.name] = value.value
            elif isinstance(value, ast.Tuple) and all(isinstance(v, ast.Literal) for v in value.items):
                options[opt.name] = [v.value for v in value.items]
            else:
                raise BindError(f"option {opt.name!r} must be a constant")
        record = ModelRecord(node.name, node.kind, node.path, options)
        opts = dict(options, name=node.name)
        if node.kind != "ultralytics":
            opts.setdefault("device", self.device)
        model = load_model(node.kind, node.path, **opts)  # fails here, before anything is stored
        self.store.add_model(record)
        self._models[node.name.lower()] = model
        return _message(f"model {node.name}: {node.kind}, {len(model.classes)} classes, version {model.version}")

    @_run.register
    def _set(self, node: ast.SetOption, params) -> Result:
        if not isinstance(node.value, ast.Literal) or not isinstance(node.value.value, (int, float)):
            raise BindError(f"SET {node.name} needs a number")
        value = float(node.value.value)
        low = SCORE_FLOOR if node.name == "min_score" else 0.0
        if not low <= value <= 1:
            raise BindError(f"{node.name} must be between {low} and 1, got {value:g}")
        self.settings[node.name] = value
        return _message(f"{node.name} = {value:g}")

    def _plan(self, select: ast.Select):
        catalog = self.catalog()
        if not video_refs(select, catalog):
            return None
        return bind_select(select, catalog)

    def _context(self, plan) -> Context:
        opts = dict(plan.options)
        ctx = Context(self.store, self.model, self.progress, calibration=self._calibration)
        ctx.plan_atom = lambda node, atom: self._plan_atom(ctx, node, atom, float(opts["fpr"]), float(opts["fnr"]))
        return ctx

    def _plan_atom(self, ctx: Context, node, atom, fpr: float, fnr: float):
        """The cascade for one atom: from the session, the store, or planned now (and stored)."""
        from vql.planner.cascade import CascadeChoice, decide, plan_sample, train_stages
        from vql.planner.cost import Costs, exact_cost

        scan, info = node.scan, node.scan.info
        model = self.model(atom.predicate.model)
        key = (f"{PLAN_FORMAT}|{info.fingerprint}|{model.version}|{atom.text}|fpr={fpr:g}|fnr={fnr:g}|"
               f"{scan.first}-{scan.last}")
        if key in self._choices:
            return self._choices[key]
        blob = self.store.load_plan(key)
        if blob is not None:
            choice = pickle.loads(blob)  # a plan of an older format has another key, so never lands here
            ctx.count("plans_reused", 1)
        else:
            start = time.perf_counter()
            split, why = plan_sample(scan.first, scan.last, min(fpr, fnr))
            if len(split.frames) * 2 > scan.frame_count:
                choice = CascadeChoice(atom, "exact", "the planning sample would cover over half of the scan: "
                                       "labelling every frame costs less", len(split.frames), why, split.reason,
                                       Costs(0.0, 0.0, 0.0, 0.0), 0.0, None)
            else:
                split, why, truth, small, costs, stages, short = self._label_sample(ctx, model, scan, atom, split,
                                                                                   why, fpr, fnr)
                if short:
                    choice = CascadeChoice(atom, "exact", short, len(split.frames), why, split.reason, costs,
                                           exact_cost(1, costs), None)
                else:
                    stages = stages or train_stages(split, truth, small)
                    choice = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages)
                    if stages is not None:
                        skips, notes = self._label_anchors(ctx, model, scan, atom, split, truth, small, costs, choice,
                                                           fpr, fnr)
                        if skips:
                            choice = decide(atom, split, why, truth, small, costs, fpr, fnr, stages=stages,
                                            first=scan.first, skips=skips, skip_notes=notes)
                        choice.skip_notes = notes
            choice.plan_seconds = time.perf_counter() - start
            self.store.save_plan(key, info.fingerprint, pickle.dumps(choice))
            ctx.count("plan_seconds", choice.plan_seconds)
        self._choices[key] = choice
        return choice

    def _label_sample(self, ctx: Context, model, scan, atom, split, why: str, fpr: float, fnr: float):
        """Label the planning sample, then grow its fit set until it holds enough of the atom's
        rarer class (positives or negatives) to certify the targets: the rate seen so far says
        how many fit frames that takes (training and evaluation keep the pilot's frames).

        Whether growing is worth it is the cost model's call, with what is still to pay: the
        stages are trained on the pilot, the cheapest cascade that makes no error on the fit set
        so far gives the projected cost per frame, and labelling the extra frames plus running
        that cascade over the rest of the unlabelled scan is compared with the reference on all
        of it (labels already stored serve both plans alike). Returns (split, why, truth, small,
        costs, stages, short), ``short`` saying why the exact plan wins, or None."""
        from vql.engine.cascade import atom_counts, sample_pass
        from vql.planner.cascade import DRIFT_MARGIN, search, train_stages
        from vql.planner.cost import growth_costs
        from vql.planner.sampling import FIT_SHARE, Split, time_block_split
        from vql.planner.stats import trials_needed

        info = scan.info
        small: dict = {}
        costs = stages = None
        target = min(fpr, fnr)
        wanted = trials_needed(target * DRIFT_MARGIN)
        todo, rounds, pilot_why, first = split.frames, 0, why, ""
        while True:
            new_small, new_costs = sample_pass(ctx, info, model, model.version, todo)
            for size, frames in new_small.items():
                small.setdefault(size, {}).update(frames)
            costs = new_costs if costs is None else costs
            counts = atom_counts(ctx, info, model.version, atom, scan.first, scan.last)
            truth = {int(f): bool(atom.holds(np.array(counts.get(int(f), 0)))) for f in split.frames}
            fit_pos = sum(truth[int(f)] for f in split.fit)
            least = min(fit_pos, len(split.fit) - fit_pos)
            if least >= wanted:
                return split, why, truth, small, costs, stages, None
            stages = stages or train_stages(split, truth, small)
            if stages is None:
                return split, why, truth, small, costs, None, "the training sample has only one class"
            extra = math.ceil(1.2 * (wanted * len(split.fit) / max(least, 0.5) - len(split.fit)))
            unlabelled = scan.frame_count - len(ctx.store.labelled_frames(info.fingerprint, model.version,
                                                                          scan.first, scan.last))
            y_fit = np.array([truth[int(f)] for f in split.fit], bool)
            best = search(stages, split.fit, y_fit, small, costs, fpr, fnr, budgets=(0, 0))[0]
            grow, exact = growth_costs(extra, unlabelled, costs, best.cost_per_frame)
            projection = (f"labelling ~{extra} more frames, then {best.name} (projected {best.cost_per_frame * 1000:.1f} "
                          f"ms/frame with no error on the fit set) on the rest of the {unlabelled} unlabelled frames: "
                          f"~{grow:.0f} s, against ~{exact:.0f} s for the reference on all of them")
            if grow >= exact:
                return split, why, truth, small, costs, stages, (
                    f"certifying {target:g} needs {wanted} of the rarer class in the fit set; it had {least} of "
                    f"{len(split.fit)}; {projection}")
            more = time_block_split(scan.first, scan.last, math.ceil(extra / FIT_SHARE), seed=len(split.frames))
            todo = np.setdiff1d(more.fit, split.fit)
            if not len(todo) or rounds == MAX_GROWTH:  # the fit blocks are used up: decide with what there is
                return split, why, truth, small, costs, stages, None
            split = Split(split.train, np.union1d(split.fit, todo), split.eval, split.blocks, split.reason)
            rounds += 1
            first = first or f"the pilot's fit set had {least} of {len(split.fit) - len(todo)}; {projection}"
            why = (f"{pilot_why}; fit set grown in {rounds} round(s) to {len(split.fit)} frames to hold {wanted} of "
                   f"the rarer class ({first})")

    def _label_anchors(self, ctx: Context, model, scan, atom, split, truth, small, costs, choice, fpr: float,
                       fnr: float) -> tuple[tuple[int, ...], list[str]]:
        """Frame skipping: for each skip, estimate the error of propagation alone on the sample's
        own neighbouring pairs; where that leaves room in the targets and the skip could save
        more than labelling its anchors costs (the fit and eval frames' anchors), label them
        (into ``truth`` and ``small``). Returns the skips now certifiable and a note per skip."""
        from vql.engine.cascade import atom_counts, sample_pass
        from vql.planner.cascade import DRIFT_MARGIN
        from vql.planner.skipping import MIN_PAIRS, SKIPS, anchors, estimate

        info = scan.info
        unlabelled = scan.frame_count - len(ctx.store.labelled_frames(info.fingerprint, model.version,
                                                                      scan.first, scan.last))
        evaluated = np.union1d(split.fit, split.eval)
        skips, notes, need = [], [], set()
        for k in SKIPS:
            est = estimate(truth, scan.first, k)
            if not est.admissible(fnr * DRIFT_MARGIN, fpr * DRIFT_MARGIN):
                notes.append(est.describe() + (": too few to judge" if est.positives < MIN_PAIRS
                                               else ": over the targets on its own"))
                continue
            new = set(anchors(evaluated, scan.first, k).tolist()) - set(truth) - need
            label_cost = len(new) * (costs.decode + costs.reference)
            saving = unlabelled * (1 - 1 / k) * (choice.expected_per_frame - costs.grab)
            if saving <= label_cost:
                notes.append(f"{est.describe()}; labelling its {len(new)} anchors (~{label_cost:.0f} s) would cost more "
                             f"than skipping could save (~{saving:.0f} s)")
                continue
            notes.append(f"{est.describe()}; its {len(new)} anchors labelled to certify it")
            skips.append(k)
            need |= new
        if need:
            new_small, _ = sample_pass(ctx, info, model, model.version, np.array(sorted(need), np.int64))
            for size, frames in new_small.items():
                small.setdefault(size, {}).update(frames)
            counts = atom_counts(ctx, info, model.version, atom, scan.first, scan.last)
            truth.update({f: bool(atom.holds(np.array(counts.get(f, 0)))) for f in need})
        return tuple(skips), notes

    def _execute(self, plan, params) -> tuple[pa.Table, dict]:
        """Run a plan; DuckDB's errors become vql's (a name DuckDB cannot bind is the user's)."""
        ctx = self._context(plan)
        try:
            table = run_plan(plan, ctx, params)
            if ctx.choices:
                ctx.stats["cascades"] = {
                    col: {"strategy": c.strategy, "eval_fpr": c.eval_fpr, "eval_fnr": c.eval_fnr,
                          "eval_frames": c.eval_frames, "expected_speedup": c.exact_per_frame / max(c.expected_per_frame, 1e-12)}
                    for col, c in ctx.choices.items()
                }
                ctx.stats["plan_text"] = explain(plan, ctx.choices)
                ctx.stats["choices"] = dict(ctx.choices)  # the CascadeChoice objects, for tools and benchmarks
            return table, ctx.stats
        except (duckdb.CatalogException, duckdb.BinderException) as e:
            raise BindError(str(e)) from e
        except duckdb.Error as e:
            raise ExecutionError(str(e)) from e
        finally:
            drop_tables(plan, ctx)

    @_run.register
    def _select(self, node: ast.Select, params) -> Result:
        from vql.sqlgen import to_sql

        plan = self._plan(node)
        if plan is None:
            return self._passthrough(ast.Passthrough(to_sql(node)), params)
        table, stats = self._execute(plan, params)
        return Result(table, {"plan": explain(plan), **stats})

    @_run.register
    def _explain(self, node: ast.Explain, params) -> Result:
        plan = self._plan(node.select)
        if plan is None:
            raise BindError("EXPLAIN: the query names no video")
        if not node.analyze:
            ctx = self._context(plan)
            choices = {a.column: ctx.plan_atom(ev, a) for ev in plan.inputs for a in ev.atoms}
            return Result(pa.table({"plan": explain(plan, choices).splitlines()}), dict(ctx.stats, choices=choices))
        start = time.perf_counter()
        table, stats = self._execute(plan, params)
        lines = stats.get("plan_text", explain(plan)).splitlines() + [
            f"-- ran in {time.perf_counter() - start:.3f} s: {table.num_rows} rows; frames labelled now "
            f"{int(stats.get('frames_labelled', 0))}, reused from the label cache "
            f"{int(stats.get('frames_cached', 0))}, reference time {stats.get('label_seconds', 0.0):.3f} s"
        ]
        for column, run in stats.get("operators", {}).items():
            lines.append(f"-- {column}: {run['frames']} frames evaluated in {run['seconds']:.3f} s")
            for op in run["ops"]:
                lines.append(f"--   {op['operator']}: in {op['frames_in']}, decided {op['decided']}, "
                             f"passed on {op['passed_on']}, {op['seconds']:.3f} s")
            c = stats.get("cascades", {}).get(column)
            if c and c["eval_fpr"] is not None:
                lines.append(f"--   held-out rates ({c['eval_frames']} frames never used to train or fit): "
                             f"fpr {c['eval_fpr']:.4f}, fnr {c['eval_fnr']:.4f}")
        return Result(pa.table({"plan": lines}), dict(stats))


def connect(path: str | Path | None = None, *, device: str = "cpu", progress: bool | None = None) -> Connection:
    """Open (or create) a vql database; ``None`` gives a transient in-memory one."""
    return Connection(path, device=device, progress=progress)
