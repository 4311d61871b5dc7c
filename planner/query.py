"""Planning a query's model tests together, and certifying the result once.

``propose`` makes every choice on the selection frames (the second half of the training prefix,
``planner/sampling.py``): for each share of the targets the stages may spend there (GAMMAS), each
atom's cheapest cascade (``planner/cascade.py: search``), their combined answers under the
WHERE clause, and the size of the certification sample (``planner/certify.py: sizings``); the
expected cost of each (``planner/cost.py: certified_cost``) against the exact plan's. Then
``finish`` certifies the one proposal on the certification frames and returns the ``QueryPlan``:
the cascades when every bound meets its target, the exact plan otherwise.

A toy query, one atom whose specialized model separates perfectly:

>>> from types import SimpleNamespace as NS
>>> from vql.plan import ModelPredicate
>>> atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
>>> rng = np.random.default_rng(0); y = rng.random(2000) < 0.2
>>> cnn = NS(arch=NS(name="m"))
>>> costs = Costs(decode=1e-3, diff=0.0, cnn=0.0, reference=0.05)
>>> inp = AtomInput(atom, y, 0.2, [(None, None, 0.0)], [(None, None, 0.0), (cnn, y * 0.8 + 0.1, 1e-4)])
>>> p = propose([inp], None, fpr=0.05, fnr=0.05, unlabelled=40000, available=40000, costs=costs)
>>> p.cascade, p.sizing.frames, round(p.expected_seconds), round(p.exact_seconds)
(True, 1196, 119, 2040)
>>> len(p.sequence), [round(c[0].chosen.thresholds.pass_rate, 2) for c in p.sequence]   # the most cautious cost as much as exact
(3, [0.0, 0.0, 0.0])
>>> steps = [[Claim("each", y[:1196], y[:1196])]] * 3
>>> plan = finish(p, steps, 0.05, 0.05)
>>> plan.strategy, plan.choices[0].chosen.name, plan.reason.split(";")[0]
('cascade', 'm -> reference', 'certified the proposed plan')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from vql.plan import claim_names
from vql.planner.cascade import Atom, CascadeChoice, exact_choice, search, stages_cost
from vql.planner.certify import Certificate, Claim, Sizing, certify, frames_needed, sizings
from vql.planner.cost import Costs, certified_cost, exact_cost
from vql.planner.thresholds import Thresholds

GAMMAS = (0.0, 0.25, 0.5)  # shares of each target the stages may spend on the selection frames
# The plans certified in sequence, most cautious first, the proposed plan last (``finish``): per
# step, how far each threshold moves towards "ask the reference". The difference detector's δ is
# multiplied by the first number; the specialized model's c_low moves down and c_high up by the
# second and third in log-odds (inf: that side decides nothing). Steps far out in log-odds
# matter because a tiny model's scores on a few positives sit far below every positive the
# selection frames hold, and the certification frames hold several times more positives.
CAUTION = ((1 / 8, np.inf, 8.0), (1 / 4, 8.0, 6.0), (1 / 4, 4.0, 3.0), (1 / 2, 2.0, 1.5), (3 / 4, 1.0, 0.5))
EXACT_MARGIN = 0.9  # a cascade must be expected to cost under this share of the exact plan

# (frames, {atom column: bool per frame}) -> the WHERE clause's truth per frame
Combine = Callable[[np.ndarray, dict], np.ndarray]


@dataclass(frozen=True)
class AtomInput:
    """What the planner knows of one atom from the training prefix: its truth on the selection
    frames, its share of positives on the whole prefix, and its stages' scores on the selection
    frames (``Stages.scored``; None: no stage could be trained, the atom is answered exactly)."""

    atom: Atom
    truth: np.ndarray
    positive_rate: float
    dets: list | None
    models: list | None
    no_stages: str = "the training frames hold one class only"


@dataclass(frozen=True)
class Proposal:
    """The choice made on the selection frames, before certification."""

    choices: tuple[CascadeChoice, ...]
    claims: tuple[str, ...]  # what is certified: the WHERE clause, or each atom
    sizing: Sizing | None
    expected_seconds: float  # of the work still to pay, over the unlabelled frames
    exact_seconds: float
    reason: str
    needed: int  # certification frames the targets need when nothing is missed
    sequence: tuple[tuple[CascadeChoice, ...], ...] = ()  # the plans to certify in order, ``choices`` last

    @property
    def cascade(self) -> bool:
        return self.sizing is not None


def _claims(names: tuple[str, ...], frames: np.ndarray, values: dict, atoms: list[Atom], combine: Combine | None):
    """Per claim, the truth value on ``frames`` from per-atom values."""
    if combine is None:
        return [np.asarray(values[a.column], bool) for a in atoms]
    return [np.asarray(combine(frames, values), bool)]


def propose(inputs: list[AtomInput], combine: Combine | None, fpr: float, fnr: float, unlabelled: int,
            available: int, costs: Costs, select_frames: np.ndarray | None = None,
            prefix_rates: list[float] | None = None, where: str | None = None) -> Proposal:
    """The cheapest plan by expected cost, chosen on the selection frames alone.

    ``combine`` evaluates the WHERE clause from atom values (None: each atom is its own claim);
    ``prefix_rates`` the claims' shares of positives on the training prefix (default: the
    atoms'); ``unlabelled`` the frames outside the training prefix without labels, of
    ``available`` outside it; ``costs`` the measured per-frame costs (decode, reference)."""
    atoms = [i.atom for i in inputs]
    names = claim_names(atoms, where if combine is not None else None)
    frames = np.arange(len(inputs[0].truth)) if select_frames is None else select_frames
    rates = prefix_rates if prefix_rates is not None else [i.positive_rate for i in inputs]
    truth = {i.atom.column: np.asarray(i.truth, bool) for i in inputs}
    sel_truth = _claims(names, frames, truth, atoms, combine)
    exact_seconds = exact_cost(unlabelled, costs)
    needed = max(frames_needed(fpr, fnr, r) for r in rates) if rates else 0
    exact_all = tuple(exact_choice(i.atom, i.no_stages if i.dets is None else "no cascade pays", costs, i.positive_rate)
                      for i in inputs)
    best: tuple[float, tuple, Sizing] | None = None
    if fpr > 0 and fnr > 0:
        for gamma in GAMMAS:
            picked = [_atom_choice(i, gamma * min(fpr, fnr), costs, exact) for i, exact in zip(inputs, exact_all)]
            choices = [c for c, _ in picked]
            answers = {c.atom.column: a for c, a in picked}
            if all(c.chosen is None for c in choices):
                continue
            per_frame = sum(c.expected_per_frame for c in choices)
            sel = [Claim(n, t, a) for n, t, a in zip(names, sel_truth, _claims(names, frames, answers, atoms, combine))]
            for s in sizings(sel, rates, fpr, fnr, available):
                cost = certified_cost(s.frames * unlabelled / max(1, available), unlabelled, costs, per_frame,
                                      s.pass_probability)
                if best is None or cost < best[0]:
                    best = (cost, tuple(choices), s)
    if best is None:
        why = ("a target of 0 needs the reference on every frame" if fpr <= 0 or fnr <= 0 else
               f"no cascade can be certified on the {available} frames left: the targets need about {needed} "
               f"certification frames with nothing missed")
        return Proposal(exact_all, names, None, exact_seconds, exact_seconds, why, needed)
    cost, choices, sizing = best
    by_column = {i.atom.column: i for i in inputs}
    sequence = tuple(tuple(pad(c, by_column[c.atom.column], *step) for c in choices) for step in CAUTION)
    limit = sum(c.exact_per_frame for c in choices)  # a step that costs as much as exact is left out
    sequence = tuple(seq for seq in sequence if sum(c.expected_per_frame for c in seq) < limit) + (choices,)
    if cost >= EXACT_MARGIN * exact_seconds:
        return Proposal(exact_all, names, None, exact_seconds, exact_seconds,
                        f"the cheapest certifiable cascade is expected to cost ~{cost:.0f} s (certifying on "
                        f"{sizing.frames} frames, passing with chance {sizing.pass_probability:.2f}) against "
                        f"~{exact_seconds:.0f} s exact", needed)
    return Proposal(choices, names, sizing, cost, exact_seconds,
                    f"expected ~{cost:.0f} s against ~{exact_seconds:.0f} s exact; certification sized to absorb "
                    f"{sizing.allowed_fn} missed and {sizing.allowed_fp} false frames per claim, passing with chance "
                    f"{sizing.pass_probability:.2f} (predicted on the selection frames)", needed, sequence)


def _atom_choice(i: AtomInput, share: float, costs: Costs, exact: CascadeChoice) -> tuple[CascadeChoice, np.ndarray]:
    """An atom's cheapest cascade when its stages may err on ``share`` of its positives and of
    its negatives among the selection frames, with its answers there; ``exact`` (answering the
    truth) when it has no stages or no cascade is cheaper."""
    pos, neg = int(i.truth.sum()), int((~i.truth).sum())
    allowed = (math.floor(share * pos), math.floor(share * neg))
    options = [] if i.dets is None else search(i.dets, i.models, i.truth, costs, allowed)
    if not options or options[0].candidate.cost_per_frame >= exact.exact_per_frame:
        return exact, np.asarray(i.truth, bool)
    top = options[0].candidate
    return CascadeChoice(i.atom, "cascade", f"cheapest on the selection frames, {sum(allowed)} errors allowed there",
                         replace(costs, diff=top.diff_seconds, cnn=top.cnn_seconds), exact.exact_per_frame, top,
                         i.positive_rate, tuple(o.candidate for o in options[1:])), options[0].answer


def _shift(p: float, by: float) -> float:
    """The probability ``p`` moved by ``by`` in log-odds (±inf and the ends 0 and 1 stay put).

    >>> round(_shift(0.5, 2), 3), _shift(0.0, -1), _shift(0.3, np.inf), _shift(0.3, -np.inf)
    (0.881, 0.0, inf, -inf)
    """
    if np.isinf(by):
        return float(by)
    if not 0 < p < 1:
        return float(p)
    return float(1 / (1 + math.exp(-(math.log(p / (1 - p)) + by))))


def pad(choice: CascadeChoice, inp: AtomInput, delta_factor: float, low: float, high: float) -> CascadeChoice:
    """A more cautious version of an atom's cascade: δ multiplied by ``delta_factor``, ``c_low``
    moved down by ``low`` and ``c_high`` up by ``high`` in log-odds (fewer frames answered "no"
    and "yes"; inf: that side answers nothing), its pass rates and cost measured again on the
    selection frames.

    >>> from types import SimpleNamespace as NS
    >>> from vql.plan import ModelPredicate
    >>> from vql.planner.cascade import Candidate
    >>> from vql.planner.thresholds import Thresholds
    >>> atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="a")
    >>> cnn = NS(arch=NS(name="m")); scores = np.linspace(0, 1, 101)
    >>> inp = AtomInput(atom, scores > 0.5, 0.5, [(None, None, 0.0)], [(None, None, 0.0), (cnn, scores, 1e-4)])
    >>> c = CascadeChoice(atom, "cascade", "", Costs(1e-3, 0, 0, 0.05), 0.051,
    ...                   Candidate("m", 0.0, Thresholds(c_low=0.4, c_high=0.6), model=cnn, cnn_seconds=1e-4))
    >>> t = pad(c, inp, 0.5, 1.0, 1.0).chosen.thresholds
    >>> round(t.c_low, 3), round(t.c_high, 3), round(t.pass_rate, 2)
    (0.197, 0.803, 0.6)
    >>> t = pad(c, inp, 0.5, np.inf, 1.0).chosen.thresholds      # the model answers no frame "no"
    >>> t.c_low, round(t.pass_rate, 2)
    (-inf, 0.8)
    """
    chosen = choice.chosen
    if chosen is None:
        return choice
    t = chosen.thresholds
    d = next((x for stage, x, _ in inp.dets if stage is not None and stage is chosen.detector), None)
    c = next((x for stage, x, _ in inp.models if stage is not None and stage is chosen.model), None)
    delta = t.delta * delta_factor if np.isfinite(t.delta) else t.delta
    c_low = _shift(t.c_low, -low) if t.c_low != -np.inf else t.c_low
    c_high = t.c_high if t.c_high != -np.inf else max(t.c_low, 0.0)
    if c is not None and d is not None:  # a lower δ lets more negatives reach the model: it may say
        y = np.asarray(inp.truth, bool)  # "yes" to no more of them than the proposal did
        made = int((~y & t.decide(d, c, len(y))[1]).sum())
        reached = np.sort(np.asarray(c, np.float64)[~y & (np.asarray(d) >= delta)])
        c_high = max(c_high, reached[len(reached) - 1 - made] if made < len(reached) else -np.inf)
    c_high = _shift(c_high, high)
    padded = Thresholds(c_low, max(c_high, c_low), delta).measured(d, c, len(inp.truth))
    cost = stages_cost(padded, choice.costs, d is not None, c is not None, chosen.diff_seconds, chosen.cnn_seconds)
    return replace(choice, chosen=replace(chosen, cost_per_frame=cost, thresholds=padded),
                   reason=f"{choice.reason}; thresholds moved towards the reference (δ x {delta_factor:g}, "
                          f"c_low -{low:g} and c_high +{high:g} in log-odds)")


@dataclass(frozen=True)
class QueryPlan:
    """What runs for one scan's model tests, with the certificate that allows it."""

    strategy: str  # "cascade" | "exact"
    reason: str
    choices: tuple[CascadeChoice, ...]
    fpr: float
    fnr: float
    claims: tuple[str, ...] = ()
    sample: str = ""
    training_frames: int = 0
    needed: int = 0
    sizing: Sizing | None = None
    certificate: Certificate | None = None
    expected_seconds: float = 0.0
    exact_seconds: float = 0.0
    plan_seconds: float = 0.0

    def choice(self, column: str) -> CascadeChoice:
        return next(c for c in self.choices if c.atom.column == column)

    def explain_lines(self) -> list[str]:
        lines = [f"Plan of the model tests: {self.strategy} ({self.reason})"]
        if self.certificate is not None and self.certificate.passed:
            lines.append(f"  guarantee: with probability >= {self.certificate.confidence:.0%} over vql's random sample, "
                         f"false-negative rate <= {self.fnr:g} and false-positive rate <= {self.fpr:g}, jointly, "
                         f"for {' and '.join(self.claims)}, over the frames scanned")
        elif self.strategy == "exact":
            lines.append("  exact: every frame answered by the reference (no error)")
        for c in self.choices:
            lines += ["  " + line for line in c.explain_lines()]
        if self.sample:
            lines.append(f"  training prefix: {self.training_frames} frames of the scan's seeded random order "
                         f"({self.sample}); half train the stages, half select the plan")
        if self.needed:
            lines.append(f"  the targets need about {self.needed} certification frames when nothing is missed")
        if self.certificate is not None:
            lines += ["  " + line for line in self.certificate.lines()]
        return lines


