"""Planning a cascade for one boolean model predicate (an *atom*) over one video scan.

Steps, each visible in EXPLAIN:

1. sample: ``sample_size`` frames of the scan, split into train / fit / eval sets disjoint in
   time (``time_block_split``); the reference labels them (labels already stored are reused) and
   the atom's truth is read off the labels;
2. train the candidate specialized CNNs on the train set (cheapest first, each under a time
   budget);
3. fit each candidate's thresholds on the fit set under the targets (``fit_thresholds``: upper
   confidence bounds, not point estimates);
4. cost every plan with the measured per-frame costs (``cascade_cost``) and keep the cheapest,
   the exact plan included: it wins when the sample cannot certify the targets or the model
   passes too much to the reference;
5. measure the chosen plan's false-positive and false-negative rates on the eval set, which
   neither training nor fitting saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vql.planner.cost import CascadeShape, Costs, cascade_cost, exact_cost
from vql.planner.sampling import Split, sample_size, time_block_split
from vql.planner.specialized import CANDIDATES, Architecture, TrainedModel, train
from vql.planner.thresholds import Thresholds, fit_thresholds
from vql.plan import ModelPredicate

# Thresholds are fitted to 75% of each target: scores drift between time blocks, and the fit set
# certifies only itself (on a composed street video, held-out rates ran ~1.3x the fit-set ones).
DRIFT_MARGIN = 0.75

_COMPARE = {
    ">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "=": np.equal, "<>": np.not_equal,
}


@dataclass(frozen=True, slots=True)
class Atom:
    """A boolean test of one frame's labels: ``contains(...)`` or ``object_count(...) op k``."""

    predicate: ModelPredicate
    op: str = ">="
    k: int = 1
    column: str = ""

    def holds(self, counts: np.ndarray) -> np.ndarray:
        return _COMPARE[self.op](counts, self.k)

    @property
    def text(self) -> str:
        if self.predicate.function == "contains":
            return self.predicate.text
        return f"{self.predicate.text} {self.op} {self.k}"


@dataclass
class Candidate:
    name: str
    cost_per_frame: float
    thresholds: Thresholds | None = None
    model: TrainedModel | None = None
    cnn_seconds: float = 0.0  # measured per frame


@dataclass
class CascadeChoice:
    """The planner's decision for one atom, with everything EXPLAIN shows."""

    atom: Atom
    strategy: str  # "cascade" | "exact"
    reason: str
    sample_frames: int
    sample_reason: str
    split: str
    costs: Costs
    exact_per_frame: float
    chosen: Candidate | None
    alternatives: list[Candidate] = field(default_factory=list)
    eval_fpr: float | None = None
    eval_fnr: float | None = None
    eval_frames: int = 0
    eval_positives: int = 0
    plan_seconds: float = 0.0

    @property
    def expected_per_frame(self) -> float:
        return self.chosen.cost_per_frame if self.chosen else self.exact_per_frame

    def explain_lines(self) -> list[str]:
        c = self.costs
        lines = [f"Cascade {self.atom.column} = {self.atom.text}: {self.strategy} ({self.reason})"]
        if self.chosen and self.chosen.thresholds:
            t = self.chosen.thresholds
            lines.append(
                f"  specialized {self.chosen.name}: c_low = {t.c_low:.4g}, c_high = {t.c_high:.4g}; "
                f"to the reference {t.pass_rate:.1%} of frames; fit-set bounds (95%): fnr <= {t.fnr_bound:.4f}, "
                f"fpr <= {t.fpr_bound:.4f} ({t.positives} positives, {t.negatives} negatives)"
            )
        if self.chosen is not None or self.alternatives:
            lines.append(
                f"  expected cost {self.expected_per_frame * 1000:.3f} ms/frame vs exact {self.exact_per_frame * 1000:.3f} "
                f"ms/frame ({self.exact_per_frame / max(self.expected_per_frame, 1e-12):.1f}x)"
            )
            lines.append(
                f"  measured costs (ms/frame): decode {c.decode * 1000:.3f}, specialized {c.cnn * 1000:.3f}, "
                f"reference {c.reference * 1000:.2f}"
            )
            lines.append(f"  sample: {self.sample_frames} frames ({self.sample_reason}); split: {self.split}")
        else:
            lines.append(f"  sample it would need: {self.sample_frames} frames ({self.sample_reason})")
        if self.eval_fpr is not None:
            lines.append(
                f"  held-out evaluation ({self.eval_frames} frames, {self.eval_positives} positives, never used "
                f"to train or fit): fpr {self.eval_fpr:.4f}, fnr {self.eval_fnr:.4f}"
            )
        for alt in self.alternatives:
            why = f" ({alt.thresholds.note})" if alt.thresholds and alt.thresholds.note else ""
            lines.append(f"  alternative {alt.name}: {alt.cost_per_frame * 1000:.3f} ms/frame{why}")
        return lines


