"""Query benchmark: speed-up over exact, distance to the decoding ceiling, accuracy against the
reference, on vtest and on a long video composed from it; everything measured side by side in
one run.

    python benchmarks/queries.py                       # vtest + a composed 60-minute video
    python benchmarks/queries.py --minutes 10 --seeds 1,2,3,4,5 --targets 0.05,0.01 --skip-vtest
    python benchmarks/queries.py --device cuda --minutes 10 --audit 1000   # the GPU run

Per video: the decoding ceiling (OpenCV read() of every frame, one process; with
``--decode-procs N`` also N processes by frame range) and grab-only speed; the exact plan (the
reference on every frame: run in full on short videos, extrapolated on long ones from the
reference's measured per-frame time on 256 consecutive frames plus the measured decoding time, and marked as
extrapolated). Per query and target (each target's first
query from an empty store, the next ones after it on its store, as second predicates on the
same video): cascade *cold* (planning: labelling the training prefix, training, choosing,
labelling the certification frames, certifying; then running), *warm* (after
``DROP RESULTS``, in a new session: the stored plan and labels reused) and *cached* (the stored
answers read back, what a result cache gives); speed-ups over exact; the warm run's throughput
as a fraction of the decoding ceiling; false-positive and false-negative rates of the answer
against the reference on frames drawn uniformly from the scan (long videos: ``--audit`` frames labelled by the reference outside vql's store, with two-sided 95% intervals;
short ones: every frame); the certified bounds; labels spent in planning and in all against the
certification floor (the frames a certificate needs with nothing missed); the frames the cold run sent
the reference after planning, the query's positives among them (by those labels) and their ratio;
peak memory.

Writes JSON (a list of rows) and a PNG chart, prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import vql
from vql.engine.compose import ComposeSpec, build_library, compose
from vql.engine.video import probe, read_frames
from vql.planner.certify import frames_needed
from vql.planner.stats import interval
from vql.udfs.reference import Detections
from vql.udfs.tfjs_detector import centernet

ROOT = Path(__file__).resolve().parents[1]
EXACT_SAMPLE = 256  # consecutive frames the exact plan's reference cost is measured on (long videos)
SHARED = Path(os.environ.get("VQL_SHARED", ROOT.parent / "shared"))

# (label, WHERE clause) per video kind; selectivities from ~1% to ~50% and beyond
VTEST_QUERIES = (
    "contains('person')",
    "object_count('person') >= 6",
    "object_count('person') >= 7",
    "contains('person', region := (0, 0.66, 1, 1))",
)
COMPOSED_QUERIES = (  # the second runs after the first on its store: a second predicate on the same video
    "contains('person')",
    "contains('person', region := (0, 0.5, 1, 1))",
)


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device == "cuda" and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def _decode_range(args: tuple[str, int, int]) -> int:
    path, lo, hi = args
    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(path)
    cap.set(cv2.CAP_PROP_POS_FRAMES, lo)
    n = 0
    while lo + n < hi and cap.read()[0]:
        n += 1
    cap.release()
    return n


def decode_ceiling(path: str, frames: int, procs: int = 1) -> dict:
    """Frames/s of OpenCV read() over every frame (one process, and ``procs`` processes by frame
    range, started before the clock), and of grab()."""
    out = {}
    t = time.perf_counter()
    n = _decode_range((path, 0, frames))
    out["decode_fps"] = n / (time.perf_counter() - t)
    cap = cv2.VideoCapture(path)
    t = time.perf_counter()
    g = 0
    while cap.grab():
        g += 1
    out["grab_fps"] = g / (time.perf_counter() - t)
    cap.release()
    if procs > 1:
        edges = np.linspace(0, frames, procs + 1).astype(int)
        with mp.get_context("spawn").Pool(procs) as pool:
            pool.map(_decode_range, [(path, 0, 1)] * procs)  # the processes started before the clock
            t = time.perf_counter()
            n = sum(pool.map(_decode_range, [(path, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]))
            out["decode_fps_parallel"] = n / (time.perf_counter() - t)
        out["decode_procs"] = procs
    return out


def reference_truth(path: str, frames: np.ndarray, model) -> dict[int, object]:
    """Detections of the reference on these frames (the judge), with the reference's seconds per frame."""
    dets, seconds = {}, 0.0
    for idx, batch in read_frames(path, frames, 16):
        t = time.perf_counter()
        for f, d in zip(idx, model.detect(batch)):
            dets[int(f)] = d
        seconds += time.perf_counter() - t
    return dets, seconds / max(1, len(dets))


