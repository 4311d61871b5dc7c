"""End to end: exact answers against the reference run directly, the label cache, joins with
ordinary tables, recovery after an interrupted run, and decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import vql
from vql.cli import SAMPLE_VIDEO
from vql.engine import executor
from vql.engine.video import probe, read_frames
from vql.udfs.tfjs_detector import centernet

FIRST, LAST = 30, 69  # 40 frames of the packaged sample (people walking through)


@pytest.fixture(scope="module")
def direct():
    """The reference's detections on frames FIRST..LAST, computed straight through the udfs API."""
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames = []
    for i in range(LAST + 1):
        ok, frame = cap.read()
        assert ok
        if i >= FIRST:
            frames.append(frame)
    return dict(zip(range(FIRST, LAST + 1), centernet().detect(frames)))


@pytest.fixture()
def con(tmp_path):
    c = vql.connect(tmp_path / "test.duckdb", progress=False)
    c.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    yield c
    c.close()


def test_exact_answers_match_the_reference(con, direct):
    model = centernet()
    person = model.class_index("person")
    for k in (3, 4, 5):
        got = [r[0] for r in con.sql(
            f"SELECT frame FROM cam WHERE object_count('person') >= {k} AND frame BETWEEN {FIRST} AND {LAST} ORDER BY frame"
        ).fetchall()]
        want = [f for f, d in direct.items() if d.count(person, 0.5) >= k]
        assert got == want and 0 < len(want) < LAST - FIRST + 1
    region = (0.0, 0.5, 1.0, 1.0)
    got = con.sql(
        f"SELECT frame, object_count('person', region := (0, 0.5, 1, 1), min_score := 0.4) AS n "
        f"FROM cam WHERE frame BETWEEN {FIRST} AND {LAST} ORDER BY frame"
    ).fetchall()
    want = [(f, d.count(person, 0.4, region, (768, 576))) for f, d in direct.items()]
    assert got == want
    assert any(n for _, n in want) and not all(n for _, n in want)


def test_label_cache_is_reused_and_results_stored(con):
    q = f"SELECT count(*) FROM cam WHERE contains('person') AND ts BETWEEN {FIRST / 10} AND {LAST / 10}"
    first = con.sql(q)
    assert first.metadata["frames_labelled"] == LAST - FIRST + 1
    second = con.sql(q.replace("contains('person')", "object_count('car') = 0"))
    assert second.metadata.get("frames_labelled", 0) == 0 and second.metadata["frames_cached"] == LAST - FIRST + 1
    stored = con.sql("SELECT count(*), count(DISTINCT query_id) FROM vql_frame_results WHERE video = 'cam'").fetchall()
    assert stored == [(2 * (LAST - FIRST + 1), 2)]
    detections = con.sql(f"SELECT count(*) FROM vql_detections WHERE frame BETWEEN {FIRST} AND {LAST} AND class = 'person'")
    assert detections.fetchall()[0][0] > 0
    assert "dropped" in con.sql("DROP RESULTS cam").fetchall()[0][0]
    assert con.sql("SELECT count(*) FROM vql_results").fetchall() == [(0,)]


def test_join_with_an_ordinary_table(con, direct):
    con.sql("CREATE TABLE events (label VARCHAR, start_s DOUBLE, end_s DOUBLE)")
    con.sql("INSERT INTO events VALUES ('early', 3.0, 3.5), ('late', 6.0, 6.9)")
    rows = con.sql(
        "SELECT c.frame, e.label FROM cam AS c JOIN events AS e ON c.ts BETWEEN e.start_s AND e.end_s "
        f"WHERE object_count('person') >= 4 AND c.frame BETWEEN {FIRST} AND {LAST} ORDER BY c.frame"
    ).fetchall()
    person = centernet().class_index("person")
    want = [(f, "early" if f <= 35 else "late") for f, d in direct.items()
            if d.count(person, 0.5) >= 4 and (30 <= f <= 35 or 60 <= f <= 69)]
    assert rows == want


