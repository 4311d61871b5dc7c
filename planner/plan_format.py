"""Stored query plans as data: an explicit, versioned format that loading never executes.

A certified ``QueryPlan`` (``planner/query.py``) is stored in ``vql_plans`` so that a later
session reuses it. It is written as one BLOB::

    b"VQLPLAN\\0"        8 bytes, the magic
    version             uint32, little-endian (FORMAT_VERSION)
    n                   uint64, little-endian: the length of the JSON document
    JSON                n bytes, UTF-8: the plan's structure
    safetensors         the rest: every array the structure refers to (weights, images)

The JSON document is one *value*, the plan itself:

    null, true/false, an integer, a finite float, a string
    {"float": "inf" | "-inf" | "nan"}                  a float JSON cannot write
    [value, ...]                                       a tuple
    {"type": NAME, "fields": {field: value, ...}}      a dataclass of the registry (TYPES), with
                                                       every one of its fields and no other
    {"ref": n}                                         the n-th dataclass node of the document
                                                       (pre-order, from 0): one object, shared
    {"tensor": KEY, "dtype": DTYPE, "shape": [...]}    the array stored under KEY in the
                                                       safetensors part, of that dtype and shape
    {"module": "SpecializedCNN", "arch": value,        a specialized CNN (planner/specialized.py):
     "weights": {parameter: tensor, ...}}              its architecture and every parameter

What a plan holds is what running and explaining it read: the choices with their stages (each
a registered operator of ``planner/stages.py: KINDS`` with its band, costs and pass share) (the specialized models' weights and mean images, the detectors' backgrounds),
the alternatives (their stages shared with the chosen one where they are the same object), the
sizing and the certificate; the per-frame truths and answers planning looked at are not part
of a ``QueryPlan`` and are not stored.

Loading builds only the registered dataclasses, plain values, numpy arrays and specialized CNNs;
each field's value is checked against the field's declared type, architectures must be the
planner's own (``CANDIDATES``, in one of ``PRECISIONS``: a model is scored in the precision it
was trained in) and images of its sizes, so a stored plan cannot make loading
build a network or read frames larger than the planner does. Anything else (another magic or
version, malformed JSON or safetensors, an unknown type name, a missing or unknown field, a
value of the wrong type, an array whose dtype or shape differs from what its node or its model
says) raises :class:`PlanFormatError`; the session then plans again (from the stored labels)
and replaces the row (``vql/api.py``). A field added to a plan's dataclass changes what a stored
plan must hold, so plans stored before it are refused, never read with fields shifted.

>>> from vql.plan import PLAN_FORMAT_VERSION, ModelPredicate
>>> from vql.planner.cascade import Atom, exact_choice
>>> from vql.planner.cost import Costs
>>> atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
>>> plan = QueryPlan("exact", "a target of 0", (exact_choice(atom, "exact", Costs(1e-3, 0.05)),), 0.0, 0.01)
>>> blob = dumps(plan)
>>> blob[:8], loads(blob) == plan
(b'VQLPLAN\\x00', True)
>>> loads(blob[:-1])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
vql.errors.PlanFormatError: stored plan: the tensor part is not valid safetensors (Error while deserializing: ...)
"""

from __future__ import annotations

import dataclasses
import json
import struct
import types
import typing

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from vql.engine.difference import DETECTORS, AnchorGate, DifferenceDetector
from vql.errors import PlanFormatError
from vql.plan import PLAN_FORMAT_VERSION, ModelPredicate
from vql.planner.cascade import DIFF_SIZE, Atom, Candidate, CascadeChoice
from vql.planner.certify import Certificate, ClaimBounds, Sizing
from vql.planner.cost import Costs
from vql.planner.query import QueryPlan
from vql.planner.specialized import CANDIDATES, PRECISIONS, Architecture, SpecializedCNN, TrainedModel
from vql.planner.stages import KINDS, Band, Stage

MAGIC = b"VQLPLAN\0"
FORMAT_VERSION = PLAN_FORMAT_VERSION
_HEADER = struct.Struct("<8sIQ")  # magic, version, JSON length

