"""torchvision detection models (Faster R-CNN, RetinaNet, SSD, FCOS...) with a local weights file.

Needs the optional ``torchvision`` package (``pip install 'vql[torchvision]'``). Nothing is
downloaded: the architecture is built with ``weights=None`` and the state dict is read from the
file the user names. Class names default to the COCO category list torchvision ships with the
architecture's weights metadata (91 entries, with ``__background__`` and ``N/A`` gaps).

>>> model = TorchvisionDetector("fasterrcnn_mobilenet_v3_large_fpn", "frcnn.pth")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
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

ADAPTER_VERSION = "torchvision-1"


def _torchvision():
    try:
        import torchvision
    except (ImportError, RuntimeError) as e:
        raise ModelError(
            "torchvision models need the torchvision package, built for this torch "
            f"(pip install 'vql[torchvision]'): {e}"
        ) from e
    return torchvision


def default_categories(arch: str) -> tuple[str, ...]:
    """The category names of the architecture's published weights (no download)."""
    tv = _torchvision()
    try:
        weights_enum = tv.models.get_model_weights(arch)
    except (ValueError, KeyError) as e:
        raise ModelError(f"unknown torchvision architecture {arch!r}") from e
    member = next(iter(weights_enum))
    return tuple(member.meta["categories"])


class TorchvisionDetector(ReferenceModel):
    """A torchvision detection architecture with weights read from a local file."""

    def __init__(
        self,
        arch: str,
        weights: str | Path | None,
        labels: str | Path | Sequence[str] | None = None,
        *,
        name: str | None = None,
        device: str | torch.device | None = "cpu",
        max_batch: int = 4,
    ) -> None:
        tv = _torchvision()
        detection_archs = set(tv.models.list_models(module=tv.models.detection))
        if arch not in detection_archs:
            raise ModelError(f"{arch!r} is not a torchvision detection model; one of: {', '.join(sorted(detection_archs))}")
        if labels is None:
            self.classes = default_categories(arch)
        else:
            self.classes = tuple(labels) if isinstance(labels, (list, tuple)) else read_labels(labels)
        self.device = resolve_device(device)
        self.name = name or arch
        self.arch = arch
        self.max_batch = max_batch
        model = tv.models.get_model(arch, weights=None, weights_backbone=None, num_classes=len(self.classes))
        if weights is None:  # random initialisation: for plumbing tests, never for answers
            self.weights_path = None
            params = b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())
            state_id: list = ["untrained", params]
        else:
            self.weights_path = Path(weights)
            if not self.weights_path.is_file():
                raise ModelError(f"weights file not found: {self.weights_path}")
            try:
                state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            except Exception as e:  # pickle, zip and torch errors alike
                raise ModelError(f"{self.weights_path}: not a torch state dict ({e})") from e
            if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
                state = state["model"]
            try:
                model.load_state_dict(state, strict=True)
            except (RuntimeError, TypeError, AttributeError) as e:
                raise ModelError(f"{self.weights_path}: weights do not fit {arch} with {len(self.classes)} classes ({e})") from e
            state_id = [self.weights_path]
        self.model = model.eval().to(self.device)
        heads = getattr(model, "roi_heads", model)  # Faster/Mask R-CNN keep the limit in their heads
        self.max_objects = getattr(heads, "detections_per_img", None)
        self._version = fingerprint([ADAPTER_VERSION, arch, *state_id, ",".join(self.classes),
                                     runtime(self.device, "fp32")])  # detect() feeds float32

    @property
    def version(self) -> str:
        return self._version

    @torch.inference_mode()
    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        check_frames(frames)
        out: list[Detections] = []
        for chunk in batches(frames, self.max_batch):
            images = [
                torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).to(self.device).permute(2, 0, 1).float().div_(255)
                for f in chunk
            ]
            for result in self.model(images):
                out.append(
                    Detections.from_arrays(
                        result["boxes"].cpu().numpy(), result["scores"].cpu().numpy(),
                        result["labels"].cpu().numpy(), SCORE_FLOOR,
                    )
                )
        return out
