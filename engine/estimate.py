"""``SELECT COUNT(*) FROM cam WHERE <model tests> WITH (error := e)``: a count with an exact interval
(and :func:`run_count` also answers ``AVG``/``SUM`` of ``object_count(...)``, per group or not,
with ``engine/mean.py``'s sampler).

The frames whose answer is known already (the label cache) are counted exactly. The rest, the
*unknown* frames, are put in a random order (seeded by the video's content and the scan), and:

1. a *pilot* prefix of that order is labelled by the reference until it holds
   :data:`PILOT_HITS` true frames (at least :data:`PILOT_MIN` frames, at most a tenth of the
   unknown frames): it measures the share of true frames, and its frames become known;
2. from the pilot alone, the size of the *main* sample is planned
   (``stats.count_sample_size``: the exact interval at the pilot's share of true frames) for an
   interval of about ±e of the total count;
3. the main sample, the next frames of the order, is labelled; the count of true frames among
   the frames still unknown gets an exact hypergeometric interval at the stated confidence
   (``stats.count_interval``: uniform draws without replacement, whatever the temporal
   correlation), and the known frames' count is added.

Where the uniform plan needs :data:`STRATIFY_MIN` frames or more and the WHERE clause has a
direction (busy frames true, or empty ones), the scan is read once for the LIMIT search's
label-free proxy (the difference to each block's median image), and the pilot plans 2 or 3
strata by the proxy's rank (``planner/strata.py``); when they need under
:data:`STRATIFIED_GAIN` of the uniform plan's frames, the main sample is drawn uniformly within
each stratum (the stratum's frames in the same random order), and the strata's exact intervals,
each at (1 - confidence) / H, are added (a union bound).

The sample size (and strata) is chosen on the pilot and the interval computed on the main sample only, so
nothing that certifies was used to choose: the interval holds with the stated probability over
vql's random order. When the plan needs every unknown frame, all are labelled and the count is
exact.

>>> truth = np.zeros(10_000, bool); truth[2000:2600] = True; truth[7000:7400] = True   # 1,000 true
>>> est = estimate_count(np.random.default_rng(1).permutation(10_000), 0, lambda f: truth[f], 0.1)
>>> est.low <= 1000 <= est.high, est.exact
(True, False)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from vql.engine.executor import (Context, atom_models, judge_frames, label_with, labelled_by_all, predicate_counts,
                                 where_truth)
from vql.engine.mean import MeanEstimate, check_cap, estimate_mean
from vql.engine.search import scan_rng, scan_scores, where_polarity
from vql.engine.store import arrow_table
from vql.errors import ExecutionError
from vql.plan import CountEstimate, EvaluatePredicates
from vql.planner.stats import count_interval, count_sample_size
from vql.planner.strata import plan_strata, summed_interval
from vql.progress import Progress
from vql.sqlgen import ident

PILOT_HITS = 30  # true frames the pilot wants before it stops
PILOT_MIN = 100  # frames, at least
PILOT_SHARE = 0.1  # of the unknown frames, at most
STEP = 64  # frames labelled per call
ORDER_SALT = 7  # in the random order's seed, with the video's content and the scan (benchmarks vary it)
EXACT_SHARE = 0.9  # a planned sample over this share of the unknown frames becomes all of them
STRATIFY_MIN = 400  # a uniform plan of this many frames or more reads the proxy, to try strata
STRATIFIED_GAIN = 0.9  # strata are used when they need under this share of the uniform plan's frames


@dataclass(frozen=True)
class Estimate:
    """A count and its interval, with what it took (``result.metadata["estimate"]``)."""

    count: int
    low: int
    high: int
    confidence: float
    known: int  # frames whose answer was known (cache and pilot)
    known_true: int
    pilot: int
    pilot_true: int
    sampled: int  # main sample, from the frames still unknown after the pilot
    sampled_true: int
    unknown: int  # frames the interval is about (unknown after the pilot)
    exact: bool
    strata: tuple = ()  # stratified by the proxy: (frames, drawn, true) per stratum, highest scores first

    def row(self) -> dict:
        return dict(self.__dict__)


def estimate_count(order: np.ndarray, known_true: int, judge: Callable[[np.ndarray], np.ndarray], error: float,
                   confidence: float = 0.95, known: int = 0, on_labelled: Callable[[int], None] | None = None,
                   keys: Callable[[np.ndarray], np.ndarray] | None = None) -> Estimate:
    """The count of true frames: ``known_true`` among the ``known`` frames already answered, plus
    an interval for the frames of ``order`` (the unknown frames, in a uniformly random order),
    whose truth ``judge`` gives (labelling them). ``error``: the relative half-width planned for.
    ``keys(frames)``: a label-free proxy's score per frame (higher: likelier true), asked for
    only when the uniform plan needs :data:`STRATIFY_MIN` frames or more; the sample is then
    stratified by it where the pilot says that needs fewer frames."""
    u = len(order)

    def draw(frames: np.ndarray) -> np.ndarray:
        truth = np.zeros(len(frames), bool)
        for i in range(0, len(frames), STEP):
            truth[i:i + STEP] = judge(frames[i:i + STEP])
            if on_labelled:
                on_labelled(len(frames[i:i + STEP]))
        return truth

    pilot_truth = np.zeros(0, bool)
    cap = max(min(u, PILOT_MIN), int(PILOT_SHARE * u))
    while len(pilot_truth) < cap and (len(pilot_truth) < PILOT_MIN or pilot_truth.sum() < PILOT_HITS):
        step = min(STEP, cap - len(pilot_truth))
        pilot_truth = np.r_[pilot_truth, draw(order[len(pilot_truth):len(pilot_truth) + step])]
    pilot, pilot_true = len(pilot_truth), int(pilot_truth.sum())
    rest = order[pilot:]
    rate = (pilot_true + 1) / (pilot + 2)
    expected = known_true + pilot_true + rate * len(rest)
    n = count_sample_size(len(rest), rate, error * expected, confidence) if len(rest) else 0  # ±error of the total
    base = known_true + pilot_true
    plan = None
    if keys is not None and STRATIFY_MIN <= n < EXACT_SHARE * len(rest):
        scores = np.asarray(keys(order), np.float64)
        plan = plan_strata(scores[pilot:], scores[:pilot], pilot_truth, error * expected, confidence)
        if plan.total >= STRATIFIED_GAIN * n:
            plan = None
    if plan is not None:  # a uniform sample within each stratum: its frames in the random order
        rank = np.empty(len(rest), np.int64)
        rank[np.argsort(-scores[pilot:], kind="stable")] = np.arange(len(rest))
        stratum = np.searchsorted(np.asarray(plan.cuts[1:-1]), rank, side="right")
        hits = [int(draw(rest[np.flatnonzero(stratum == h)[:d]]).sum()) for h, d in enumerate(plan.draws)]
        low, high = summed_interval(plan.sizes, plan.draws, hits, confidence)
        point = base + round(sum(s * x / d for s, d, x in zip(plan.sizes, plan.draws, hits) if d))
        strata = tuple(zip(plan.sizes, plan.draws, hits))
        return Estimate(int(point), base + low, base + high, confidence, known + pilot, base, pilot, pilot_true,
                        plan.total, sum(hits), len(rest), plan.draws == plan.sizes, strata)
    if n > EXACT_SHARE * len(rest):  # nearly all of it: label the rest too, and the count is exact
        n = len(rest)
    sampled_true = int(draw(rest[:n]).sum())
    low, high = count_interval(len(rest), n, sampled_true, confidence)
    point = base + (round(len(rest) * sampled_true / n) if n else 0)
    return Estimate(int(point), base + low, base + high, confidence, known + pilot, base, pilot, pilot_true, n,
                    sampled_true, len(rest), n >= len(rest))


def group_codes(ctx: Context, node: EvaluatePredicates, keys: tuple[str, ...], frames: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The GROUP BY keys (SQL about each frame) of ``frames``: the distinct key rows, and each
    frame's group (an index into them), by DuckDB."""
    fps = float(node.scan.info.fps)
    table = pa.table({"vql_row": np.arange(len(frames)), "frame": frames, "ts": frames / fps})
    names = [f"k{i}" for i in range(len(keys))]
    with ctx.store.registered("vql_group_frames", table) as con:
        rows = arrow_table(con.execute(
            f"SELECT {', '.join(f'({k}) AS {n}' for k, n in zip(keys, names))}, dense_rank() OVER (ORDER BY "
            f"{', '.join(names)}) - 1 AS vql_group FROM vql_group_frames AS {ident(node.scan.alias)} ORDER BY vql_row"))
    code = np.asarray(rows.column("vql_group").to_numpy(), np.int64)
    first = np.unique(code, return_index=True)[1]
    return rows.select(names).take(pa.array(first)), code


