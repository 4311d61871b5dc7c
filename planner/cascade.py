"""Cascades for one boolean model predicate (an *atom*): the stages, their candidates, and what
one atom's plan is.

- ``train_stages``: difference detectors against the background (the median of training frames
  without the predicate) and the first ``TRAINED`` specialized CNNs (the cheapest dense one and
  the pooled one, ``planner/specialized.py``), fitted on the training frames;
- ``search``: every combination of one stage (or none) from each group of alternatives (a
  detector per metric, a model per architecture), their bands placed on the selection frames
  within an error allowance (``planner/thresholds.py: place``), costed by ``cascade_cost`` with
  the measured per-frame costs, cheapest first; each candidate comes with its answers on the
  selection frames, which the query planner combines (``planner/query.py``).

A candidate's stages are ``planner/stages.py: Stage`` operators; nothing here knows what kind
each is.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from vql.engine.difference import DETECTORS, AnchorGate, DifferenceDetector, background
from vql.engine.views import Crop, View
from vql.plan import Atom
from vql.planner.cost import Costs, cascade_cost, exact_cost
from vql.planner.specialized import CANDIDATES, POOL_SIZES, Architecture, default_precision, train
from vql.planner.stages import Stage, answer, decide
from vql.planner.thresholds import place

# The difference detectors' frame size. Downscaled with INTER_LINEAR (``engine/views.py``), a
# 768x576 frame at 32x32 keeps about one column in 24 and one row in 18, so a far walker 25
# pixels wide can all but vanish: on the composed hour one such positive scored below every other of
# ~550 positives and under 20-40% of the negatives, and failed a certificate at 1%; at 64 pixels
# (the pooled CNN's frames, already made) it scores above 99% of the negatives and the positives'
# lowest scores no longer trail off (benchmarks/detectors.py)
DIFF_SIZE = 64
TRAINED = 2  # the first CANDIDATES are trained: the cheapest dense model and the pooled one
CROP_MARGIN = 0.08  # of the frame, around a region (``stage_crop``)
# the pooled CNN's input: the smallest of POOL_SIZES at which the median object of the training
# frames spans this many pixels (``pool_size``). vtest's median walker (``contains('person')``
# at the default score) spans 8.8 pixels at 64; the composed hour's, 8-12
MIN_OBJECT_PX = 8
MAX_ALTERNATIVES = 4


@dataclass(frozen=True)
class Candidate:
    """One plan for an atom: its stages in order (operators, bands, measured costs and pass
    shares), the share of frames they leave to the reference, the expected seconds per frame;
    optionally frame skipping (one frame in ``skip`` evaluated, the others inherit its answer,
    gated by the t−Δ detector when ``gate`` is set: ``engine/cascade.py``)."""

    name: str
    cost_per_frame: float
    stages: tuple[Stage, ...] = ()
    pass_rate: float = 1.0
    skip: int = 1
    gate: AnchorGate | None = None
    gate_delta: float = np.inf  # t−Δ score below which a frame inherits its anchor's answer
    gate_pass: float = 0.0  # share of frames off an anchor the gate sends through the stages
    gate_seconds: float = 0.0

    def decide(self, scores, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(answered "no", answered "yes") masks for frames with these per-stage scores."""
        return decide(self.stages, scores, n)

    def answer(self, scores, truth: np.ndarray) -> np.ndarray:
        """What the cascade answers on frames whose reference answer is ``truth``."""
        return answer(self.stages, scores, truth)


@dataclass(frozen=True)
class CascadeChoice:
    """The plan of one atom inside a query plan: a cascade, or the reference on every frame."""

    atom: Atom
    strategy: str  # "cascade" | "exact"
    reason: str
    costs: Costs
    exact_per_frame: float
    chosen: Candidate | None = None
    positive_rate: float = 0.5  # share of training-prefix frames on which the atom holds
    alternatives: tuple[Candidate, ...] = ()

    @property
    def expected_per_frame(self) -> float:
        return self.chosen.cost_per_frame if self.chosen else self.exact_per_frame

    def explain_lines(self) -> list[str]:
        lines = [f"{self.atom.column} = {self.atom.text}: {self.strategy} ({self.reason})"]
        chosen = self.chosen
        if chosen is not None:
            steps = [f"frame skipping: one frame in {chosen.skip} evaluated, the others inherit its answer"] * (chosen.skip > 1)
            steps += [stage.describe() for stage in chosen.stages]
            steps.append(f"reference: {chosen.pass_rate:.1%} of frames (stored labels answer the frames already labelled)")
            lines += [f"  {i}. {text}" for i, text in enumerate(steps, 1)]
        c = self.costs
        stages = "".join(f", {st.kind.label} {st.seconds * 1000:.3f}" for st in (chosen.stages if chosen else ()))
        lines.append(f"  expected cost {self.expected_per_frame * 1000:.3f} ms/frame vs exact "
                     f"{self.exact_per_frame * 1000:.3f} ms/frame; measured (ms/frame): decode {c.decode * 1000:.3f}"
                     f"{stages}, reference {c.reference * 1000:.2f}")
        for alt in self.alternatives[:MAX_ALTERNATIVES]:
            lines.append(f"  alternative {alt.name}: {alt.cost_per_frame * 1000:.3f} ms/frame")
        return lines


