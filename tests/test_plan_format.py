"""Stored plans are data (planner/plan_format.py): a real plan planned on vtest round-trips with
its structure, thresholds and stages intact and is reused by a new session; a pickle (or any
malformed row) in vql_plans is never executed, only discarded and planned again."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pickle
import re
import shutil
import struct
from types import SimpleNamespace as NS

import cv2
import duckdb
import numpy as np
import pytest
import torch

import vql
from vql.errors import PlanFormatError
from vql.engine.executor import plan_summary
from vql.planner import cascade, plan_format, query, sampling, specialized
from vql.planner.certify import Certificate, ClaimBounds, Sizing
from vql.planner.query import QueryPlan
from vql.engine.views import downscale

from test_planner_explain import _chosen_cascade

QUERY = "SELECT frame FROM cam WHERE object_count('person') >= 4 AND frame < 300 WITH (fpr := 0.2, fnr := 0.2)"
HEADER = struct.Struct("<8sIQ")  # the documented header: magic, format version, JSON length


@pytest.fixture(scope="module")
def planned(vtest_path, tmp_path_factory):
    """QUERY planned and run once on the first 300 frames of vtest with the real planner and
    CenterNet. Two constants are lowered for the module so that a scan this short gets a cascade
    (with the defaults it is answered exactly): the training prefix's floor, and the share of the
    exact plan's cost a cascade must stay under; and the specialized models train for 100 steps
    rather than the default floor (200; on 40 frames, 500 steps took a minute)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sampling, "TRAIN_FLOOR", 80)
        mp.setattr(query, "EXACT_MARGIN", 10.0)
        mp.setattr(cascade, "train", functools.partial(specialized.train, min_steps=100))
        db = tmp_path_factory.mktemp("plans") / "plans.duckdb"
        con = vql.connect(db, progress=False)
        con.sql(f"CREATE VIDEO cam FROM '{vtest_path}'")
        result = con.sql(QUERY)
        con.close()
        plan = result.metadata["plans"]["vql_frames_cam"]
        assert plan.strategy == "cascade", result.metadata["plan_text"]
        yield NS(db=db, result=result, plan=plan, answer=[r[0] for r in result.fetchall()])


def _copy(db, tmp_path):
    """The fixture's database file, copied: each test changes its own."""
    target = tmp_path / "copy.duckdb"
    shutil.copy(db, target)
    return target


