"""Planning a cascade for one boolean model predicate (an *atom*) over one video scan.

Steps, each visible in EXPLAIN:

1. sample: ``sample_size`` frames of the scan, split into train / fit / eval sets disjoint in
   time (``time_block_split``); the reference labels them (labels already stored are reused) and
   the atom's truth is read off the labels;
2. fit the difference detectors' background (the median of training frames without the
   predicate) and train the candidate specialized CNNs on the train set (cheapest first, each
   under a time budget);
3. fit each combination's thresholds on the fit set under the targets (``fit_cascade``: upper
   confidence bounds of the whole cascade's error rates, not point estimates), without frame
   skipping and, for each skip whose anchors are labelled, with plain and t−Δ-gated skipping
   (``search``'s routes: the frame each fit frame takes its answer from);
4. cost every plan with the measured per-frame costs (``cascade_cost``) and keep the cheapest,
   the exact plan included: it wins when the sample cannot certify the targets or the model
   passes too much to the reference;
5. measure the chosen plan's false-positive and false-negative rates on the eval set, which
   neither training nor fitting saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from vql.engine.difference import DETECTORS, GATE_METRICS, AnchorGate, DifferenceDetector, background
from vql.planner.cost import CascadeShape, Costs, cascade_cost, exact_cost
from vql.planner.sampling import Split, sample_size, time_block_split
from vql.planner.skipping import GATE_PASSES, anchors
from vql.planner.specialized import CANDIDATES, Architecture, TrainedModel, train
from vql.planner.thresholds import Thresholds, fit_cascade
from vql.plan import ModelPredicate

# Thresholds are fitted to 90% of each target: scores drift between time blocks, and the fit set
# certifies only itself (on a composed street video, held-out rates ran up to ~1.3x the fit-set
# bounds' point estimates; the bounds themselves sit well above those).
DRIFT_MARGIN = 0.9

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
    """One plan the search costed: which stages, their thresholds, their measured costs."""

    name: str
    cost_per_frame: float
    thresholds: Thresholds | None = None
    model: TrainedModel | None = None
    detector: DifferenceDetector | None = None
    cnn_seconds: float = 0.0  # measured per frame
    diff_seconds: float = 0.0
    skip: int = 1  # one frame in ``skip`` is evaluated; the others inherit its answer
    gate: AnchorGate | None = None  # skipping gated by the t−Δ detector (thresholds.gate_delta)
    gate_seconds: float = 0.0

    def answering(self, frames: np.ndarray, first: int, small: dict[int, dict[int, np.ndarray]]) -> np.ndarray:
        """The frame whose cascade answer each of ``frames`` takes: itself without skipping, its
        anchor under plain skipping, and under a gated skip its anchor only where the t−Δ gate
        scores it below delta."""
        a = anchors(frames, first, self.skip)
        if self.gate is None:
            return a
        g = self.gate.scores(_stack(small[self.gate.size], frames), _stack(small[self.gate.size], a))
        return np.where(g < self.thresholds.gate_delta, a, frames)

    def decide(self, diff: np.ndarray | None, cnn: np.ndarray | None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(answered "no", answered "yes") masks for ``n`` frames with these stage scores."""
        t = self.thresholds
        n = len(diff) if diff is not None else len(cnn) if cnn is not None else n
        passing = np.ones(n, bool) if self.detector is None else diff >= t.delta
        if self.model is None:
            return ~passing, np.zeros(n, bool)
        return ~passing | (cnn < t.c_low), passing & (cnn > t.c_high)


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
    positive_rate: float = 0.5  # share of sample frames on which the atom holds
    fitted_frames: np.ndarray | None = None  # the frames training and fitting saw (audits skip them)
    skip_notes: list[str] = field(default_factory=list)  # frame skipping: what was tried and why not

    @property
    def expected_per_frame(self) -> float:
        return self.chosen.cost_per_frame if self.chosen else self.exact_per_frame

    def explain_lines(self) -> list[str]:
        c = self.costs
        lines = [f"Cascade {self.atom.column} = {self.atom.text}: {self.strategy} ({self.reason})"]
        chosen = self.chosen
        if chosen and chosen.thresholds:
            t = chosen.thresholds
            stages = []
            if chosen.skip > 1 and chosen.gate is None:
                stages.append(f"frame skipping: one frame in {chosen.skip} evaluated, the others inherit its answer "
                              f"(only grabbed by the decoder)")
            elif chosen.skip > 1:
                stages.append(f"frame skipping gated by the t-Δ detector {chosen.gate.name}: every frame read; a frame "
                              f"off its anchor (one in {chosen.skip}) inherits the anchor's answer when its difference "
                              f"is below delta_Δ = {t.gate_delta:.4g}; {t.gate_pass:.1%} of them are above it and go "
                              f"through the stages below")
            if chosen.detector is not None:
                stages.append(f"difference detector {chosen.detector.name}: delta = {t.delta:.4g}; below it \"no\"; "
                              f"passes on {t.diff_pass:.1%} of frames")
            if chosen.model is not None:
                stages.append(f"specialized {chosen.model.arch.name}: c_low = {t.c_low:.4g}, c_high = {t.c_high:.4g}; "
                              f"leaves {t.cnn_pass:.1%} of what reaches it to the reference")
            stages.append(f"reference: {t.pass_rate:.1%} of {'evaluated ' if chosen.skip > 1 else ''}frames "
                          f"(stored labels answer the frames already labelled)")
            lines += [f"  {i}. {text}" for i, text in enumerate(stages, 1)]
            lines.append(f"  fit-set bounds (95%) of the whole cascade: fnr <= {t.fnr_bound:.4f}, fpr <= {t.fpr_bound:.4f} "
                         f"({t.positives} positives, {t.negatives} negatives)")
        if chosen is not None or self.alternatives:
            lines.append(
                f"  expected cost {self.expected_per_frame * 1000:.3f} ms/frame vs exact {self.exact_per_frame * 1000:.3f} "
                f"ms/frame ({self.exact_per_frame / max(self.expected_per_frame, 1e-12):.1f}x)"
            )
            lines.append(
                f"  measured costs (ms/frame): decode {c.decode * 1000:.3f} (grab only {c.grab * 1000:.3f}), "
                f"difference {c.diff * 1000:.3f}, " + (f"t-Δ gate {c.gate * 1000:.3f}, " if c.gate else "")
                + f"specialized {c.cnn * 1000:.3f}, reference {c.reference * 1000:.2f}"
            )
            lines.append(f"  sample: {self.sample_frames} frames ({self.sample_reason}); split: {self.split}")
            lines += [f"  frame skipping: {note}" for note in self.skip_notes]
        else:
            lines.append(f"  sample it would need: {self.sample_frames} frames ({self.sample_reason})")
        if self.eval_fpr is not None:
            lines.append(
                f"  held-out evaluation ({self.eval_frames} frames, {self.eval_positives} positives, never used "
                f"to train or fit): fpr {self.eval_fpr:.4f}, fnr {self.eval_fnr:.4f}"
            )
        shown = self.alternatives[:MAX_ALTERNATIVES]
        shown += [a for a in self.alternatives[MAX_ALTERNATIVES:] if a.thresholds is None]  # exact, always
        for alt in shown:
            why = f" ({alt.thresholds.note})" if alt.thresholds and alt.thresholds.note else ""
            lines.append(f"  alternative {alt.name}: {alt.cost_per_frame * 1000:.3f} ms/frame{why}")
        return lines