def test_parameters_are_bound_like_duckdb(con):
    rows = con.sql(f"SELECT frame FROM cam WHERE frame BETWEEN {FIRST} AND {FIRST + 3} AND frame > ? ORDER BY frame",
                   params=[FIRST + 1]).fetchall()
    assert rows == [(FIRST + 2,), (FIRST + 3,)]


def test_interrupted_run_keeps_its_labels(tmp_path, monkeypatch):
    path = tmp_path / "interrupt.duckdb"
    con = vql.connect(path, progress=False)
    con.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    real_detect = centernet().detect
    calls = {"n": 0}

    def flaky(frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_detect(frames)

    monkeypatch.setattr(executor, "LABEL_BATCH", 8)
    monkeypatch.setattr(centernet(), "detect", flaky)
    with pytest.raises(KeyboardInterrupt):
        con.sql("SELECT count(*) FROM cam WHERE contains('person') AND frame < 40")
    con.close()
    monkeypatch.setattr(centernet(), "detect", real_detect)
    reopened = vql.connect(path, progress=False)  # the file opens and is consistent
    assert reopened.sql("SELECT count(*) FROM vql_labelled_frames").fetchall() == [(16,)]
    result = reopened.sql("SELECT count(*) FROM cam WHERE contains('person') AND frame < 40")
    assert result.metadata["frames_labelled"] == 24 and result.metadata["frames_cached"] == 16
    reopened.close()


def test_describe_show_drop(con):
    assert con.sql("DESCRIBE cam").fetchall()[0][:2] == ("frame", "BIGINT")
    assert con.sql("SHOW VIDEOS").fetchall()[0][:2] == ("cam", 150)
    con.sql("DROP VIDEO cam")
    assert con.sql("SHOW VIDEOS").fetchall() == []
    with pytest.raises(vql.BindError, match="no video named 'cam'"):
        con.sql("DROP VIDEO cam")
    con.sql("DROP VIDEO IF EXISTS cam")


def test_set_min_score_changes_the_default(con, direct):
    person = centernet().class_index("person")
    con.sql("SET min_score = 0.3")
    got = con.sql(f"SELECT object_count('person') FROM cam WHERE frame = {FIRST}").fetchall()[0][0]
    assert got == direct[FIRST].count(person, 0.3)
    with pytest.raises(vql.BindError, match="min_score must be between 0.2 and 1"):
        con.sql("SET min_score = 0.1")


def test_read_frames_decodes_the_wanted_frames(tmp_path):
    info = probe(SAMPLE_VIDEO)
    assert (info.frames, info.width, info.height, info.fps) == (150, 768, 576, 10.0)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    sequential = [cap.read()[1] for _ in range(150)]
    wanted = [0, 1, 7, 100, 149]
    got = [(i, f) for idx, frames in read_frames(info, wanted, batch_size=2) for i, f in zip(idx, frames)]
    assert [i for i, _ in got] == wanted
    for i, frame in got:
        assert np.array_equal(frame, sequential[i])
    with pytest.raises(vql.VideoError, match="frames 149..160 asked, the video has 150 frames"):
        list(read_frames(info, [149, 160]))
    with pytest.raises(vql.VideoError, match="frame 150 could not be decoded"):  # a bare path: no known end
        list(read_frames(SAMPLE_VIDEO, [149, 160]))


def test_several_readers_decode_every_wanted_frame_once(monkeypatch):
    import threading

    from vql.engine import video

    monkeypatch.setattr(video, "MIN_PIECE", 4)
    real = video.decode_batches
    names = []

    def spy(*args, **kwargs):  # which thread decodes each piece
        names.append(threading.current_thread().name)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(video, "decode_batches", spy)
    info = probe(SAMPLE_VIDEO)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    sequential = [cap.read()[1] for _ in range(150)]
    wanted = [0, 1, 2, 3, 5, 8, 13, 21, 34, 40, 41, 42, 60, 61, 90, 100, 120, 121, 140, 149]  # seeks over gaps of 12+
    got = [(int(i), f) for idx, frames in read_frames(info, wanted, batch_size=2, seek_gap=12, readers=2)
           for i, f in zip(idx, frames)]
    assert len(names) == 5 and len(set(names)) == 2  # five pieces, two threads
    assert sorted(i for i, _ in got) == wanted and len(got) == len(wanted)
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i} differs"
    reader = read_frames(info, range(150), batch_size=1, queue_size=1, readers=2)
    next(reader)
    reader.close()  # the consumer stops early: every decoding thread ends
    assert not [t for t in threading.enumerate() if t.name.startswith("vql-decode")]
    with pytest.raises(vql.VideoError, match="frame 150 could not be decoded"):  # one reader fails, the other waits
        list(read_frames(SAMPLE_VIDEO, list(range(100, 161)), batch_size=1, queue_size=1, readers=2))
    assert not [t for t in threading.enumerate() if t.name.startswith("vql-decode")]


