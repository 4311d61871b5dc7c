"""The cheap stages of a cascade, as operators.

A stage scores downscaled frames; its *band* says what it decides: "no" below ``low``, "yes"
above ``high``; the frames in between go on to the next stage, and those left after the last
stage go to the reference. A cascade is a tuple of ``Stage``s, and every part of vql iterates
that tuple: placing the bands (``planner/thresholds.py: place``), costing (``stages_cost``
here), certifying (``planner/query.py``), running (``engine/cascade.py``) and EXPLAIN.

What differs between kinds of stage is a ``StageKind``, registered once per operator type in
``KINDS``: whether it may answer "yes", how one step of the certification ladder moves its band
towards the reference, and how EXPLAIN words it. A new kind of stage is its operator (``name``,
``size``: the frame size it reads, ``scores(frames)``), one ``register`` call, and (to be
stored) one encoder in ``planner/plan_format.py``.

>>> class Brightness:                       # a toy operator: mean brightness of a frame
...     name, size = "brightness", 2
...     def scores(self, small):
...         return small.reshape(len(small), -1).mean(axis=1)
>>> register(Brightness, NO_ONLY)
>>> stage = Stage(Brightness(), Band(low=10.0), seconds=1e-5)
>>> frames = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 50)])
>>> no, yes = decide((stage,), [stage.op.scores(frames)])
>>> no.tolist(), yes.tolist(), stage.describe()
([True, False], [False, False], 'difference detector brightness: delta = 10; below it "no"; passes on 100.0% of frames')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Band:
    """What a stage decides from a frame's score: "no" below ``low``, "yes" above ``high``
    (±inf: never), the rest passed on."""

    low: float = -np.inf
    high: float = np.inf

    @property
    def decides_nothing(self) -> bool:
        return self.low == -np.inf and self.high == np.inf

    def decide(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(scores, np.float64)
        no = s < self.low
        return no, ~no & (s > self.high)


@dataclass(frozen=True, slots=True)
class Caution:
    """How far one step of the certification ladder (``planner/query.py: CAUTION``) moves a band
    towards "ask the reference": a "no"-only stage's ``low`` is multiplied by ``scale`` (0: the
    stage decides nothing, and the ladder drops it); a probability's ``low`` moves down by ``low``
    and its ``high`` up by ``high`` in log-odds (inf: that side decides nothing)."""

    scale: float = 1.0
    low: float = 0.0
    high: float = 0.0


def shift(p: float, by: float) -> float:
    """The probability ``p`` moved by ``by`` in log-odds (±inf and the ends 0 and 1 stay put).

    >>> round(shift(0.5, 2), 3), shift(0.0, -1), shift(0.3, np.inf), shift(0.3, -np.inf)
    (0.881, 0.0, inf, -inf)
    """
    if np.isinf(by):
        return float(by)
    if by == 0:
        return float(p)
    if not 0 < p < 1:
        return float(p)
    return float(1 / (1 + math.exp(-(math.log(p / (1 - p)) + by))))


@dataclass(frozen=True)
class StageKind:
    """What is particular to a kind of stage."""

    label: str  # how EXPLAIN's measured costs name it
    says_yes: bool  # whether its band may have a finite ``high``

    def cautious(self, band: Band, caution: Caution) -> Band:
        raise NotImplementedError

    def scale(self, scores: np.ndarray) -> np.ndarray:
        """Scores in the scale the ladder moves bands in (``cautious``): equal steps there are
        equal steps of caution; ``planner/tails.py`` fits the positives' lower tail in it."""
        raise NotImplementedError

    def describe(self, stage: Stage) -> str:
        raise NotImplementedError


class NoOnlyKind(StageKind):
    """A difference detector: a score of how unlike the background a frame is; below δ, "no"."""

    def cautious(self, band: Band, caution: Caution) -> Band:
        if caution.scale == 0:
            return replace(band, low=-np.inf)
        return replace(band, low=band.low * caution.scale if np.isfinite(band.low) else band.low)

    def scale(self, scores: np.ndarray) -> np.ndarray:
        """log: multiplying δ moves it by a fixed step."""
        return np.log(np.maximum(np.asarray(scores, np.float64), 1e-12))

    def describe(self, stage: Stage) -> str:
        return (f"{self.label} detector {stage.op.name}: delta = {stage.band.low:.4g}; below it \"no\"; passes on "
                f"{stage.passes:.1%} of frames")