MAX_ALTERNATIVES = 4
DIFF_SIZE = 32  # the difference detectors' frame size


def _stack(small: dict[int, np.ndarray], frames: np.ndarray) -> np.ndarray:
    return np.stack([small[int(f)] for f in frames])


def _timed(fn, x: np.ndarray) -> tuple[np.ndarray, float]:
    """fn(x) and its measured seconds per frame."""
    t0 = time.perf_counter()
    out = fn(x)
    return out, (time.perf_counter() - t0) / max(1, len(x))


@dataclass
class Stages:
    """The cheap stages trained on a sample's train set, before any threshold is fitted."""

    detectors: list[DifferenceDetector]
    models: list[TrainedModel]

    def scored(self, frames: np.ndarray, small: dict[int, dict[int, np.ndarray]]):
        """(stage, scores, measured seconds per frame) of every detector and model on ``frames``,
        each list led by (None, None, 0.0): the plan without that stage."""
        d_frames = _stack(small[DIFF_SIZE], frames)
        dets = [(None, None, 0.0)] + [(d, *_timed(d.scores, d_frames)) for d in self.detectors]
        models = [(None, None, 0.0)] + [(m, *_timed(m.scores, _stack(small[m.arch.size], frames))) for m in self.models]
        return dets, models


def train_stages(split: Split, truth: dict[int, bool], small: dict[int, dict[int, np.ndarray]],
                 time_budget_s: float = 60.0) -> Stages | None:
    """Difference detectors against the background (the median of the training frames without
    the predicate) and the cheapest specialized CNNs, each within its time budget; None when the
    train set holds one class only."""
    y = np.array([truth[int(f)] for f in split.train], bool)
    if y.all() or not y.any():
        return None
    train_d = _stack(small[DIFF_SIZE], split.train)
    negatives = train_d[~y]
    bg = background(negatives if len(negatives) >= 10 else train_d)
    detectors = [DifferenceDetector(metric, DIFF_SIZE, bg) for metric in DETECTORS]
    models = [train(Architecture(*shape), _stack(small[shape[3]], split.train), y,
                    time_budget_s=time_budget_s / 2) for shape in CANDIDATES[:2]]
    return Stages(detectors, models)


