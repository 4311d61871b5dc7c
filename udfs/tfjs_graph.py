"""Reading a TensorFlow.js *graph model* (``model.json`` + weight shards) into plain Python data.

The JSON holds a TensorFlow GraphDef (nodes with ``op``, ``input`` and ``attr``) and a weights
manifest listing every constant tensor, in shard order, with its dtype and optional quantization.
This module only parses and validates: it turns the files into a :class:`TfjsGraph` of
:class:`GraphNode` records and numpy constants. Executing the graph is ``tfjs_model``'s job.

>>> g = load_graph(CENTERNET_DIR / "centernet.json")       # doctest: +SKIP
>>> g.inputs, g.outputs[-1]                                 # doctest: +SKIP
(('tower_0/images',), 'tower_0/detections')
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vql.errors import ModelError

# TensorFlow dtype enums as they appear in GraphDef JSON.
TF_DTYPES: dict[str, np.dtype] = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_UINT8": np.dtype(np.uint8),
}

# Manifest dtypes (tfjs spelling) and quantized storage dtypes.
_MANIFEST_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "int32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
    "float16": np.dtype(np.float16),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
}


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One GraphDef node with its attributes decoded to Python values."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class TfjsGraph:
    """A parsed graph model: nodes in file order, constants by name, signature names."""

    path: Path
    nodes: tuple[GraphNode, ...]
    constants: dict[str, np.ndarray] = field(hash=False)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: dict[str, tuple[int, ...]] = field(hash=False)


def decode_attr(value: dict[str, Any]) -> Any:
    """Decode one GraphDef JSON attribute value into a Python value.

    >>> decode_attr({"s": "U0FNRQ=="})
    'SAME'
    >>> decode_attr({"list": {"i": ["1", "2", "2", "1"]}})
    [1, 2, 2, 1]
    >>> decode_attr({"type": "DT_FLOAT"})
    dtype('float32')
    """
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8", "replace")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return TF_DTYPES.get(value["type"], value["type"])
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode("utf-8", "replace") for v in items["s"]]
        if "f" in items:
            return [float(v) for v in items["f"]]
        if "type" in items:
            return [TF_DTYPES.get(v, v) for v in items["type"]]
        return []
    if "shape" in value:
        dims = value["shape"].get("dim", [])
        return tuple(int(d.get("size", -1)) for d in dims)
    if "tensor" in value:
        return value["tensor"]
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not a TensorFlow.js graph model (bad JSON: {e})") from e
    if not isinstance(doc, dict) or "modelTopology" not in doc or "weightsManifest" not in doc:
        raise ModelError(f"{path}: not a TensorFlow.js graph model (no modelTopology/weightsManifest)")
    if doc.get("format", "graph-model") != "graph-model":
        raise ModelError(f"{path}: format {doc.get('format')!r} is not supported (only graph-model)")
    return doc


def _dequantize(raw: np.ndarray, spec: dict[str, Any], name: str) -> np.ndarray:
    """Undo tfjs weight quantization: float16 storage, or uint8/uint16 affine (scale, min)."""
    quant = spec["quantization"]
    target = _MANIFEST_DTYPES.get(quant.get("original_dtype", spec["dtype"]), np.dtype(np.float32))
    if quant["dtype"] == "float16":
        return raw.astype(target)
    if "scale" in quant and "min" in quant:
        return (raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"])).astype(target)
    raise ModelError(f"weight {name!r}: unsupported quantization {quant!r}")


def _read_weights(path: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Read every shard group of the manifest and split it into named numpy arrays."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        chunks = []
        for shard in group.get("paths", []):
            shard_path = path.parent / shard
            if not shard_path.is_file():
                raise ModelError(f"{path}: weight shard not found: {shard_path}")
            chunks.append(shard_path.read_bytes())
        buffer = b"".join(chunks)
        offset = 0
        for spec in group.get("weights", []):
            name = spec["name"]
            shape = tuple(int(d) for d in spec.get("shape", []))
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            storage_name = quant["dtype"] if quant else spec["dtype"]
            storage = _MANIFEST_DTYPES.get(storage_name)
            if storage is None:
                raise ModelError(f"{path}: weight {name!r} has unsupported dtype {storage_name!r}")
            nbytes = count * storage.itemsize
            if offset + nbytes > len(buffer):
                raise ModelError(
                    f"{path}: weight shards are truncated ({len(buffer)} bytes, "
                    f"weight {name!r} needs bytes {offset}..{offset + nbytes})"
                )
            raw = np.frombuffer(buffer, dtype=storage, count=count, offset=offset)
            offset += nbytes
            array = _dequantize(raw, spec, name) if quant else raw.copy()
            weights[name] = array.reshape(shape)
        if offset != len(buffer):
            raise ModelError(
                f"{path}: weight shards hold {len(buffer)} bytes but the manifest describes {offset}"
            )
    return weights


def _signature_names(doc: dict[str, Any], nodes: tuple[GraphNode, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    signature = doc.get("signature") or doc.get("userDefinedMetadata", {}).get("signature") or {}
    inputs = tuple(v.get("name", k).split(":")[0] for k, v in signature.get("inputs", {}).items())
    outputs = tuple(v.get("name", k).split(":")[0] for k, v in signature.get("outputs", {}).items())
    if not inputs:
        inputs = tuple(n.name for n in nodes if n.op == "Placeholder")
    if not outputs:
        consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.inputs}
        outputs = tuple(n.name for n in nodes if n.name not in consumed and n.op != "Const")
    return inputs, outputs


def load_graph(path: str | Path) -> TfjsGraph:
    """Parse ``model.json`` and its weight shards; raise :class:`ModelError` on any defect."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) != 1:
            raise ModelError(f"{path}: expected exactly one model .json file, found {len(candidates)}")
        path = candidates[0]
    doc = _read_json(path)
    topology = doc["modelTopology"]
    raw_nodes = topology.get("node")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ModelError(f"{path}: the graph has no nodes")
    try:
        nodes = tuple(
            GraphNode(
                name=n["name"],
                op=n["op"],
                inputs=tuple(n.get("input", [])),
                attrs={k: decode_attr(v) for k, v in n.get("attr", {}).items()},
            )
            for n in raw_nodes
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: malformed graph node ({e})") from e
    if topology.get("library", {}).get("function"):
        raise ModelError(f"{path}: graphs with function libraries (control flow) are not supported")
    weights = _read_weights(path, doc["weightsManifest"])
    constants: dict[str, np.ndarray] = {}
    for node in nodes:
        if node.op != "Const":
            continue
        if node.name not in weights:
            raise ModelError(f"{path}: constant {node.name!r} has no entry in the weights manifest")
        constants[node.name] = weights[node.name]
    inputs, outputs = _signature_names(doc, nodes)
    names = {n.name for n in nodes}
    for name in inputs + outputs:
        if name not in names:
            raise ModelError(f"{path}: signature names {name!r}, which is not a node of the graph")
    input_shapes = {
        n.name: tuple(n.attrs.get("shape", ()) or ()) for n in nodes if n.op == "Placeholder"
    }
    return TfjsGraph(path, nodes, constants, inputs, outputs, input_shapes)
