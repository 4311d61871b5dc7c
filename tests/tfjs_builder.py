"""Writing small TensorFlow.js graph models for tests (model.json + one weight shard)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np


def attr(value) -> dict:
    """Encode a Python value as a GraphDef JSON attribute."""
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int):
        return {"i": str(value)}
    if isinstance(value, float):
        return {"f": value}
    if isinstance(value, str):
        return {"s": base64.b64encode(value.encode()).decode()}
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return {"list": {"i": [str(v) for v in value]}}
    if isinstance(value, list):
        return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in value]}}
    raise TypeError(value)


def write_model(
    folder: Path,
    nodes: list[tuple[str, str, list[str], dict]],
    constants: dict[str, np.ndarray],
    input_shape: list[int],
    outputs: list[str],
    float16: bool = False,
) -> Path:
    """Write ``model.json`` and ``weights.bin``; constants become Const nodes in the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    graph_nodes = [
        {
            "name": "input",
            "op": "Placeholder",
            "attr": {"shape": {"shape": {"dim": [{"size": str(d)} for d in input_shape]}}, "dtype": {"type": "DT_FLOAT"}},
        }
    ]
    manifest, blobs = [], []
    for name, value in constants.items():
        value = np.asarray(value)
        graph_nodes.append({"name": name, "op": "Const", "attr": {"value": {"tensor": {}}}})
        spec = {"name": name, "shape": list(value.shape), "dtype": "int32" if value.dtype.kind == "i" else "float32"}
        if value.dtype.kind == "f" and float16:
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            blobs.append(value.astype(np.float16).tobytes())
        else:
            blobs.append(value.astype(np.int32 if value.dtype.kind == "i" else np.float32).tobytes())
        manifest.append(spec)
    for name, op, inputs, attrs in nodes:
        graph_nodes.append({"name": name, "op": op, "input": inputs, "attr": {k: attr(v) for k, v in attrs.items()}})
    doc = {
        "format": "graph-model",
        "signature": {
            "inputs": {"input": {"name": "input:0"}},
            "outputs": {o: {"name": o + ":0"} for o in outputs},
        },
        "modelTopology": {"node": graph_nodes, "library": {}, "versions": {}},
        "weightsManifest": [{"paths": ["weights.bin"], "weights": manifest}],
    }
    (folder / "weights.bin").write_bytes(b"".join(blobs))
    path = folder / "model.json"
    path.write_text(json.dumps(doc))
    return path
