"""The cost model: one explicit function of named, measured inputs.

Per-frame costs (seconds) are *measured* on this machine and device: decoding and the reference
(``Costs``), and each stage's own (``planner/stages.py: Stage.seconds``); the shares each stage
passes on come from the selection frames. With ``stages`` the expected seconds of a cascade's
stages and reference on one evaluated frame (``stages.stages_cost``: each stage's cost on the
share of frames that reaches it, then the reference on the share left), the expected cost of
running a cascade over ``frames`` frames is

    frames * (decode + stages)                                           without skipping
    frames * ((decode + stages) / skip + grab * (1 - 1 / skip))          evaluating one frame in
                                 ``skip`` (the others inherit their anchor's answer, only grabbed)
    frames * (decode + (1 - 1 / skip) * gate                             skipping gated by the t−Δ
              + (1 / skip + (1 - 1 / skip) * gate_pass) * stages)        detector (every frame read)
  + still_to_pay                                                         labelling the sample, training

and the exact plan costs ``frames * (decode + reference)``. A plan is only worth it when its
expected cost, including what is still to pay (``certified_cost``: the certification frames
still to label, and the chance that the certificate fails and the plan falls back to exact),
is below the exact one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vql.planner.stages import Stage, stages_cost


@dataclass(frozen=True, slots=True)
class Costs:
    """Measured seconds per frame of decoding and of the reference."""

    decode: float  # read + convert to BGR
    reference: float  # the reference model
    grab: float = 0.0  # decode only, never converted: a skipped frame
    gate: float = 0.0  # the t−Δ detector on a downscaled frame and its anchor's


def cascade_cost(frames: int, costs: Costs, stages: Sequence[Stage] = (), skip: int = 1,
                 gate_pass: float | None = None, still_to_pay: float = 0.0) -> float:
    """Expected seconds to answer over ``frames`` frames with this cascade (``gate_pass``: the
    share of frames off an anchor the t−Δ gate sends through the stages; None: no gate).

    >>> c = Costs(decode=0.001, reference=0.06)
    >>> round(cascade_cost(1000, c), 3)     # the exact plan
    61.0
    >>> cnn = Stage(None, seconds=0.0003, passes=0.05)
    >>> round(cascade_cost(1000, c, (cnn,)), 3)
    4.3
    >>> c = Costs(decode=0.001, reference=0.06, grab=0.0005)
    >>> round(cascade_cost(1000, c, (cnn,), skip=2), 3)
    2.4
    >>> c = Costs(decode=0.001, reference=0.06, grab=0.0005, gate=0.0001)   # gated: every frame read
    >>> round(cascade_cost(1000, c, (cnn,), skip=4, gate_pass=0.2), 3)    # the gate sends 20% of the others on
    2.395
    """
    per_stage = stages_cost(stages, costs.reference)
    off = 1 - 1 / skip  # share of frames that may inherit
    if gate_pass is None:
        per_frame = (costs.decode + per_stage) / skip + costs.grab * off
    else:
        per_frame = costs.decode + off * costs.gate + (1 / skip + off * gate_pass) * per_stage
    return frames * per_frame + still_to_pay


def exact_cost(frames: int, costs: Costs) -> float:
    return cascade_cost(frames, costs)


def certified_cost(certify_labels: float, unlabelled: int, costs: Costs,
                   outcomes: Sequence[tuple[float, float]]) -> float:
    """Expected seconds still to pay for a cascade that must first be certified: the reference on
    the ``certify_labels`` certification frames it has not labelled yet, then, over the rest of
    the ``unlabelled`` frames, each plan of the certification ladder with its chance of being
    the one that runs (``outcomes``: (chance, seconds per frame)), and the reference with the
    chance left (no plan certified: exact). Frames already labelled cost nothing to either
    plan; the exact plan costs ``unlabelled * (decode + reference)``.

    >>> c = Costs(decode=0.001, reference=0.08)
    >>> round(certified_cost(4000, 30000, c, [(0.9, 0.01)]))          # a 9% predicate, stages that separate
    769
    >>> round(certified_cost(4000, 30000, c, [(0.6, 0.03), (0.3, 0.01)]))   # a cautious plan most likely
    1081
    >>> round(certified_cost(4000, 30000, c, [(0.0, 0.01)])) == round(exact_cost(30000, c))   # sure to fail: exact
    True
    """
    per_label = costs.decode + costs.reference
    rest = max(0.0, unlabelled - certify_labels)
    left = 1.0 - sum(p for p, _ in outcomes)
    return min(certify_labels, unlabelled) * per_label + rest * (
        sum(p * per_frame for p, per_frame in outcomes) + max(0.0, left) * per_label)
