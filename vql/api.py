"""The Python API: ``vql.connect()`` and query results.

>>> con = vql.connect("cam.duckdb")                                          # doctest: +SKIP
>>> con.sql("CREATE VIDEO cam FROM 'street.mp4'")                            # doctest: +SKIP
>>> con.sql("SELECT frame, ts FROM cam WHERE object_count('person') >= 3").df()   # doctest: +SKIP
"""

from __future__ import annotations

import glob
import importlib
import time
from dataclasses import dataclass, field, replace
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from vql import ast
from vql.binder import Catalog, bind_select, check_option, video_refs
from vql.engine.executor import Calibration, Context, drop_tables, plan_summary, run_plan
from vql.engine.store import ModelRecord, Store, arrow_table
from vql.engine.video import probe, verify
from vql.engine.workers import Workers
from vql.errors import BindError, ExecutionError, ModelError, ParseError, PlanFormatError, VideoError, VqlError
from vql.parser import caret, parse
from vql.scripts import split_statements
from vql.paths import checked_path, is_pattern, member_name
from vql.plan import DEFAULT_MIN_SCORE, PLAN_FORMAT_VERSION, explain
from vql.sqlgen import ident
from vql.surface import bind_params, no_video, param_values, unknown_table, user_terms, video_query
from vql.udfs.reference import ReferenceModel
from vql.udfs.registry import MODEL_KINDS, default_model, load_model

SETTINGS = {"min_score": DEFAULT_MIN_SCORE, "fpr": 0.01, "fnr": 0.01}
MAX_WORKERS = 64  # SET workers = N: labelling processes
EXECUTORS = ("local", "ray")  # SET executor = ...: this machine's processes, or Ray
# result.metadata key -> the module whose analyze_line says, for EXPLAIN ANALYZE, what that path did
ANALYZED = {"search": "vql.engine.search", "estimate": "vql.engine.estimate", "topk": "vql.engine.topk",
            "recall": "vql.engine.recall"}

# part of every stored plan's key: rows of another format (the pickles of plan5 and before) are never read
PLAN_FORMAT = f"plan6.{PLAN_FORMAT_VERSION}"


@dataclass
class Result:
    """The outcome of one statement: an Arrow table, plus metadata (timings, counters)."""

    table: pa.Table
    metadata: dict[str, Any] = field(default_factory=dict)
    connection: Any = field(default=None, repr=False, compare=False)  # the session, for drawing

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

    def _repr_html_(self) -> str:
        from vql.pictures import html_table

        return html_table(self.table)

    def _store(self):
        if self.connection is None:
            from vql.pictures import PictureError

            raise PictureError("this result has no connection to read labels from (results of Connection.sql have one)")
        return self.connection.duckdb

    def show(self, out: str | Path | None = None, n: int = 12, video: str | None = None):
        """A contact sheet of up to ``n`` matched frames (the ``frame`` column) with the reference's
        boxes for the query's classes; returns the matplotlib Figure, saved to ``out`` if given."""
        from vql.pictures import contact_sheet

        return contact_sheet(self._store(), self, out, n=n, video=video)

    def timeline(self, out: str | Path | None = None, video: str | None = None):
        """Where in the video each model test of the query held, and where the rows are; returns
        the matplotlib Figure, saved to ``out`` if given."""
        from vql.pictures import timeline

        return timeline(self._store(), self, out, video=video)