def finish(proposal: Proposal, steps: list[list[Claim]], fpr: float, fnr: float, **info) -> QueryPlan:
    """Certify the proposal's plans in their fixed order (``steps``: per plan of
    ``proposal.sequence``, its claims on the certification frames, the truth and the plan's
    answer there), stopping at the first that fails; the last one certified runs, the exact
    plan when none is."""
    common = dict(fpr=fpr, fnr=fnr, claims=proposal.claims, needed=proposal.needed, sizing=proposal.sizing,
                  exact_seconds=proposal.exact_seconds, **info)
    if not proposal.cascade:
        return QueryPlan("exact", proposal.reason, proposal.choices, expected_seconds=proposal.exact_seconds, **common)
    certified, first = None, None
    for k, claims in enumerate(steps):
        cert = certify(claims, fpr, fnr)
        first = first or cert
        if not cert.passed:
            break
        certified = (k, cert)
    if certified is not None:
        k, cert = certified
        choices = proposal.sequence[k]
        step = ("the proposed plan" if k == len(steps) - 1 else
                f"plan {k + 1} of {len(steps)}, with thresholds moved towards the reference (the next one failed)")
        return QueryPlan("cascade", f"certified {step}; {proposal.reason}", choices, certificate=cert,
                         expected_seconds=proposal.expected_seconds, **common)
    exact = tuple(exact_choice(c.atom, "the certificate failed", c.costs, c.positive_rate) for c in proposal.choices)
    return QueryPlan("exact", "the certification frames did not certify even the most cautious of the proposed "
                     "plans", exact, certificate=first, expected_seconds=proposal.exact_seconds, **common)


