"""Query benchmark: speed-up over exact, distance to the decoding ceiling, accuracy against the
reference, on vtest and on a long video composed from it; everything measured side by side in
one run.

    python benchmarks/queries.py                       # vtest + a composed 60-minute video
    python benchmarks/queries.py --minutes 20 --skip-vtest
    python benchmarks/queries.py --device cuda --minutes 10 --audit 1000   # the GPU run

Per video: the decoding ceiling (OpenCV read() of every frame, one process; with
``--decode-procs N`` also N processes by frame range) and grab-only speed; the exact plan (the
reference on every frame: run in full on short videos, extrapolated on long ones from the
reference's measured per-frame time on a random sample of ``--exact-sample`` frames plus the
measured decoding time, and marked as extrapolated). Per query, each from an empty store:
cascade *cold* (sampling, reference labelling, training, fitting, running), *warm* (after
``DROP RESULTS``, in a new session: the stored plan and labels reused) and *cached* (the stored
answers read back, what a result cache gives); speed-ups over exact; the warm run's throughput
as a fraction of the decoding ceiling; false-positive and false-negative rates against the
reference on frames neither training nor fitting saw (long videos: a random audit sample of at
least ``--audit`` frames labelled by the reference; short ones: every such frame); peak memory.

Writes JSON (a list of rows) and a PNG chart, prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
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
from vql.udfs.tfjs_detector import centernet

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VQL_SHARED", ROOT.parent / "shared"))

# (label, WHERE clause) per video kind; selectivities from ~1% to ~50% and beyond
VTEST_QUERIES = (
    "contains('person')",
    "object_count('person') >= 6",
    "object_count('person') >= 7",
    "contains('person', region := (0, 0.66, 1, 1))",
)
COMPOSED_QUERIES = (
    "contains('person')",
    "contains('person', region := (0, 0.5, 1, 1))",
    "object_count('person') >= 2",
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
    """Frames/s of OpenCV read() over every frame (one process, and ``procs`` by frame range), and of grab()."""
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
        t = time.perf_counter()
        with mp.get_context("spawn").Pool(procs) as pool:
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


def run_query(db: Path, name: str, path: str, where: str, target: float, device: str,
              exact_per_frame: float | None = None) -> dict:
    """Cold, warm and cached runs of one query from an empty store. With ``exact_per_frame``
    (long videos), a query the planner answers with the exact plan is planned (EXPLAIN: the pilot
    sample is labelled) but not run: its cold time is the planning time plus the exact plan's
    measured per-frame cost on the frames still unlabelled, marked as extrapolated."""
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            p.unlink()
    query = f"SELECT frame FROM {name} WHERE {where} WITH (fpr := {target}, fnr := {target})"
    con = vql.connect(db, device=device, progress=False)
    con.sql(f"CREATE VIDEO {name} FROM '{path}'")
    t = time.perf_counter()
    if exact_per_frame is not None:
        planned = con.sql("EXPLAIN " + query)
        choice = next(iter(planned.metadata["choices"].values()))
        if choice.strategy == "exact":
            plan_s = time.perf_counter() - t
            labelled = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
            frames = probe(path).frames
            plan_text = "\n".join(row[0] for row in planned.fetchall())
            con.close()
            return {"query": query, "answer": None, "cold_s": plan_s + (frames - labelled) * exact_per_frame,
                    "warm_s": None, "cached_s": None, "cached_rows": None, "choice": choice,
                    "cold_meta": {"plan_text": plan_text},
                    "warm_meta": {}, "labelled_frames": labelled, "extrapolated": True}
    cold = con.sql(query)
    cold_s = time.perf_counter() - t
    answer = {r[0] for r in cold.fetchall()}
    choice = next(iter(cold.metadata["choices"].values()))
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
    cached_rows = len(stored.fetchall())
    cached_s = time.perf_counter() - t
    labelled = warm_con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
    warm_con.close()
    return {"query": query, "answer": answer, "cold_s": cold_s, "warm_s": warm_s, "cached_s": cached_s,
            "cached_rows": cached_rows, "choice": choice, "cold_meta": cold.metadata, "warm_meta": warm.metadata,
            "labelled_frames": labelled, "extrapolated": False}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


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
        extrapolated = False

        def truth_of(where: str) -> dict[int, bool]:
            yes = {r[0] for r in exact_con.sql(f"SELECT frame FROM v WHERE {where} WITH (exact)").fetchall()}
            return {f: f in yes for f in range(frames)}
    else:
        sample = np.sort(rng.choice(frames, min(args.exact_sample, frames), replace=False))
        dets_sample, ref_per_frame = reference_truth(path, sample, model)
        exact_s = frames / ceiling["decode_fps"] + frames * ref_per_frame
        extrapolated = True
        draw = min(frames, math.ceil(args.audit / 0.75))  # frames fitted on are dropped per query
        audit = np.sort(rng.choice(frames, draw, replace=False))
        dets, _ = reference_truth(path, audit, model)

        def truth_of(where: str) -> dict[int, bool]:
            return {f: holds(where, d, (info.width, info.height), model) for f, d in dets.items()}
    exact_fps = frames / exact_s
    rows = []
    for where in queries:
        r = run_query(work / f"{slug(label)}_q.duckdb", "v", path, where, args.target, args.device,
                      exact_s / frames if extrapolated else None)
        choice = r["choice"]
        fitted = set(choice.fitted_frames.tolist()) if choice.fitted_frames is not None else set()
        every = truth_of(where)
        judged = [f for f in every if f not in fitted]
        truth = {f: every[f] for f in judged}
        pos = [f for f in judged if truth[f]]
        neg = [f for f in judged if not truth[f]]
        if r["answer"] is None:  # the exact plan, extrapolated: it makes no error
            fn = fp = 0
        else:
            fn = sum(f not in r["answer"] for f in pos)
            fp = sum(f in r["answer"] for f in neg)
        warm_fps = frames / r["warm_s"] if r["warm_s"] else None
        all_truth = list(every.values())
        ops = r["warm_meta"].get("operators", {})
        row = {
            "video": label, "frames": frames, "query": r["query"], "target": args.target,
            "selectivity": float(np.mean(all_truth)), "strategy": choice.strategy,
            "decode_fps": ceiling["decode_fps"], "grab_fps": ceiling["grab_fps"],
            "decode_fps_parallel": ceiling.get("decode_fps_parallel"),
            "exact_fps": exact_fps, "exact_s": exact_s, "exact_extrapolated": extrapolated,
            "cascade_cold_fps": frames / r["cold_s"], "cascade_warm_fps": warm_fps, "cold_s": r["cold_s"],
            "cascade_extrapolated": r["extrapolated"],
            "warm_s": r["warm_s"], "cached_s": r["cached_s"], "speedup_cold": exact_s / r["cold_s"],
            "speedup_warm": exact_s / r["warm_s"] if r["warm_s"] else None,
            "speedup_cached": exact_s / max(r["cached_s"], 1e-9) if r["cached_s"] is not None else None,
            "ceiling_fraction": warm_fps / ceiling["decode_fps"] if warm_fps else None,
            "fpr": fp / max(1, len(neg)), "fnr": fn / max(1, len(pos)), "audit_frames": len(judged),
            "audit_positives": len(pos), "audit_negatives": len(neg),
            "sample_frames": choice.sample_frames, "labelled_frames_after_cold": r["labelled_frames"],
            "eval_fpr": choice.eval_fpr, "eval_fnr": choice.eval_fnr,
            "frames_sent_to_reference_cold": r["cold_meta"].get("frames_sent_to_reference", 0),
            "plan_seconds": r["cold_meta"].get("plan_seconds", 0.0),
            "warm_operators": {k: v["ops"] for k, v in ops.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": args.machine, "device": args.device,
            "plan": r["cold_meta"].get("plan_text", ""),
        }
        rows.append(row)
        args.on_row(row)
        print(f"   {where}: {choice.strategy}, cold {row['speedup_cold']:.1f}x, warm {fmt(row['speedup_warm'], '.1f')}x, "
              f"fpr {row['fpr']:.4f} fnr {row['fnr']:.4f}", file=sys.stderr)
    return rows


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = ("| video | frames | query | sel. | plan | decode f/s | exact f/s | cold f/s | warm f/s | cold x | warm x | "
            "cached x | warm/ceiling | fpr | fnr (pos) | peak MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        where = r["query"].split(" WHERE ", 1)[1].split(" WITH ")[0]
        exact = f"{r['exact_fps']:.1f}" + ("*" if r["exact_extrapolated"] else "")
        cold = f"{r['cascade_cold_fps']:.1f}" + ("*" if r.get("cascade_extrapolated") else "")
        lines.append(
            f"| {r['video']} | {r['frames']} | `{where}` | {r['selectivity']:.1%} | {r['strategy']} | "
            f"{r['decode_fps']:.0f} | {exact} | {cold} | {fmt(r['cascade_warm_fps'], '.0f')} | "
            f"{r['speedup_cold']:.1f} | {fmt(r['speedup_warm'], '.1f')} | {fmt(r['speedup_cached'], '.0f')} | "
            f"{fmt(r['ceiling_fraction'], '.2f')} | {r['fpr']:.4f} | {r['fnr']:.4f} ({r['audit_positives']}) | "
            f"{r['peak_rss_mb']:.0f} |"
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
    b.axhline(rows[0]["target"], color="red", lw=0.8, ls="--", label="target")
    b.set_ylabel("rate vs reference (held out)")
    b.legend()
    b.set_xticks(x, labels, fontsize=7, rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="60", help="lengths of composed videos, comma-separated (0: none)")
    parser.add_argument("--presence", type=float, default=0.1)
    parser.add_argument("--target", type=float, default=0.01, help="fpr = fnr target of every query")
    parser.add_argument("--audit", type=int, default=2000, help="audit frames on long videos")
    parser.add_argument("--exact-sample", type=int, default=500, help="frames timing the reference on long videos")
    parser.add_argument("--exact-full", type=int, default=2000, help="videos up to this many frames run exact in full")
    parser.add_argument("--decode-procs", type=int, default=1, help="also measure decoding in N processes")
    parser.add_argument("--skip-vtest", action="store_true")
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
    if not args.skip_vtest:
        rows += bench_video("vtest", str(vtest), VTEST_QUERIES, args, model)
    for minutes in [float(m) for m in str(args.minutes).split(",") if float(m) > 0]:
        video = Path(args.workdir) / f"street_{minutes:g}min_{args.presence:g}.mp4"
        if not video.exists():
            print(f"composing {video} (not timed)", file=sys.stderr)
            compose(build_library(vtest, model), video, ComposeSpec(minutes=minutes, presence=args.presence, seed=1))
        rows += bench_video(f"composed {minutes:g} min", str(video), COMPOSED_QUERIES, args, model)
    chart(rows, out.with_suffix(".png"))
    print(f"machine: {args.machine}; device {args.device}; targets fpr = fnr = {args.target}; * extrapolated "
          f"(exact: from the reference's time on {args.exact_sample} random frames plus decoding; cold of an exact "
          f"plan: planning time plus the exact per-frame cost of the frames still unlabelled)")
    print(table(rows))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