@dataclass(frozen=True, slots=True)
class Route:
    """Where each fit frame takes its answer from under one way of skipping (or none)."""

    source: np.ndarray  # per fit frame, the index (into the scored frames) of the frame answering it
    evaluated: tuple[tuple[np.ndarray, float], ...]  # (scored frames the stages run on, weight per scan frame)
    gate: AnchorGate | None = None
    delta: float = np.inf
    gate_pass: float = 0.0
    gate_seconds: float = 0.0


def _routes(frames: np.ndarray, small: dict[int, dict[int, np.ndarray]], skip: int, first: int):
    """(scored frames, positions of ``frames`` among them, routes): no skipping; or plain skip
    ``skip`` and, per t−Δ metric and pass share in GATE_PASSES, a gated skip."""
    if skip == 1:
        own = np.arange(len(frames))
        return frames, own, [Route(own, ((own, 1.0),))]
    a = anchors(frames, first, skip)
    scored = np.union1d(frames, a)
    own, anc = np.searchsorted(scored, frames), np.searchsorted(scored, a)
    routes = [Route(anc, ((anc, 1 / skip),))]
    off = a != frames
    if not off.any():
        return scored, own, routes
    images, anchor_images = _stack(small[DIFF_SIZE], frames), _stack(small[DIFF_SIZE], a)
    for metric in GATE_METRICS:
        gate = AnchorGate(metric, DIFF_SIZE)
        g, seconds = _timed(lambda x, gate=gate: gate.scores(x, anchor_images), images)
        for share in GATE_PASSES:
            delta = float(np.quantile(g[off], 1 - share))
            through = off & (g >= delta)
            passed = float(through[off].mean())
            routes.append(Route(np.where(through, own, anc), ((anc, 1 / skip), (own[through], (1 - 1 / skip) * passed)),
                                gate, delta, passed, seconds))
    return scored, own, routes


def _stage_rates(t: Thresholds, d: np.ndarray | None, c: np.ndarray | None,
                 evaluated: tuple[tuple[np.ndarray, float], ...]) -> tuple[float, float]:
    """(share passed by the detector, share left to the reference) of the frames the stages run on."""
    d_pass = ref_pass = weight = 0.0
    for idx, w in evaluated:
        if not len(idx) or w <= 0:
            continue
        passing = np.ones(len(idx), bool) if d is None else d[idx] >= t.delta
        ask = passing if c is None else passing & (c[idx] >= t.c_low) & (c[idx] <= t.c_high)
        d_pass += w * passing.mean()
        ref_pass += w * ask.mean()
        weight += w
    return (d_pass / weight, ref_pass / weight) if weight else (1.0, 1.0)


