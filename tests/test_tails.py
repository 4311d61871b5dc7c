"""The miss rates the planner predicts for the certification ladder's plans
(``planner/tails.py``), and how they size the certification sample (``planner/query.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from vql.plan import Atom, ModelPredicate
from vql.planner.cascade import CascadeChoice, Candidate
from vql.planner.cost import Costs
from vql.planner.query import AtomInput, ladder, predicted_rates, propose
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