def _data(x):
    """Everything a plan holds as plain comparable data (arrays and weights by their bytes)."""
    if dataclasses.is_dataclass(x):
        return type(x).__name__, {f.name: _data(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, tuple):
        return tuple(_data(v) for v in x)
    if isinstance(x, np.ndarray):
        return x.dtype.str, x.shape, x.tobytes()
    if isinstance(x, torch.nn.Module):
        return {k: _data(v.detach().numpy()) for k, v in x.state_dict().items()}
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return x


def _stages(plan: QueryPlan):
    """Every (candidate, its specialized model, its difference detector) of the plan, chosen first."""
    return [c for choice in plan.choices for c in ((choice.chosen,) if choice.chosen else ()) + choice.alternatives]


def _vtest_frames(path, frames):
    cap, out, index = cv2.VideoCapture(str(path)), [], 0
    while index <= max(frames):
        ok, frame = cap.read()
        assert ok
        if index in frames:
            out.append(frame)
        index += 1
    cap.release()
    return out


def test_a_real_plan_round_trips_its_structure_and_thresholds(planned):
    plan = planned.plan
    blob = plan_format.dumps(plan)
    back = plan_format.loads(blob)
    assert _data(back) == _data(plan)
    chosen, again = plan.choices[0].chosen, back.choices[0].chosen
    kinds = {st.kind.label for c in _stages(plan) for st in c.stages}
    assert kinds == {"difference", "specialized"}, "the test needs both kinds of stage"
    assert [st.band for st in again.stages] == [st.band for st in chosen.stages] and again.gate_delta == math.inf  # +inf kept
    assert back.certificate == plan.certificate and back.sizing == plan.sizing and back.certificate.passed
    assert back.explain_lines() == plan.explain_lines()
    assert plan_summary(back, back.choices[0]) == plan_summary(plan, plan.choices[0])
    # shared objects stay shared: a model chosen and listed among the alternatives is stored once
    for original, loaded in zip(_stages(plan), _stages(back)):
        for other_o, other_l in zip(_stages(plan), _stages(back)):
            for a, b in zip(original.stages, loaded.stages):
                for c, d in zip(other_o.stages, other_l.stages):
                    assert (a.op is c.op) == (b.op is d.op)
    # the structure is readable JSON, infinities spelled out; the weights are not in it
    magic, version, n = HEADER.unpack_from(blob)
    assert (magic, version) == (b"VQLPLAN\0", plan_format.FORMAT_VERSION)
    document = json.loads(blob[HEADER.size:HEADER.size + n])
    assert document["type"] == "QueryPlan" and '{"float":"inf"}' in json.dumps(document, separators=(",", ":"))
    assert n < len(blob) // 4


def test_loaded_stages_score_frames_identically(planned, vtest_path):
    frames = _vtest_frames(vtest_path, set(range(0, 300, 23)))
    back = plan_format.loads(plan_format.dumps(planned.plan))
    scored, varied = 0, False
    for original, loaded in zip(_stages(planned.plan), _stages(back)):
        for st, back_st in zip(original.stages, loaded.stages):
            small = downscale(frames, *st.op.view)
            a, b = st.op.scores(small), back_st.op.scores(small)
            assert np.array_equal(a, b)
            scored += 1
            if st.kind.label == "difference":
                assert a.std() > 0  # frames differ from the background by different amounts
            else:
                varied = varied or a.std() > 0
    assert scored >= 4 and varied


def test_a_new_connection_reuses_the_stored_plan(planned, tmp_path):
    db = _copy(planned.db, tmp_path)
    with duckdb.connect(str(db)) as raw:
        (blob,) = raw.execute("SELECT plan FROM vql_plans").fetchone()
    assert blob.startswith(b"VQLPLAN\0")
    with vql.connect(db, progress=False) as con:
        again = con.sql(QUERY)
    assert again.metadata.get("plans_reused") == 1 and "plans_discarded" not in again.metadata
    assert again.metadata.get("frames_labelled", 0) == 0 and again.metadata["frames_decided_by_specialized"] > 0
    assert [r[0] for r in again.fetchall()] == planned.answer
    assert again.metadata["plan_text"] == planned.result.metadata["plan_text"]
    assert again.metadata["cascades"] == planned.result.metadata["cascades"]


class _CreatesFile:
    """Unpickled, this opens (creates) a file: what an outside tester used to run code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _truth(con, frames_below: int) -> dict[int, bool]:
    """object_count('person') >= 4 on every labelled frame, from the stored labels."""
    rows = con.duckdb.execute(
        "SELECT f.frame, count(l.frame) FILTER (WHERE l.class_id = 0 AND l.score >= 0.5) FROM vql_labelled_frames f "
        "LEFT JOIN vql_labels l ON l.video_fp = f.video_fp AND l.model_version = f.model_version AND l.frame = f.frame "
        "WHERE f.frame < ? GROUP BY f.frame", [frames_below]).fetchall()
    return {int(f): n >= 4 for f, n in rows}


def test_a_pickle_in_vql_plans_is_never_executed(planned, tmp_path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_CreatesFile(str(proof)))).close()
    assert proof.exists()  # the payload is live: unpickling it creates its file
    marker = tmp_path / "pwned"
    db = _copy(planned.db, tmp_path)
    with duckdb.connect(str(db)) as raw:
        raw.execute("UPDATE vql_plans SET plan = ?", [pickle.dumps(_CreatesFile(str(marker)))])
        assert raw.execute("SELECT count(*) FROM vql_plans").fetchone() == (1,)
    with vql.connect(db, progress=False) as con:
        result = con.sql(QUERY)
        truth = _truth(con, 300)
    assert not marker.exists()
    assert result.metadata["plans_discarded"] == 1 and "plans_reused" not in result.metadata
    assert "wrong magic" in result.metadata["plans_discarded_why"][0]
    # planned again from the stored labels: every labelled frame is answered as the reference says
    answer = {r[0] for r in result.fetchall()}
    assert len(truth) >= 150 and all((f in answer) == t for f, t in truth.items())
    # the row was replaced by a plan of this format, which the next session reuses
    with duckdb.connect(str(db)) as raw:
        (blob,) = raw.execute("SELECT plan FROM vql_plans").fetchone()
    assert plan_format.loads(blob).strategy == result.metadata["plans"]["vql_frames_cam"].strategy
    with vql.connect(db, progress=False) as con:
        assert con.sql(QUERY).metadata.get("plans_reused") == 1
    assert not marker.exists()


def test_rows_of_older_plan_formats_are_dropped_on_open(tmp_path):
    db = tmp_path / "old.duckdb"
    with vql.connect(db, progress=False) as con:
        con.duckdb.execute("INSERT INTO vql_plans (key, video_fp, plan) VALUES ('plan5|x', 'x', ?), (?, 'x', ?)",
                           [pickle.dumps(_CreatesFile(str(tmp_path / "pwned"))), f"{vql.api.PLAN_FORMAT}|y", b"VQLPLAN"])
    with vql.connect(db, progress=False) as con:
        keys = [k for (k,) in con.duckdb.execute("SELECT key FROM vql_plans").fetchall()]
    assert keys == [f"{vql.api.PLAN_FORMAT}|y"] and not (tmp_path / "pwned").exists()


# --- malformed plans, on a constructed plan (planner/query.py's fields, both stages) ---------------


def _small_plan() -> QueryPlan:
    choice = _chosen_cascade()
    cert = Certificate(0.01, 0.01, 4700, (ClaimBounds("WHERE contains('person', min_score := 0.5)", 425, 0, 4275, 3,
                                                      0.0086, 0.0022),))
    return QueryPlan("cascade", "certified", (choice,), 0.01, 0.01, ("WHERE contains('person', min_score := 0.5)",),
                     "10% of 36000 frames", 3600, 3323, Sizing(4700, 0, 3, 0.71), cert, 400.0, 1900.0)


def _repack(blob: bytes, edit=None, *, version=None, tensors=None) -> bytes:
    """The blob with its JSON document edited in place (and its version or tensor part replaced)."""
    magic, v, n = HEADER.unpack_from(blob)
    document = json.loads(blob[HEADER.size:HEADER.size + n])
    if edit is not None:
        edit(document)
    text = json.dumps(document).encode()
    rest = blob[HEADER.size + n:] if tensors is None else tensors
    return HEADER.pack(magic, v if version is None else version, len(text)) + text + rest


def _node(document, type_name: str) -> dict:
    """The first dataclass node of a type in the document (breadth first)."""
    stack = [document]
    while stack:
        x = stack.pop(0)
        if isinstance(x, dict):
            if x.get("type") == type_name and "fields" in x:
                return x
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    raise AssertionError(f"no {type_name} in the document")


def test_a_constructed_plan_round_trips():
    plan = _small_plan()
    back = plan_format.loads(plan_format.dumps(plan))
    assert _data(back) == _data(plan) and back.explain_lines() == plan.explain_lines()


def _set(path: list, value):
    def edit(document):
        node = document
        for key in path[:-1]:
            node = _node(node, key[1:]) if isinstance(key, str) and key.startswith("@") else node[key]
        node[path[-1]] = value
    return edit


def _swap_tensor(blob: bytes, locate, array: np.ndarray) -> bytes:
    """The blob with the tensor of the node ``locate(document)`` replaced by ``array``, the
    structure saying so: consistent, but not what its object needs."""
    from safetensors.numpy import load, save

    _, _, n = HEADER.unpack_from(blob)
    tensors = load(blob[HEADER.size + n:])

    def edit(document):
        node = locate(document)
        tensors[node["tensor"]] = array
        node["shape"] = list(array.shape)
    edited = _repack(blob, edit)
    _, _, n = HEADER.unpack_from(edited)
    return edited[:HEADER.size + n] + save(tensors)


def _background_16(blob: bytes) -> bytes:
    """A background image of 16×16 where the detector (size 32) needs 32×32."""
    return _swap_tensor(blob, lambda d: _node(d, "DifferenceDetector")["fields"]["background"],
                        np.zeros((16, 16, 3), np.uint8))


def _nested(blob: bytes, depth: int) -> bytes:
    """The plan with its reason a tuple of a tuple of ... ``depth`` deep."""
    edited = _repack(blob, _set(["fields", "reason"], "@nest@"))
    _, _, n = HEADER.unpack_from(edited)
    document = edited[HEADER.size:HEADER.size + n].replace(b'"@nest@"', b"[" * depth + b"]" * depth)
    return HEADER.pack(b"VQLPLAN\0", plan_format.FORMAT_VERSION, len(document)) + document + edited[HEADER.size + n:]


def _head_bias_2(blob: bytes) -> bytes:
    """The network's last bias with two values where its one output needs one."""
    return _swap_tensor(blob, lambda d: _node(d, "TrainedModel")["fields"]["net"]["weights"]["head.3.bias"],
                        np.zeros(2, np.float32))


MALFORMED = {
    "truncated in the JSON": (lambda b: b[: HEADER.size + 40], "runs past the end"),
    "truncated in the tensors": (lambda b: b[:-10], "not valid safetensors"),
    "shorter than the header": (lambda b: b[:12], "shorter than the header"),
    "a pickle": (lambda b: pickle.dumps(_CreatesFile("/nonexistent/x")), "wrong magic"),
    "another version": (lambda b: _repack(b, version=99), f"format version 99, this vql reads {plan_format.FORMAT_VERSION}"),
    "bad JSON": (lambda b: HEADER.pack(b"VQLPLAN\0", plan_format.FORMAT_VERSION, 9) + b"{not json" + b[-16:],
                 "not valid JSON"),
    "bare Infinity": (lambda b: _repack(b).replace(b'{"float": "inf"}', b"Infinity".ljust(16), 1), "not valid JSON"),
    "unknown root type": (lambda b: _repack(b, _set(["type"], "Popen")), "unknown type 'Popen'"),
    "unknown nested type": (lambda b: _repack(b, _set(["@Atom", "type"], "os.system")), "unknown type 'os.system'"),
    "extra field": (lambda b: _repack(b, _set(["@Band", "fields", "injected"], 1)),
                    r"Band has unknown fields \['injected'\]"),
    "an operator of no kind of stage": (lambda b: _repack(b, _set(["@Stage", "fields", "op"], {"type": "Atom", "fields": {}})),
                                        "Atom lacks fields"),
    "missing field": (lambda b: _repack(b, lambda d: d["fields"].pop("reason")), r"QueryPlan lacks fields \['reason'\]"),
    "a string for a float": (lambda b: _repack(b, _set(["fields", "fpr"], "0.01")), "fpr: a str where float belongs"),
    "a tuple for a string": (lambda b: _repack(b, _set(["fields", "reason"], ["x"])), "a tuple where str belongs"),
    "an unknown special float": (lambda b: _repack(b, _set(["fields", "fpr"], {"float": "huge"})), "not a value"),
    "a dangling reference": (lambda b: _repack(b, _set(["@CascadeChoice", "fields", "costs"], {"ref": 99})),
                             "reference 99 to no earlier object"),
    "a tensor of another shape": (lambda b: _repack(b, _set(["@TrainedModel", "fields", "mean", "shape"], [3, 32, 32])),
                                  r"the structure says float32 \[3, 32, 32\]"),
    "a tensor not stored": (lambda b: _repack(b, _set(["@TrainedModel", "fields", "mean", "tensor"], "t99")),
                            "tensor 't99' is not stored"),
    "a background of the wrong size": (_background_16, r"the background is uint8 \(16, 16, 3\), not uint8 \(32, 32, 3\)"),
    "an architecture not the planner's": (lambda b: _repack(b, _set(["@Architecture", "fields", "filters"], 10 ** 9)),
                                          "is not one of the planner's architectures"),
    "an unknown precision": (lambda b: _repack(b, _set(["@Architecture", "fields", "precision"], "float16")),
                             "unknown precision 'float16'"),
    "a detector of another frame size": (lambda b: _repack(b, _set(["@DifferenceDetector", "fields", "size"], 10 ** 6)),
                                         "frames of 1000000x1000000"),
    "weights of another shape": (_head_bias_2, r"the weights do not fit cnn1x16-d32@32"),
    "nested deeply": (lambda b: _nested(b, 600), "reason: a tuple where str belongs"),  # read as the types say
    "nested too deeply for JSON": (lambda b: _nested(b, 100_000), "not valid JSON"),
    "a crop outside the frame": (lambda b: _repack(b, _set(["@DifferenceDetector", "fields", "crop"], [0.0, 0.5, 1.0, 1.5])),
                                 r"the crop \(0.0, 0.5, 1.0, 1.5\) is not"),
    "a crop that is not four numbers": (lambda b: _repack(b, _set(["@TrainedModel", "fields", "crop"], [0.0, 0.5])),
                                        "crop"),
    "an unknown metric": (lambda b: _repack(b, _set(["@DifferenceDetector", "fields", "metric"], "__import__")),
                          "unknown difference metric"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_plans_are_refused(name):
    corrupt, message = MALFORMED[name]
    blob = corrupt(plan_format.dumps(_small_plan()))
    with pytest.raises(PlanFormatError, match=message):
        plan_format.loads(blob)


def test_only_registered_types_are_stored():
    plan = _small_plan()
    choice = plan.choices[0]
    stages = choice.chosen.stages
    odd = dataclasses.replace(plan, choices=(dataclasses.replace(choice, chosen=dataclasses.replace(
        choice.chosen, stages=(dataclasses.replace(stages[0], op=NS(size=32)),) + stages[1:])),))
    with pytest.raises(PlanFormatError, match=re.escape("op: a SimpleNamespace where Any belongs")):
        plan_format.dumps(odd)
