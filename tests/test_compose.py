"""The composer: the plate check, determinism, codecs, bad arguments, and agreement between the
placements record and the reference on composed frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vql.cli import main
from vql.engine.compose import ComposeError, ComposeSpec, check_composed, compose, read_placements
from vql.udfs.tfjs_detector import centernet


@pytest.fixture(scope="module")
def library(compose_library):
    return compose_library


def decoded(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_plate_is_empty_for_the_reference(library):
    assert library.plate.shape == (576, 768, 3)
    assert library.plate_objects == 0
    assert len(library.cutouts) >= 10
    assert library.depth[1] > 0  # people lower in the picture are nearer, so taller
    for cut in library.cutouts[:5]:
        assert cut.alpha.shape == cut.image.shape[:2] and 0.2 <= cut.alpha.mean() <= 0.9


def test_same_seed_same_video(library, tmp_path):
    spec = ComposeSpec(minutes=0.25, presence=0.5, seed=3)
    a = compose(library, tmp_path / "a.mp4", spec, progress=False)
    b = compose(library, tmp_path / "b.mp4", spec, progress=False)
    c = compose(library, tmp_path / "c.mp4", ComposeSpec(minutes=0.25, presence=0.5, seed=4), progress=False)
    assert a.frames == 150 and a.tracks >= 1
    assert a.placements.read_text() == b.placements.read_text() != c.placements.read_text()
    fa, fb = decoded(a.path), decoded(b.path)
    assert len(fa) == 150 and all(np.array_equal(x, y) for x, y in zip(fa, fb))


def test_h264_output(library, tmp_path):
    report = compose(library, tmp_path / "h.mkv", ComposeSpec(minutes=0.1, presence=0.3, seed=1, codec="h264"), progress=False)
    frames = decoded(report.path)
    assert len(frames) == report.frames == 60 and frames[0].shape == (576, 768, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"minutes": 0, "presence": 0.1}, "--minutes must be a positive number"),
        ({"minutes": 1, "presence": 1.0}, "--presence must be between 0 and 1"),
        ({"minutes": 1, "presence": 0.1, "codec": "vp9"}, "--codec must be one of mpeg4, h264"),
        ({"minutes": 1, "presence": 0.1, "drift": 1.5}, "--drift in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ComposeError, match=message):
        ComposeSpec(**kwargs)


def test_bad_output_and_source(library, tmp_path, capsys, vtest_path):
    with pytest.raises(ComposeError, match="output must be a .mp4"):
        compose(library, tmp_path / "x.gif", ComposeSpec(minutes=0.1, presence=0.1))
    with pytest.raises(ComposeError, match="output folder does not exist"):
        compose(library, tmp_path / "no" / "x.mp4", ComposeSpec(minutes=0.1, presence=0.1))
    assert main(["compose", str(tmp_path / "none.avi"), str(tmp_path / "o.mp4"), "--minutes", "1"]) == 1
    assert "video file not found" in capsys.readouterr().err
    assert main(["compose", str(vtest_path), str(tmp_path / "o.txt"), "--minutes", "1"]) == 1
    assert "output must be" in capsys.readouterr().err


def test_reference_agrees_with_the_placements(library, tmp_path):
    report = compose(library, tmp_path / "check.mp4", ComposeSpec(minutes=0.5, presence=0.4, seed=7), progress=False)
    record = read_placements(report.placements)
    assert record and all(cls == "person" for objs in record.values() for cls, _, _ in objs)
    result = check_composed(report.path, centernet(), sample=48, seed=1, progress=False)
    assert result["frames_checked"] == 48
    assert result["frame_agreement"] >= 0.8
    person = result["per_class"]["person"]
    assert person["placed_visible"] > 0 and person["recall"] >= 0.7
    assert abs(result["reference_presence"] - result["placed_presence"]) <= 0.2
    json.dumps(result, default=float)