def search(stages: Stages, frames: np.ndarray, labels: np.ndarray, small: dict[int, dict[int, np.ndarray]],
           costs: Costs, fpr: float, fnr: float, budgets: tuple[int, int] | None = None, skip: int = 1,
           first: int = 0, anchor_labels: np.ndarray | None = None) -> list[Candidate]:
    """Every plan, cheapest first: each combination of a difference detector (none or one per
    metric) and a specialized model (none or one per architecture), with the cheapest split of
    the false-negative budget between them that the fit set ``frames`` certifies
    (``fit_cascade``), costed by ``cascade_cost`` with the measured per-frame costs; the exact
    plan is one of them. ``budgets``: uncertified error counts, for projections (nothing is
    then held to the targets).

    With ``skip`` > 1 (a scan starting at ``first``; ``anchor_labels`` the labels of the fit
    frames' anchors) the plans evaluate one frame in ``skip``; the others inherit their anchor's
    answer, all of them (plain skipping) or, under a t−Δ gate, those whose difference from their
    anchor is below the gate's delta (the rest go through the stages themselves). The reference
    alone on the evaluated frames is one of them; exact is not. Thresholds are fitted on the
    scores and labels of the frame each fit frame takes its answer from, against the fit
    frames' own labels; pass rates are those of the frames the stages run on."""
    labels = np.asarray(labels, bool)
    scored, own, routes = _routes(np.asarray(frames, np.int64), small, skip, first)
    lab = np.zeros(len(scored), bool)
    if skip > 1:
        lab[np.searchsorted(scored, anchors(frames, first, skip))] = np.asarray(anchor_labels, bool)
    lab[own] = labels
    dets, models = stages.scored(scored, small)
    candidates: list[Candidate] = []
    if skip == 1:
        candidates.append(Candidate("exact (reference on every frame)", exact_cost(1, costs)))
    for det, d_scores, d_cost in dets:
        for model, c_scores, c_cost in models:
            if det is None and model is None and skip == 1:
                continue
            best: dict[bool, Candidate] = {}  # the cheapest plain and the cheapest gated plan
            for r in routes:
                stage_costs = replace(costs, diff=d_cost, cnn=c_cost, gate=r.gate_seconds)
                d_src = None if d_scores is None else d_scores[r.source]
                c_src = None if c_scores is None else c_scores[r.source]
                for t in fit_cascade(d_src, c_src, lab[r.source], fnr, fpr, budgets=budgets,
                                     truth=labels if skip > 1 else None):
                    if budgets is None and (t.fnr_bound > fnr or t.fpr_bound > fpr):
                        continue
                    if r.gate is not None:
                        d_pass, ref_pass = _stage_rates(t, d_scores, c_scores, r.evaluated)
                        t = replace(t, diff_pass=d_pass, pass_rate=ref_pass, gate_delta=r.delta, gate_pass=r.gate_pass)
                    shape = CascadeShape(diff_pass=t.diff_pass, cnn_pass=t.cnn_pass, use_diff=det is not None,
                                         use_cnn=model is not None, skip=skip,
                                         gate_pass=None if r.gate is None else r.gate_pass)
                    cost = cascade_cost(1, stage_costs, shape)
                    gated = r.gate is not None
                    if gated not in best or cost < best[gated].cost_per_frame:
                        head = [f"skip {skip}"] if skip > 1 else []
                        head += [f"t-Δ gate {r.gate.metric} ({r.gate_pass:.0%} on)"] if gated else []
                        name = " -> ".join(head + ([det.name] if det else []) + ([model.arch.name] if model else [])
                                           + ["reference"])
                        best[gated] = Candidate(name, cost, t, model, det, c_cost, d_cost, skip, r.gate, r.gate_seconds)
            candidates += best.values()
    return sorted(candidates, key=lambda c: c.cost_per_frame)