def decide(atom: Atom, split: Split, sample_reason: str, truth: dict[int, bool], small: dict[int, np.ndarray],
           costs: Costs, fpr: float, fnr: float, time_budget_s: float = 60.0) -> CascadeChoice:
    """Train, fit, cost and evaluate on an already labelled sample (pure but for training)."""
    start = time.perf_counter()
    exact = exact_cost(1, costs)
    common = dict(atom=atom, sample_frames=len(split.frames), sample_reason=sample_reason, split=split.reason,
                  costs=costs, exact_per_frame=exact)
    train_y = np.array([truth[f] for f in split.train])
    if train_y.all() or not train_y.any():
        return CascadeChoice(strategy="exact", reason="the training sample has only one class", chosen=None, **common)
    fit_y = np.array([truth[f] for f in split.fit])
    candidates: list[Candidate] = [Candidate("exact (reference on every frame)", exact)]
    for blocks, filters, dense, size in CANDIDATES[:2]:
        arch = Architecture(blocks, filters, dense, size)
        model = train(arch, np.stack([small[size][f] for f in split.train]), train_y, time_budget_s=time_budget_s / 2)
        fit_small = np.stack([small[size][f] for f in split.fit])
        t0 = time.perf_counter()
        scores = model.scores(fit_small)
        cnn_cost = (time.perf_counter() - t0) / max(1, len(fit_small))
        thresholds = fit_thresholds(scores, fit_y, fnr=fnr * DRIFT_MARGIN, fpr=fpr * DRIFT_MARGIN)
        shape = CascadeShape(use_cnn=True, cnn_pass=thresholds.pass_rate)
        per_frame = cascade_cost(1, Costs(costs.decode, costs.grab, costs.diff, cnn_cost, costs.reference), shape)
        candidates.append(Candidate(arch.name, per_frame, thresholds, model, cnn_cost))
    candidates.sort(key=lambda c: c.cost_per_frame)
    best = candidates[0]
    alternatives = candidates[1:]
    if best.model is None:
        return CascadeChoice(strategy="exact", reason="no specialized model beats the reference under the targets",
                             chosen=None, alternatives=alternatives, plan_seconds=time.perf_counter() - start, **common)
    # held-out evaluation of the chosen cascade: decided frames by the CNN, the rest by the reference
    size = best.model.arch.size
    eval_y = np.array([truth[f] for f in split.eval])
    eval_scores = best.model.scores(np.stack([small[size][f] for f in split.eval]))
    decided = np.where(eval_scores < best.thresholds.c_low, False, np.where(eval_scores > best.thresholds.c_high, True, eval_y))
    fp = int((decided & ~eval_y).sum())
    fn = int((~decided & eval_y).sum())
    return CascadeChoice(
        strategy="cascade", reason="cheapest plan meeting the targets on the fit set", chosen=best,
        alternatives=alternatives, eval_fpr=fp / max(1, int((~eval_y).sum())), eval_fnr=fn / max(1, int(eval_y.sum())),
        eval_frames=len(eval_y), eval_positives=int(eval_y.sum()), plan_seconds=time.perf_counter() - start,
        **dict(common, costs=Costs(costs.decode, costs.grab, costs.diff, best.cnn_seconds, costs.reference)),
    )


def plan_sample(first: int, last: int, target: float, seed: int = 0) -> tuple[Split, str]:
    """The frames to label for planning a scan of [first, last] under error ``target``."""
    n, why = sample_size(last - first + 1, target)
    return time_block_split(first, last, n, seed=seed), why