def test_several_readers_after_seeks_that_miss(monkeypatch):
    """Pieces whose seek lands elsewhere decode from the start: still the right frames."""
    from vql.engine import video

    monkeypatch.setattr(video, "MIN_PIECE", 4)
    seeks = _counting_seeks(monkeypatch, video, lands=lambda target: target + 3)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    sequential = [cap.read()[1] for _ in range(150)]
    wanted = list(range(0, 150, 7))
    got = [(int(i), f) for idx, frames in read_frames(SAMPLE_VIDEO, wanted, seek_gap=5, readers=2)
           for i, f in zip(idx, frames)]
    assert seeks and sorted(i for i, _ in got) == wanted
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i} differs after a missed seek"


def test_seeking_lands_on_the_right_frame(monkeypatch):
    from vql.engine import video

    monkeypatch.setattr(video, "SEEK_GAP", 10)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    sequential = [cap.read()[1] for _ in range(150)]
    got = [(i, f) for idx, frames in read_frames(SAMPLE_VIDEO, [3, 90, 140]) for i, f in zip(idx, frames)]
    assert [i for i, _ in got] == [3, 90, 140]
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i} differs after a seek"


def _counting_seeks(monkeypatch, video, lands=lambda target: target):
    """Make the reader's captures record each seek's target (and land where ``lands`` says)."""
    seeks = []
    real_open = video._open

    class Counting:
        def __init__(self, path, threads=None):
            self.cap = real_open(path, threads)

        def set(self, prop, value):
            seeks.append(int(value))
            return self.cap.set(prop, lands(int(value)))

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(video, "_open", Counting)
    return seeks


def test_the_seek_gap_is_measured_on_the_video(monkeypatch):
    """engine/video.py: seek_gap measures (a seek and read − a read) / a grab; a video too short
    to measure, or whose seeks land elsewhere, gets the default."""
    from vql.engine import video

    info = probe(SAMPLE_VIDEO)
    gap = video.seek_gap(SAMPLE_VIDEO, info.frames)
    assert isinstance(gap, int) and 1 <= gap
    assert video.seek_gap(SAMPLE_VIDEO, info.frames, (0.0, 1.0)) == 1  # grabs dear, reads free: seek whenever it pays
    assert video.seek_gap(SAMPLE_VIDEO, 20) == video.SEEK_GAP  # too short to measure
    seeks = _counting_seeks(monkeypatch, video, lands=lambda target: target + 3)
    assert video.seek_gap(SAMPLE_VIDEO, info.frames) == video.SEEK_GAP and seeks


