"""Seeing a query's answers: contact sheets of matched frames, timelines, HTML tables.

A :class:`vql.Result` of a SELECT over a video knows where its rows come from: the scanned
videos and the model tests of the query (:class:`Source`, in ``metadata["sources"]``). From it:

- :func:`contact_sheet`: up to N matched frames (the result's ``frame`` column, evenly spread
  over the matches), each with the reference's boxes for the classes the query's tests name
  (read from the label cache, ``min_score`` as in the test) and ``frame N · ts S`` under it;
- :func:`timeline`: per model test, where in the video it held (its frame-level values stored
  in ``vql_results`` under the result's ``query_id``), and where the result's rows are;
- :func:`html_table`: the first rows as an escaped HTML table (``Result._repr_html_``).

Drawing needs matplotlib (``pip install 'vql[pictures]'``); figures are made without pyplot
(no window, no global state) and returned, saved when ``out`` is given.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vql.engine.video import VideoInfo
from vql.errors import VqlError

HTML_ROWS = 50
THUMB_WIDTH = 320  # pixels of a contact sheet cell, before the figure's dpi
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".pdf")


class PictureError(VqlError):
    """A result that cannot be drawn (no frame column, another video, nothing matched...)."""


@dataclass(frozen=True, slots=True)
class ModelTest:
    """One model test of a query, as drawn: its text and what it looks for."""

    text: str  # as stored in vql_results.predicate
    class_name: str
    min_score: float
    region: tuple[float, float, float, float] | None
    model_version: str
    boolean: bool  # contains(...) or a comparison; else a count


@dataclass(frozen=True, slots=True)
class Source:
    """A video a result's rows come from: the scan and the query's model tests on it."""

    video: str
    alias: str
    info: VideoInfo
    first: int
    last: int
    tests: tuple[ModelTest, ...]


def sources(plan, model) -> tuple[Source, ...]:
    """The sources of a bound SELECT (``vql.plan.SqlQuery``); ``model(name)`` gives a model."""
    out = []
    for node in plan.inputs:
        tests = [ModelTest(a.text, a.predicate.class_name, a.predicate.min_score, a.predicate.region,
                      model(a.predicate.model).version, True) for a in node.atoms]
        for p in node.predicates:
            version = next(lf.model_version for lf in node.labels if lf.model == p.model)
            tests.append(ModelTest(p.text, p.class_name, p.min_score, p.region, version, p.function == "contains"))
        scan = node.scan
        out.append(Source(scan.video, scan.alias, scan.info, scan.first, scan.last, tuple(tests)))
    return tuple(out)


def source_of(result, video: str | None = None) -> Source:
    """The source a result's frames come from: its only video, or the one named ``video``."""
    found = result.metadata.get("sources") or ()
    if not found:
        raise PictureError("the result comes from no video (only a SELECT over a video can be drawn)")
    if video is None:
        if len({s.video.lower() for s in found}) > 1:
            raise PictureError("the result comes from several videos (" + ", ".join(s.video for s in found)
                               + "); say which one to draw")
        return found[0]
    for s in found:
        if video.lower() in (s.video.lower(), s.alias.lower()):
            return s
    raise PictureError(f"the result does not come from video {video!r}; it comes from "
                       + ", ".join(s.video for s in found))


def matched_frames(result, source: Source) -> np.ndarray:
    """The distinct frames of the result's ``frame`` (or ``frames``) column, sorted."""
    names = {c.lower(): c for c in result.table.column_names}
    column = names.get("frame") or names.get("frames")
    if column is None:
        raise PictureError(f"the result has no frame column (columns: {', '.join(result.table.column_names) or 'none'}); "
                           "select frame to draw the matches")
    values = [v for v in result.table.column(column).to_pylist() if v is not None]
    try:
        frames = np.unique(np.asarray(values, dtype=np.int64))
    except (TypeError, ValueError, OverflowError) as e:
        raise PictureError(f"the result's {column} column does not hold frame numbers") from e
    outside = frames[(frames < 0) | (frames >= source.info.frames)]
    if len(outside):
        raise PictureError(f"frame {int(outside[0])} is not a frame of video {source.video} "
                           f"({source.info.frames} frames)")
    return frames