def exact_reference_cost(path: str, frames: int, model, rng, count: int = EXACT_SAMPLE) -> float:
    """The reference's seconds per frame as the exact plan pays it: on ``count`` consecutive
    frames from a random start, read in order (decoding each frame in the reader's thread).
    The audit's own time is not used for the exact plan: its frames are sparse, and decoding the
    gaps between them adds to each frame's time (on the four-hour video, one audit frame in 72:
    61.3 ms/frame where planning measured 49.2; ``benchmarks/sparse_decode.py``)."""
    start = int(rng.integers(0, max(1, frames - count)))
    model.detect(next(read_frames(path, [start], 1))[1])  # warm-up
    seconds, n = 0.0, 0
    for _, batch in read_frames(path, np.arange(start, min(frames, start + count)), 16):
        t = time.perf_counter()
        model.detect(batch)
        seconds += time.perf_counter() - t
        n += len(batch)
    return seconds / max(1, n)


def holds(where: str, det, size: tuple[int, int], model) -> bool:
    """The atom ``where`` on one frame's detections (the same semantics as vql's predicates)."""
    person = model.class_index("person")
    region = None
    if "region" in where:
        region = tuple(float(v) for v in where.split("region := (")[1].split(")")[0].split(","))
    n = det.count(person, 0.5, region, size)
    if where.startswith("object_count"):
        return n >= int(where.rsplit(">=", 1)[1])
    return n >= 1


def _keys(con, name: str) -> list[str]:
    """(video fingerprint, model version) of video ``name`` and the default reference (CenterNet)."""
    return [con.store.video(name).fingerprint, con.model("centernet").version]


def labelled_set(con, name: str) -> set[int]:
    """The frames of video ``name`` that vql's store holds CenterNet's labels for."""
    return set(con.store.labelled_frames(*_keys(con, name)).tolist())


def stored_detections(con, name: str, frames: list[int]) -> dict[int, Detections]:
    """CenterNet's detections of these frames of video ``name`` as vql's store holds them."""
    if not frames:
        return {}
    rows = con.store.con.execute(
        "SELECT frame, class_id, score, x1, y1, x2, y2 FROM vql_labels WHERE video_fp = ? AND model_version = ? "
        "AND frame IN (SELECT unnest(?))", [*_keys(con, name), list(frames)]).fetchnumpy()
    out = {}
    for f in frames:
        at = rows["frame"] == f
        boxes = np.stack([rows[k][at] for k in ("x1", "y1", "x2", "y2")], axis=1)
        out[int(f)] = Detections.from_arrays(boxes, rows["score"][at], rows["class_id"][at], floor=-np.inf)
    return out