def _stack(small: dict[int, np.ndarray], frames: np.ndarray) -> np.ndarray:
    return np.stack([small[int(f)] for f in frames])


def _timed(fn, x: np.ndarray) -> tuple[np.ndarray, float]:
    """fn(x) and its measured seconds per frame."""
    t0 = time.perf_counter()
    out = fn(x)
    return out, (time.perf_counter() - t0) / max(1, len(x))


@dataclass
class Stages:
    """The cheap stages trained on the training frames, before any band is placed: groups of
    alternatives for each position of a cascade (difference detectors, then specialized models)."""

    groups: list[list]

    @property
    def views(self) -> tuple[View, ...]:
        """The downscaled frames its operators read."""
        return tuple(dict.fromkeys(op.view for group in self.groups for op in group))

    def scored(self, frames: np.ndarray, small: dict[View, dict[int, np.ndarray]]) -> list[list[tuple]]:
        """Per group, (operator, scores on ``frames``, measured seconds per frame) of each of its
        operators, led by (None, None, 0.0): the plan without a stage there."""
        return [[(None, None, 0.0)] + [(op, *_timed(op.scores, _stack(small[op.view], frames))) for op in group]
                for group in self.groups]

    @staticmethod
    def scores(candidate: Candidate, frames: np.ndarray, small: dict[View, dict[int, np.ndarray]]) -> list[np.ndarray]:
        """The candidate's stages' scores on ``frames``, in order."""
        return [op_scores(st.op, frames, small) for st in candidate.stages]


def op_scores(op, frames: np.ndarray, small: dict[View, dict[int, np.ndarray]]) -> np.ndarray:
    """A stage operator's scores on ``frames`` (read from ``small`` at the operator's view)."""
    return op.scores(_stack(small[op.view], frames))


def stage_crop(region: Crop | None) -> Crop | None:
    """What an atom's stages read of the frame: its region widened by CROP_MARGIN of the frame on
    every side (an object counts when its box centre is inside the region, so the object itself
    reaches out of it), the whole frame for an atom without a region.

    >>> stage_crop((0.0, 0.5, 1.0, 1.0)), stage_crop(None)
    ((0.0, 0.42, 1.0, 1.0), None)
    """
    if region is None:
        return None
    x0, y0, x1, y1 = region
    m = CROP_MARGIN
    return (round(max(0.0, x0 - m), 4), round(max(0.0, y0 - m), 4), round(min(1.0, x1 + m), 4), round(min(1.0, y1 + m), 4))


def pool_size(extents: np.ndarray, crop: Crop | None) -> int:
    """The pooled CNN's input size: the smallest of POOL_SIZES at which the median object spans
    at least MIN_OBJECT_PX pixels (its larger side, once the crop is scaled to size x size), the
    largest where none does, the first where there are no objects. ``extents`` is [n, 2]: the
    objects' height and width as fractions of the frame (``engine/executor.py: predicate_extents``
    on the training frames).

    >>> walker = np.array([[0.15, 0.04]])     # 9.6 pixels tall at 64
    >>> far = walker * 0.4                     # 3.8 pixels at 64, 7.7 at 128; in the bottom half, 9.9 at 96
    >>> pool_size(walker, None), pool_size(far, None), pool_size(far, (0.0, 0.42, 1.0, 1.0))
    (64, 128, 96)
    """
    if not len(extents):
        return POOL_SIZES[0]
    x0, y0, x1, y1 = crop or (0.0, 0.0, 1.0, 1.0)
    span = float(np.median(np.maximum(extents[:, 0] / (y1 - y0), extents[:, 1] / (x1 - x0))))
    return next((size for size in POOL_SIZES if size * span >= MIN_OBJECT_PX), POOL_SIZES[-1])