def spread(frames: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``frames``, evenly spread over them (first and last included).

    >>> spread(np.arange(100), 4).tolist()
    [0, 33, 66, 99]
    >>> spread(np.array([5, 7]), 12).tolist()
    [5, 7]
    """
    if n < 1:
        raise PictureError(f"the number of frames to draw must be at least 1, got {n}")
    if len(frames) <= n:
        return np.asarray(frames)
    return np.asarray(frames)[np.unique(np.round(np.linspace(0, len(frames) - 1, n)).astype(int))]


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PictureError("drawing needs matplotlib: pip install 'vql[pictures]'") from e
    return Figure(figsize=(width, height), dpi=100)


def check_picture_path(out: str | Path) -> Path:
    """``out`` if a picture can be written there (a known suffix, an existing folder)."""
    out = Path(out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise PictureError(f"a picture is written as {', '.join(IMAGE_SUFFIXES)}; got {out.name!r}")
    if not out.parent.is_dir():
        raise PictureError(f"output folder does not exist: {out.parent}")
    return out


def _save(fig, out: str | Path | None) -> None:
    if out is None:
        return
    out = check_picture_path(out)
    try:
        fig.savefig(out, dpi=100)
    except (OSError, ValueError) as e:
        raise PictureError(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from e


def _title(result) -> str:
    text = " ".join(str(result.metadata.get("text", "")).split())
    return textwrap.shorten(text, 150, placeholder=" …") if text else ""


def boxes(con, source: Source, frames: Sequence[int]) -> tuple[dict[int, list[tuple]], set[int]]:
    """The reference's boxes on these frames that the source's tests count (their class, score
    at least their ``min_score``, centre inside their region), from the label cache:
    ({frame: [(class, score, x1, y1, x2, y2)]}, frames that were labelled at all)."""
    frames = [int(f) for f in frames]
    found: dict[int, list[tuple]] = {}
    labelled: set[int] = set()
    if not frames or not source.tests:
        return found, labelled
    w, h = float(source.info.width), float(source.info.height)
    for t in source.tests:
        rows = con.execute(
            "SELECT frame, class, score, x1, y1, x2, y2 FROM vql_labels WHERE video_fp = ? AND model_version = ? "
            "AND class = ? AND score >= ? AND list_contains(?, frame) ORDER BY frame, score DESC",
            [source.info.fingerprint, t.model_version, t.class_name, t.min_score, frames],
        ).fetchall()
        for frame, *rest in rows:
            box = tuple(rest)
            if t.region is not None:
                cx, cy = (box[2] + box[4]) / 2 / w, (box[3] + box[5]) / 2 / h
                if not (t.region[0] <= cx <= t.region[2] and t.region[1] <= cy <= t.region[3]):
                    continue
            if box not in found.setdefault(int(frame), []):
                found[int(frame)].append(box)
        labelled.update(int(r[0]) for r in con.execute(
            "SELECT frame FROM vql_labelled_frames WHERE video_fp = ? AND model_version = ? AND list_contains(?, frame)",
            [source.info.fingerprint, t.model_version, frames]).fetchall())
    return found, labelled


def contact_sheet(con, result, out: str | Path | None = None, n: int = 12, video: str | None = None,
                  columns: int = 4):
    """A figure of up to ``n`` matched frames with the reference's boxes; saved to ``out`` if given."""
    import cv2

    from vql.engine.video import read_frames, verify

    source = source_of(result, video)
    frames = matched_frames(result, source)
    if not len(frames):
        raise PictureError("no frame matched: nothing to draw")
    picks = spread(frames, n)
    info = verify(source.video, source.info)  # the file must still hold what the result was computed on
    found, labelled = boxes(con, source, picks)
    images = {}
    scale = THUMB_WIDTH / info.width
    size = (THUMB_WIDTH, max(1, round(info.height * scale)))
    for indices, batch in read_frames(info, picks):
        for i, image in zip(indices, batch):
            images[int(i)] = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    rows = math.ceil(len(picks) / max(1, columns))
    cols = math.ceil(len(picks) / rows)  # 6 frames: 2 rows of 3, not 4 and 2
    cell_w, cell_h = size[0] / 100, size[1] / 100
    fig = _figure(cols * cell_w + 0.2, rows * (cell_h + 0.3) + 0.75)
    classes = sorted({t.class_name for t in source.tests})
    color = {c: COLORS[i % len(COLORS)] for i, c in enumerate(classes)}
    for k, frame in enumerate(picks):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[int(frame)])
        ax.set_xticks([])
        ax.set_yticks([])
        for name, score, x1, y1, x2, y2 in found.get(int(frame), []):
            ax.add_patch(_rectangle((x1 * scale, y1 * scale, x2 * scale, y2 * scale), color[name]))
        for t in source.tests:
            if t.region is not None:
                x0, y0, x1, y1 = t.region
                ax.add_patch(_rectangle((x0 * size[0], y0 * size[1], x1 * size[0], y1 * size[1]), "white", "--"))
        caption = f"frame {int(frame)} · ts {frame / info.fps:.1f} s"
        if source.tests and int(frame) not in labelled:
            caption += " (no labels)"
        ax.set_xlabel(caption, fontsize=8, labelpad=2)
    head = f"{len(picks)} of {len(frames)} matching frames of {source.video}"
    if classes:
        head += " · boxes: " + ", ".join(f"{c} ({_scores(source, c)})" for c in classes)
    fig.suptitle(head + ("\n" + _title(result) if _title(result) else ""), fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.04, top=1 - 0.7 / fig.get_figheight(), wspace=0.03, hspace=0.25)
    _save(fig, out)
    return fig


