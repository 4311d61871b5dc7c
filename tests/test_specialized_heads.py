"""The specialized CNNs' heads (planner/specialized.py): the pooled head recognises an object
wherever it appears, including where no training frame had one; a plan holding a pooled model
is stored and loaded with its weights intact."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest
import torch

from vql.errors import PlanFormatError
from vql.planner import plan_format
from vql.planner.cascade import TRAINED
from vql.planner.query import QueryPlan
from vql.planner.specialized import CANDIDATES, HEADS, Architecture, SpecializedCNN, TrainedModel, train

from test_planner_explain import _chosen_cascade

HEADER = struct.Struct("<8sIQ")  # plan_format's documented header: magic, version, JSON length


def _frames(n: int, columns: tuple[int, int], seed: int):
    """64x64 frames of a noisy grey street; on ~30% of them a dark 'walker' (6x10 pixels) whose
    left edge lies in ``columns``."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.3
    frames = rng.normal(120, 6, (n, 64, 64, 3)).clip(0, 255).astype(np.uint8)
    for i in np.flatnonzero(truth):
        x, y = rng.integers(*columns), rng.integers(20, 50)
        frames[i, y:y + 10, x:x + 6] = rng.integers(20, 60)
    return frames, truth


def test_the_pooled_head_finds_an_object_where_training_had_none():
    """Trained with walkers in the left third only, judged with walkers in the right third: the
    pooled head still ranks every walker above every empty frame (the planner then
    settles the empty frames without missing one); this fails for a head whose weights are tied to
    positions, as the dense head's are (checked beside it: it separates worse)."""
    x_train, y_train = _frames(400, (0, 16), seed=1)
    x_test, y_test = _frames(400, (42, 58), seed=2)
    separated = {}
    for head in HEADS:
        model = train(Architecture(2, 16, 32, 64, head), x_train, y_train, min_steps=100, max_steps=100)
        s = model.scores(x_test)
        separated[head] = float(np.mean(s[~y_test] < s[y_test].min()))  # empty frames below every walker
    assert separated["pool"] == 1.0, separated
    assert separated["dense"] < separated["pool"], separated


def test_the_planner_trains_a_pooled_model_and_every_candidate_builds():
    assert any(shape[4] == "pool" for shape in CANDIDATES[:TRAINED])
    for shape in CANDIDATES:
        arch = Architecture(*shape)
        assert arch.shape == shape
        out = SpecializedCNN(arch)(torch.zeros(2, 3, arch.size, arch.size))
        assert out.shape == (2,)
    assert Architecture(2, 16, 32, 64, "pool").name == "cnn2x16-p32@64"
    assert Architecture(2, 16, 32, 64).name == "cnn2x16-d32@64"
    with pytest.raises(ValueError, match="unknown head 'max'"):
        SpecializedCNN(Architecture(2, 16, 32, 64, "max"))


def _plan_with(model: TrainedModel) -> QueryPlan:
    choice = _chosen_cascade()
    stages = (choice.chosen.stages[0], dataclasses.replace(choice.chosen.stages[1], op=model))
    choice = dataclasses.replace(choice, chosen=dataclasses.replace(choice.chosen, stages=stages), alternatives=())
    return QueryPlan("cascade", "test", (choice,), 0.01, 0.01)


def test_a_pooled_model_round_trips_through_the_stored_plan_format():
    arch = Architecture(2, 16, 32, 64, "pool")
    torch.manual_seed(0)
    model = TrainedModel(arch, SpecializedCNN(arch), np.full((64, 64, 3), 7.0, np.float32), 3.0)
    loaded = plan_format.loads(plan_format.dumps(_plan_with(model))).choices[0].chosen.stages[1].op
    assert loaded.arch == arch
    x = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), np.uint8)
    np.testing.assert_array_equal(loaded.scores(x), model.scores(x))


@pytest.mark.parametrize("arch", [Architecture(2, 16, 32, 64, "max"), Architecture(2, 16, 32, 48, "pool")])
def test_a_stored_architecture_outside_the_planners_family_is_refused(arch):
    """A head or shape the planner never trains is refused when a stored plan is read."""
    good = Architecture(2, 16, 32, 64, "pool")
    model = TrainedModel(good, SpecializedCNN(good), np.zeros((64, 64, 3), np.float32), 1.0)
    blob = plan_format.dumps(_plan_with(model))
    magic, version, n = HEADER.unpack(blob[:HEADER.size])
    doc = json.loads(blob[HEADER.size:HEADER.size + n])

    def edit(node):
        if isinstance(node, dict):
            if node.get("type") == "Architecture":
                node["fields"].update(head=arch.head, size=arch.size)
            for v in node.values():
                edit(v)
        elif isinstance(node, list):
            for v in node:
                edit(v)

    edit(doc)
    text = json.dumps(doc).encode()
    forged = HEADER.pack(magic, version, len(text)) + text + blob[HEADER.size + n:]
    with pytest.raises(PlanFormatError, match="not one of the planner's architectures"):
        plan_format.loads(forged)