# every class a stored plan may hold, by the name the document gives it
TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    QueryPlan, CascadeChoice, Atom, ModelPredicate, Candidate, Stage, Band, Costs, TrainedModel, Architecture,
    DifferenceDetector, AnchorGate, Sizing, Certificate, ClaimBounds,
)}
DTYPES = ("uint8", "float32", "float64", "int64")  # the arrays a plan holds
IMAGE_SIZES = tuple(sorted({DIFF_SIZE, *(shape[3] for shape in CANDIDATES)}))  # the downscaled frames stages read
_SPECIAL = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}


def dumps(plan: QueryPlan) -> bytes:
    """The plan as one BLOB of this format (see the module docstring)."""
    if type(plan) is not QueryPlan:
        raise PlanFormatError(f"only a QueryPlan is stored, not {type(plan).__name__}")
    enc = _Encoder()
    document = json.dumps(enc.value(plan, QueryPlan), allow_nan=False, separators=(",", ":")).encode()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(document)) + document + save_tensors(enc.tensors)


def loads(blob: bytes) -> QueryPlan:
    """The plan stored in ``blob`` by :func:`dumps`; :class:`PlanFormatError` if it is not one."""
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise PlanFormatError(f"stored plan: {len(blob)} bytes, shorter than the header")
    magic, version, n = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise PlanFormatError("stored plan: not a vql plan (wrong magic bytes)")
    if version != FORMAT_VERSION:
        raise PlanFormatError(f"stored plan: format version {version}, this vql reads {FORMAT_VERSION}")
    end = _HEADER.size + n
    if end > len(blob):
        raise PlanFormatError(f"stored plan: the JSON document runs past the end ({end} > {len(blob)} bytes)")
    try:
        document = json.loads(blob[_HEADER.size:end].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PlanFormatError(f"stored plan: the structure is not valid JSON ({e})") from e
    try:
        tensors = load_tensors(blob[end:])
    except SafetensorError as e:
        raise PlanFormatError(f"stored plan: the tensor part is not valid safetensors ({e})") from e
    dec = _Decoder(tensors)  # led by the declared field types: no deeper than they nest
    plan = dec.value(document, QueryPlan, "plan")
    unused = sorted(set(tensors) - dec.used)
    if unused:
        raise PlanFormatError(f"stored plan: tensors {unused} are stored but not referred to")
    return plan


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (this format writes {{\"float\": ...}})")


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}
        self._arrays: dict[int, str] = {}  # id of an array -> its key
        self._objects: dict[int, int] = {}  # id of a dataclass object -> its node number
        self._alive: list = []  # keeps ids unique while encoding

    def value(self, v, hint, where: str = "plan"):
        if isinstance(v, (np.bool_, np.integer, np.floating)):
            v = v.item()
        _check(v, hint, where)
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            if np.isnan(v):
                return {"float": "nan"}
            return {"float": "inf" if v > 0 else "-inf"} if np.isinf(v) else v
        if isinstance(v, tuple):
            args = _tuple_args(hint, len(v))
            return [self.value(x, h, f"{where}[{i}]") for i, (x, h) in enumerate(zip(v, args))]
        if isinstance(v, np.ndarray):
            return self.array(v, where)
        if isinstance(v, SpecializedCNN):
            weights = {k: self.array(t.detach().cpu().numpy(), f"{where}.{k}") for k, t in v.state_dict().items()}
            return {"module": "SpecializedCNN", "arch": self.value(v.arch, Architecture, f"{where}.arch"),
                    "weights": weights}
        cls = type(v)  # a registered dataclass (``_check`` saw to it)
        if id(v) in self._objects:
            return {"ref": self._objects[id(v)]}
        self._objects[id(v)] = len(self._objects)
        self._alive.append(v)
        hints = _hints(cls)
        return {"type": cls.__name__, "fields": {f.name: self.value(getattr(v, f.name), hints[f.name], f"{where}.{f.name}")
                                                 for f in dataclasses.fields(cls)}}

    def array(self, a: np.ndarray, where: str) -> dict:
        if a.dtype.name not in DTYPES:
            raise PlanFormatError(f"{where}: an array of {a.dtype} cannot be stored (one of {', '.join(DTYPES)})")
        if id(a) not in self._arrays:
            self._arrays[id(a)] = key = f"t{len(self._arrays)}"
            self._alive.append(a)
            self.tensors[key] = np.ascontiguousarray(a)
        return {"tensor": self._arrays[id(a)], "dtype": a.dtype.name, "shape": list(a.shape)}


_PENDING = object()


class _Decoder:
    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors
        self.used: set[str] = set()
        self._objects: list = []

    def value(self, v, hint, where: str):
        out = self._build(v, hint, where)
        _check(out, hint, where)
        return out

    def _build(self, v, hint, where: str):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            args = _tuple_args(hint, len(v))
            if args is None:
                raise PlanFormatError(f"stored plan: {where}: a tuple where {_name(hint)} belongs")
            return tuple(self.value(x, h, f"{where}[{i}]") for i, (x, h) in enumerate(zip(v, args)))
        if not isinstance(v, dict):
            raise PlanFormatError(f"stored plan: {where}: unexpected JSON {type(v).__name__}")
        keys = set(v)
        if keys == {"float"} and v["float"] in _SPECIAL:
            return float(_SPECIAL[v["float"]])
        if keys == {"ref"} and type(v["ref"]) is int:
            n = v["ref"]
            if not 0 <= n < len(self._objects) or self._objects[n] is _PENDING:
                raise PlanFormatError(f"stored plan: {where}: reference {n} to no earlier object")
            return self._objects[n]
        if keys == {"tensor", "dtype", "shape"}:
            return self.array(v, where)
        if keys == {"module", "arch", "weights"} and v["module"] == "SpecializedCNN" and isinstance(v["weights"], dict):
            return self.network(v, where)
        if keys == {"type", "fields"} and isinstance(v["fields"], dict):
            return self.dataclass(v["type"], v["fields"], where)
        raise PlanFormatError(f"stored plan: {where}: not a value of this format (keys {sorted(keys)})")

    def dataclass(self, name, fields: dict, where: str):
        cls = TYPES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise PlanFormatError(f"stored plan: {where}: unknown type {name!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing, extra = [n for n in names if n not in fields], sorted(set(fields) - set(names))
        if missing or extra:
            raise PlanFormatError(f"stored plan: {where}: {name} " + "; ".join(
                ([f"lacks fields {missing}"] if missing else []) + ([f"has unknown fields {extra}"] if extra else [])))
        n = len(self._objects)
        self._objects.append(_PENDING)
        hints = _hints(cls)
        obj = cls(**{k: self.value(fields[k], hints[k], f"{where}.{k}") for k in names})
        _validate(obj, where)
        self._objects[n] = obj
        return obj

    def array(self, v: dict, where: str) -> np.ndarray:
        key, dtype, shape = v["tensor"], v["dtype"], v["shape"]
        if not isinstance(key, str) or key not in self.tensors:
            raise PlanFormatError(f"stored plan: {where}: tensor {key!r} is not stored")
        a = self.tensors[key]
        if dtype not in DTYPES or a.dtype.name != dtype or not isinstance(shape, list) or list(a.shape) != shape:
            raise PlanFormatError(f"stored plan: {where}: tensor {key!r} is {a.dtype} {list(a.shape)}, "
                                  f"the structure says {dtype} {shape}")
        self.used.add(key)
        return a

    def network(self, v: dict, where: str) -> SpecializedCNN:
        arch = self.value(v["arch"], Architecture, f"{where}.arch")
        net = SpecializedCNN(arch)
        expected = {k: tuple(t.shape) for k, t in net.state_dict().items()}
        weights = {k: self.value(t, np.ndarray, f"{where}.{k}") for k, t in v["weights"].items()}
        got = {k: tuple(a.shape) for k, a in weights.items()}
        if got != expected or any(a.dtype != np.float32 for a in weights.values()):
            raise PlanFormatError(f"stored plan: {where}: the weights do not fit {arch.name} "
                                  f"(stored {got}, the network has {expected})")
        net.load_state_dict({k: torch.from_numpy(a) for k, a in weights.items()}, strict=True)
        return net.eval()


def _validate(obj, where: str) -> None:
    """What the field types cannot say: arrays of the shape their object needs, known metrics."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise PlanFormatError(f"stored plan: {where}: {what}")

    if isinstance(obj, Architecture):  # what is built from it must stay small: the planner's own shapes
        need(obj.shape in CANDIDATES, f"{obj} is not one of the planner's "
             f"architectures (planner/specialized.py: CANDIDATES)")
        need(obj.precision in PRECISIONS, f"unknown precision {obj.precision!r}")
    if isinstance(obj, (TrainedModel, DifferenceDetector)):
        c = obj.crop
        need(c is None or (0 <= c[0] <= c[2] <= 1 and 0 <= c[1] <= c[3] <= 1),
             f"the crop {c} is not (x0, y0, x1, y1) within the frame")
    if isinstance(obj, TrainedModel):
        s = obj.arch.size
        need(obj.net.arch == obj.arch, f"the network is {obj.net.arch.name}, the model says {obj.arch.name}")
        need(obj.mean.shape == (s, s, 3) and obj.mean.dtype == np.float32, f"the mean image is {obj.mean.dtype} "
             f"{obj.mean.shape}, not float32 {(s, s, 3)}")
    elif isinstance(obj, (DifferenceDetector, AnchorGate)):
        need(obj.metric in DETECTORS, f"unknown difference metric {obj.metric!r}")
        need(obj.size in IMAGE_SIZES, f"frames of {obj.size}x{obj.size}, not one of the sizes {IMAGE_SIZES}")
        if isinstance(obj, DifferenceDetector):
            s = obj.size
            need(obj.background.shape == (s, s, 3) and obj.background.dtype == np.uint8,
                 f"the background is {obj.background.dtype} {obj.background.shape}, not uint8 {(s, s, 3)}")


def _tuple_args(hint, n: int) -> list | None:
    """The element types of a tuple of ``n`` items under ``hint`` (None: the hint takes no tuple)."""
    for h in _alternatives(hint):
        if h is tuple:
            return [object] * n
        if typing.get_origin(h) is tuple:
            args = typing.get_args(h)
            if len(args) == 2 and args[1] is Ellipsis:
                return [args[0]] * n
            if len(args) == n:
                return list(args)
    return None


def _alternatives(hint) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _fits(v, hint) -> bool:
    if hint is object:
        return True
    if hint is typing.Any:  # a stage's operator: a registered dataclass of a registered kind of stage
        return TYPES.get(type(v).__name__) is type(v) and type(v) in KINDS
    if hint is None or hint is type(None):
        return v is None
    if hint is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if hint is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if hint in (bool, str):
        return type(v) is hint
    if hint is tuple or typing.get_origin(hint) is tuple:
        args = _tuple_args(hint, len(v)) if isinstance(v, tuple) else None
        return args is not None and all(_fits(x, h) for x, h in zip(v, args))
    if hint is np.ndarray:
        return isinstance(v, np.ndarray)
    if hint is SpecializedCNN:
        return type(v) is SpecializedCNN
    if isinstance(hint, type) and TYPES.get(hint.__name__) is hint:
        return type(v) is hint
    raise PlanFormatError(f"a plan field of type {_name(hint)} cannot be stored")


def _check(v, hint, where: str) -> None:
    if not any(_fits(v, h) for h in _alternatives(hint)):
        raise PlanFormatError(f"stored plan: {where}: a {type(v).__name__} where {_name(hint)} belongs")


def _name(hint) -> str:
    alternatives = _alternatives(hint)
    if len(alternatives) > 1:
        return " | ".join(_name(h) for h in alternatives)
    return "None" if hint is type(None) else getattr(hint, "__name__", None) or str(hint)