def _scores(source: Source, name: str) -> str:
    scores = sorted({t.min_score for t in source.tests if t.class_name == name})
    return "score ≥ " + " / ".join(f"{s:g}" for s in scores)


def _rectangle(box, color, style="-"):
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.2, linestyle=style)


def stored_values(con, result, source: Source) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model test: (frames, values) the query stored in ``vql_results`` for this video."""
    query_id = result.metadata.get("query_id")
    if query_id is None or not result.metadata.get("results_stored"):
        return {}  # read-only: nothing stored (and query ids count within the session)
    out = {}
    for t in source.tests:
        data = con.execute("SELECT frame, value FROM vql_results WHERE query_id = ? AND video = ? AND predicate = ? "
                           "AND video_fp = ? ORDER BY frame",
                           [int(query_id), source.video, t.text, source.info.fingerprint]).fetchnumpy()
        if len(data["frame"]):
            out[t.text] = (data["frame"].astype(np.int64), data["value"].astype(float))
    return out


def runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive frames, as (first, last).

    >>> runs(np.array([1, 2, 3, 7, 9, 10]))
    [(1, 3), (7, 7), (9, 10)]
    """
    frames = np.asarray(frames, np.int64)
    if not len(frames):
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(frames) - 1]])
    return [(int(frames[s]), int(frames[e])) for s, e in zip(starts, ends)]


def timeline(con, result, out: str | Path | None = None, video: str | None = None):
    """A figure with one row per model test of the query (where it held, or its counts) and
    one for the result's rows, over the scanned seconds; saved to ``out`` if given."""
    source = source_of(result, video)
    frames = matched_frames(result, source)
    fps = source.info.fps
    values = stored_values(con, result, source)
    lanes = [(t, values[t.text]) for t in source.tests if t.text in values]
    fig = _figure(10, 0.55 + 0.75 * (len(lanes) + 1) + 0.45)
    axes = fig.subplots(len(lanes) + 1, 1, sharex=True, squeeze=False)[:, 0]
    lo, hi = source.first / fps, (source.last + 1) / fps
    for ax, (t, (f, v)) in zip(axes, lanes):
        evaluated = runs(f)
        ax.broken_barh([(a / fps, (b - a + 1) / fps) for a, b in evaluated], (0, 1), color="#e8e8e8")
        if t.boolean:
            ax.broken_barh([(a / fps, (b - a + 1) / fps) for a, b in runs(f[v > 0])], (0, 1), color=COLORS[2])
            ax.set_ylim(0, 1)
            ax.set_yticks([])
        else:
            ax.fill_between(np.append(f, f[-1] + 1) / fps, np.append(v, v[-1]), step="post", color=COLORS[2], alpha=0.7)
            ax.set_ylim(0, max(1.0, float(v.max())) * 1.1)
            ax.tick_params(axis="y", labelsize=7)
        held = int((v > 0).sum()) if t.boolean else None
        note = f"{held} of {len(f)} frames" if t.boolean else f"max {int(v.max())}"
        ax.set_title(f"{textwrap.shorten(t.text, 90, placeholder=' …')}  —  {note}", fontsize=8, loc="left", pad=2)
    ax = axes[-1]
    ax.broken_barh([(a / fps, (b - a + 1) / fps) for a, b in runs(frames)], (0, 1), color=COLORS[0])
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_title(f"result: {len(frames)} frames" + ("" if lanes or not source.tests else
                 " (the query's frame-level values are not stored: a read-only database)"), fontsize=8, loc="left", pad=2)
    ax.set_xlim(lo, hi)
    ax.set_xlabel(f"seconds of {source.video}", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(_title(result) or f"matches in {source.video}", fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.98, bottom=0.45 / fig.get_figheight(),
                        top=1 - 0.55 / fig.get_figheight(), hspace=0.45 / 0.75 * 1.6)
    _save(fig, out)
    return fig


def html_table(table, max_rows: int = HTML_ROWS) -> str:
    """The first ``max_rows`` rows of an Arrow table as an HTML table, every cell escaped.

    >>> import pyarrow as pa
    >>> print(html_table(pa.table({"a<b": [1, None], "s": ["<i>", "x"]})))
    <table class="vql-result"><thead><tr><th>a&lt;b</th><th>s</th></tr></thead><tbody><tr><td>1</td><td>&lt;i&gt;</td></tr><tr><td>NULL</td><td>x</td></tr></tbody></table><p>2 rows × 2 columns</p>
    """
    from vql.formatting import _cell

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.column_names)
    shown = table.slice(0, max_rows)
    columns = [shown.column(i).to_pylist() for i in range(shown.num_columns)]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in zip(*columns))
    more = f", first {max_rows} shown" if table.num_rows > max_rows else ""
    return (f'<table class="vql-result"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f"<p>{table.num_rows} rows × {table.num_columns} columns{more}</p>")
