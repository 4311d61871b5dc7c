"""Finding and loading reference models: one table of model kinds, one models directory.

``load_model(kind, path, **options)`` builds the adapter that the ``MODEL_KINDS`` table names for
``kind``. Relative paths are looked up in the working directory, then in the models directory:
``$VQL_MODELS_DIR``, or ``~/.cache/vql/models`` when unset. Nothing is ever downloaded.

>>> sorted(MODEL_KINDS)
['onnx', 'tfjs', 'torchvision', 'ultralytics']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vql.errors import ModelError
from vql.paths import checked_path
from vql.udfs.reference import ReferenceModel, read_labels

DEFAULT_MODEL = "centernet"


def models_dir() -> Path:
    """Where models named by a relative path are looked for (``$VQL_MODELS_DIR``)."""
    configured = os.environ.get("VQL_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vql" / "models"


def resolve_model_path(path: str | Path) -> Path:
    """An existing file or folder: as given, or under :func:`models_dir`."""
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    if not candidate.is_absolute():
        in_dir = models_dir() / candidate
        if in_dir.exists():
            return in_dir
        raise ModelError(f"model file not found: {path} (looked in the working directory and in {models_dir()})")
    raise ModelError(f"model file not found: {path}")


def _tfjs(path: str, **options: Any) -> ReferenceModel:
    from vql.udfs.tfjs_detector import TfjsDetector

    return TfjsDetector(resolve_model_path(path), **options)


def _onnx(path: str, *, labels: Any, boxes: str, scores: str, **options: Any) -> ReferenceModel:
    from vql.udfs.onnx_detector import OnnxDetector, OnnxLayout

    layout_keys = ("classes", "box_format", "normalized", "image", "channels", "scale")
    layout = OnnxLayout(boxes=boxes, scores=scores, **{k: options.pop(k) for k in layout_keys if k in options})
    return OnnxDetector(resolve_model_path(path), labels, layout, **options)


def _ultralytics(path: str, **options: Any) -> ReferenceModel:
    from vql.udfs.ultralytics_detector import UltralyticsDetector

    return UltralyticsDetector(resolve_model_path(path), **options)


def _torchvision(path: str | None, *, arch: str, **options: Any) -> ReferenceModel:
    from vql.udfs.torchvision_detector import TorchvisionDetector

    return TorchvisionDetector(arch, resolve_model_path(path) if path else None, **options)


MODEL_KINDS: dict[str, Callable[..., ReferenceModel]] = {
    "tfjs": _tfjs,
    "onnx": _onnx,
    "ultralytics": _ultralytics,
    "torchvision": _torchvision,
}


def load_model(kind: str, path: str | Path | None, **options: Any) -> ReferenceModel:
    """Build a reference model of ``kind`` from ``path`` with the adapter's options."""
    loader = MODEL_KINDS.get(kind.lower())
    if loader is None:
        raise ModelError(f"unknown model type {kind!r}; one of: {', '.join(sorted(MODEL_KINDS))}")
    if path is not None:
        checked_path(str(path), "model file", ModelError)
    try:
        return loader(str(path) if path is not None else None, **options)
    except TypeError as e:  # a missing or unexpected option
        raise ModelError(f"bad options for a {kind} model: {e}") from e
    except OSError as e:  # unreadable: permissions, a folder where a file was expected...
        raise ModelError(f"cannot read the {kind} model {path}: {e.strerror or e}") from e


def default_classes() -> tuple[str, ...]:
    """The packaged CenterNet's class names, read from its labels file without loading the model
    (no torch): what the shell completes inside ``contains('``."""
    from importlib import resources

    return read_labels(Path(str(resources.files("vql.udfs") / "models" / "centernet" / "labels.txt")))


def default_model(device: str | None = "cpu") -> ReferenceModel:
    """The packaged CenterNet."""
    from vql.udfs.tfjs_detector import centernet

    return centernet(device)
