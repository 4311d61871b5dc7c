"""Detectors exported to ONNX, run with ONNX Runtime, with an output layout the user declares.

ONNX detectors disagree on their outputs, so the user says which output holds what:

>>> layout = OnnxLayout(boxes="boxes", scores="scores", classes="labels", box_format="xyxy")
>>> model = OnnxDetector("det.onnx", labels=["person", "car"], layout=layout)   # doctest: +SKIP

- ``boxes``: [N, K, 4] (or [K, 4] for a model of batch 1), in ``box_format`` ``xyxy``, ``xywh``
  (top-left corner and size) or ``cxcywh``, in input pixels or ``normalized`` to 0–1;
- ``scores``: [N, K] with ``classes`` [N, K] class indices, or [N, K, C] per-class scores (then
  ``classes`` is left out and each box takes its best class).

Frames are resized to the model's input size (or ``input_size`` where the model leaves it open),
converted to ``channels`` order and multiplied by ``scale``; ``layout.image`` is ``NCHW`` or ``NHWC``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vql.errors import ModelError
from vql.udfs.reference import (
    SCORE_FLOOR,
    Detections,
    ReferenceModel,
    batches,
    check_frames,
    fingerprint,
    resolve_device,
    runtime,
)
from vql.udfs.reference import read_labels

ADAPTER_VERSION = "onnx-1"
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


@dataclass(frozen=True, slots=True)
class OnnxLayout:
    """Where an ONNX detector puts its results, and how it wants its input."""

    boxes: str
    scores: str
    classes: str | None = None
    box_format: str = "xyxy"
    normalized: bool = False
    image: str = "NCHW"
    channels: str = "RGB"
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.box_format not in BOX_FORMATS:
            raise ModelError(f"box_format must be one of {BOX_FORMATS}, got {self.box_format!r}")
        if self.image not in ("NCHW", "NHWC"):
            raise ModelError(f"image layout must be NCHW or NHWC, got {self.image!r}")
        if self.channels not in ("RGB", "BGR"):
            raise ModelError(f"channels must be RGB or BGR, got {self.channels!r}")


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Convert [K, 4] boxes to x1, y1, x2, y2.

    >>> to_xyxy(np.array([[10., 20., 4., 6.]]), "cxcywh").tolist()
    [[8.0, 17.0, 12.0, 23.0]]
    """
    if box_format == "xyxy":
        return boxes
    a, b, c, d = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    if box_format == "xywh":
        return np.stack([a, b, a + c, b + d], axis=1)
    return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=1)


class OnnxDetector(ReferenceModel):
    """An ONNX detector run by ONNX Runtime on the CPU or CUDA."""

    def __init__(
        self,
        path: str | Path,
        labels: str | Path | Sequence[str],
        layout: OnnxLayout,
        *,
        name: str | None = None,
        input_size: tuple[int, int] | None = None,
        device: str | torch.device | None = "cpu",
        max_batch: int = 16,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ModelError("ONNX models need the onnxruntime package") from e
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("device 'cuda' was asked for, but this onnxruntime has no CUDA provider")
            providers = ["CUDAExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.path}: not a loadable ONNX model ({e})") from e
        self.classes = tuple(labels) if isinstance(labels, (list, tuple)) else read_labels(labels)
        self.name = name or self.path.stem
        self.layout = layout
        self.max_batch = max_batch
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one image input, the model has {len(inputs)}")
        self.input_name = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ModelError(f"{self.path}: expected a 4-D image input, got shape {shape}")
        h_dim, w_dim = (shape[2], shape[3]) if layout.image == "NCHW" else (shape[1], shape[2])
        fixed = isinstance(h_dim, int) and isinstance(w_dim, int)
        if input_size is not None:
            self.input_wh = (int(input_size[0]), int(input_size[1]))
        elif fixed:
            self.input_wh = (w_dim, h_dim)
        else:
            raise ModelError(f"{self.path}: the input size is dynamic; give input_size=(width, height)")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        names = {o.name for o in self.session.get_outputs()}
        for role in ("boxes", "scores", "classes"):
            wanted = getattr(layout, role)
            if wanted is not None and wanted not in names:
                raise ModelError(f"{self.path}: no output named {wanted!r} (the {role}); outputs: {sorted(names)}")
        self._outputs = [layout.boxes, layout.scores] + ([layout.classes] if layout.classes else [])
        # ONNX Runtime computes in the precision stored in the file (hashed with it); the device type and
        # the execution providers it actually uses (CUDA's kernels differ from the CPU's) are part of the version
        self.providers = tuple(self.session.get_providers())
        self._version = fingerprint([ADAPTER_VERSION, self.path, repr(layout), repr(self.input_wh), ",".join(self.classes),
                                     runtime(self.device, "stored"), ",".join(self.providers)])

    @property
    def version(self) -> str:
        return self._version

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        w, h = self.input_wh
        out = np.empty((len(frames), h, w, 3), np.float32)
        for i, frame in enumerate(frames):
            img = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
            if self.layout.channels == "RGB":
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            out[i] = img
        out *= self.layout.scale
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if self.layout.image == "NCHW" else out

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        try:
            results = self.session.run(self._outputs, {self.input_name: images})
        except Exception as e:
            raise ModelError(f"{self.path}: inference failed ({e})") from e
        if results[0].ndim == 2:  # a batch-of-one model that drops the batch axis: boxes [K, 4]
            results = [r[None] for r in results]
        return results

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        check_frames(frames)
        w, h = self.input_wh
        step = 1 if self.fixed_batch == 1 else self.max_batch
        out: list[Detections] = []
        for chunk in batches(frames, step):
            boxes, scores, *rest = self._run(self.preprocess(chunk))
            for i, frame in enumerate(chunk):
                s = scores[i]
                if rest:
                    classes = rest[0][i]
                elif s.ndim == 2:
                    classes, s = s.argmax(axis=1), s.max(axis=1)
                else:
                    raise ModelError(f"{self.path}: scores are [K] but no classes output was declared")
                fh, fw = frame.shape[:2]
                sx, sy = (fw, fh) if self.layout.normalized else (fw / w, fh / h)
                b = to_xyxy(np.asarray(boxes[i], np.float32).reshape(-1, 4), self.layout.box_format)
                b = b * np.array([sx, sy, sx, sy], np.float32)
                out.append(Detections.from_arrays(b, s, classes, SCORE_FLOOR))
        return out
