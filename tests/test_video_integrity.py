"""A registered video is its content: a replaced, touched, damaged or truncated file is noticed,
frames are numbered the same whether sought or decoded in order, and a file that changes
during a scan stops the scan."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import cv2
import numpy as np
import pytest

import vql
from vql.engine import video
from vql.engine.video import probe, read_frames


def vtest_frames(vtest_path, n: int, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(vtest_path))
    out = []
    while len(out) < n:
        ok, frame = cap.read()
        assert ok
        out.append(frame)
        for _ in range(step - 1):
            cap.grab()
    return out


def write_avi(path, frames, fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def person_counts(con, name: str = "cam") -> list[int]:
    return [r[0] for r in con.sql(f"SELECT object_count('person') FROM {name} ORDER BY frame").fetchall()]


@pytest.fixture(scope="module")
def clip_frames(vtest_path):
    return vtest_frames(vtest_path, 12, step=20)


def test_a_replaced_file_is_an_error_until_it_is_registered_again(tmp_path, clip_frames):
    path = tmp_path / "cam.avi"
    write_avi(path, clip_frames)
    con = vql.connect(tmp_path / "db.duckdb", progress=False)
    con.sql(f"CREATE VIDEO cam FROM '{path}'")
    before = person_counts(con)
    assert sum(before) > 0
    write_avi(path, [np.zeros_like(clip_frames[0])] * len(clip_frames))  # same length, black
    with pytest.raises(vql.VideoError, match=r"video cam changed since it was registered .*CREATE OR REPLACE VIDEO cam"):
        con.sql("SELECT count(*) FROM cam WHERE contains('person')")
    with pytest.raises(vql.VideoError, match="changed since it was registered"):
        con.sql("SELECT frame FROM cam")  # any query of the video, model tests or not
    with pytest.raises(vql.BindError, match="CREATE OR REPLACE VIDEO"):
        con.sql(f"CREATE VIDEO cam FROM '{path}'")
    con.sql(f"CREATE OR REPLACE VIDEO cam FROM '{path}'")
    assert person_counts(con) == [0] * len(clip_frames)
    # the old content's results went with its registration; its labels stay, keyed by content
    assert con.sql("SELECT count(DISTINCT video_fp) FROM vql_results WHERE video = 'cam'").fetchall() == [(1,)]
    write_avi(path, clip_frames[:5])  # shorter: the size differs
    with pytest.raises(vql.VideoError, match="its size went from"):
        con.sql("SELECT count(*) FROM cam")
    write_avi(path, clip_frames)  # the first content again: its cached labels are reused
    con.sql(f"CREATE OR REPLACE VIDEO cam FROM '{path}'")
    result = con.sql("SELECT object_count('person') FROM cam ORDER BY frame")
    assert [r[0] for r in result.fetchall()] == before
    assert result.metadata.get("frames_labelled", 0) == 0


def test_a_touched_file_with_the_same_content_is_reused_and_a_same_size_change_is_caught(tmp_path, vtest_path):
    path = tmp_path / "v.avi"
    shutil.copy(vtest_path, path)
    con = vql.connect(tmp_path / "db.duckdb", progress=False)
    con.sql(f"CREATE VIDEO cam FROM '{path}'")
    first = con.sql("SELECT object_count('person') FROM cam WHERE frame BETWEEN 0 AND 3").fetchall()
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    again = con.sql("SELECT object_count('person') FROM cam WHERE frame BETWEEN 0 AND 3")
    assert again.fetchall() == first and again.metadata.get("frames_labelled", 0) == 0
    stored = con.sql("SELECT mtime_ns FROM vql_videos").fetchall()[0][0]
    assert stored == os.stat(path).st_mtime_ns  # re-hashed once, then trusted by its new mtime
    data = bytearray(path.read_bytes())  # 200 KB of noise in the middle: same size, other content
    mid = len(data) // 2
    data[mid:mid + 200_000] = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(vql.VideoError, match="its content differs"):
        con.sql("SELECT object_count('person') FROM cam WHERE frame BETWEEN 0 AND 3")


@pytest.fixture(scope="module")
def damaged_files(vtest_path, tmp_path_factory):
    src = vtest_path.read_bytes()
    out = tmp_path_factory.mktemp("damaged")
    data = bytearray(src)
    mid = len(data) // 2
    data[mid:mid + 200_000] = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    files = {"damaged": bytes(data), "truncated": src[: len(src) // 2], "header": src[:20_000]}
    for name, content in files.items():
        (out / f"{name}.avi").write_bytes(content)
    (out / "empty.avi").write_bytes(b"")
    (out / "text.avi").write_bytes(b"not a video at all\n" * 100)
    return out


def test_damaged_and_truncated_files_are_registered_with_the_frames_they_hold(damaged_files):
    con = vql.connect(progress=False)
    for name, frames in (("damaged", 773), ("truncated", 399), ("header", 1)):
        message = con.sql(f"CREATE VIDEO {name} FROM '{damaged_files / name}.avi'").fetchall()[0][0]
        assert f"{frames} frames" in message
        assert f"warning: the container says 795 frames but the file holds {frames}" in message
        assert con.sql(f"SELECT count(*) FROM {name}").fetchall() == [(frames,)]
        assert "795" in con.sql(f"SELECT note FROM vql_videos WHERE name = '{name}'").fetchall()[0][0]
    # the last frames of the truncated file decode (none is answered from a phantom frame)
    got = con.sql("SELECT frame, object_count('person') FROM truncated WHERE frame >= 396 ORDER BY frame").fetchall()
    assert [f for f, _ in got] == [396, 397, 398]
    for name in ("empty", "text"):
        with pytest.raises(vql.VideoError, match="cannot open video|no frame could be decoded|not a video"):
            con.sql(f"CREATE VIDEO {name} FROM '{damaged_files / name}.avi'")
    assert sorted(con.store.videos()) == ["damaged", "header", "truncated"]


def test_a_damaged_file_is_numbered_by_decoding_order_never_by_seeks(damaged_files, monkeypatch):
    monkeypatch.setattr(video, "SEEK_GAP", 10)
    info = probe(damaged_files / "damaged.avi")
    assert not info.seekable and info.frames == 773
    cap = cv2.VideoCapture(info.path)
    sequential = [cap.read()[1] for _ in range(info.frames)]
    wanted = [5, 300, 500, 700, 772]
    got = [(i, f) for idx, fr in read_frames(info, wanted) for i, f in zip(idx, fr)]
    assert [i for i, _ in got] == wanted
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i}"


def write_h264(path, frames, bframes: int = 3, gop: int = 25) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"bf": str(bframes), "g": str(gop), "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(__import__("av").VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_seeks_in_h264_with_b_frames_land_on_the_requested_frames(tmp_path, vtest_path, monkeypatch, suffix):
    frames = [cv2.resize(f, (320, 240)) for f in vtest_frames(vtest_path, 200)]
    path = tmp_path / f"b.{suffix}"
    write_h264(path, frames)
    info = probe(path)
    assert info.frames == 200 and info.seekable
    monkeypatch.setattr(video, "SEEK_GAP", 10)
    cap = cv2.VideoCapture(str(path))
    sequential = [cap.read()[1] for _ in range(200)]
    wanted = [0, 3, 24, 25, 26, 51, 99, 100, 149, 177, 199]
    got = [(i, f) for idx, fr in read_frames(info, wanted, batch_size=3) for i, f in zip(idx, fr)]
    assert [i for i, _ in got] == wanted
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i} differs after a seek"


def test_an_inexact_seek_falls_back_to_decoding_in_order(tmp_path, vtest_path, monkeypatch):
    frames = vtest_frames(vtest_path, 120)
    path = tmp_path / "c.avi"
    write_avi(path, frames)
    cap = cv2.VideoCapture(str(path))
    sequential = [cap.read()[1] for _ in range(120)]
    real = cv2.VideoCapture

    class Sloppy:  # a backend whose seeks land three frames late, and says so
        def __init__(self, p):
            self.cap = real(p)

        def set(self, prop, value):
            return self.cap.set(prop, value + 3)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Sloppy)  # the module video.py imports when it opens a file
    monkeypatch.setattr(video, "SEEK_GAP", 10)
    wanted = [2, 50, 90, 119]
    got = [(i, f) for idx, fr in read_frames(probe(path), wanted) for i, f in zip(idx, fr)]
    assert [i for i, _ in got] == wanted
    for i, frame in got:
        assert np.array_equal(frame, sequential[i]), f"frame {i}"


def test_a_file_changed_during_a_scan_stops_it(tmp_path, vtest_path):
    path = tmp_path / "v.avi"
    shutil.copy(vtest_path, path)
    info = probe(path)
    reader = read_frames(info, range(0, 600), batch_size=1, queue_size=1)
    next(reader)
    with path.open("ab") as f:
        f.write(b"\0" * 1000)
    with pytest.raises(vql.VideoError, match="changed during the scan"):
        for _ in reader:
            pass
