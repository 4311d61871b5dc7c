"""The miss rates the planner predicts for the certification ladder's plans
(``planner/tails.py``), and how they size the certification sample (``planner/query.py``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vql.plan import Atom, ModelPredicate
from vql.planner.cascade import CascadeChoice, Candidate
from vql.planner.cost import Costs
from vql.planner.certify import Sizing
from vql.planner.query import AtomInput, Proposal, ladder, predicted_rates, propose
from vql.planner.stages import Band, Stage
from vql.planner.tails import error_rates, tail_share

from simulate import SimModel as Model


@pytest.mark.parametrize("draw,factor", [
    (lambda rng, n: rng.normal(0, 1, n), 4),         # a light tail: the exponential fit overstates it
    (lambda rng, n: -rng.exponential(1, n), 4),      # an exponential tail: about right
    (lambda rng, n: rng.standard_t(3, n), 20),       # a heavy tail: understated (README says so)
])
def test_tail_share_tracks_the_population_below_the_lowest_scores(draw, factor):
    rng = np.random.default_rng(1)
    population = draw(rng, 400_000)
    for seen in (150, 1000):
        z = draw(rng, seen)
        t = np.sort(z)[0] - 0.5  # below every score seen, as the ladder's cautious bands are
        truth = float((population < t).mean())
        predicted = np.median([tail_share(draw(rng, seen), t) for _ in range(21)])
        # the median prediction is within a factor of the truth
        assert truth / factor <= predicted <= max(factor * truth, 2 / seen), (seen, truth, predicted)


def test_error_rates_fall_as_the_band_moves_out_and_are_none_with_few_frames():
    rng = np.random.default_rng(2)
    y = rng.random(2000) < 0.1
    logit = np.where(y, rng.normal(3, 2, 2000), rng.normal(-3, 2, 2000))
    p = 1 / (1 + np.exp(-logit))
    rates = [error_rates([Stage(Model(), Band(1 / (1 + np.exp(-c)), 1.0))], [p], y)[0] for c in (0, -2, -4, -6)]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] / 10
    assert error_rates([Stage(Model(), Band(0.5, 1.0))], [p[:100]], y[:100]) is None  # ~10 positives


def test_sizing_credits_the_cautious_plans(monkeypatch):
    """A proposal whose band sits at its lowest positive cannot promise a low miss rate from
    the selection frames alone, but its cautious versions can: sizing weighs them, so it asks
    for fewer certification frames than sizing the proposal alone would (the earlier planner's
    choice), and the plan it expects to run is a cautious one."""
    rng = np.random.default_rng(3)
    n = 1800
    y = rng.random(n) < 0.09
    logit = np.where(y, rng.normal(6, 2, n), rng.normal(-6, 2, n))
    p = 1 / (1 + np.exp(-logit))
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "sim", "n"), column="a0")
    model = Model()
    inp = AtomInput(atom, y, 0.09, [[(None, None, 0.0), (model, p, 1e-4)]])
    costs = Costs(decode=4e-4, reference=0.045)
    proposal = propose([inp], None, 0.01, 0.01, 32400, 32400, costs)
    assert proposal.cascade and len(proposal.sequence) > 2
    chances = proposal.sizing.step_chances
    assert chances[0] > 0.9 and chances[0] > 2 * proposal.sizing.pass_probability
    by_column = {"a0": inp}
    rates = [predicted_rates(seq, by_column, [0.09], None, [y])[0][0] for seq in proposal.sequence[:-1]]
    assert rates == sorted(rates)  # later steps are predicted to miss more
    # sized on the proposal's own chance at every step (no prediction), it asks for more frames
    import vql.planner.query as query

    monkeypatch.setattr(query, "predicted_rates", lambda seq, by_column, rates, combine, truth: [None])
    alone = propose([inp], None, 0.01, 0.01, 32400, 32400, costs)
    assert not alone.cascade or proposal.sizing.frames < alone.sizing.frames
    assert proposal.expected_seconds < alone.expected_seconds


def test_a_yes_budget_keeps_the_model_answering_yes():
    rng = np.random.default_rng(4)
    y = rng.random(1800) < 0.1
    p = np.where(y, rng.uniform(0.6, 1, 1800), rng.uniform(0, 0.7, 1800))
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "sim", "n"), column="a0")
    model = Model()
    inp = AtomInput(atom, y, 0.1, [[(None, None, 0.0), (model, p, 1e-4)]])
    chosen = Candidate("m", 0.0, (Stage(model, Band(0.6, 0.7), 1e-4),))
    choice = CascadeChoice(atom, "cascade", "", Costs(4e-4, 0.045), 0.0454, chosen)
    kept = ladder((choice,), {"a0": inp}, yes_rate=0.005)
    moved = ladder((choice,), {"a0": inp}, yes_rate=None)
    negatives = int((~y).sum())
    for seq in kept[:-1]:
        st = seq[0].chosen.stages[0]
        assert int((~y & (p > st.band.high)).sum()) <= 0.005 * negatives
    # moved with the steps, the cautious plans answer "yes" to far fewer frames
    yes_kept = np.mean([(p > s[0].chosen.stages[0].band.high).mean() for s in kept[:-1]])
    yes_moved = np.mean([(p > s[0].chosen.stages[0].band.high).mean() for s in moved[:-1]])
    assert yes_kept > yes_moved


def _detector_and_model(rng, n: int, heavy: float | None = None):
    """Selection-like frames: a model that separates well, a difference detector with six
    positives at ``heavy`` (borderline walkers barely unlike the background)."""
    y = rng.random(n) < 0.1
    p = 1 / (1 + np.exp(-np.where(y, rng.normal(6, 1.5, n), rng.normal(-6, 1.5, n))))
    d = np.exp(np.where(y, rng.normal(4, 0.5, n), rng.normal(2, 0.5, n)))
    if heavy is not None:
        d[np.flatnonzero(y)[:6]] = heavy
    return y, p, d


def test_the_models_first_ladder_drops_the_detector_and_certifies_past_its_tail():
    """The "models first" shape: its first plans run without the difference detector while the
    model's band comes in, the rest keep the model at the proposal's band while δ comes in, the
    proposal last; each plan leaves the reference no more frames than the one before. When
    the certification frames hold positives far below the detector's δ (as on the four-hour
    video), the "together" ladder stops at its most cautious plan, while the "models first"
    ladder certifies a plan in which the model settles most frames."""
    from vql.planner.query import SHAPES, certification_claims, finish
    from simulate import DETECTOR

    rng = np.random.default_rng(7)
    y, p, d = _detector_and_model(rng, 2000)
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, None, "sim", "n"), column="a0")
    model = Model()
    inp = AtomInput(atom, y, 0.1, [[(None, None, 0.0), (DETECTOR, d, 1e-5)], [(None, None, 0.0), (model, p, 5e-4)]])
    delta = float(np.quantile(d[y], 0.01))
    chosen = Candidate("sim-detector -> sim-cnn -> reference", 0.0,
                       (Stage(DETECTOR, Band(delta), 1e-5), Stage(model, Band(0.02, 0.98), 5e-4)))
    choice = CascadeChoice(atom, "cascade", "", Costs(4e-4, 0.05), 0.0504, chosen)
    together = ladder((choice,), {"a0": inp}, None, SHAPES["together"])
    first = ladder((choice,), {"a0": inp}, None, SHAPES["models first"])
    assert together[0][0].chosen.stages[0].band.low == pytest.approx(delta / 8)  # its first step is kept
    names = [s[0].chosen.name for s in first]
    assert names[0] == "sim-cnn -> reference" and names[-1] == chosen.name
    k = names.index(chosen.name)
    assert k > 1 and all(n == "sim-cnn -> reference" for n in names[:k])
    assert [s[0].chosen.stages[-1].band for s in first[k:]] == [first[-1][0].chosen.stages[-1].band] * (len(first) - k)
    rates = [s[0].chosen.pass_rate for s in first[:-1]]  # (the hand-made proposal's own is not measured)
    assert rates == sorted(rates, reverse=True) and rates[k - 1] > rates[k]
    # certification frames whose walkers include a few the detector scores as background
    yc, pc, dc = _detector_and_model(rng, 8000, heavy=delta / 6)  # between the first two steps' δ
    proposal = Proposal((choice,), ("a0",), None, 0.0, 0.0, "", 0)
    runs = {}
    for shape, sequence in (("together", together), ("models first", first)):
        prop = replace(proposal, sequence=sequence, shape=shape)
        scores = {id(DETECTOR): dc, id(model): pc}
        steps = certification_claims(prop, np.arange(8000), {"a0": yc},
                                     lambda c: [scores[id(st.op)] for st in c.chosen.stages], None)
        plan = finish(replace(prop, sizing=Sizing(8000, 1, 1, 0.5)), steps, 0.01, 0.01)
        assert plan.strategy == "cascade", shape
        runs[shape] = plan.choices[0].chosen.pass_rate
    assert runs["models first"] < runs["together"] / 3, runs
