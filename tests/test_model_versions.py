"""Model versions name the runtime: labels are cached by version, so a model run on another
device type or in another precision (whose answers differ in the last bits, and at a score
threshold sometimes in a detection) must not reuse the labels of the first."""

from __future__ import annotations

import onnxruntime
import torch

from vql.udfs import tfjs_detector
from vql.udfs.onnx_detector import OnnxDetector
from vql.udfs.tfjs_detector import CENTERNET_DIR, TfjsDetector

from test_onnx_detector import LAYOUT, export


def _centernet(**options) -> TfjsDetector:
    return TfjsDetector(CENTERNET_DIR / "centernet.json", name="centernet", output="tower_0/detections", **options)


def test_tfjs_version_names_the_device_type():
    cpu = _centernet(device="cpu")
    assert _centernet(device="cpu").version == cpu.version  # same settings, same version
    meta = _centernet(device="meta")  # another device type really loaded (torch's shape-only device)
    assert meta.device.type == "meta" and meta.version != cpu.version


def test_tfjs_version_names_the_precision(monkeypatch):
    """fp16 and bf16 need CUDA: the device is mocked (torch says CUDA is there, the graph is not
    moved to it), the version is computed as on a real GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tfjs_detector, "TfjsModel", lambda graph, device, dtype, outputs: None)
    versions = {p: _centernet(device="cuda", precision=p).version for p in ("fp32", "fp16", "bf16")}
    assert len(set(versions.values())) == 3, versions
    assert versions["fp16"] == _centernet(device="cuda", precision="fp16").version
    assert _centernet(device="cuda:1", precision="fp32").version == versions["fp32"]  # the type, not the index
    monkeypatch.undo()
    assert _centernet(device="cpu").version not in versions.values()


def test_onnx_version_names_the_device_and_execution_provider(tmp_path, monkeypatch):
    path = export(tmp_path / "spot.onnx")
    cpu = OnnxDetector(path, ["dark", "red"], LAYOUT)
    assert cpu.providers == ("CPUExecutionProvider",)
    assert OnnxDetector(path, ["dark", "red"], LAYOUT).version == cpu.version

    real_session = onnxruntime.InferenceSession

    class CudaSession:  # what ONNX Runtime reports on a GPU machine; computes on the CPU here
        def __init__(self, model_path, providers):
            self._session = real_session(model_path, providers=["CPUExecutionProvider"])
            self._providers = [*providers, "CPUExecutionProvider"]

        def get_providers(self):
            return self._providers

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", CudaSession)
    cuda = OnnxDetector(path, ["dark", "red"], LAYOUT, device="cuda")
    assert cuda.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert cuda.version != cpu.version
    assert OnnxDetector(path, ["dark", "red"], LAYOUT, device="cuda").version == cuda.version