def trained_shapes(size: int = POOL_SIZES[0]) -> tuple[tuple, ...]:
    """The CNNs the planner trains: the first TRAINED of CANDIDATES, the pooled one at ``size``.

    >>> [s[3] for s in trained_shapes(128)]
    [32, 128]
    """
    shapes = tuple((*shape[:3], size, shape[4]) if shape[4] == "pool" else shape for shape in CANDIDATES[:TRAINED])
    assert all(shape in CANDIDATES for shape in shapes), size
    return shapes


def stage_views(crop: Crop | None, size: int | None = None) -> tuple[View, ...]:
    """The downscaled frames an atom's stages read: its region's crop (None: the whole frame) at
    the difference detectors' size and at each trained CNN's, the pooled one at ``size`` (None:
    at each of POOL_SIZES, for the frames that size is picked on).

    >>> stage_views(None), stage_views((0.0, 0.5, 1.0, 1.0), 64)[1]
    (((64, None), (32, None), (96, None), (128, None)), (32, (0.0, 0.5, 1.0, 1.0)))
    """
    sizes = [DIFF_SIZE] + [shape[3] for pool in ((size,) if size else POOL_SIZES) for shape in trained_shapes(pool)]
    return tuple((s, crop) for s in dict.fromkeys(sizes))


def train_stages(frames: np.ndarray, truth: dict[int, bool], small: dict[View, dict[int, np.ndarray]],
                 max_steps: int = 1500, crop: Crop | None = None, size: int = POOL_SIZES[0]) -> Stages | None:
    """Difference detectors against the background (the median of the training frames without
    the predicate) and the first TRAINED specialized CNNs, each trained for a fixed number of steps,
    all reading the frames cut to ``crop`` (a region predicate's region: what lies outside it
    cannot change the answer), the pooled one at ``size`` (``pool_size``'s pick), the CNNs in this
    machine's ``default_precision``; None when the training frames hold one class only."""
    y = np.array([truth[int(f)] for f in frames], bool)
    if y.all() or not y.any():
        return None
    train_d = _stack(small[(DIFF_SIZE, crop)], frames)
    negatives = train_d[~y]
    bg = background(negatives if len(negatives) >= 10 else train_d)
    detectors = [DifferenceDetector(metric, DIFF_SIZE, bg, crop) for metric in DETECTORS]
    precision = default_precision()
    models = [train(Architecture(*shape, precision=precision), _stack(small[(shape[3], crop)], frames), y,
                    max_steps=max_steps, crop=crop) for shape in trained_shapes(size)]
    return Stages([detectors, models])


@dataclass(frozen=True)
class Option:
    """A candidate and its answers on the selection frames."""

    candidate: Candidate
    answer: np.ndarray = field(repr=False)


def search(groups: list[list[tuple]], labels: np.ndarray, costs: Costs, allowed: tuple[int, int]) -> list[Option]:
    """Every cascade, cheapest first: each combination of one operator (or none) from each group,
    ``groups`` holding (operator, scores on the selection frames, measured seconds per frame) as
    ``Stages.scored`` gives them, with the cheapest split of the error allowance among its stages
    (``place``), costed by ``cascade_cost``. The exact plan is not among them.

    >>> from vql.planner.stages import PROBABILITY, register
    >>> class Cnn:
    ...     name, size = "m", 32
    >>> register(Cnn, PROBABILITY)
    >>> y = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    >>> options = search([[(None, None, 0.0)], [(None, None, 0.0), (Cnn(), y * 0.8 + 0.1, 1e-4)]], y,
    ...                  Costs(decode=1e-3, reference=0.05), (0, 0))
    >>> [(o.candidate.name, round(o.candidate.cost_per_frame * 1000, 2)) for o in options]
    [('m -> reference', 1.1)]
    """
    labels = np.asarray(labels, bool)
    out: list[Option] = []
    for combo in itertools.product(*groups):
        picked = [(op, s, sec) for op, s, sec in combo if op is not None]
        if not picked:
            continue
        scores = [s for _, s, _ in picked]
        best: Option | None = None
        for p in place([Stage(op, seconds=sec) for op, _, sec in picked], scores, labels, allowed):
            cost = cascade_cost(1, costs, p.stages)
            if best is None or cost < best.candidate.cost_per_frame:
                name = " -> ".join([op.name for op, _, _ in picked] + ["reference"])
                candidate = Candidate(name, cost, p.stages, p.pass_rate)
                best = Option(candidate, candidate.answer(scores, labels))
        if best is not None:
            out.append(best)
    return sorted(out, key=lambda o: o.candidate.cost_per_frame)


def exact_choice(atom: Atom, reason: str, costs: Costs, positive_rate: float = 0.5) -> CascadeChoice:
    return CascadeChoice(atom, "exact", reason, costs, exact_cost(1, costs), None, positive_rate)
