"""Detectors stored as TensorFlow.js graph models, and CenterNet, the default reference model.

A :class:`TfjsDetector` runs a graph model whose detection output has one row per object:
``x1, y1, x2, y2, score, class`` (CenterNet's layout), in the model's input pixels or normalised
to 0–1. Frames are resized to the graph's input size (``cv2.INTER_LINEAR``, no letterbox) and
converted to RGB floats 0–255; the graph does its own normalisation.

>>> model = centernet()                      # doctest: +SKIP
>>> dets = model.detect([frame_bgr])         # doctest: +SKIP
>>> model.classes[dets[0].classes[0]]        # doctest: +SKIP
'person'
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
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
    read_labels,
    resolve_device,
    runtime,
)
from vql.udfs.tfjs_graph import load_graph
from vql.udfs.tfjs_model import TfjsModel

CENTERNET_DIR = Path(str(resources.files("vql.udfs") / "models" / "centernet"))

# Bumped whenever preprocessing or decoding changes what a detector returns for the same weights.
ADAPTER_VERSION = "tfjs-1"

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TfjsDetector(ReferenceModel):
    """A TensorFlow.js graph-model detector executed with torch."""

    def __init__(
        self,
        path: str | Path,
        labels: str | Path | Sequence[str] | None = None,
        *,
        name: str | None = None,
        output: str | None = None,
        normalized_boxes: bool = False,
        device: str | torch.device | None = "cpu",
        precision: str = "fp32",
        max_batch: int | None = None,
        max_objects: int | None = None,
    ) -> None:
        path = Path(path)
        self.max_objects = max_objects  # the graph's rows per frame: detect() refuses a frame with more
        if precision not in _DTYPES:
            raise ModelError(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}")
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise ModelError(f"precision {precision!r} is only supported on CUDA")
        graph = load_graph(path)
        self.path = graph.path
        if labels is None:
            labels = self.path.parent / "labels.txt"
        self.classes = tuple(labels) if isinstance(labels, (list, tuple)) else read_labels(labels)
        self.name = name or self.path.stem
        self.output = output or graph.outputs[-1]
        if self.output not in {n.name for n in graph.nodes}:
            raise ModelError(f"{self.path}: the graph has no output {self.output!r}")
        shape = graph.input_shapes.get(graph.inputs[0], ())
        if len(shape) != 4 or shape[3] != 3 or shape[1] <= 0 or shape[2] <= 0:
            raise ModelError(f"{self.path}: expected an NHWC RGB image input with a fixed size, got shape {shape}")
        self.input_hw = (int(shape[1]), int(shape[2]))
        self.normalized_boxes = normalized_boxes
        self.precision = precision
        self.max_batch = max_batch or (256 if self.device.type == "cuda" else 32)
        self.model = TfjsModel(graph, self.device, _DTYPES[precision], outputs=[self.output])
        weight_files = sorted(p for p in self.path.parent.iterdir() if p.suffix == ".bin")
        self._version = fingerprint(
            [ADAPTER_VERSION, self.path, *weight_files, self.output, str(normalized_boxes), ",".join(self.classes),
             runtime(self.device, precision)]
        )

    @property
    def version(self) -> str:
        return self._version

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """BGR frames of any size -> [N, H, W, 3] RGB uint8 at the model's input size."""
        h, w = self.input_hw
        batch = np.empty((len(frames), h, w, 3), np.uint8)
        for i, frame in enumerate(frames):
            cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB, dst=batch[i])
        return torch.from_numpy(batch)

    def run(self, images: torch.Tensor) -> np.ndarray:
        """[N, H, W, 3] uint8 model inputs -> [N, rows, 6] float32 detection rows."""
        images = images.to(self.device, non_blocking=True).to(self.model.dtype)
        rows = self.model(images)[self.output]
        return rows.float().cpu().numpy()

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        check_frames(frames)
        results: list[Detections] = []
        h, w = self.input_hw
        for chunk in batches(frames, self.max_batch):
            rows = self.run(self.preprocess(chunk))
            for frame, r in zip(chunk, rows):
                if self.max_objects is not None and len(r) > self.max_objects:
                    raise ModelError(f"{self.path}: {len(r)} detections on one frame, more than the "
                                     f"{self.max_objects} the model declares")
                fh, fw = frame.shape[:2]
                sx, sy = (fw, fh) if self.normalized_boxes else (fw / w, fh / h)
                boxes = r[:, :4] * np.array([sx, sy, sx, sy], np.float32)
                results.append(Detections.from_arrays(boxes, r[:, 4], r[:, 5], SCORE_FLOOR))
        return results


@functools.cache
def _centernet_cached(device: str, precision: str) -> TfjsDetector:
    return TfjsDetector(
        CENTERNET_DIR / "centernet.json",
        CENTERNET_DIR / "labels.txt",
        name="centernet",
        output="tower_0/detections",
        max_objects=100,  # the graph's TopK keeps 100 peaks
        device=device,
        precision=precision,
    )


def centernet(device: str | torch.device | None = "cpu", precision: str = "fp32") -> TfjsDetector:
    """The packaged CenterNet (MobileNetV3, COCO's 80 classes): vql's default reference model.

    Loaded once per (device, precision) and shared.
    """
    return _centernet_cached(str(resolve_device(device)), precision)