FIELDS = {"count": ("count", "low", "high"), "avg": ("mean", "low", "high"), "sum": ("total", "total_low", "total_high")}
SUMMED = {"count": ("count", "low", "high", "known", "pilot", "sampled"),  # a grouped estimate's totals
          "avg": ("frames", "total", "total_low", "total_high", "known", "sampled")}


def _split(stored: np.ndarray, members: np.ndarray, scan, salt: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A group's frames: which of the ``stored`` (labelled) frames are its members, and its other
    members in the group's random order."""
    known = np.isin(stored, members, assume_unique=True)
    unknown = np.setdiff1d(members, stored[known], assume_unique=True)
    return known, unknown[scan_rng(scan, ORDER_SALT, *salt).permutation(len(unknown))]


def _count_groups(spec: CountEstimate, node: EvaluatePredicates, ctx: Context, level: float):
    """Per group of frames, the count of those where WHERE holds (``estimate_count``)."""
    scan, info = node.scan, node.scan.info
    models = atom_models(ctx, node)
    stored = labelled_by_all(ctx, scan, models)
    ctx.count("frames_cached", len(stored))
    stored_true = judge_frames(ctx, node, stored)[1] if len(stored) else np.zeros(0, bool)

    def judge(part: np.ndarray) -> np.ndarray:
        label_with(ctx, info, models, part)
        return judge_frames(ctx, node, part)[1]

    polarity = where_polarity(node, where_truth(ctx, node))
    proxy: dict = {"seconds": 0.0}

    def keys(part: np.ndarray) -> np.ndarray:  # the LIMIT search's proxy, signed by WHERE's direction, read once
        if "scores" not in proxy:
            t0 = time.perf_counter()
            proxy["scores"] = scan_scores(scan)
            proxy["seconds"] = time.perf_counter() - t0
        return polarity * proxy["scores"][part - scan.first]

    def one(members: np.ndarray, salt: tuple, on_labelled) -> Estimate:
        known, order = _split(stored, members, scan, salt)
        return estimate_count(order, int(stored_true[known].sum()), judge, spec.error, level, int(known.sum()),
                              on_labelled, keys if polarity else None)

    return one, proxy


def _mean_groups(spec: CountEstimate, node: EvaluatePredicates, ctx: Context, level: float):
    """Per group of frames, the sum and average of ``spec.value`` (``engine/mean.py``)."""
    scan, info = node.scan, node.scan.info
    model = ctx.model(spec.value.model)
    cap = spec.max_count or model.max_objects
    if cap is None:
        raise ExecutionError(f"model {model.name!r} states no limit on the objects it reports on one frame, and an "
                             f"interval for an average needs one: state it, e.g. WITH (error := {spec.error:g}, "
                             f"max_count := 50) (every frame labelled is checked against it)")
    stored = labelled_by_all(ctx, scan, [model])
    ctx.count("frames_cached", len(stored))
    stored_counts = predicate_counts(ctx, info, model.version, spec.value, stored)

    def values(part: np.ndarray) -> np.ndarray:
        label_with(ctx, info, [model], part)
        return predicate_counts(ctx, info, model.version, spec.value, part)

    def one(members: np.ndarray, salt: tuple, on_labelled) -> MeanEstimate:
        known, order = _split(stored, members, scan, salt)
        check_cap(stored[known], stored_counts[known], cap)
        return estimate_mean(order, values, int(stored_counts[known].sum()), int(known.sum()), int(cap), spec.error, level,
                             on_labelled)

    return one, {"seconds": 0.0}


def run_count(spec: CountEstimate, node: EvaluatePredicates, ctx: Context) -> Estimate | MeanEstimate | list:
    """Estimate the count of frames of the scan where WHERE holds, or the average or sum of
    ``spec.value`` over the frames ``spec.filter`` chooses (per group of ``spec.keys``: each group
    its own sample, the intervals jointly at the stated confidence, each at 1 - (1 - confidence) /
    groups); materialise the table (keys, estimate, low, high) the query's SQL reads."""
    scan = node.scan
    frames = np.arange(scan.first, scan.last + 1, dtype=np.int64)
    if spec.filter is not None:
        frames = frames[where_truth(ctx, replace(node, where=spec.filter))(frames, {})]
    keys_table, code = group_codes(ctx, node, spec.keys, frames) if spec.keys else (None, np.zeros(len(frames), np.int64))
    groups = int(code.max()) + 1 if len(code) else (0 if spec.keys else 1)  # no frames, no groups
    level = 1 - (1 - spec.confidence) / max(groups, 1)
    one, proxy = (_count_groups if spec.value is None else _mean_groups)(spec, node, ctx, level)
    what = ", ".join(a.short_text for a in node.atoms) if spec.value is None else spec.value.short_text
    start = time.perf_counter()
    estimates = []
    with Progress(None, "frames", f"sampling {scan.video} for {what}", enabled=ctx.progress) as bar:
        for g in range(groups):
            estimates.append(one(frames[code == g], (g,) if spec.keys else (), bar.update))

    def column(field: str) -> list:  # SQL's SUM and AVG over no frames are NULL
        return [None if spec.value is not None and not e.frames else getattr(e, field) for e in estimates]

    point, low, high = FIELDS[spec.aggregate]
    columns = {"estimate": column(point), "low": column(low), "high": column(high)}
    if keys_table is not None:
        columns = {**{name: keys_table.column(name) for name in keys_table.column_names}, **columns}
    ctx.store.materialise(node.table, pa.table(columns))
    extra = {"seconds": time.perf_counter() - start, "proxy_seconds": proxy["seconds"], "error": spec.error,
             "frames_in_scan": scan.frame_count, "aggregate": spec.aggregate}
    if not spec.keys:
        ctx.stats.setdefault("estimate", {})[node.table] = dict(estimates[0].row(), **extra)
        return estimates[0]
    total = {k: sum(getattr(e, k) for e in estimates) for k in SUMMED["count" if spec.value is None else "avg"]}
    ctx.stats.setdefault("estimate", {})[node.table] = dict(
        total, **extra, groups=[e.row() for e in estimates], confidence=spec.confidence, group_confidence=level,
        exact=all(e.exact for e in estimates))
    return estimates


def analyze_line(e: dict) -> str:
    """What a count estimate did, for EXPLAIN ANALYZE (``e``: its ``metadata["estimate"]`` entry)."""
    if e.get("aggregate", "count") != "count":
        what = e["aggregate"].upper()
        if "groups" in e:
            return (f"-- {what} estimates for {len(e['groups'])} groups, jointly at {e['confidence']:.0%} (each at "
                    f"{e['group_confidence']:.2%}): {e['known']} frames known from the label cache, {e['sampled']} "
                    f"sampled" + ("; every frame labelled (exact)" if e["exact"] else ""))
        shown = (f"average {e['mean']:.4g} [{e['low']:.4g}, {e['high']:.4g}]" if e["mean"] is not None
                 else "no frames")
        return (f"-- {what} estimate: {shown}, sum {e['total']} [{e['total_low']}, {e['total_high']}] over "
                f"{e['frames']} frames at {e['confidence']:.0%} (betting confidence sequence, no frame above "
                f"{e['cap']}); {e['known']} frames known from the label cache, then {e['sampled']} of the "
                f"{e['unknown']} others sampled ({e['sampled_sum']} objects)"
                + ("; every frame labelled (exact)" if e["exact"] else ""))
    if "groups" in e:
        return (f"-- COUNT estimates for {len(e['groups'])} groups, jointly at {e['confidence']:.0%} (each interval "
                f"exact at {e['group_confidence']:.2%}): {e['known'] - e['pilot']} frames known from the label cache, "
                f"{e['pilot']} in pilots, {e['sampled']} sampled" + ("; every frame labelled (exact)" if e["exact"] else "")
                + (f"; the proxy read in {e['proxy_seconds']:.1f} s" if e["proxy_seconds"] else ""))
    return (f"-- COUNT estimate: {e['count']} [{e['low']}, {e['high']}] at {e['confidence']:.0%} (exact: "
            f"hypergeometric); {e['known'] - e['pilot']} frames known from the label cache, a pilot of {e['pilot']} "
            f"random frames ({e['pilot_true']} true), then {e['sampled']} of the {e['unknown']} frames still unknown "
            f"sampled ({e['sampled_true']} true)" + ("; every frame labelled (exact)" if e["exact"] else "")
            + (f"; in {len(e['strata'])} strata by the proxy (read in {e['proxy_seconds']:.1f} s), highest first, "
               "frames/drawn/true: " + ", ".join(f"{s}/{d}/{x}" for s, d, x in e["strata"]) if e.get("strata") else ""))