def test_sparse_reads_seek_past_the_gap_measured_on_the_video(monkeypatch):
    """A sample's frames are read seeking over the gaps longer than the video's measured
    break-even, measured once per video and machine and kept in the store's calibration; frames
    closer than 2 apart on average, or a video not seekable, keep the default."""
    from dataclasses import replace

    from vql.engine import video

    info = probe(SAMPLE_VIDEO)
    measured = []
    monkeypatch.setattr(video, "seek_gap", lambda path, frames, costs=None: measured.append(path) or 40)
    store = executor.Store(None)
    ctx = executor.Context(store, lambda name: None, False, calibration=executor.Calibration(store, "box"))
    assert executor.sparse_seek_gap(ctx, info, np.arange(10, 150, 3)) == 40
    assert executor.sparse_seek_gap(ctx, info, np.arange(0, 150, 9)) == 40 and measured == [info.path]  # measured once
    assert executor.Calibration(store, "box")[f"seek_gap:{info.fingerprint}"] == 40  # kept for later sessions
    assert executor.sparse_seek_gap(ctx, info, np.arange(100, 150)) is None
    assert executor.sparse_seek_gap(ctx, replace(info, seekable=False), np.arange(10, 150, 3)) is None

    seeks = _counting_seeks(monkeypatch, video)
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    sequential = [cap.read()[1] for _ in range(150)]
    wanted = [5, 30, 80, 90, 140, 145]
    got = [(i, f) for idx, frames in read_frames(info, wanted, seek_gap=40) for i, f in zip(idx, frames)]
    assert seeks == [80, 140] and [i for i, _ in got] == wanted  # gaps over 40 frames sought, the others grabbed
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i} differs after a seek"

    class Model:  # labelling reads its frames with the measured gap
        version, classes = "v", ("person",)

        def detect(self, batch):
            return [None] * len(batch)

    seeks.clear()
    store.save_labels = lambda *args: None
    executor.label_with(ctx, info, [Model()], np.array(wanted))
    assert seeks == [80, 140]


def test_limit_bounds_the_scan(con, direct):
    person = centernet().class_index("person")
    # a count in the SELECT list makes the plan exact: then LIMIT bounds the scan
    result = con.sql(f"SELECT frame, object_count('person') AS n FROM cam WHERE object_count('person') >= 3 "
                     f"AND frame >= {FIRST} ORDER BY frame LIMIT 3")
    want = [f for f, d in direct.items() if d.count(person, 0.5) >= 3][:3]
    assert [r[0] for r in result.fetchall()] == want
    assert result.metadata["frames_scanned"] == 64 and result.metadata["frames_labelled"] == 64
    again = con.sql(f"SELECT frame, object_count('person') AS n FROM cam WHERE object_count('person') >= 9 "
                    f"AND frame >= {FIRST} ORDER BY frame LIMIT 3")
    scanned = again.metadata["frames_scanned"]  # nothing matches: the whole rest is scanned in growing chunks
    assert scanned == 150 - FIRST and again.metadata["frames_cached"] + again.metadata["frames_labelled"] == scanned
    plan = con.sql("EXPLAIN SELECT frame, object_count('car') FROM cam WHERE contains('person') LIMIT 5").fetchall()
    assert any("scan bounded by LIMIT" in r[0] for r in plan)
    cascade = con.sql("EXPLAIN SELECT frame FROM cam WHERE contains('person') LIMIT 5").fetchall()
    assert not any("scan bounded by LIMIT" in r[0] for r in cascade)
    unbounded = con.sql("EXPLAIN SELECT count(*) FROM cam WHERE contains('person') LIMIT 5").fetchall()
    assert not any("scan bounded by LIMIT" in r[0] for r in unbounded)


def test_predicates_in_select_group_by_and_having(con, direct):
    person = centernet().class_index("person")
    rows = con.sql(
        f"SELECT object_count('person') AS n, count(frames) AS frames FROM cam WHERE frame BETWEEN {FIRST} AND {LAST} "
        "GROUP BY object_count('person') HAVING count(*) >= 2 AND object_count('person') > 0 ORDER BY n"
    ).fetchall()
    counts = {}
    for d in direct.values():
        counts[d.count(person, 0.5)] = counts.get(d.count(person, 0.5), 0) + 1
    assert rows == sorted((n, c) for n, c in counts.items() if c >= 2 and n > 0)
