"""The torchvision and ultralytics adapters, offline, on untrained models (plumbing, not accuracy).

These need the optional extras, which need a torchvision built for the installed torch. The
main test environment (torch 2.13 CPU) has none; CI runs this file a second time in an
environment with torch 2.14.1 + torchvision 0.29.1 + ultralytics (see .ci/run), where every
test here runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vql.errors import ModelError
from vql.udfs.registry import load_model

FRAMES = [np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(3)]


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        return False
    return True


needs_torchvision = pytest.mark.skipif(not _has_torchvision(), reason="torchvision is not installed (CI runs this in its second environment)")


@needs_torchvision
def test_torchvision_model_from_a_local_weights_file(tmp_path):
    import torchvision

    from vql.udfs.torchvision_detector import TorchvisionDetector

    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=91)
    torch.save(net.state_dict(), tmp_path / "frcnn.pth")
    model = load_model("torchvision", tmp_path / "frcnn.pth", arch=arch)
    assert isinstance(model, TorchvisionDetector)
    assert model.classes[1] == "person" and len(model.classes) == 91
    results = model.detect(FRAMES)
    assert len(results) == 3
    for dets in results:  # untrained: whatever it finds must be well-formed
        assert dets.boxes.shape == (len(dets), 4) and np.all(dets.scores >= 0.2)
        assert np.all(dets.boxes[:, 2] >= dets.boxes[:, 0])
    # the weights really are the file's: same file, same answers and version
    again = TorchvisionDetector(arch, tmp_path / "frcnn.pth")
    assert again.version == model.version
    # another device type is another version (labels are cached by version); torch's meta device loads anywhere
    assert TorchvisionDetector(arch, tmp_path / "frcnn.pth", device="meta").version != model.version
    for a, b in zip(results, again.detect(FRAMES)):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@needs_torchvision
def test_torchvision_untrained_and_errors(tmp_path):
    from vql.udfs.torchvision_detector import TorchvisionDetector

    model = TorchvisionDetector("ssdlite320_mobilenet_v3_large", None)
    assert len(model.detect(FRAMES[:1])) == 1
    with pytest.raises(ModelError, match="not a torchvision detection model"):
        TorchvisionDetector("resnet50", None)
    with pytest.raises(ModelError, match="weights file not found"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a torch state dict"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", tmp_path / "bad.pth")
    torch.save({"unrelated": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="weights do not fit"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", tmp_path / "other.pth")


def _has_ultralytics() -> bool:
    try:
        import ultralytics  # noqa: F401
    except (ImportError, RuntimeError):
        return False
    return True


@pytest.mark.skipif(not _has_ultralytics(), reason="ultralytics is not installed (CI runs this in its second environment)")
def test_ultralytics_model_built_from_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    from ultralytics import YOLO

    from vql.udfs.ultralytics_detector import UltralyticsDetector

    YOLO("yolov8n.yaml").save(tmp_path / "untrained.pt")
    model = load_model("ultralytics", tmp_path / "untrained.pt", imgsz=160)
    assert isinstance(model, UltralyticsDetector) and len(model.classes) == 80
    results = model.detect(FRAMES)
    assert len(results) == 3 and all(d.boxes.shape[1] == 4 for d in results)
    assert model.version == UltralyticsDetector(tmp_path / "untrained.pt", imgsz=160).version
    assert model.version != UltralyticsDetector(tmp_path / "untrained.pt", imgsz=160, device="meta").version
    with pytest.raises(ModelError, match="ultralytics models are .pt files"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        UltralyticsDetector(tmp_path / "m.onnx")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a loadable ultralytics model"):
        UltralyticsDetector(tmp_path / "junk.pt")
