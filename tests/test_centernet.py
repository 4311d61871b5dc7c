"""The packaged CenterNet reference: the golden vectors computed by TensorFlow, the detector's
pre- and post-processing on real vtest frames, and the reference-model interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vql.errors import ModelError
from vql.udfs.reference import Detections
from vql.udfs.tfjs_detector import CENTERNET_DIR, TfjsDetector, centernet

GOLDEN_MIN_SCORE = 0.3


def match_rows(got: np.ndarray, want: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair each golden row scoring ≥ 0.3 with the nearest row of the same class."""
    pairs = []
    for row in want[want[:, 4] >= GOLDEN_MIN_SCORE]:
        same_class = got[got[:, 5] == row[5]]
        assert len(same_class), f"no detection of class {int(row[5])} at all"
        nearest = same_class[np.argmin(np.abs(same_class[:, :4] - row[:4]).sum(axis=1))]
        pairs.append((nearest, row))
    return pairs


def test_golden_vectors_reproduced_on_cpu(golden):
    model = centernet("cpu")
    images = torch.from_numpy(golden["inputs_rgb_512"])
    rows = model.run(images)  # the exact model inputs: one batch of 4
    assert rows.shape == golden["detections"].shape == (4, 100, 6)
    assert model.max_objects == rows.shape[1]  # the limit AVG/SUM estimates bound each frame's count by
    checked = 0
    for got, want in zip(rows, golden["detections"]):
        for g, w in match_rows(got, want):
            assert np.abs(g[:4] - w[:4]).max() <= 1.0, (g, w)
            assert abs(g[4] - w[4]) <= 1e-3, (g, w)
            checked += 1
    assert checked >= 30  # 39 golden rows score ≥ 0.3 over the four frames


def test_batch_size_does_not_change_answers(golden):
    model = centernet("cpu")
    images = torch.from_numpy(golden["inputs_rgb_512"])
    together = model.run(images)
    for i in range(len(images)):
        alone = model.run(images[i : i + 1])[0]
        keep = together[i][:, 4] >= GOLDEN_MIN_SCORE
        np.testing.assert_allclose(alone[keep], together[i][keep], atol=1e-4)


def test_preprocessing_reproduces_the_golden_inputs(golden, golden_frames):
    assert golden_frames[0].shape == (576, 768, 3)
    inputs = centernet().preprocess(golden_frames).numpy()
    np.testing.assert_array_equal(inputs, golden["inputs_rgb_512"])


def test_detect_returns_frame_coordinates_and_names(golden, golden_frames):
    model = centernet()
    detections = model.detect(golden_frames)
    assert len(detections) == 4 and all(isinstance(d, Detections) for d in detections)
    scale = np.array([768 / 512, 576 / 512] * 2, np.float32)
    for dets, want in zip(detections, golden["detections"]):
        assert np.all(np.diff(dets.scores) <= 0), "sorted by descending score"
        strong = want[want[:, 4] >= 0.5]
        assert dets.count(model.class_index("person"), 0.5) == int((strong[:, 5] == 0).sum())
        for row in strong:
            got = dets.boxes[(dets.classes == row[5]) & (np.abs(dets.scores - row[4]) < 2e-3)]
            assert len(got), row
            assert np.abs(got - row[:4] * scale).min(axis=0).max() <= 1.5
    assert model.classes[0] == "person" and model.classes[2] == "car" and model.classes[5] == "bus"
    assert len(model.classes) == 80


def test_region_count_uses_box_centres():
    dets = Detections.from_arrays([[0, 0, 10, 10], [100, 100, 120, 140]], [0.9, 0.6], [0, 0])
    assert dets.count(0, 0.5) == 2
    assert dets.count(0, 0.7) == 1
    assert dets.count(0, 0.5, region=(0.0, 0.5, 1.0, 1.0), frame_size=(200, 200)) == 1
    assert dets.count(1, 0.1) == 0


def test_unknown_class_suggests_close_names():
    with pytest.raises(ModelError, match="no class 'persn'; did you mean 'person'"):
        centernet().class_index("persn")


def test_bad_frames_are_rejected_before_running():
    model = centernet()
    with pytest.raises(ModelError, match="frame 1: expected an H×W×3 uint8"):
        model.detect([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)])


def test_frames_of_any_size(golden_frames):
    model = centernet()
    small = golden_frames[1][::2, ::2].copy()
    both = model.detect([golden_frames[1], small])
    # the same picture at half size: persons found in the same places, in its own coordinates
    big_people = both[0].boxes[(both[0].classes == 0) & (both[0].scores >= 0.5)]
    small_people = both[1].boxes[(both[1].classes == 0) & (both[1].scores >= 0.5)]
    assert len(big_people) >= 3 and len(small_people) >= 3
    for box in small_people:
        assert np.abs(big_people - box * 2).sum(axis=1).min() < 12


def test_a_frame_with_more_rows_than_the_declared_limit_is_an_error(golden_frames):
    model = TfjsDetector(CENTERNET_DIR / "centernet.json", CENTERNET_DIR / "labels.txt", output="tower_0/detections",
                         max_objects=50)
    with pytest.raises(ModelError, match="100 detections on one frame, more than the 50"):
        model.detect([golden_frames[0]])


def test_version_is_stable_and_tracks_weights(tmp_path):
    a = TfjsDetector(CENTERNET_DIR / "centernet.json", device="cpu")
    b = TfjsDetector(CENTERNET_DIR / "centernet.json", device="cpu")
    assert a.version == b.version == centernet().version
    for name in ("centernet.json", "labels.txt"):
        (tmp_path / name).write_bytes((CENTERNET_DIR / name).read_bytes())
    weights = bytearray((CENTERNET_DIR / "centernet.bin").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "centernet.bin").write_bytes(bytes(weights))
    assert TfjsDetector(tmp_path / "centernet.json").version != a.version


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        assert centernet("cuda").device.type == "cuda"
    else:
        with pytest.raises(ModelError, match="no CUDA device"):
            centernet("cuda")


def test_half_precision_is_refused_on_cpu():
    with pytest.raises(ModelError, match="only supported on CUDA"):
        TfjsDetector(CENTERNET_DIR / "centernet.json", device="cpu", precision="fp16")