def _probability(p: float) -> str:
    """A threshold on a probability as EXPLAIN prints it: 4 significant digits, and near 1 as
    many as tell it from 1.

    >>> _probability(0.02), _probability(4.3691e-05), _probability(0.9999990463), _probability(1.0)
    ('0.02', '4.369e-05', '0.999999', '1')
    """
    if 0.999 < p < 1:
        return f"{p:.{max(4, -math.floor(math.log10(1 - p)))}g}"
    return f"{p:.4g}"


class ProbabilityKind(StageKind):
    """A specialized model: P(the predicate holds); below c_low "no", above c_high "yes"."""

    def cautious(self, band: Band, caution: Caution) -> Band:
        low = shift(band.low, -caution.low) if band.low != -np.inf else band.low
        high = band.high if band.high != -np.inf else max(band.low, 0.0)
        return Band(low, max(shift(high, caution.high), low))

    def scale(self, scores: np.ndarray) -> np.ndarray:
        """log-odds, as ``shift`` moves c_low and c_high."""
        p = np.clip(np.asarray(scores, np.float64), 1e-15, 1 - 1e-15)
        return np.log(p) - np.log1p(-p)

    def describe(self, stage: Stage) -> str:
        return (f"{self.label} {stage.op.name}: c_low = {_probability(stage.band.low)}, "
                f"c_high = {_probability(stage.band.high)}; "
                f"leaves {stage.passes:.1%} of what reaches it to the reference")


NO_ONLY = NoOnlyKind("difference", says_yes=False)
PROBABILITY = ProbabilityKind("specialized", says_yes=True)
KINDS: dict[type, StageKind] = {}


def register(op_type: type, kind: StageKind) -> None:
    """Make ``op_type``'s operators stages of ``kind``."""
    KINDS[op_type] = kind


def kind_of(op: Any) -> StageKind:
    for t in type(op).__mro__:
        if t in KINDS:
            return KINDS[t]
    raise TypeError(f"{type(op).__name__} is not a registered kind of stage")


@dataclass(frozen=True)
class Stage:
    """One stage of a cascade: its operator, its band, its measured seconds per frame that
    reaches it, and the share of those it passes on (measured on the selection frames)."""

    op: Any
    band: Band = Band()
    seconds: float = 0.0
    passes: float = 1.0

    @property
    def kind(self) -> StageKind:
        return kind_of(self.op)

    @property
    def name(self) -> str:
        return self.op.name

    def describe(self) -> str:
        return self.kind.describe(self)


def decide(stages: Sequence[Stage], scores: Sequence[np.ndarray], n: int | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(answered "no", answered "yes") over ``n`` frames, the stages run in order, ``scores``
    holding each stage's scores on all of them (a stage only decides what reaches it)."""
    n = len(scores[0]) if scores else n
    no, yes, open_ = np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool)
    for stage, s in zip(stages, scores):
        d_no, d_yes = stage.band.decide(s)
        no |= open_ & d_no
        yes |= open_ & d_yes
        open_ &= ~(d_no | d_yes)
    return no, yes


def answer(stages: Sequence[Stage], scores: Sequence[np.ndarray], truth: np.ndarray) -> np.ndarray:
    """What the cascade answers on frames whose reference answer is ``truth``."""
    no, yes = decide(stages, scores, len(truth))
    return yes | (~no & np.asarray(truth, bool))


def measured(stages: Sequence[Stage], scores: Sequence[np.ndarray], n: int) -> tuple[tuple[Stage, ...], float]:
    """The stages with the shares they pass on among ``n`` frames with these scores, and the
    share of frames left to the reference."""
    out, open_ = [], np.ones(n, bool)
    for stage, s in zip(stages, scores):
        d_no, d_yes = stage.band.decide(s)
        reach = int(open_.sum())
        open_ = open_ & ~(d_no | d_yes)
        out.append(replace(stage, passes=float(open_.sum()) / reach if reach else 0.0))
    return tuple(out), float(open_.mean()) if n else 1.0


def stages_cost(stages: Sequence[Stage], reference: float) -> float:
    """Expected seconds per evaluated frame: each stage's measured cost on the share of frames
    that reaches it, then the reference on the share left.

    >>> stages_cost((Stage(None, seconds=1e-4, passes=0.2), Stage(None, seconds=3e-4, passes=0.25)), 0.06)
    0.00316
    """
    total, reach = 0.0, 1.0
    for stage in stages:
        total += reach * stage.seconds
        reach *= stage.passes
    return round(total + reach * reference, 12)


def _register_builtin() -> None:
    from vql.engine.difference import DifferenceDetector
    from vql.planner.specialized import TrainedModel

    register(DifferenceDetector, NO_ONLY)
    register(TrainedModel, PROBABILITY)


_register_builtin()
