"""The ONNX adapter, on small detectors the tests export from torch themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vql.errors import ModelError
from vql.udfs.onnx_detector import OnnxDetector, OnnxLayout, to_xyxy
from vql.udfs.registry import load_model


class BrightSpot(torch.nn.Module):
    """A toy detector: one box around the brightest pixel, scored by its brightness.

    Boxes are cx, cy, w, h in input pixels; score in [0, 1]; class 1 when red dominates else 0.
    """

    def forward(self, images: torch.Tensor):  # [N, 3, H, W] RGB in [0, 1]
        n, _, h, w = images.shape
        gray = images.mean(dim=1).reshape(n, -1)
        score, flat = gray.max(dim=1)
        cy = torch.div(flat, w, rounding_mode="floor").float()
        cx = (flat % w).float()
        size = torch.full_like(cx, 8.0)
        boxes = torch.stack([cx, cy, size, size], dim=1)[:, None, :]
        red = (images[:, 0].reshape(n, -1).gather(1, flat[:, None])[:, 0] > images[:, 2].reshape(n, -1).gather(1, flat[:, None])[:, 0])
        return boxes, score[:, None], red.long()[:, None]


def export(path, dynamic_size=False, batch_one=False):
    x = torch.rand(1 if batch_one else 2, 3, 32, 48)
    axes = {} if batch_one else {"images": {0: "n"}}
    if dynamic_size:
        axes.setdefault("images", {}).update({2: "h", 3: "w"})
    torch.onnx.export(
        BrightSpot(), (x,), str(path), dynamo=False, input_names=["images"],
        output_names=["boxes", "scores", "labels"], dynamic_axes=axes or None,
    )
    return path


LAYOUT = OnnxLayout(boxes="boxes", scores="scores", classes="labels", box_format="cxcywh")


def frames_with_spots():
    """Two 96×64 BGR frames, each black with one bright spot: white, then red."""
    a = np.zeros((64, 96, 3), np.uint8)
    a[20:24, 30:34] = 255
    b = np.zeros((64, 96, 3), np.uint8)
    b[40:44, 60:64] = (0, 0, 250)  # BGR red
    return [a, b]


def test_detects_in_frame_coordinates(tmp_path):
    model = OnnxDetector(export(tmp_path / "spot.onnx"), ["dark", "red"], LAYOUT)
    a, b = model.detect(frames_with_spots())
    assert len(a) == len(b) == 1
    # input is 48×32, the frame 96×64: every coordinate doubles
    ax, ay = (a.boxes[0, 0] + a.boxes[0, 2]) / 2, (a.boxes[0, 1] + a.boxes[0, 3]) / 2
    assert 28 <= ax <= 36 and 18 <= ay <= 26
    assert a.boxes[0, 2] - a.boxes[0, 0] == pytest.approx(16.0)
    assert model.classes[a.classes[0]] == "dark" and model.classes[b.classes[0]] == "red"
    assert a.scores[0] > 0.9 and b.scores[0] == pytest.approx(250 / 255 / 3, abs=0.05)
    assert model.version == OnnxDetector(tmp_path / "spot.onnx", ["dark", "red"], LAYOUT).version


def test_matches_torch_on_the_same_inputs(tmp_path):
    model = OnnxDetector(export(tmp_path / "spot.onnx"), ["dark", "red"], LAYOUT)
    frames = [np.random.default_rng(i).integers(0, 255, (32, 48, 3), dtype=np.uint8) for i in range(5)]
    inputs = torch.from_numpy(model.preprocess(frames))
    boxes, scores, labels = BrightSpot()(inputs)
    for dets, box, score, label in zip(model.detect(frames), boxes, scores, labels):
        np.testing.assert_allclose(dets.boxes[0], to_xyxy(box.numpy(), "cxcywh")[0], atol=1e-4)
        assert dets.scores[0] == pytest.approx(float(score[0]), abs=1e-5)
        assert dets.classes[0] == int(label[0])


def test_batch_one_model_is_run_frame_by_frame(tmp_path):
    model = OnnxDetector(export(tmp_path / "one.onnx", batch_one=True), ["dark", "red"], LAYOUT)
    assert model.fixed_batch == 1
    assert [len(d) for d in model.detect(frames_with_spots())] == [1, 1]


def test_dynamic_input_size_needs_input_size(tmp_path):
    path = export(tmp_path / "dyn.onnx", dynamic_size=True)
    with pytest.raises(ModelError, match="input size is dynamic"):
        OnnxDetector(path, ["dark", "red"], LAYOUT)
    model = OnnxDetector(path, ["dark", "red"], LAYOUT, input_size=(96, 64))
    assert len(model.detect(frames_with_spots())[0]) == 1


def test_registry_builds_onnx_models(tmp_path, monkeypatch):
    export(tmp_path / "spot.onnx")
    monkeypatch.setenv("VQL_MODELS_DIR", str(tmp_path))
    model = load_model("onnx", "spot.onnx", labels=["dark", "red"], boxes="boxes", scores="scores",
                       classes="labels", box_format="cxcywh")
    assert isinstance(model, OnnxDetector) and model.path == tmp_path / "spot.onnx"


def test_clear_errors(tmp_path):
    path = export(tmp_path / "spot.onnx")
    with pytest.raises(ModelError, match="model file not found"):
        OnnxDetector(tmp_path / "nope.onnx", ["a"], LAYOUT)
    with pytest.raises(ModelError, match="no output named 'dets'"):
        OnnxDetector(path, ["dark", "red"], OnnxLayout(boxes="dets", scores="scores", classes="labels"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxDetector(tmp_path / "junk.onnx", ["a"], LAYOUT)
    with pytest.raises(ModelError, match="box_format must be one of"):
        OnnxLayout(boxes="b", scores="s", box_format="yxyx")
    with pytest.raises(ModelError, match="bad options for a onnx model"):
        load_model("onnx", path, labels=["a"], boxes="boxes")
