"""Cascades for one boolean model predicate (an *atom*): the stages, their candidates, and what
one atom's plan is.

- ``train_stages``: difference detectors against the background (the median of training frames
  without the predicate) and the cheapest specialized CNNs, fitted on the training frames;
- ``search``: every combination of a detector (or none) and a model (or none), thresholds
  placed on the selection frames within an error allowance (``planner/thresholds.py: place``),
  costed by ``cascade_cost`` with the measured per-frame costs, cheapest first; each candidate
  comes with its answers on the selection frames, which the query planner combines
  (``planner/query.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from vql.engine.difference import DETECTORS, AnchorGate, DifferenceDetector, background
from vql.plan import Atom
from vql.planner.cost import CascadeShape, Costs, cascade_cost, exact_cost
from vql.planner.specialized import CANDIDATES, Architecture, TrainedModel, train
from vql.planner.thresholds import Thresholds, place

DIFF_SIZE = 32  # the difference detectors' frame size
MAX_ALTERNATIVES = 4


@dataclass(frozen=True)
class Candidate:
    """One plan for an atom: which stages, their thresholds, their measured costs."""

    name: str
    cost_per_frame: float
    thresholds: Thresholds | None = None
    model: TrainedModel | None = None
    detector: DifferenceDetector | None = None
    cnn_seconds: float = 0.0  # measured per frame
    diff_seconds: float = 0.0
    skip: int = 1  # one frame in ``skip`` is evaluated; the others inherit its answer (run_cascade)
    gate: AnchorGate | None = None  # skipping gated by the t−Δ detector (thresholds.gate_delta)
    gate_seconds: float = 0.0

    def decide(self, diff: np.ndarray | None, cnn: np.ndarray | None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(answered "no", answered "yes") masks for ``n`` frames with these stage scores."""
        n = len(diff) if diff is not None else len(cnn) if cnn is not None else n
        return self.thresholds.decide(diff if self.detector is not None else None,
                                      cnn if self.model is not None else None, n)


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
        if chosen is not None and chosen.thresholds is not None:
            t = chosen.thresholds
            stages = []
            if chosen.skip > 1:
                stages.append(f"frame skipping: one frame in {chosen.skip} evaluated, the others inherit its answer")
            if chosen.detector is not None:
                stages.append(f"difference detector {chosen.detector.name}: delta = {t.delta:.4g}; below it \"no\"; "
                              f"passes on {t.diff_pass:.1%} of frames")
            if chosen.model is not None:
                stages.append(f"specialized {chosen.model.arch.name}: c_low = {t.c_low:.4g}, c_high = {t.c_high:.4g}; "
                              f"leaves {t.cnn_pass:.1%} of what reaches it to the reference")
            stages.append(f"reference: {t.pass_rate:.1%} of frames (stored labels answer the frames already labelled)")
            lines += [f"  {i}. {text}" for i, text in enumerate(stages, 1)]
        c = self.costs
        lines.append(f"  expected cost {self.expected_per_frame * 1000:.3f} ms/frame vs exact "
                     f"{self.exact_per_frame * 1000:.3f} ms/frame; measured (ms/frame): decode {c.decode * 1000:.3f}, "
                     f"difference {c.diff * 1000:.3f}, specialized {c.cnn * 1000:.3f}, reference {c.reference * 1000:.2f}")
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
    """The cheap stages trained on the training frames, before any threshold is placed."""

    detectors: list[DifferenceDetector]
    models: list[TrainedModel]

    def scored(self, frames: np.ndarray, small: dict[int, dict[int, np.ndarray]]):
        """(stage, scores, measured seconds per frame) of every detector and model on ``frames``,
        each list led by (None, None, 0.0): the plan without that stage."""
        d_frames = _stack(small[DIFF_SIZE], frames)
        dets = [(None, None, 0.0)] + [(d, *_timed(d.scores, d_frames)) for d in self.detectors]
        models = [(None, None, 0.0)] + [(m, *_timed(m.scores, _stack(small[m.arch.size], frames))) for m in self.models]
        return dets, models

    def scores(self, candidate: Candidate, frames: np.ndarray,
               small: dict[int, dict[int, np.ndarray]]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The chosen stages' scores on ``frames`` (None for a stage the candidate lacks)."""
        d = candidate.detector.scores(_stack(small[DIFF_SIZE], frames)) if candidate.detector else None
        c = candidate.model.scores(_stack(small[candidate.model.arch.size], frames)) if candidate.model else None
        return d, c


def train_stages(frames: np.ndarray, truth: dict[int, bool], small: dict[int, dict[int, np.ndarray]],
                 max_steps: int = 1500) -> Stages | None:
    """Difference detectors against the background (the median of the training frames without
    the predicate) and the cheapest specialized CNNs, each trained for a fixed number of steps;
    None when the training frames hold one class only."""
    y = np.array([truth[int(f)] for f in frames], bool)
    if y.all() or not y.any():
        return None
    train_d = _stack(small[DIFF_SIZE], frames)
    negatives = train_d[~y]
    bg = background(negatives if len(negatives) >= 10 else train_d)
    detectors = [DifferenceDetector(metric, DIFF_SIZE, bg) for metric in DETECTORS]
    models = [train(Architecture(*shape), _stack(small[shape[3]], frames), y,
                    max_steps=max_steps) for shape in CANDIDATES[:2]]
    return Stages(detectors, models)


@dataclass(frozen=True)
class Option:
    """A candidate and its answers on the selection frames."""

    candidate: Candidate
    answer: np.ndarray = field(repr=False)


def search(dets, models, labels: np.ndarray, costs: Costs, allowed: tuple[int, int]) -> list[Option]:
    """Every cascade, cheapest first: each combination of a difference detector (none or one per
    metric) and a specialized model (none or one per architecture), ``dets`` and ``models`` being
    (stage, scores on the selection frames, measured seconds per frame) as ``Stages.scored``
    gives them, with the cheapest split of the error allowance between them (``place``),
    costed by ``cascade_cost``. The exact plan is not among them.

    >>> from types import SimpleNamespace as NS
    >>> y = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    >>> cnn = NS(arch=NS(name="m"))
    >>> options = search([(None, None, 0.0)], [(None, None, 0.0), (cnn, y * 0.8 + 0.1, 1e-4)], y,
    ...                  Costs(decode=1e-3, diff=0, cnn=0, reference=0.05), (0, 0))
    >>> [(o.candidate.name, round(o.candidate.cost_per_frame * 1000, 2)) for o in options]
    [('m -> reference', 1.1)]
    """
    labels = np.asarray(labels, bool)
    out: list[Option] = []
    for det, d_scores, d_cost in dets:
        for model, c_scores, c_cost in models:
            if det is None and model is None:
                continue
            best: Option | None = None
            for t in place(d_scores, c_scores, labels, allowed):
                cost = stages_cost(t, costs, det is not None, model is not None, d_cost, c_cost)
                if best is None or cost < best.candidate.cost_per_frame:
                    name = " -> ".join(([det.name] if det else []) + ([model.arch.name] if model else []) + ["reference"])
                    best = Option(Candidate(name, cost, t, model, det, c_cost, d_cost), t.answer(d_scores, c_scores, labels))
            if best is not None:
                out.append(best)
    return sorted(out, key=lambda o: o.candidate.cost_per_frame)


def stages_cost(t: Thresholds, costs: Costs, use_diff: bool, use_cnn: bool, diff_seconds: float,
                cnn_seconds: float) -> float:
    """Expected seconds per frame of a cascade with these thresholds' pass rates and the stages'
    measured costs (``cascade_cost`` over one frame)."""
    shape = CascadeShape(diff_pass=t.diff_pass, cnn_pass=t.cnn_pass, use_diff=use_diff, use_cnn=use_cnn)
    return cascade_cost(1, replace(costs, diff=diff_seconds, cnn=cnn_seconds), shape)


def exact_choice(atom: Atom, reason: str, costs: Costs, positive_rate: float = 0.5) -> CascadeChoice:
    return CascadeChoice(atom, "exact", reason, costs, exact_cost(1, costs), None, positive_rate)
