"""Shared fixtures: where ../shared is, the real clip, the golden vectors."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VQL_SHARED", ROOT.parent / "shared")).resolve()


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.txt from this run")


def pytest_configure(config):
    if config.getoption("--update-golden", default=False):
        os.environ["VQL_UPDATE_GOLDEN"] = "1"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED}; set VQL_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def vtest_path(shared: Path) -> Path:
    return shared / "data" / "vtest.avi"


@pytest.fixture(scope="session")
def golden(shared: Path) -> dict[str, np.ndarray]:
    data = np.load(shared / "models" / "centernet" / "golden_vtest.npz")
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_frames(vtest_path: Path, golden) -> list[np.ndarray]:
    """The vtest frames (BGR, 768×576) the golden vectors were computed on."""
    wanted = {int(i) for i in golden["frame_index"]}
    cap = cv2.VideoCapture(str(vtest_path))
    frames: dict[int, np.ndarray] = {}
    index = 0
    while len(frames) < len(wanted):
        ok, frame = cap.read()
        assert ok, f"vtest.avi ended at frame {index}"
        if index in wanted:
            frames[index] = frame
        index += 1
    cap.release()
    return [frames[int(i)] for i in golden["frame_index"]]


@pytest.fixture(scope="session")
def compose_library(vtest_path):
    """Plate, cut-outs and depth model from vtest (every 24th frame judged by CenterNet)."""
    from vql.engine.compose import build_library
    from vql.udfs.tfjs_detector import centernet

    return build_library(vtest_path, centernet(), sample_step=24)


def write_tiny_clip(path: Path, frames: int = 8, width: int = 96, height: int = 64) -> Path:
    """A small synthetic MJPG clip (grey ramps, nothing for a detector to find): fast to decode
    and to run the reference on."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (width, height))
    assert writer.isOpened(), "cv2 cannot write MJPG"
    for i in range(frames):
        image = np.full((height, width, 3), 20 + 25 * i, np.uint8)
        image[:, : width // 2] = 255 - 25 * i
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """8 frames at 96x64 (see :func:`write_tiny_clip`)."""
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.avi")


@pytest.fixture(scope="session")
def cameras(tmp_path_factory, vtest_path) -> Path:
    """A folder of three 24-frame cuts of vtest (from frames 0, 300 and 600), MJPG: a video set's
    members with different content (each its own fingerprint)."""
    folder = tmp_path_factory.mktemp("cams")
    cap = cv2.VideoCapture(str(vtest_path))
    for start in (0, 300, 600):
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        writer = cv2.VideoWriter(str(folder / f"cam{start}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
        for _ in range(24):
            ok, frame = cap.read()
            assert ok
            writer.write(frame)
        writer.release()
    cap.release()
    return folder