def _message(text: str) -> Result:
    return Result(pa.table({"result": [text]}))


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``text[offset]`` (lines split on ``\\n`` only, as Lark's).

    >>> _line_column("ab\\ncd", 3)
    (2, 1)
    """
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


class Connection:
    """A vql session over one DuckDB database (a file, or in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", progress: bool | None = None,
                 read_only: bool = False, ray: str | None = None) -> None:
        self._ray = ray  # Ray's address ("local": start one here), for SET executor = 'ray'
        if ray is not None:
            from vql.engine.ray_backend import start

            start(ray)  # before the store: a Ray that cannot start opens nothing
        self.store = Store(path, read_only=read_only)
        self.store.drop_plans_of_other_formats(f"{PLAN_FORMAT}|")  # never read: another key
        self.device = device
        self.progress = progress
        self.settings = dict(SETTINGS, executor="ray" if ray is not None else "local")
        self._models: dict[str, ReferenceModel] = {}
        self._recipes: dict[str, tuple[ReferenceModel, tuple]] = {}  # models built here: how a worker builds them
        self._workers = None  # engine.workers.Workers, while SET workers > 1
        self._calibration = Calibration(self.store)
        self._plans: dict[str, object] = {}
        self._statement = ""  # the statement running, for the query log and results' metadata

    @property
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        return self.store.con

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
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
                self._models[key] = model = default_model(self.device)
                self._recipes[key] = (model, ("default", str(model.device)))
            else:
                record = next((r for n, r in self.store.models().items() if n.lower() == key), None)
                if record is None:
                    known = ["centernet", *self.store.models()]
                    raise ModelError(f"unknown model {name!r}; registered models: {', '.join(known)}")
                model, recipe = self._load(record)
                self._models[key], self._recipes[key] = model, (model, recipe)
        return self._models[key]

    def _load(self, record: ModelRecord, **forced) -> tuple[ReferenceModel, tuple]:
        """A registered model, loaded here (``forced``: options over the record's), and the recipe
        a worker process loads the same model by."""
        options = {"name": record.name, **record.options, **forced}
        if record.kind != "ultralytics":
            options.setdefault("device", self.device)
        model = load_model(record.kind, record.path, **options)
        if "device" in options:
            options["device"] = str(model.device)  # as resolved here ("auto": this machine's pick), for every worker
        return model, ("load", record.kind, record.path, tuple(sorted(options.items())))

    def _recipe(self, model: ReferenceModel) -> tuple | None:
        """How a worker process builds this model, if this session built it (not one handed in)."""
        return next((recipe for built, recipe in self._recipes.values() if built is model), None)

    def catalog(self) -> Catalog:
        (collation,) = self.store.con.execute("SELECT current_setting('default_collation')").fetchone()
        return Catalog(self.store.videos(), self.model, self.settings, self.store.video_sets(), collation or "")

    # --- statements ----------------------------------------------------------------------

    def sql(self, text: str, params: list | tuple | dict | None = None) -> Result:
        """Run one or more statements; returns the last one's result."""
        statements = split_statements(text)
        if not statements:
            raise BindError("no statement to run")
        result = None
        for statement in statements:
            node = self._parse(statement)
            start = time.perf_counter()
            self._statement = statement
            result = self._run(node, params)
            result.metadata.setdefault("seconds", time.perf_counter() - start)
            result.connection = self
        return result

    execute = sql

    def _parse(self, statement: str) -> ast.Node:
        """Parse one statement; text DuckDB cannot take (a lone surrogate: not UTF-8) is refused
        here, after a path's own check so that a bad path is the VideoError/ModelError it is."""
        node = parse(statement, frozenset(self.store.video_names()))
        if isinstance(node, ast.CreateVideo):
            checked_path(node.path, "video file", VideoError)
        elif isinstance(node, ast.CreateFunction):
            checked_path(node.path, "model file", ModelError)
        try:
            statement.encode("utf-8")
        except UnicodeEncodeError as e:
            line, column = _line_column(statement, e.start)
            raise ParseError(f"the statement is not valid text: a lone surrogate {statement[e.start]!r} at line "
                             f"{line}, column {column} (statements are UTF-8)") from e
        if isinstance(node, ast.Passthrough) and "\x00" in statement:  # DuckDB would stop reading there
            line, column = _line_column(statement, statement.index("\x00"))
            raise ParseError(f"syntax error at line {line}, column {column}: a NUL character (\\x00) in the "
                             f"statement\n{caret(statement, line, column)}")
        return node

    def prepare(self, text: str) -> Result:
        """Plan a SELECT's model tests now, without running it: the reference labels what planning
        needs (the training prefix, the certification frames), the plan is certified and stored,
        and the result is its EXPLAIN text (``metadata["plans"]`` holds the plans). The query
        itself, run later, reuses the stored plan and labels."""
        node = self._parse(text)
        select = node.select if isinstance(node, ast.Explain) else node
        if not isinstance(select, ast.Select):
            raise BindError("prepare takes a SELECT")
        self._statement = text
        plan, _ = self._plan(select)
        if plan is None:
            raise BindError("prepare: the query names no video")
        ctx = self._context(plan)
        start = time.perf_counter()
        with self.store.one_thread():
            plans = {ev.table: ctx.plan_query(ev) for ev in plan.inputs if ev.atoms and plan.cascades}
        return Result(pa.table({"plan": explain(plan, plans).splitlines()}),
                      dict(ctx.stats, plans=plans, seconds=time.perf_counter() - start))

    @singledispatchmethod
    def _run(self, node: ast.Node, params) -> Result:
        raise VqlError(f"statement {type(node).__name__} is not supported")

    @_run.register
    def _passthrough(self, node: ast.Passthrough, params) -> Result:
        return self._duckdb(node.sql, params, node.our_error)

    def _tables(self) -> list[str]:
        """The user's tables and views (vql's own, ``vql_*``, left out)."""
        rows = self.store.con.execute("SELECT DISTINCT table_name FROM information_schema.tables "
                                      "WHERE table_name NOT LIKE 'vql\\_%' ESCAPE '\\'").fetchall()
        return [r[0] for r in rows]

    def _unknown_table(self, e: duckdb.Error) -> str:
        """DuckDB's 'Table with name x does not exist' as vql says it (videos suggested too)."""
        return unknown_table(str(e), self.store.video_names(), self._tables()) or str(e)

    def _duckdb(self, sql: str, params, our_error: str | None = None, select: bool = False) -> Result:
        """Run a statement on DuckDB as written; its errors become vql's (for a SELECT, an unknown
        table suggests the nearest videos and tables)."""
        try:
            cursor = self.store.con.execute(sql, params or [])
        except duckdb.ParserException as e:
            if our_error:
                raise ParseError(our_error) from e
            raise ParseError(str(e)) from e
        except duckdb.CatalogException as e:
            raise BindError(self._unknown_table(e) if select else str(e)) from e
        except duckdb.Error as e:
            raise ExecutionError(str(e)) from e
        if cursor is None:  # DuckDB found no statement in the text (it reads up to a NUL character)
            raise ParseError(f"DuckDB found no statement to run in {sql[:80]!r}")
        if cursor.description is None:
            return _message("OK")
        return Result(arrow_table(cursor))

    @_run.register
    def _create_video(self, node: ast.CreateVideo, params) -> Result:
        if node.name.lower() in {n.lower() for n in self.store.video_names()} and not node.replace:
            raise BindError(f"video {node.name!r} already exists (CREATE OR REPLACE VIDEO {node.name} ... to "
                            "register new content under that name)")
        if self.store.table_exists(node.name):
            raise BindError(f"a table named {node.name!r} already exists")
        owner = self.store.set_of(node.name)
        if owner is not None:
            raise BindError(f"video {node.name!r} belongs to the video set {owner!r}; CREATE OR REPLACE VIDEO {owner} "
                            "... registers the set anew")
        self.store.check_writable("CREATE VIDEO")
        if is_pattern(node.path) and not Path(node.path).expanduser().is_file():  # a file named 'a[1].mp4' is a file
            return self._create_video_set(node)
        info = probe(checked_path(node.path, "video file", VideoError))
        self.store.add_video(node.name, info, replace=node.replace)
        text = f"video {node.name}: {info.frames} frames, {info.width}x{info.height}, {info.fps:g} fps"
        return _message(text + (f"\nwarning: {info.note}" if info.note else ""))

    def _create_video_set(self, node: ast.CreateVideo) -> Result:
        """``CREATE VIDEO cams FROM 'footage/*.mp4'``: every matching file a member video, named
        ``cams_<file name>``; every file is probed before anything is registered."""
        pattern = checked_path(node.path, "video file", VideoError).expanduser().absolute()
        paths = sorted(p for p in glob.glob(str(pattern)) if Path(p).is_file())
        if not paths:
            raise VideoError(f"no video file matches {node.path!r}")
        replaced = {m.lower() for m in (self.store.video_set(node.name) or ("", ()))[1]}  # freed by REPLACE
        taken = {n.lower() for n in self.store.video_names()} - replaced | {node.name.lower()}
        members = []
        for path in paths:
            name = member_name(node.name, path, taken | {m.lower() for m, _ in members})
            if self.store.table_exists(name):
                raise BindError(f"the member video {name!r} of {node.name} would shadow a table of that name")
            try:
                members.append((name, probe(path)))
            except VideoError as e:
                raise VideoError(f"video set {node.name}: {e} (nothing registered)") from e
        self.store.add_video_set(node.name, str(pattern), members, replace=node.replace)
        frames = sum(info.frames for _, info in members)
        notes = [f"\nwarning: {m}: {info.note}" for m, info in members if info.note]
        return _message(f"video set {node.name}: {len(members)} videos ({', '.join(m for m, _ in members)}), "
                        f"{frames} frames" + "".join(notes))

    @_run.register
    def _show_videos(self, node: ast.ShowVideos, params) -> Result:
        rows = self.store.con.execute(
            "SELECT name, frames, fps, frames / fps AS seconds, width, height, path, note FROM vql_videos UNION ALL "
            "SELECT s.name, sum(v.frames)::BIGINT, NULL::DOUBLE, sum(v.frames / v.fps), NULL::INTEGER, NULL::INTEGER, "
            "any_value(s.pattern), "
            "'video set of ' || count(*) || ': ' || string_agg(v.name, ', ' ORDER BY s.position) "
            "FROM vql_video_sets s JOIN vql_videos v ON lower(v.name) = lower(s.member) GROUP BY s.name ORDER BY name"
        )
        return Result(arrow_table(rows))

    @_run.register
    def _describe(self, node: ast.Describe, params) -> Result:
        found = self.store.video_set(node.name)
        if found is not None:
            return Result(pa.table({
                "column_name": ["video", "frame", "ts"],
                "column_type": ["VARCHAR", "BIGINT", "DOUBLE"],
                "description": [f"the member video: {', '.join(found[1])}", "frame index within the video",
                                "seconds within the video, frame / its fps"],
            }))
        info = self.store.video(node.name)
        if info is None:
            return self._duckdb(f"DESCRIBE {ident(node.name)}", params, select=True)
        return Result(pa.table({
            "column_name": ["frame", "ts"],
            "column_type": ["BIGINT", "DOUBLE"],
            "description": [f"frame index, 0..{info.frames - 1}", f"seconds, frame / {info.fps:g}"],
        }))

    @_run.register
    def _drop_video(self, node: ast.DropVideo, params) -> Result:
        found = self.store.video_set(node.name)
        if found is not None:
            self.store.drop_video_set(node.name)
            return _message(f"dropped video set {found[0]} and its {len(found[1])} videos with their results and "
                            "plans (their labels stay cached, keyed by the files' content)")
        if self.store.video(node.name) is None:
            if node.if_exists:
                return _message("OK")
            raise BindError(no_video(node.name, self.store.video_names()))
        owner = self.store.set_of(node.name)
        if owner is not None:
            raise BindError(f"video {node.name!r} belongs to the video set {owner!r}; DROP VIDEO {owner} drops the set")
        self.store.drop_video(node.name)
        return _message(f"dropped video {node.name} with its results and plans (its labels stay cached, keyed by "
                        "the file's content)")

    @_run.register
    def _drop_results(self, node: ast.DropResults, params) -> Result:
        found = self.store.video_set(node.name)
        if found is not None:
            n = sum(self.store.drop_results(m) for m in found[1])
            return _message(f"dropped {n} stored results of the video set {found[0]} (labels and plans kept)")
        if self.store.video(node.name) is None:
            raise BindError(no_video(node.name, self.store.video_names()))
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
        model, recipe = self._load(record, name=node.name)  # fails here, before anything is stored
        self.store.add_model(record)
        self._models[node.name.lower()], self._recipes[node.name.lower()] = model, (model, recipe)
        return _message(f"model {node.name}: {node.kind}, {len(model.classes)} classes, version {model.version}")

    def _executor(self):
        """Where labelling and cascade passes run: Ray (``SET executor = 'ray'``), N local worker
        processes (``SET workers = N``, N > 1), or None: this process."""
        if self.settings.get("executor") == "ray":
            from vql.engine.ray_backend import RayWorkers

            if not isinstance(self._workers, RayWorkers):
                if self._workers is not None:
                    self._workers.close()
                self._workers = RayWorkers(self._ray)
            return self._workers
        count = int(self.settings.get("workers", 1))
        if self._workers is not None and (self._workers.count != count or type(self._workers) is not Workers):
            self._workers.close()
            self._workers = None
        if count > 1 and self._workers is None:
            self._workers = Workers(count)
        return self._workers

    @_run.register
    def _set(self, node: ast.SetOption, params) -> Result:
        if node.name == "executor":
            value = getattr(node.value, "value", None)
            if value not in EXECUTORS:
                raise BindError(f"SET executor must be one of {', '.join(repr(e) for e in EXECUTORS)}, e.g. "
                                "SET executor = 'ray'")
            if value == "ray":
                from vql.engine.ray_backend import start

                start(self._ray)  # fails here, clearly, when Ray is missing or unreachable
            self.settings["executor"] = value
            return _message(f"executor = {value}" + (f" ({self._ray or 'a local Ray'})" if value == "ray" else ""))
        if node.name == "workers":
            value = getattr(node.value, "value", None)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WORKERS:
                raise BindError(f"SET workers must be a number of processes from 1 to {MAX_WORKERS}, e.g. SET workers = 2")
            self.settings["workers"] = value
            return _message(f"workers = {value}")
        value = check_option(node.name, node.value, node.name)
        self.settings[node.name] = value
        return _message(f"{node.name} = {value:g}")

    def _plan(self, select: ast.Select, params=None):
        """The plan of a SELECT that reads a video (see vql.surface.video_query), None if it reads
        none; and the parameters left for DuckDB once vql bound those it reads itself."""
        catalog = self.catalog()
        found = video_query(select, catalog)
        if found is None:
            return None, params
        query, wrap = found
        values = param_values(select, params)
        query, params = bind_params(query, params, select)
        checked = {name: self._checked(name, info) for _, _, members in video_refs(query, catalog).values()
                   for name, info in members}
        return wrap(bind_select(query, replace(catalog, videos={**catalog.videos, **checked}), values)), params

    def _checked(self, name: str, info):
        """The video's registration, checked against its file (re-hashed if its size or mtime
        changed); a changed file is a VideoError, never a silent reuse of the old labels."""
        fresh = verify(name, info)
        if fresh is not info:
            self.store.update_video(name, fresh)
        return fresh

    def _context(self, plan) -> Context:
        opts = dict(plan.options)
        ctx = Context(self.store, self.model, self.progress, calibration=self._calibration, text=self._statement)
        ctx.workers, ctx.recipe = self._executor(), self._recipe
        ctx.plan_query = lambda node: self._plan_query(ctx, node, float(opts["fpr"]), float(opts["fnr"]))
        ctx.audit = int(opts.get("audit", 0))
        return ctx

    def _plan_key(self, node, fpr: float, fnr: float) -> str:
        scan, info = node.scan, node.scan.info
        versions = ",".join(sorted({self.model(a.predicate.model).version for a in node.atoms}))
        atoms = ";".join(f"{a.column}={a.text}" for a in node.atoms)
        return (f"{PLAN_FORMAT}|{info.fingerprint}|{versions}|{atoms}|where={node.where}|fpr={fpr:g}|fnr={fnr:g}|"
                f"{scan.first}-{scan.last}")

    def _stored_plan(self, ctx: Context, node, fpr: float, fnr: float):
        """The query plan of a scan's model tests from the session or the store; None if not
        planned yet, or if the stored row is not a well-formed plan (then planning again
        replaces it: the labels it needs are stored, so nothing is labelled twice)."""
        key = self._plan_key(node, fpr, fnr)
        if key not in self._plans:
            blob = self.store.load_plan(key)
            if blob is None:
                return None
            from vql.planner import plan_format  # with torch: imported when a plan is read

            try:
                self._plans[key] = plan_format.loads(blob)  # data only: nothing in the row is executed
            except PlanFormatError as e:
                ctx.count("plans_discarded", 1)
                ctx.stats.setdefault("plans_discarded_why", []).append(str(e))
                return None
            ctx.count("plans_reused", 1)
        return self._plans[key]

    def _plan_query(self, ctx: Context, node, fpr: float, fnr: float):
        """The plan of one scan's model tests: from the session, the store, or planned now (and stored)."""
        from vql.planner import plan_format
        from vql.planner.labelling import plan_query
        from vql.planner.specialized import default_precision

        plan = self._stored_plan(ctx, node, fpr, fnr)
        if plan is None:
            default_precision()  # a bad VQL_CNN_PRECISION is refused before anything is labelled
            plan = plan_query(ctx, node, fpr, fnr)
            key = self._plan_key(node, fpr, fnr)
            self.store.save_plan(key, node.scan.info.fingerprint, plan_format.dumps(plan))
            ctx.count("plan_seconds", plan.plan_seconds)
            self._plans[key] = plan
        return plan

    def _planning_note(self, ctx: Context, node, fpr: float, fnr: float) -> str:
        """What planning a scan's model tests will take, said without labelling anything."""
        from vql.planner.sampling import training_size

        n, _ = training_size(node.scan.frame_count, min(fpr, fnr))
        if 2 * n > node.scan.frame_count or fpr <= 0 or fnr <= 0:
            return "planned when the query runs: the exact plan (the scan is too short to certify a cascade on)"
        costs = [ctx.calibration.get(f"reference_cost:{self.model(m).version}:{self.model(m).device}")
                 for m in {a.predicate.model for a in node.atoms}]
        eta = f" (~{n * sum(costs):.0f} s at the reference's measured cost)" if all(costs) else ""
        return (f"planned when the query runs: the reference labels a training prefix of at least {n} random "
                f"frames{eta} (more while a test's rarer class is short), then the certification frames the chosen "
                f"cascade needs; EXPLAIN ANALYZE runs it")

    def _execute(self, plan, params) -> tuple[pa.Table, dict]:
        """Run a plan; DuckDB's errors become vql's (a name DuckDB cannot bind is the user's)."""
        ctx = self._context(plan)
        try:
            with self.store.one_thread():
                table = run_plan(plan, ctx, params)
            if ctx.plans:
                ctx.stats["cascades"] = {
                    ev.key(a.column): plan_summary(ctx.plans[ev.table], ctx.plans[ev.table].choice(a.column))
                    for ev in plan.inputs if ev.table in ctx.plans for a in ev.atoms
                }
                ctx.stats["plan_text"] = explain(plan, ctx.plans)
                ctx.stats["plans"] = dict(ctx.plans)  # the QueryPlan objects, for tools and benchmarks
                ctx.stats["choices"] = dict(ctx.choices)
            return table, ctx.stats
        except duckdb.CatalogException as e:
            raise BindError(user_terms(self._unknown_table(e), plan, self._statement)) from e
        except duckdb.BinderException as e:
            raise BindError(user_terms(str(e), plan, self._statement)) from e
        except duckdb.Error as e:
            raise ExecutionError(user_terms(str(e), plan, self._statement)) from e
        finally:
            drop_tables(plan, ctx)

    def _as_written(self, node: ast.Select, params) -> Result:
        """A SELECT (or EXPLAIN) that reads no video: DuckDB runs the statement as written."""
        if node.options:
            names = ", ".join(o.name for o in node.options)
            raise BindError(f"WITH ({names}): these options apply to queries over videos, and this query reads none "
                            f"(videos: {', '.join(sorted(self.store.videos())) or 'none'})")
        return self._duckdb(self._statement, params, select=True)

    @_run.register
    def _select(self, node: ast.Select, params) -> Result:
        plan, params = self._plan(node, params)
        if plan is None:
            return self._as_written(node, params)
        from vql.pictures import sources

        table, stats = self._execute(plan, params)
        return Result(table, {"plan": explain(plan), **stats, "text": self._statement,
                              "sources": sources(plan, self.model)})

    @_run.register
    def _explain(self, node: ast.Explain, params) -> Result:
        plan, params = self._plan(node.select, params)
        if plan is None:
            return self._as_written(node.select, params)
        if not node.analyze:
            ctx = self._context(plan)
            opts = dict(plan.options)
            fpr, fnr = float(opts["fpr"]), float(opts["fnr"])
            planned = [ev for ev in plan.inputs if ev.atoms and plan.cascades]
            plans = {ev.table: p for ev in planned for p in [self._stored_plan(ctx, ev, fpr, fnr)] if p is not None}
            notes = {ev.table: self._planning_note(ctx, ev, fpr, fnr) for ev in planned}
            return Result(pa.table({"plan": explain(plan, plans, notes).splitlines()}), dict(ctx.stats, plans=plans))
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
            if c and c["strategy"] == "cascade":
                lines.append(f"--   certified ({c['confidence']:.0%}, jointly, on {c['certification_frames']} random "
                             f"frames): fpr <= {c['fpr_bound']:.4f}, fnr <= {c['fnr_bound']:.4f}")
        for kind, module in ANALYZED.items():  # what a LIMIT search, count estimate or top-k search did
            if stats.get(kind):
                analyze_line = importlib.import_module(module).analyze_line
                lines += [analyze_line(s) for s in stats[kind].values()]
        for claim, a in stats.get("audit", {}).items():
            lines.append(f"-- audit of {a['frames']} random frames ({a['positives']} positive), {claim}: "
                         f"fpr {a['fpr']:.4f} [{a['fpr_ci'][0]:.4f}, {a['fpr_ci'][1]:.4f}], "
                         f"fnr {a['fnr']:.4f} [{a['fnr_ci'][0]:.4f}, {a['fnr_ci'][1]:.4f}] (two-sided 95%)")
        return Result(pa.table({"plan": lines}), dict(stats))


def connect(path: str | Path | None = None, *, device: str = "cpu", progress: bool | None = None,
            read_only: bool = False, ray: str | None = None) -> Connection:
    """Open (or create) a vql database; ``None`` gives a transient in-memory one. With
    ``read_only``, an existing file is opened for reading (cached labels, plans and results);
    statements that would write (labelling, storing results, CREATE/DROP) say so. ``progress``:
    a progress bar on stderr while models run (None: only when stderr is a terminal; True:
    always; False: never); it is cleared when the work ends. ``ray``: run labelling and cascade
    passes as Ray tasks (``"local"``: a Ray started on this machine; ``"auto"``: the cluster this
    machine belongs to; or a Ray address; ``pip install 'vql[ray]'``)."""
    return Connection(path, device=device, progress=progress, read_only=read_only, ray=ray)
