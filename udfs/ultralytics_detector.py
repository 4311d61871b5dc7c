"""Ultralytics YOLO ``.pt`` models (an optional extra: ``pip install 'vql[ultralytics]'``).

The file is loaded from disk (never fetched by name); ultralytics is told to stay offline.

>>> model = UltralyticsDetector("yolov8n.pt")          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vql.errors import ModelError
from vql.udfs.reference import (SCORE_FLOOR, Detections, ReferenceModel, batches, check_frames, fingerprint, resolve_device,
                                runtime)

ADAPTER_VERSION = "ultralytics-1"
MAX_DETECTIONS = 300  # predict()'s default max_det, passed explicitly: the most boxes one frame gets


class UltralyticsDetector(ReferenceModel):
    """A YOLO detector from a local ultralytics ``.pt`` file."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        device: str | torch.device | None = "cpu",
        imgsz: int = 640,
        max_batch: int = 16,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        if self.path.suffix != ".pt":
            raise ModelError(f"{self.path}: ultralytics models are .pt files")
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            from ultralytics import YOLO
        except ImportError as e:
            raise ModelError("ultralytics models need the ultralytics package (pip install 'vql[ultralytics]')") from e
        try:
            self.yolo = YOLO(str(self.path), task="detect")
        except Exception as e:  # ultralytics raises many kinds on a bad file
            raise ModelError(f"{self.path}: not a loadable ultralytics model ({e})") from e
        if getattr(self.yolo, "task", "detect") != "detect":
            raise ModelError(f"{self.path}: a {self.yolo.task!r} model, not a detector")
        names = self.yolo.names
        self.classes = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
        self.device = resolve_device(device)
        self.name = name or self.path.stem
        self.imgsz = imgsz
        self.max_batch = max_batch
        self.max_objects = MAX_DETECTIONS
        # predict() runs in fp32 (half=False, its default) on this device
        self._version = fingerprint([ADAPTER_VERSION, self.path, str(imgsz), runtime(self.device, "fp32")])

    @property
    def version(self) -> str:
        return self._version

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        check_frames(frames)
        out: list[Detections] = []
        for chunk in batches(frames, self.max_batch):
            try:
                results = self.yolo.predict(
                    list(chunk), device=str(self.device), imgsz=self.imgsz, conf=SCORE_FLOOR, verbose=False,
                    max_det=MAX_DETECTIONS,
                )
            except Exception as e:
                raise ModelError(f"{self.path}: inference failed ({e})") from e
            for r in results:
                boxes = r.boxes
                out.append(
                    Detections.from_arrays(
                        boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy(), SCORE_FLOOR
                    )
                )
        return out
