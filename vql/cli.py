"""The ``vql`` command line: run statements, scripts, an interactive shell, or the demo.

    vql [DB_FILE] [-c "SQL; SQL"] [-f script.vql] [--format table|csv|json|markdown]
    vql demo
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from vql import __version__
from vql.errors import VqlError, internal_error
from vql.formatting import FORMATS, render

SAMPLE_VIDEO = Path(str(resources.files("vql") / "data" / "sample.avi"))

DEMO_QUERIES = (
    ("How many persons does the reference see?",
     "SELECT count(*) AS frames, round(avg(object_count('person')), 2) AS mean_persons, "
     "max(object_count('person')) AS max_persons FROM sample"),
    ("When are there at least six persons?",
     "SELECT frame, ts, object_count('person') AS persons FROM sample "
     "WHERE object_count('person') >= 6 ORDER BY frame LIMIT 8"),
    ("Someone in the lower half of the picture, per 5-second window",
     "SELECT floor(ts / 5) * 5 AS from_s, count(*) AS frames, "
     "CAST(sum(CASE WHEN contains('person', region := (0, 0.5, 1, 1)) THEN 1 ELSE 0 END) AS INTEGER) AS with_someone_low "
     "FROM sample GROUP BY 1 ORDER BY 1"),
)


def demo(args: argparse.Namespace) -> int:
    """Register the packaged sample clip in a transient database and run a few queries."""
    import vql
    from vql.sqlgen import literal

    con = vql.connect(None, device=args.device)
    video = Path(args.video) if args.video else SAMPLE_VIDEO
    print(f"-- a transient database; the sample is 15 s of OpenCV's vtest.avi ({video.name})")
    statement = f"CREATE VIDEO sample FROM {literal(str(video))}"
    print(f"vql> {statement};")
    print(render(con.sql(statement).arrow(), "table"))
    for title, query in DEMO_QUERIES:
        print(f"\n-- {title}\nvql> {query};")
        start = time.perf_counter()
        result = con.sql(query)
        elapsed = time.perf_counter() - start
        print(render(result.arrow(), "table"))
        labelled = int(result.metadata.get("frames_labelled", 0))
        cached = int(result.metadata.get("frames_cached", 0))
        print(f"-- {elapsed:.2f} s: CenterNet ran on {labelled} frames, {cached} came from the label cache")
    return 0


def _print_result(result, fmt: str, timer: bool = False, seconds: float = 0.0) -> None:
    print(render(result.arrow(), fmt))
    if timer:
        print(f"Run Time: {seconds:.3f} s")


def run_text(con, text: str, fmt: str) -> None:
    """Run statements, printing each result as it finishes (as duckdb does for -c and scripts)."""
    from vql.scripts import split_statements

    for statement in split_statements(text):
        _print_result(con.sql(statement), fmt)
        sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vql",
        description="vql: a declarative query engine for video. Without -c or -f, an interactive shell.",
        epilog="Subcommands: 'vql demo' (queries on the packaged sample clip), 'vql compose' (long videos "
               "composed from real footage), 'vql check-composed' (compare one with the reference), "
               "'vql show|timeline|clip DB SQL --out FILE' (see a query's matches).",
    )
    parser.add_argument("db", nargs="?", metavar="DB_FILE", help="DuckDB database file (default: a transient one)")
    parser.add_argument("-c", dest="command", metavar="SQL", help="run these statements, printing each result")
    parser.add_argument("-f", dest="file", metavar="FILE", help="run a script, printing each result")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--device", default="cpu", help="where reference models run: cpu, cuda or auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--readonly", action="store_true",
                        help="open DB_FILE read-only: cached labels, plans and results are read; nothing is written")
    parser.add_argument("--ray", metavar="ADDRESS", help="run labelling and cascades as Ray tasks: 'local' (a Ray on "
                        "this machine), 'auto' (this machine's cluster) or a Ray address; pip install 'vql[ray]'")
    parser.add_argument("--version", action="version", version=f"vql {__version__}")
    return parser


def build_demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vql demo", description="Queries on the packaged sample clip (15 s of vtest.avi).")
    parser.add_argument("--video", help="another video file instead of the packaged sample")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    return parser


def build_compose_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vql compose",
        description="Compose a long fixed-camera video from a real clip: its empty plate, with cut-outs of the "
                    "persons the reference finds walking through it at a chosen presence rate.",
    )
    parser.add_argument("source", help="source clip (e.g. ../shared/data/vtest.avi)")
    parser.add_argument("out", help="output video (.mp4, .mkv, .avi or .mov); OUT.placements.csv is written beside it")
    parser.add_argument("--minutes", type=float, required=True, help="length of the composed video")
    parser.add_argument("--presence", type=float, default=0.1, help="share of frames with someone in view (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same video (default 0)")
    parser.add_argument("--codec", choices=("mpeg4", "h264"), default="mpeg4", help="MPEG-4 part 2 or H.264 (default mpeg4)")
    parser.add_argument("--group-rate", type=float, default=0.15, help="share of appearances that are groups of 2-4")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise, grey levels (default 2)")
    parser.add_argument("--drift", type=float, default=0.06, help="lighting drift, relative amplitude (default 0.06)")
    parser.add_argument("--check", type=int, default=0, metavar="N", help="then check N sampled frames with the reference")
    parser.add_argument("--device", default="cpu", help="where the reference runs: cpu, cuda or auto")
    return parser


def compose_command(args: argparse.Namespace) -> int:
    import json

    from vql.engine.compose import ComposeSpec, build_library, check_composed, check_output, compose
    from vql.udfs.registry import default_model

    spec = ComposeSpec(args.minutes, args.presence, args.seed, args.group_rate, args.noise, args.drift, codec=args.codec)
    check_output(args.out)
    model = default_model(args.device)
    start = time.perf_counter()
    library = build_library(args.source, model)
    if library.plate_objects:
        print(f"warning: the reference finds {library.plate_objects} object(s) on the empty plate", file=sys.stderr)
    built = time.perf_counter()
    report = compose(library, args.out, spec)
    done = time.perf_counter()
    summary = {
        "video": str(report.path), "placements": str(report.placements), "frames": report.frames,
        "seconds_of_video": report.seconds, "appearances": report.tracks,
        "requested_presence": spec.presence, "placed_presence": round(report.placed_presence, 4),
        "cutouts": len(library.cutouts), "plate_objects": library.plate_objects,
        "library_s": round(built - start, 2), "compose_s": round(done - built, 2),
        "speed_vs_real_time": round(report.seconds / (done - built), 1),
    }
    if args.check:
        summary["check"] = check_composed(report.path, model, sample=args.check, seed=args.seed)
    print(json.dumps(summary, indent=2, default=float))
    return 0


def build_check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vql check-composed",
                                     description="Compare the reference's labels on sampled frames of a composed video with its placements file.")
    parser.add_argument("video")
    parser.add_argument("--sample", type=int, default=500, help="frames to check (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    return parser


def check_command(args: argparse.Namespace) -> int:
    import json

    from vql.engine.compose import check_composed
    from vql.udfs.registry import default_model

    print(json.dumps(check_composed(args.video, default_model(args.device), args.sample, args.seed), indent=2, default=float))
    return 0


def build_picture_parser(name: str) -> argparse.ArgumentParser:
    what = {"show": "Draw a contact sheet of the frames a query matches (its frame column), with the reference's "
                    "boxes for the classes it tests (--timeline: a timeline instead).",
            "timeline": "Plot where in the video each model test of a query held, and where its rows are.",
            "clip": "Write the segments of video where a query matches as one video, and print them."}[name]
    parser = argparse.ArgumentParser(prog=f"vql {name}", description=what)
    parser.add_argument("db", metavar="DB_FILE", help="the vql database holding the video")
    parser.add_argument("query", metavar="SQL", help="a SELECT over one video, with a frame column")
    default = "matches.mp4" if name == "clip" else "timeline.png" if name == "timeline" else "matches.png"
    parser.add_argument("--out", default=default, help=f"output file (default: {default})")
    parser.add_argument("--video", help="which video to draw when the query joins several")
    if name == "show":
        parser.add_argument("-n", type=int, default=12, help="frames to draw, evenly spread over the matches (default 12)")
        parser.add_argument("--timeline", action="store_true", help="draw the timeline instead")
    if name == "clip":
        parser.add_argument("--gap", type=float, default=2.0,
                            help="merge runs of matches closer than this many seconds (default 2)")
        parser.add_argument("--margin", type=float, default=1.0, help="seconds kept before and after each segment (default 1)")
        parser.add_argument("--format", choices=FORMATS, default="table", help="how to print the segments")
    parser.add_argument("--device", default="cpu", help="where reference models run: cpu, cuda or auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--readonly", action="store_true", help="open DB_FILE read-only")
    return parser


def picture_command(name: str, args: argparse.Namespace) -> int:
    """Run the query, then draw (show, timeline) or cut (clip) its matches."""
    import pyarrow as pa

    import vql
    from vql.scripts import split_statements

    if len(split_statements(args.query)) != 1:
        raise VqlError(f"vql {name} takes one SELECT")
    if name == "clip":  # checked before the query runs
        from vql.clips import segments
        from vql.engine.compose import check_output

        check_output(args.out)
        segments([], 1.0, 1, args.gap, args.margin)
    else:
        from vql.pictures import check_picture_path

        check_picture_path(args.out)
    with vql.connect(args.db, device=args.device, progress=False if args.no_progress else None,
                     read_only=args.readonly) as con:
        result = con.sql(args.query)
        if name == "clip":
            from vql.clips import segments, write_clip
            from vql.pictures import matched_frames, source_of

            source = source_of(result, args.video)
            parts = segments(matched_frames(result, source), source.info.fps, source.info.frames, args.gap, args.margin)
            out = write_clip(source.info, parts, args.out, progress=False if args.no_progress else None)
            rows = [dict(segment=i, **s.row(source.info.fps)) for i, s in enumerate(parts, 1)]
            print(render(pa.Table.from_pylist(rows), args.format))
            print(f"wrote {out}: {len(parts)} segment(s), {sum(r['frames'] for r in rows)} frames")
        elif name == "timeline" or args.timeline:
            result.timeline(args.out, video=args.video)
            print(f"wrote {args.out}")
        else:
            result.show(args.out, n=args.n, video=args.video)
            print(f"wrote {args.out}")
    return 0


SUBCOMMANDS = {
    "demo": (build_demo_parser, demo),
    "compose": (build_compose_parser, compose_command),
    "check-composed": (build_check_parser, check_command),
    **{name: (lambda name=name: build_picture_parser(name), lambda args, name=name: picture_command(name, args))
       for name in ("show", "timeline", "clip")},
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            build, run_sub = SUBCOMMANDS[argv[0]]
            return run_sub(build().parse_args(argv[1:]))
        args = build_parser().parse_args(argv)
        import vql

        con = vql.connect(args.db, device=args.device, progress=False if args.no_progress else None,
                          read_only=args.readonly, ray=args.ray)
        if args.command is not None:
            run_text(con, args.command, args.format)
        elif args.file is not None:
            try:
                text = Path(args.file).read_text(encoding="utf-8")
            except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
                raise VqlError(f"cannot read {args.file!r}: {getattr(e, 'strerror', None) or e}") from e
            run_text(con, text, args.format)
        elif sys.stdin.isatty():
            from vql.repl import repl

            return repl(con, args)
        else:
            run_text(con, sys.stdin.read(), args.format)
        return 0
    except VqlError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in vql: one line, no traceback
        print(internal_error(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
