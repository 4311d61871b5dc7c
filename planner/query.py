"""Planning a query's model tests together, and certifying the result once.

``propose`` makes every choice on the selection frames (the last two thirds of the training prefix,
``planner/sampling.py``): for each share of the targets the stages may spend there (GAMMAS), each
atom's cheapest cascade (``planner/cascade.py: search``), their combined answers under the
WHERE clause, the ladder of more cautious plans to certify before it (``ladder``, for each way
of placing the "yes" side, YES_SHARES) and the size of the certification sample
(``planner/certify.py: sizes``), weighing each plan of the ladder by its predicted chance of
being the one that runs (``planner/tails.py``, ``certify.chances``); the expected cost of each
(``planner/cost.py: certified_cost``) against the exact plan's. Then ``finish`` certifies the
ladder in order on the certification frames and returns the ``QueryPlan``: the last plan
certified, the exact plan when none is.

A toy query, one atom whose specialized model separates perfectly:

>>> from vql.plan import ModelPredicate
>>> from vql.planner.stages import PROBABILITY, register
>>> class Cnn:
...     name, size = "m", 32
>>> register(Cnn, PROBABILITY)
>>> atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="vql_a0")
>>> rng = np.random.default_rng(0); y = rng.random(2000) < 0.2
>>> costs = Costs(decode=1e-3, reference=0.05)
>>> inp = AtomInput(atom, y, 0.2, [[(None, None, 0.0), (Cnn(), y * 0.8 + 0.1, 1e-4)]])
>>> p = propose([inp], None, fpr=0.05, fnr=0.05, unlabelled=40000, available=40000, costs=costs)
>>> p.cascade, p.sizing.frames, round(p.expected_seconds), round(p.exact_seconds)
(True, 412, 67, 2040)
>>> len(p.sequence), [round(c[0].chosen.pass_rate, 2) for c in p.sequence]   # steps as dear as exact left out
(6, [0.79, 0.0, 0.0, 0.0, 0.0, 0.0])
>>> steps = [[Claim("each", y[:412], y[:412])]] * 6
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
from vql.planner.cascade import Atom, CascadeChoice, exact_choice, search
from vql.planner.certify import Certificate, Claim, Sizing, absorbed, certify, chances, frames_needed, sizes
from vql.planner.cost import Costs, cascade_cost, certified_cost, exact_cost
from vql.planner.stages import Caution, decide, measured
from vql.planner.tails import error_rates

SIZE_TIE = 0.02  # certification samples whose expected costs lie this close count as tied: the smallest wins
GAMMAS = (0.0, 0.25, 0.5)  # shares of each target the stages may spend on the selection frames
# The plans certified in sequence, most cautious first, the proposed plan last (``finish``): per
# step, how far each stage's band moves towards "ask the reference" (``stages.Caution``: a
# difference detector's δ multiplied by the first number; a specialized model's c_low moved down
# and c_high up by the second and third in log-odds, inf: that side decides nothing). Steps far
# out in log-odds matter because a tiny model's scores on a few positives sit far below every
# positive the selection frames hold, and the certification frames hold several times more. Fine
# steps cost no confidence (a fixed sequence, ``finish``) and give the sizing (``propose``) plans
# between "decides almost nothing" and the proposal to weigh.
CAUTION = (Caution(1 / 8, np.inf, 8.0), Caution(1 / 4, 8.0, 6.0), Caution(1 / 4, 6.0, 5.0), Caution(1 / 3, 5.0, 4.0),
           Caution(1 / 3, 4.0, 3.0), Caution(1 / 2, 3.0, 2.0), Caution(1 / 2, 2.0, 1.5), Caution(2 / 3, 1.5, 1.0),
           Caution(3 / 4, 1.0, 0.5), Caution(7 / 8, 0.5, 0.25))
# The shapes of the ladder, each a fixed sequence of steps, most cautious first (``ladder``);
# ``propose`` weighs each by its expected cost and the one it picks is certified:
# - "together": every stage's band moved at each step of CAUTION;
# - "models first": the difference detectors dropped (δ x 0) while the models' bands come in
#   along CAUTION, then the models' "no" sides at the proposal's while the detectors' δ come in
#   along it (``pad`` keeps "yes" to no more selection negatives than the proposal). A detector whose positives reach further below δ than the selection frames
#   showed (a borderline walker barely unlike the background) then stops only the later steps,
#   not the plans in which the model alone settles most frames.
SHAPES = {"together": CAUTION,
          "models first": tuple(replace(c, scale=0.0) for c in CAUTION) + tuple(Caution(c.scale) for c in CAUTION)}
# The "yes" sides of the ladder's plans, one ladder each (``ladder``): None, c_high moves with
# the steps; a share s, c_high placed to answer "yes" to at most s x fpr of the selection negatives.
YES_SHARES = (None, 0.25, 0.5)
EXACT_MARGIN = 0.9  # a cascade must be expected to cost under this share of the exact plan

# (frames, {atom column: bool per frame}) -> the WHERE clause's truth per frame
Combine = Callable[[np.ndarray, dict], np.ndarray]


@dataclass(frozen=True)
class AtomInput:
    """What the planner knows of one atom from the training prefix: its truth on the selection
    frames, its share of positives on the whole prefix, and its trained stages' scores on the
    selection frames, in groups of alternatives (``Stages.scored``; None: no stage could be
    trained, the atom is answered exactly)."""

    atom: Atom
    truth: np.ndarray
    positive_rate: float
    groups: list | None
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
    shape: str = "together"  # of the ladder (SHAPES)

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
            prefix_rates: list[float] | None = None, where: str | None = None,
            prefix_frames: int | None = None) -> Proposal:
    """The cheapest plan by expected cost, chosen on the selection frames alone.

    ``combine`` evaluates the WHERE clause from atom values (None: each atom is its own claim);
    ``prefix_rates`` the claims' shares of positives on the training prefix (default: the
    atoms'), measured on ``prefix_frames`` frames (None: taken as exact); ``unlabelled`` the frames
    outside the training prefix without labels, of ``available`` outside it; ``costs`` the
    measured per-frame costs (decode, reference)."""
    atoms = [i.atom for i in inputs]
    names = claim_names(atoms, where if combine is not None else None)
    frames = np.arange(len(inputs[0].truth)) if select_frames is None else select_frames
    rates = prefix_rates if prefix_rates is not None else [i.positive_rate for i in inputs]
    truth = {i.atom.column: np.asarray(i.truth, bool) for i in inputs}
    sel_truth = _claims(names, frames, truth, atoms, combine)
    exact_seconds = exact_cost(unlabelled, costs)
    needed = max(frames_needed(fpr, fnr, r) for r in rates) if rates else 0
    exact_all = tuple(exact_choice(i.atom, i.no_stages if i.groups is None else "no cascade pays", costs, i.positive_rate)
                      for i in inputs)
    by_column = {i.atom.column: i for i in inputs}
    found: list[tuple[float, int, tuple, Sizing, tuple, str]] = []
    sized = sizes(rates, fpr, fnr, available) if fpr > 0 and fnr > 0 else []
    law = dict(fpr=fpr, fnr=fnr, rate_frames=prefix_frames)
    absorbs = {n: absorbed(n, rates, fpr, fnr) for n in sized}
    if sized:
        for gamma in GAMMAS:
            picked = [_atom_choice(i, gamma * min(fpr, fnr), costs, exact) for i, exact in zip(inputs, exact_all)]
            choices = tuple(c for c, _ in picked)
            answers = {c.atom.column: a for c, a in picked}
            if all(c.chosen is None for c in choices):
                continue
            sel = [Claim(n, t, a) for n, t, a in zip(names, sel_truth, _claims(names, frames, answers, atoms, combine))]
            own = chances(sel, rates, sized, **law)  # the proposal's, from its errors on the selection frames
            seen = set()
            known: dict[tuple, np.ndarray] = {}  # shapes share many steps: each step's chances once

            def step_chances(seq):
                key = _key((seq,))
                if key not in known:
                    known[key] = chances(sel, rates, sized, predicted_rates(seq, by_column, rates, combine, sel_truth),
                                         **law)
                return known[key]

            for yes_share, shape in ((y, shape) for y in YES_SHARES for shape in SHAPES):
                sequence = ladder(choices, by_column, None if yes_share is None else yes_share * fpr, SHAPES[shape])
                if _key(sequence) in seen:  # a shape that moves no stage the other does not
                    continue
                seen.add(_key(sequence))
                per_frame = [sum(c.expected_per_frame for c in seq) for seq in sequence]
                # per ladder step and size, the chance it passes, taken as no higher than the step before's
                # (the "no" answers nest along a ladder, the misses with them; a modelling assumption of the
                # sizing only, the guarantee needs none); the plan that runs is the last one certified
                steps = [step_chances(seq) for seq in sequence[:-1]] + [own]
                passes = np.maximum.accumulate(np.array(steps)[::-1])[::-1]
                runs = passes - np.vstack([passes[1:], np.zeros((1, len(sized)))])
                for j, n in enumerate(sized):
                    a_fn, a_fp = absorbs[n]
                    cost = certified_cost(n * unlabelled / max(1, available), unlabelled, costs,
                                          list(zip(runs[:, j].tolist(), per_frame)))
                    found.append((cost, n, choices, Sizing(n, a_fn, a_fp, float(passes[-1, j]),
                                                           tuple(passes[:, j].tolist())), sequence, shape))
    best = _smallest_near_cheapest([f for f in found if f[0] < EXACT_MARGIN * exact_seconds] or found)
    if best is None:
        why = ("a target of 0 needs the reference on every frame" if fpr <= 0 or fnr <= 0 else
               f"no cascade can be certified on the {available} frames left: the targets need about {needed} "
               f"certification frames with nothing missed")
        return Proposal(exact_all, names, None, exact_seconds, exact_seconds, why, needed)
    cost, choices, sizing, sequence, shape = best
    if cost >= EXACT_MARGIN * exact_seconds:
        return Proposal(exact_all, names, None, exact_seconds, exact_seconds,
                        f"the cheapest certifiable cascade is expected to cost ~{cost:.0f} s (certifying on "
                        f"{sizing.frames} frames, some plan of the ladder passing with chance "
                        f"{sizing.step_chances[0]:.2f}) against ~{exact_seconds:.0f} s exact", needed)
    return Proposal(choices, names, sizing, cost, exact_seconds,
                    f"expected ~{cost:.0f} s against ~{exact_seconds:.0f} s exact; certification sized to absorb "
                    f"{sizing.allowed_fn} missed and {sizing.allowed_fp} false frames per claim (at the expected counts); predicted on the "
                    f"selection frames, the proposal passes with chance {sizing.pass_probability:.2f} and some plan of "
                    f"the ladder (\"{shape}\", {len(sequence)} plans) with chance {sizing.step_chances[0]:.2f}",
                    needed, sequence, shape)


def _smallest_near_cheapest(found: list[tuple]) -> tuple | None:
    """Of (expected cost, certification frames, ...) options, the one with the fewest frames
    among those within SIZE_TIE of the cheapest: the certification labels are a sure cost, what
    a larger sample saves is a prediction (``planner/tails.py``), and the expected cost is
    often flat over sample sizes (on the composed hour at 1%, ~3,850 and ~5,700 frames came
    within 1% of each other). Returned without the frames.

    >>> _smallest_near_cheapest([(100.0, 900, "a"), (99.0, 1400, "b"), (80.0, 2000, "c")])
    (80.0, 'c')
    >>> _smallest_near_cheapest([(100.0, 900, "a"), (99.0, 1400, "b")]), _smallest_near_cheapest([])
    ((100.0, 'a'), None)
    """
    if not found:
        return None
    cheapest = min(f[0] for f in found)
    pick = min((f for f in found if f[0] <= cheapest * (1 + SIZE_TIE)), key=lambda f: (f[1], f[0]))
    return (pick[0], *pick[2:])


def _atom_choice(i: AtomInput, share: float, costs: Costs, exact: CascadeChoice) -> tuple[CascadeChoice, np.ndarray]:
    """An atom's cheapest cascade when its stages may err on ``share`` of its positives and of
    its negatives among the selection frames, with its answers there; ``exact`` (answering the
    truth) when it has no stages or no cascade is cheaper."""
    pos, neg = int(i.truth.sum()), int((~i.truth).sum())
    allowed = (math.floor(share * pos), math.floor(share * neg))
    options = [] if i.groups is None else search(i.groups, i.truth, costs, allowed)
    if not options or options[0].candidate.cost_per_frame >= exact.exact_per_frame:
        return exact, np.asarray(i.truth, bool)
    top = options[0].candidate
    return CascadeChoice(i.atom, "cascade", f"cheapest on the selection frames, {sum(allowed)} errors allowed there",
                         costs, exact.exact_per_frame, top,
                         i.positive_rate, tuple(o.candidate for o in options[1:])), options[0].answer


def ladder(choices: tuple[CascadeChoice, ...], by_column: dict[str, AtomInput],
           yes_rate: float | None = None, steps: tuple[Caution, ...] = CAUTION) -> tuple[tuple[CascadeChoice, ...], ...]:
    """The plans to certify in order: the proposal (``choices``) padded by each of ``steps``
    (a shape of SHAPES), most cautious first, steps that cost as much as exact and steps that
    repeat the one before left out, then the proposal. With ``yes_rate``, every step's models
    answer "yes" to at most that share of each atom's selection negatives (``pad``'s
    ``yes_budget``)."""
    def budget(c: CascadeChoice) -> int | None:
        return None if yes_rate is None else math.floor(yes_rate * int((~by_column[c.atom.column].truth).sum()))

    limit = sum(c.exact_per_frame for c in choices)
    out: list[tuple[CascadeChoice, ...]] = []
    for step in steps:
        seq = tuple(pad(c, by_column[c.atom.column], step, budget(c)) for c in choices)
        if sum(c.expected_per_frame for c in seq) < limit and (not out or _key((seq,)) != _key(out[-1:])):
            out.append(seq)
    if out and _key(out[-1:]) == _key((choices,)):
        out.pop()
    return tuple(out) + (choices,)


def _key(sequence: tuple[tuple[CascadeChoice, ...], ...]) -> tuple:
    """What tells plans apart: per atom, its stages (operator and band), None for exact."""
    return tuple(tuple((c.atom.column, None if c.chosen is None else
                        tuple((id(st.op), st.band.low, st.band.high) for st in c.chosen.stages)) for c in seq)
                 for seq in sequence)


def predicted_rates(choices: tuple[CascadeChoice, ...], by_column: dict[str, AtomInput], rates: list[float],
                    combine: Combine | None, sel_truth: list[np.ndarray]) -> list[tuple[float, float] | None]:
    """Per claim, the (fnr, fpr) a plan is predicted to have on frames the selection frames never
    showed it (``planner/tails.py``), None where too few frames allow a prediction. Each atom
    that is its own claim, or a WHERE clause that is one atom or its negation, gets the atom's
    rates; a claim over several atoms, at most the sum of its atoms' errors over its frames of
    each class (a union bound)."""
    per_atom = {}
    for c in choices:
        inp = by_column[c.atom.column]
        per_atom[c.atom.column] = (0.0, 0.0) if c.chosen is None else error_rates(
            c.chosen.stages, _stage_scores(c.chosen, inp), inp.truth)
    if any(r is None for r in per_atom.values()):
        return [None] * len(sel_truth)
    if combine is None:
        return [per_atom[c.atom.column] for c in choices]
    if len(choices) == 1:
        column = choices[0].atom.column
        t, claim = np.asarray(by_column[column].truth, bool), sel_truth[0]
        if (claim == t).all():
            return [per_atom[column]]
        if (claim == ~t).all():
            return [per_atom[column][::-1]]
    share = rates[0]
    if not 0 < share < 1:
        return [None]
    errors = sum(f * by_column[k].positive_rate + g * (1 - by_column[k].positive_rate) for k, (f, g) in per_atom.items())
    return [(min(1.0, errors / share), min(1.0, errors / (1 - share)))]


def _stage_scores(chosen, inp: AtomInput) -> list[np.ndarray]:
    """A candidate's stages' scores on the selection frames, in order."""
    return [next(x for group in inp.groups for op, x, _ in group if op is st.op) for st in chosen.stages]


def pad(choice: CascadeChoice, inp: AtomInput, caution: Caution, yes_budget: int | None = None) -> CascadeChoice:
    """A more cautious version of an atom's cascade: each stage's band moved towards the
    reference as its kind says (``StageKind.cautious``), the last stage never answering "yes"
    to more selection negatives than the proposal did (a detector passing more frames lets more
    negatives reach it), its pass shares and cost measured again on the selection frames. With
    ``yes_budget``, only the "no" sides move: the last stage's c_high is placed afresh to answer
    "yes" to at most that many selection negatives (the false-positive target has its own room:
    a model that is sure of many positives keeps them from the reference). A stage whose band
    decides nothing (a detector at δ x 0) is dropped and the plan renamed; with no stage left,
    the atom is answered exactly at this step.

    >>> from vql.plan import ModelPredicate
    >>> from vql.planner.cascade import Candidate
    >>> from vql.planner.stages import Band, PROBABILITY, Stage, register
    >>> class Cnn:
    ...     name, size = "m", 32
    >>> register(Cnn, PROBABILITY)
    >>> atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n"), column="a")
    >>> cnn = Cnn(); scores = np.linspace(0, 1, 101)
    >>> inp = AtomInput(atom, scores > 0.5, 0.5, [[(None, None, 0.0), (cnn, scores, 1e-4)]])
    >>> c = CascadeChoice(atom, "cascade", "", Costs(1e-3, 0.05), 0.051,
    ...                   Candidate("m", 0.0, (Stage(cnn, Band(0.4, 0.6), 1e-4),)))
    >>> s = pad(c, inp, Caution(0.5, 1.0, 1.0)).chosen
    >>> round(s.stages[0].band.low, 3), round(s.stages[0].band.high, 3), round(s.pass_rate, 2)
    (0.197, 0.803, 0.6)
    >>> s = pad(c, inp, Caution(0.5, np.inf, 1.0)).chosen      # the model answers no frame "no"
    >>> s.stages[0].band.low, round(s.pass_rate, 2)
    (-inf, 0.8)
    >>> s = pad(c, inp, Caution(0.5, 1.0, 1.0), yes_budget=0).chosen   # "yes" above every negative seen
    >>> round(s.stages[0].band.low, 3), round(s.stages[0].band.high, 3), round(s.pass_rate, 2)
    (0.197, 0.5, 0.31)
    """
    chosen = choice.chosen
    if chosen is None:
        return choice
    scores = _stage_scores(chosen, inp)
    y = np.asarray(inp.truth, bool)
    stages = [st.kind.cautious(st.band, caution) for st in chosen.stages]
    last = chosen.stages[-1]
    if last.kind.says_yes and (len(stages) > 1 or yes_budget is not None):
        no, yes = decide([replace(st, band=b) for st, b in zip(chosen.stages[:-1], stages[:-1])], scores[:-1], len(y))
        reached = np.sort(np.asarray(scores[-1], np.float64)[~y & ~no & ~yes])
        if yes_budget is None:  # "yes" to no more selection negatives than the proposal
            made = int((~y & chosen.decide(scores, len(y))[1]).sum())
            high = last.band.high if last.band.high != -np.inf else max(last.band.low, 0.0)
            floor = reached[len(reached) - 1 - made] if made < len(reached) else -np.inf
            stages[-1] = last.kind.cautious(replace(last.band, high=max(high, floor)), caution)
        else:  # "yes" placed afresh: to at most ``yes_budget`` of the selection negatives that reach it
            high = float(reached[len(reached) - 1 - yes_budget]) if yes_budget < len(reached) else -np.inf
            stages[-1] = replace(stages[-1], high=max(high, stages[-1].low))
    kept = [(replace(st, band=b), s) for st, b, s in zip(chosen.stages, stages, scores) if not b.decides_nothing]
    yes_side = (f"c_high +{caution.high:g} in log-odds" if yes_budget is None else
                f"c_high placed to answer \"yes\" to at most {yes_budget} selection negatives")
    detector = any(not st.kind.says_yes for st in chosen.stages)
    moved = ("difference detector dropped, " if caution.scale == 0 and detector else
             f"δ x {caution.scale:g}, " if detector else "")
    reason = f"{choice.reason}; bands moved towards the reference ({moved}c_low -{caution.low:g} in log-odds, {yes_side})"
    if not kept:  # no stage decides anything: the reference answers every frame
        return exact_choice(choice.atom, f"{reason}: no stage decides anything", choice.costs, choice.positive_rate)
    padded, rate = measured([st for st, _ in kept], [s for _, s in kept], len(y))
    cost = cascade_cost(1, choice.costs, padded)
    name = " -> ".join([st.op.name for st in padded] + ["reference"])
    return replace(choice, chosen=replace(chosen, name=name, cost_per_frame=cost, stages=padded, pass_rate=rate),
                   reason=reason)


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
                         f"({self.sample}); a third trains the stages, two thirds select the plan")
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
                f"plan {k + 1} of {len(steps)} of the \"{proposal.shape}\" ladder, with thresholds moved towards "
                f"the reference (the next one failed)")
        return QueryPlan("cascade", f"certified {step}; {proposal.reason}", choices, certificate=cert,
                         expected_seconds=proposal.expected_seconds, **common)
    exact = tuple(exact_choice(c.atom, "the certificate failed", c.costs, c.positive_rate) for c in proposal.choices)
    return QueryPlan("exact", "the certification frames did not certify even the most cautious of the proposed "
                     "plans", exact, certificate=first, expected_seconds=proposal.exact_seconds, **common)


def answers_on(choices: tuple[CascadeChoice, ...], truth: dict, scores: Callable) -> dict:
    """Each atom's answer on certification frames: ``truth`` per atom column there, ``scores(choice)``
    its chosen stages' scores there, in order."""
    out = {}
    for c in choices:
        t = np.asarray(truth[c.atom.column], bool)
        out[c.atom.column] = t if c.chosen is None else c.chosen.answer(scores(c), t)
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
