"""The cost model: one explicit function of named, measured inputs.

Per-frame costs (seconds) are *measured* on this machine and device (``Costs``); pass rates
come from the threshold-fit set. The expected cost of running a cascade over ``frames`` frames is

    frames * (decode + diff + diff_pass * (cnn + cnn_pass * reference))
  + still_to_pay                                          # labelling the sample, training

and the exact plan costs ``frames * (decode + reference)``. A plan is only worth it when its
expected cost, including what is still to pay, is below the exact one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Costs:
    """Measured seconds per frame of each operator."""

    decode: float  # read + convert to BGR
    diff: float  # difference detector on a downscaled frame
    cnn: float  # specialized model
    reference: float  # the reference model


@dataclass(frozen=True, slots=True)
class CascadeShape:
    """What the threshold-fit set says about a candidate cascade."""

    diff_pass: float = 1.0  # share of evaluated frames the difference detector passes on
    cnn_pass: float = 1.0  # share of those the specialized model leaves to the reference
    use_diff: bool = False
    use_cnn: bool = False


def cascade_cost(frames: int, costs: Costs, shape: CascadeShape, still_to_pay: float = 0.0) -> float:
    """Expected seconds to answer over ``frames`` frames with this cascade.

    >>> c = Costs(decode=0.001, diff=0.0001, cnn=0.0003, reference=0.06)
    >>> round(cascade_cost(1000, c, CascadeShape()), 3)     # the exact plan
    61.0
    >>> round(cascade_cost(1000, c, CascadeShape(use_cnn=True, cnn_pass=0.05)), 3)
    4.3
    """
    per_frame = costs.decode
    passed = 1.0
    if shape.use_diff:
        per_frame += costs.diff
        passed = shape.diff_pass
    if shape.use_cnn:
        per_frame += passed * costs.cnn
        passed *= shape.cnn_pass
    per_frame += passed * costs.reference
    return frames * per_frame + still_to_pay


def exact_cost(frames: int, costs: Costs) -> float:
    return cascade_cost(frames, costs, CascadeShape())