def decide(atom: Atom, split: Split, sample_reason: str, truth: dict[int, bool], small: dict[int, dict[int, np.ndarray]],
           costs: Costs, fpr: float, fnr: float, time_budget_s: float = 60.0, stages: Stages | None = None,
           first: int = 0, skips: tuple[int, ...] = (), skip_notes: list[str] | None = None) -> CascadeChoice:
    """Train (unless ``stages`` were trained already), fit, cost and evaluate on a labelled sample:
    the cheapest of ``search``'s plans at 90% of each target (DRIFT_MARGIN), then its false-positive
    and false-negative rates on the eval set. ``skips``: frame skips whose anchors (of the fit
    and eval frames, in a scan starting at ``first``) are labelled in ``truth`` and ``small``."""
    start = time.perf_counter()
    exact = exact_cost(1, costs)
    y = {role: np.array([truth[int(f)] for f in getattr(split, role)], bool) for role in ("train", "fit", "eval")}
    every = np.array([truth[int(f)] for f in split.frames], bool)
    common = dict(atom=atom, sample_frames=len(split.frames), sample_reason=sample_reason, split=split.reason,
                  costs=costs, exact_per_frame=exact, positive_rate=float(every.mean()) if len(every) else 0.5,
                  fitted_frames=np.union1d(np.union1d(split.train, split.fit),
                                           [a for k in skips for a in anchors(split.fit, first, k)]).astype(np.int64),
                  skip_notes=list(skip_notes or []))
    stages = stages or train_stages(split, truth, small, time_budget_s)
    if stages is None:
        return CascadeChoice(strategy="exact", reason="the training sample has only one class", chosen=None, **common)
    candidates = search(stages, split.fit, y["fit"], small, costs, fpr * DRIFT_MARGIN, fnr * DRIFT_MARGIN)
    for k in skips:
        a_fit = anchors(split.fit, first, k)
        candidates += search(stages, split.fit, y["fit"], small, costs, fpr * DRIFT_MARGIN, fnr * DRIFT_MARGIN,
                             skip=k, first=first, anchor_labels=np.array([truth[int(a)] for a in a_fit], bool))
    candidates.sort(key=lambda c: c.cost_per_frame)
    best, alternatives = candidates[0], candidates[1:]
    if best.thresholds is None:
        return CascadeChoice(strategy="exact", reason="no cascade beats the reference under the targets",
                             chosen=None, alternatives=alternatives, plan_seconds=time.perf_counter() - start, **common)
    eval_fpr, eval_fnr = held_out(best, split.eval, first, truth, small)
    return CascadeChoice(
        strategy="cascade", reason="cheapest plan meeting the targets on the fit set", chosen=best,
        alternatives=alternatives, eval_fpr=eval_fpr, eval_fnr=eval_fnr,
        eval_frames=len(y["eval"]), eval_positives=int(y["eval"].sum()),
        plan_seconds=time.perf_counter() - start,
        **dict(common, costs=replace(costs, diff=best.diff_seconds, cnn=best.cnn_seconds, gate=best.gate_seconds)),
    )


def held_out(candidate: Candidate, frames: np.ndarray, first: int, truth: dict[int, bool],
             small: dict[int, dict[int, np.ndarray]]) -> tuple[float, float]:
    """(false-positive rate, false-negative rate) of a cascade on labelled ``frames`` that neither
    training nor fitting saw: the cheap stages decide what they may on the frame each takes its
    answer from (``Candidate.answering``), the reference (its stored label) the rest."""
    y = np.array([truth[int(f)] for f in frames], bool)
    source = candidate.answering(frames, first, small)
    d = candidate.detector.scores(_stack(small[DIFF_SIZE], source)) if candidate.detector else None
    c = candidate.model.scores(_stack(small[candidate.model.arch.size], source)) if candidate.model else None
    said_no, said_yes = candidate.decide(d, c, len(source))
    answer = np.where(said_no, False, np.where(said_yes, True, [truth[int(a)] for a in source]))
    fp, fn = int((answer & ~y).sum()), int((~answer & y).sum())
    return fp / max(1, int((~y).sum())), fn / max(1, int(y.sum()))


def plan_sample(first: int, last: int, target: float, seed: int = 0) -> tuple[Split, str]:
    """The frames to label for planning a scan of [first, last] under error ``target``."""
    n, why = sample_size(last - first + 1, target)
    return time_block_split(first, last, n, seed=seed), why