def run_query(db: Path, name: str, path: str, where: str, target: float, device: str,
              exact_per_frame: float | None = None, fresh: bool = True) -> dict:
    """Cold, warm and cached runs of one query (from an empty store unless ``fresh`` is False:
    then it follows the queries before it on the same store, as a second predicate would). The
    cold run is planned first (``Connection.prepare``: the training prefix and the certification
    frames labelled, the plan certified), then run. With ``exact_per_frame`` (long videos), a
    query the planner answers with the exact plan is not run: its cold time is the planning time
    plus the exact plan's measured per-frame cost on the frames still unlabelled (extrapolated)."""
    if fresh:
        for p in (db, Path(str(db) + ".wal")):
            if p.exists():
                p.unlink()
    query = f"SELECT frame FROM {name} WHERE {where} WITH (fpr := {target}, fnr := {target})"
    con = vql.connect(db, device=device, progress=False)
    if name not in con.store.videos():
        con.sql(f"CREATE VIDEO {name} FROM '{path}'")
    before = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
    t = time.perf_counter()
    prepared = con.prepare(query)
    plan = next(iter(prepared.metadata["plans"].values()))
    plan_s = time.perf_counter() - t
    t_sets = time.perf_counter()
    planned = labelled_set(con, name)
    t += time.perf_counter() - t_sets  # reading the labelled frames is not the query's time
    plan_labels = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0] - before
    common = {"query": query, "plan": plan, "plan_s": plan_s, "labels_before": before, "labels_planning": plan_labels}
    if exact_per_frame is not None and plan.strategy == "exact":
        labelled = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
        frames = probe(path).frames
        plan_text = "\n".join(row[0] for row in prepared.fetchall())
        con.close()
        return {**common, "answer": None, "cold_s": plan_s + (frames - labelled) * exact_per_frame,
                "warm_s": None, "cached_s": None, "cold_meta": {"plan_text": plan_text}, "warm_meta": {},
                "labelled_frames": labelled, "extrapolated": True}
    cold = con.sql(query)
    cold_s = time.perf_counter() - t
    answer = {r[0] for r in cold.fetchall()}
    run_dets = stored_detections(con, name, sorted(labelled_set(con, name) - planned))  # what the run phase sent the reference
    con.sql(f"DROP RESULTS {name}")
    con.close()
    warm_con = vql.connect(db, device=device, progress=False)  # a new session: plan and labels from the store
    t = time.perf_counter()
    warm = warm_con.sql(query)
    warm_s = time.perf_counter() - t
    if {r[0] for r in warm.fetchall()} != answer:
        raise AssertionError(f"warm answers differ from cold ones for {query}")
    t = time.perf_counter()
    stored = warm_con.sql(f"SELECT frame FROM vql_frame_results WHERE query_id = {warm.metadata['query_id']} AND value = 1")
    stored.fetchall()
    cached_s = time.perf_counter() - t
    labelled = warm_con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
    warm_con.close()
    return {**common, "answer": answer, "cold_s": cold_s, "warm_s": warm_s, "cached_s": cached_s,
            "cold_meta": cold.metadata, "warm_meta": warm.metadata, "labelled_frames": labelled, "extrapolated": False,
            "run_detections": run_dets}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def audit_row(truth: dict[int, bool], answer: set[int] | None, target: float) -> dict:
    """False-negative and false-positive rates of ``answer`` on the audit frames (uniformly random
    frames of the scan, judged by the reference outside vql's store), with two-sided 95%
    Clopper-Pearson intervals, and whether an interval lies wholly above the target."""
    pos = [f for f, t in truth.items() if t]
    neg = [f for f, t in truth.items() if not t]
    fn = 0 if answer is None else sum(f not in answer for f in pos)  # the exact plan makes no error
    fp = 0 if answer is None else sum(f in answer for f in neg)
    fnr_ci, fpr_ci = interval(fn, len(pos)), interval(fp, len(neg))
    return {"fnr": fn / max(1, len(pos)), "fpr": fp / max(1, len(neg)), "fnr_ci": fnr_ci, "fpr_ci": fpr_ci,
            "audit_frames": len(truth), "audit_positives": len(pos), "audit_negatives": len(neg),
            "over_target": fnr_ci[0] > target or fpr_ci[0] > target}