def answers_on(choices: tuple[CascadeChoice, ...], truth: dict, scores: Callable) -> dict:
    """Each atom's answer on certification frames: ``truth`` per atom column there, ``scores(choice)``
    the chosen stages' (detector, model) scores there."""
    out = {}
    for c in choices:
        t = np.asarray(truth[c.atom.column], bool)
        out[c.atom.column] = t if c.chosen is None else c.chosen.thresholds.answer(*scores(c), t)
    return out


def certification_claims(proposal: Proposal, frames: np.ndarray, truth: dict, scores: Callable,
                         combine: Combine | None) -> list[list[Claim]]:
    """Per plan of the proposal's sequence, its claims on the certification ``frames``: the
    truth there (``truth`` per atom column) and what the plan answers (``scores(choice)``: the
    chosen stages' scores there)."""
    return [_claims_of(proposal, choices, frames, truth, answers_on(choices, truth, scores), combine)
            for choices in proposal.sequence]


def _claims_of(proposal: Proposal, choices, frames: np.ndarray, truth: dict, answers: dict,
               combine: Combine | None) -> list[Claim]:
    atoms = [c.atom for c in choices]
    t = _claims(proposal.claims, frames, truth, atoms, combine)
    a = _claims(proposal.claims, frames, answers, atoms, combine)
    return [Claim(n, x, y) for n, x, y in zip(proposal.claims, t, a)]