def bench_video(label: str, path: str, queries, args, model) -> list[dict]:
    info = probe(path)
    frames = info.frames
    print(f"== {label}: {frames} frames, {info.width}x{info.height}", file=sys.stderr)
    ceiling = decode_ceiling(path, frames, args.decode_procs)
    work = Path(args.workdir)
    rng = np.random.default_rng(7)
    if frames <= args.exact_full:
        # exact in full: the reference on every frame, from an empty store; its answers are the truth
        db = work / f"{slug(label)}_exact.duckdb"
        for p in (db, Path(str(db) + ".wal")):
            if p.exists():
                p.unlink()
        exact_con = vql.connect(db, device=args.device, progress=False)
        exact_con.sql(f"CREATE VIDEO v FROM '{path}'")
        t = time.perf_counter()
        exact_con.sql("SELECT count(*) FROM v WHERE contains('person') WITH (exact)")
        exact_s = time.perf_counter() - t
        extrapolated, audit_ref = False, None

        def truth_of(where: str) -> dict[int, bool]:
            yes = {r[0] for r in exact_con.sql(f"SELECT frame FROM v WHERE {where} WITH (exact)").fetchall()}
            return {f: f in yes for f in range(frames)}
    else:
        audit = np.sort(rng.choice(frames, min(frames, args.audit), replace=False))
        dets, audit_ref = reference_truth(path, audit, model)  # the judge
        ref_per_frame = exact_reference_cost(path, frames, model, rng)
        exact_s = frames / ceiling["decode_fps"] + frames * ref_per_frame
        extrapolated = True

        def truth_of(where: str) -> dict[int, bool]:
            return {f: holds(where, d, (info.width, info.height), model) for f, d in dets.items()}
    exact_fps = frames / exact_s
    rows = []
    db = work / f"{slug(label)}_q.duckdb"
    for i, (where, target) in enumerate(queries):
        first = i == 0 or queries[i - 1][1] != target  # each target's queries start from an empty store
        r = run_query(db, "v", path, where, target, args.device, exact_s / frames if extrapolated else None,
                      fresh=first or not args.shared_store)
        plan = r["plan"]
        truth = truth_of(where)
        audit = audit_row(truth, r["answer"], target)
        selectivity = float(np.mean(list(truth.values())))
        cert = plan.certificate
        warm_fps = frames / r["warm_s"] if r["warm_s"] else None
        ops = r["warm_meta"].get("operators", {})
        row = {
            "video": label, "frames": frames, "query": r["query"], "target": target, "selectivity": selectivity,
            "strategy": plan.strategy, "reason": plan.reason,
            "decode_fps": ceiling["decode_fps"], "grab_fps": ceiling["grab_fps"],
            "decode_fps_parallel": ceiling.get("decode_fps_parallel"),
            "exact_fps": exact_fps, "exact_s": exact_s, "exact_extrapolated": extrapolated,
            "audit_reference_s_per_frame": audit_ref,
            "cascade_cold_fps": frames / r["cold_s"], "cascade_warm_fps": warm_fps, "cold_s": r["cold_s"],
            "plan_s": r["plan_s"], "cascade_extrapolated": r["extrapolated"],
            "warm_s": r["warm_s"], "cached_s": r["cached_s"], "speedup_cold": exact_s / r["cold_s"],
            "speedup_warm": exact_s / r["warm_s"] if r["warm_s"] else None,
            "speedup_cached": exact_s / max(r["cached_s"], 1e-9) if r["cached_s"] is not None else None,
            "ceiling_fraction": warm_fps / ceiling["decode_fps"] if warm_fps else None,
            **audit,
            "certified_fnr_bound": cert.fnr_bound if cert else None, "certified_fpr_bound": cert.fpr_bound if cert else None,
            "certificate_passed": cert.passed if cert else None,
            "certification_frames": cert.frames if cert else 0, "training_frames": plan.training_frames,
            "labels_before": r["labels_before"], "labels_planning": r["labels_planning"],
            "labels_after_cold": r["labelled_frames"],
            "labels_floor": frames_needed(target, target, selectivity) if 0 < selectivity < 1 else None,
            **yardstick(frames, plan, r, exact_s, ceiling["decode_fps"], target, selectivity),
            "frames_sent_to_reference_cold": r["cold_meta"].get("frames_sent_to_reference", 0),
            **run_phase(r.get("run_detections"), where, (info.width, info.height), model),
            "warm_operators": {k: v["ops"] for k, v in ops.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": args.machine, "device": args.device,
            "plan": r["cold_meta"].get("plan_text", ""),
        }
        rows.append(row)
        args.on_row(row)
        print(f"   {where} @ {target}: {plan.strategy}, cold {row['speedup_cold']:.1f}x, warm "
              f"{fmt(row['speedup_warm'], '.1f')}x, audit fpr {row['fpr']:.4f} {fmt_ci(row['fpr_ci'])} fnr "
              f"{row['fnr']:.4f} {fmt_ci(row['fnr_ci'])}", file=sys.stderr)
    return rows


def yardstick(frames: int, plan, r: dict, exact_s: float, decode_fps: float, target: float,
              selectivity: float) -> dict:
    """The cold time that is achievable (issue 14's yardstick), next to where the cold run's
    labels went: (certification frames the targets need with nothing missed + the training
    prefix + the frames the stages left to the reference in the run) x the reference's measured
    cost per frame, + decoding every frame once. Labels are counted as this query paid for them
    (frames an earlier query labelled cost it nothing)."""
    reference = max(0.0, exact_s / frames - 1 / decode_fps)
    needed = frames_needed(target, target, selectivity) if 0 < selectivity < 1 else frames
    sent = r["cold_meta"].get("frames_sent_to_reference", 0)
    floor_s = (needed + plan.training_frames + sent) * reference + frames / decode_fps
    run_labels = r["labelled_frames"] - r["labels_before"] - r["labels_planning"]
    return {"floor_s": floor_s, "cold_over_floor": r["cold_s"] / floor_s, "labels_run": run_labels,
            "reference_s_per_frame": reference,
            "cold_labelling_s": (r["labels_planning"] + max(0, run_labels)) * reference}


def run_phase(dets: dict | None, where: str, size: tuple[int, int], model) -> dict:
    """The frames the cold run labelled after planning (sent to the reference by the cascade), the
    positives of the query among them by those labels, and issue 14's ratio of the two (target
    <= 1.5)."""
    if dets is None:
        return {"run_labelled": None, "run_positives": None, "run_sent_per_positive": None}
    positives = sum(holds(where, d, size, model) for d in dets.values())
    return {"run_labelled": len(dets), "run_positives": positives,
            "run_sent_per_positive": len(dets) / positives if positives else None}


def fmt_ci(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = ("| video | frames | query | target | sel. | plan | exact f/s | cold f/s | warm f/s | cold x | warm x | "
            "audit fpr [95% CI] | audit fnr [95% CI] (pos) | certified fpr, fnr <= | labels: planning / run / cold "
            "total / certification floor | run: sent, positives, sent per positive | cold s / floor s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        where = r["query"].split(" WHERE ", 1)[1].split(" WITH ")[0]
        exact = f"{r['exact_fps']:.1f}" + ("*" if r["exact_extrapolated"] else "")
        cold = f"{r['cascade_cold_fps']:.1f}" + ("*" if r.get("cascade_extrapolated") else "")
        bounds = ("—" if r["certified_fnr_bound"] is None else
                  f"{r['certified_fpr_bound']:.4f}, {r['certified_fnr_bound']:.4f}"
                  + ("" if r["certificate_passed"] else " (failed)"))
        over = " **over**" if r["over_target"] else ""
        lines.append(
            f"| {r['video']} | {r['frames']} | `{where}` | {r['target']:g} | {r['selectivity']:.1%} | {r['strategy']} | "
            f"{exact} | {cold} | {fmt(r['cascade_warm_fps'], '.0f')} | {r['speedup_cold']:.1f} | "
            f"{fmt(r['speedup_warm'], '.1f')} | {r['fpr']:.4f} {fmt_ci(r['fpr_ci'])}{over} | "
            f"{r['fnr']:.4f} {fmt_ci(r['fnr_ci'])} ({r['audit_positives']}) | {bounds} | "
            f"{r['labels_planning']} / {fmt(r.get('labels_run'), 'd')} / {r['labels_after_cold']} / "
            f"{fmt(r['labels_floor'], 'd')} | {fmt(r.get('run_labelled'), 'd')}, {fmt(r.get('run_positives'), 'd')}, "
            f"{fmt(r.get('run_sent_per_positive'), '.2f')} | {r['cold_s']:.0f} / {fmt(r.get('floor_s'), '.0f')} |"
        )
    return "\n".join(lines)


def chart(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['video']}\n{r['query'].split(' WHERE ', 1)[1].split(' WITH ')[0]}" for r in rows]
    x = np.arange(len(rows))
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(rows)), 8), sharex=True)
    a.bar(x - 0.2, [r["speedup_cold"] for r in rows], 0.4, label="cold")
    a.bar(x + 0.2, [r["speedup_warm"] or 0 for r in rows], 0.4, label="warm")
    a.set_yscale("log")
    a.set_ylabel("speed-up over exact")
    a.axhline(1, color="grey", lw=0.8)
    a.legend()
    b.bar(x - 0.2, [r["fpr"] for r in rows], 0.4, label="false-positive rate")
    b.bar(x + 0.2, [r["fnr"] for r in rows], 0.4, label="false-negative rate")
    b.scatter(x, [r["target"] for r in rows], color="red", marker="_", s=400, label="target")
    b.set_ylabel("audited rate vs reference")
    b.legend()
    b.set_xticks(x, labels, fontsize=7, rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def cold_query(db: Path, path: str, sql: str):
    """``sql`` from an empty store at ``db`` with the video at ``path`` registered as ``cam`` (the
    registration not timed): its result and seconds."""
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    with vql.connect(db, progress=False) as con:
        con.sql(f"CREATE VIDEO cam FROM '{path}'")
        t = time.perf_counter()
        result = con.sql(sql)
        return result, time.perf_counter() - t


def seeded_estimate(db: Path, path: str, sql: str, seed: int) -> dict:
    """An estimate (COUNT, AVG...) from an empty store, ``seed`` shifting vql's random order (a
    different draw): its seconds and ``metadata["estimate"]``."""
    from vql.engine import estimate

    saved, estimate.ORDER_SALT = estimate.ORDER_SALT, estimate.ORDER_SALT + seed
    try:
        result, seconds = cold_query(db, path, sql)
    finally:
        estimate.ORDER_SALT = saved
    (stats,) = result.metadata["estimate"].values()
    return {"seconds": seconds, **stats}


def exact_plan(path: str, frames: int, decode_fps: float, model, db: Path | None = None) -> tuple[float, str]:
    """The exact plan's seconds on this video, and how they were had: run in full through vql into
    a fresh store at ``db`` (every frame labelled there, for exact answers later: ``"run"``), or,
    without ``db``, extrapolated from the reference's seconds per frame on 48 random frames plus
    the measured decoding (``"extrapolated"``)."""
    if db is not None:
        _, seconds = cold_query(db, path, "SELECT frame FROM cam WHERE contains('person') WITH (exact)")
        return seconds, "run"
    sample = np.sort(np.random.default_rng(0).choice(frames, 48, replace=False))
    _, ref_s = reference_truth(path, sample, model)
    return frames * (ref_s + 1 / decode_fps), "extrapolated"


def composed_video(workdir: Path, minutes: float, seed: int, presence: float, model=None) -> str:
    """The composed video of this length, seed and presence in ``workdir``, composed if missing."""
    video = workdir / f"street_{minutes:g}min_{presence:g}_seed{seed}.mp4"
    if not video.exists():
        print(f"composing {video} (not timed)", file=sys.stderr)
        library = build_library(SHARED / "data" / "vtest.avi", model or centernet())
        compose(library, video, ComposeSpec(minutes=minutes, presence=presence, seed=seed))
    return str(video)


def judged_bench(doc: str, name: str, argv: list[str] | None, draws: bool = False
                 ) -> tuple[argparse.Namespace, list[tuple[str, str, str | None]]]:
    """The arguments and videos of a benchmark judged against every frame's label (COUNT, top-k,
    recall): (label, path, truth database or None) for vtest and the composed video; ``draws``:
    the benchmark repeats each query with its own random order (``--draws``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if draws:
        parser.add_argument("--draws", type=int, default=2, help="runs per query, each with its own random order")
    parser.add_argument("--minutes", type=int, default=60, help="length of the composed video (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--presence", type=float, default=0.1)
    parser.add_argument("--truth-db", help="a vql database with every frame of the composed video labelled")
    parser.add_argument("--truth-video", default="v", help="the composed video's name in --truth-db")
    parser.add_argument("--skip-vtest", action="store_true")
    parser.add_argument("--workdir", default="/tmp/vql_bench")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"{name}.json"))
    args = parser.parse_args(argv)
    args.workdir = Path(args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)
    videos = [] if args.skip_vtest else [("vtest", str(SHARED / "data" / "vtest.avi"), None)]
    if args.minutes:
        videos.append((f"composed {args.minutes} min, seed {args.seed}",
                       composed_video(args.workdir, args.minutes, args.seed, args.presence), args.truth_db))
    return args, videos


def judged_videos(args: argparse.Namespace, videos, name: str):
    """Per video of a judged benchmark (``judged_bench``'s list), after printing the machine:
    (label, path, *``exact_side``)."""
    model = centernet()
    print(f"machine: {machine('cpu')}")
    for label, path, truth_db in videos:
        yield label, path, *exact_side(args, name, path, truth_db, model)


def exact_side(args: argparse.Namespace, name: str, path: str, truth_db: str | None, model):
    """The exact plan beside a judged benchmark's queries: (video info, seconds, how they were had,
    (database, video name) where every frame is labelled: ``truth_db``, or, without it, a fresh
    store where the exact plan ran in full)."""
    info = probe(path)
    ceiling = decode_ceiling(path, info.frames)
    db = args.workdir / f"{name}_exact.duckdb" if truth_db is None else None
    exact_s, how = exact_plan(path, info.frames, ceiling["decode_fps"], model, db)
    return info, exact_s, how, ((str(db), "cam") if db is not None else (truth_db, args.truth_video))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="60", help="lengths of composed videos, comma-separated (0: none)")
    parser.add_argument("--presence", type=float, default=0.1)
    parser.add_argument("--targets", default="0.01", help="fpr = fnr targets, comma-separated: each runs every query")
    parser.add_argument("--seeds", default="1", help="composed videos' seeds, comma-separated: one video each")
    parser.add_argument("--audit", type=int, default=2000, help="audit frames on long videos")
    parser.add_argument("--exact-full", type=int, default=2000, help="videos up to this many frames run exact in full")
    parser.add_argument("--decode-procs", type=int, default=1, help="also measure decoding in N processes")
    parser.add_argument("--skip-vtest", action="store_true")
    parser.add_argument("--first-only", action="store_true",
                        help="on composed videos, only the first query (contains('person')); a long video's "
                             "region query can take most of an hour")
    parser.add_argument("--fresh-store", dest="shared_store", action="store_false",
                        help="every query from an empty store (default: per target, the queries after the first "
                             "follow it on its store, as second predicates on the same video)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workdir", default="/tmp/vql_bench")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = parser.parse_args(argv)
    args.machine = machine(args.device)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []

    def on_row(row: dict) -> None:  # the JSON is rewritten after every row: a cut run keeps what it measured
        done.append(row)
        out.write_text(json.dumps(done, indent=2, default=float))

    args.on_row = on_row
    model = centernet(args.device)
    vtest = SHARED / "data" / "vtest.avi"
    rows = []
    targets = [float(t) for t in str(args.targets).split(",")]
    if not args.skip_vtest:
        rows += bench_video("vtest", str(vtest), [(w, t) for t in targets for w in VTEST_QUERIES], args, model)
    for minutes in [float(m) for m in str(args.minutes).split(",") if float(m) > 0]:
        for seed in [int(x) for x in str(args.seeds).split(",")]:
            video = composed_video(Path(args.workdir), minutes, seed, args.presence, model)
            rows += bench_video(f"composed {minutes:g} min seed {seed}", str(video),
                                [(w, t) for t in targets for w in COMPOSED_QUERIES[:1 if args.first_only else None]],
                                args, model)
    chart(rows, out.with_suffix(".png"))
    print(f"machine: {args.machine}; device {args.device}; targets fpr = fnr = {args.targets}; * extrapolated "
          f"(exact: from the reference's time on the audit frames plus decoding; cold of an exact "
          f"plan: planning time plus the exact per-frame cost of the frames still unlabelled)")
    print(table(rows))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
