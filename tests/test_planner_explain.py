"""EXPLAIN of a certified plan (golden text from a constructed plan), planning on constructed
frames through the real stages, short-circuit evaluation of AND-ed atoms against the exact
plan, and the engine running skip plans."""

from __future__ import annotations

import numpy as np
import pytest

import vql
from vql.cli import SAMPLE_VIDEO
from vql.engine.difference import DifferenceDetector
from vql.plan import ModelPredicate
from vql.planner.cascade import Atom, Candidate, CascadeChoice, train_stages
from vql.planner.certify import Certificate, ClaimBounds, Sizing
from vql.planner.cost import Costs
from vql.planner.query import SHAPES, AtomInput, QueryPlan, certification_claims, finish, propose
from vql.planner.sampling import Sample, permutation
from vql.planner.specialized import Architecture, SpecializedCNN, TrainedModel
from vql.planner.stages import Band, Stage

from test_binder import golden

PERSON = ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n")


def _chosen_cascade():
    arch = Architecture(1, 16, 32, 32)
    model = TrainedModel(arch, SpecializedCNN(arch), np.zeros((32, 32, 3), np.float32), 12.5)
    detector = DifferenceDetector("blocked-mse", 32, np.zeros((32, 32, 3), np.uint8))
    stages = (Stage(detector, Band(55.5), 0.00005, 0.18), Stage(model, Band(0.02, 0.97), 0.0002, 0.031 / 0.18))
    chosen = Candidate("blocked-mse@32 vs background -> cnn1x16-d32@32 -> reference", 0.0031, stages, 0.031)
    return CascadeChoice(Atom(PERSON, column="vql_a0"), "cascade", "cheapest on the selection frames, 0 errors allowed there",
                         Costs(0.0012, 0.055), 0.0562, chosen, 0.09,
                         (Candidate("cnn1x16-d32@32 -> reference", 0.0112),))


def test_explain_of_a_certified_plan_golden():
    choice = _chosen_cascade()
    cert = Certificate(0.01, 0.01, 4700, (ClaimBounds("WHERE contains('person', min_score := 0.5)", 425, 0, 4275, 3, 0.0086, 0.0022),))
    plan = QueryPlan("cascade", "certified: expected ~400 s against ~1900 s exact", (choice,), 0.01, 0.01,
                     ("WHERE contains('person', min_score := 0.5)",), "7.5% of 36000 frames, within [900, 3000]", 2700, 3323,
                     Sizing(4700, 0, 3, 0.71), cert, 400.0, 1900.0)
    golden("explain_certified_plan.txt", "\n".join(plan.explain_lines()))


def _squares(n: int, seed: int = 0):
    """Frames with a bright square (the predicate) on a flat noisy background."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.3
    small = {(s, None): {} for s in (32, 64)}
    for f in range(n):
        for s in (32, 64):
            img = rng.normal(100, 3, (s, s, 3)).clip(0, 255).astype(np.uint8)
            if truth[f]:
                x = rng.integers(0, s - s // 4)
                img[x:x + s // 4, x:x + s // 4] = 220
            small[s, None][f] = img
    return truth, small


def test_the_planner_trains_selects_and_certifies_on_disjoint_random_frames():
    """The real stages trained on constructed frames: the CNN separates them, a cascade is
    proposed on the selection frames and certified on frames neither saw."""
    n = 9000
    truth, small = _squares(n)
    labels = {f: bool(truth[f]) for f in range(n)}
    sample = Sample(permutation("squares", 0, n - 1), 1800)
    stages = train_stages(sample.train, labels, small, max_steps=600)
    atom = Atom(PERSON, column="vql_a0")
    inp = AtomInput(atom, truth[sample.select], float(truth[sample.prefix].mean()), stages.scored(sample.select, small))
    costs = Costs(decode=0.001, reference=0.05)
    proposal = propose([inp], None, 0.05, 0.05, n - 1800, n - 1800, costs)
    assert proposal.cascade and any(st.kind.says_yes for st in proposal.choices[0].chosen.stages), proposal.reason
    certify_frames = Sample(sample.order, 1800, proposal.sizing.frames).certify
    assert not set(certify_frames.tolist()) & set(sample.prefix.tolist())
    values = {"vql_a0": truth[certify_frames]}
    steps = certification_claims(proposal, certify_frames, values,
                                 lambda c: stages.scores(c.chosen, certify_frames, small), None)
    assert len(steps) == len(proposal.sequence) and 2 <= len(steps) <= max(map(len, SHAPES.values())) + 1
    plan = finish(proposal, steps, 0.05, 0.05)
    assert plan.strategy == "cascade" and plan.certificate.passed
    assert plan.certificate.fnr_bound <= 0.05 and plan.certificate.frames == proposal.sizing.frames
    assert plan.choices[0].expected_per_frame < plan.choices[0].exact_per_frame / 5
    text = "\n".join(plan.explain_lines())
    assert "guarantee: with probability >= 95%" in text and "alternative" in text


def test_one_class_training_falls_back_to_exact():
    n = 3000
    labels = {f: False for f in range(n)}
    small = {(s, None): {f: np.zeros((s, s, 3), np.uint8) for f in range(n)} for s in (32, 64)}
    assert train_stages(np.arange(600), labels, small) is None
    inp = AtomInput(Atom(PERSON, column="vql_a0"), np.zeros(300, bool), 0.0, None)
    proposal = propose([inp], None, 0.01, 0.01, n, n, Costs(0.001, 0.05))
    assert not proposal.cascade and "one class" in proposal.choices[0].reason


@pytest.fixture()
def con():
    c = vql.connect(None, progress=False)
    c.sql(f"CREATE VIDEO cam FROM '{SAMPLE_VIDEO}'")
    yield c
    c.close()


def test_and_short_circuits_and_matches_exact(con):
    query = "SELECT frame FROM cam WHERE contains('person', region := (0, 0.5, 1, 1)) AND object_count('person') >= 4 AND frame < 48"
    text = "\n".join(r[0] for r in con.sql("EXPLAIN " + query).fetchall())
    assert "atoms short-circuit under AND" in text
    fast = con.sql(query)
    exact = con.sql(query + " WITH (exact)")
    assert fast.fetchall() == exact.fetchall()
    ops = fast.metadata["operators"]
    first, second = sorted(ops, key=lambda c: -ops[c]["frames"])
    assert ops[first]["frames"] == 48 and ops[second]["frames"] < 48  # the second ran only where the first held
    recorded = dict(con.sql(f"SELECT predicate, count(*) FROM vql_results WHERE query_id = {fast.metadata['query_id']} "
                            "GROUP BY predicate").fetchall())
    assert sorted(recorded.values()) == sorted(o["frames"] for o in ops.values() if o["frames"])
    rates = con.sql("SELECT strategy, claim, fnr_bound, confidence FROM vql_query_accuracy "
                    f"WHERE query_id = {fast.metadata['query_id']}").fetchall()
    assert rates == [("exact", "WHERE ((contains('person', min_score := 0.5, region := (0, 0.5, 1, 1)) AND "
                      "object_count('person', min_score := 0.5) >= 4) AND (frame < 48))", 0.0, 1.0)]  # one row per scan


def test_skipping_runs_the_cascade_on_anchors_only(con):
    """run_cascade with skip 3: only anchors reach the reference (and the store); every other
    frame answers what its anchor's labels say."""
    from vql.engine.cascade import run_cascade
    from vql.engine.executor import atom_counts
    from vql.engine.executor import Context

    info = con.store.video("cam")
    model = con.model("centernet")
    ctx = Context(con.store, con.model, False)
    chosen = Candidate("skip 3 -> reference", 0.02, skip=3)

    def run(atom):
        choice = CascadeChoice(atom, "cascade", "test", Costs(0.001, 0.05), 0.051, chosen)
        return run_cascade(ctx, info, model, model.version, choice, 30, 59)

    count = ModelPredicate("object_count", "person", 0, 0.5, None, "centernet", "n")
    answer, ops = run(Atom(count, ">=", 1, column="vql_a0"))
    labelled = con.store.labelled_frames(info.fingerprint, model.version, 0, 794).tolist()
    assert labelled == list(range(30, 60, 3))  # the anchors only
    skip = next(o for o in ops if o.name.startswith("skip 3"))
    assert (skip.frames_in, skip.decided, skip.passed_on) == (30, 20, 10)
    counts = atom_counts(ctx, info, model.version, Atom(count, column="n"), 30, 59)
    atom = Atom(count, ">=", int(np.median(list(counts.values()))) + 1, column="vql_a0")  # holds on some anchors
    answer, ops = run(atom)  # now the stored labels answer every anchor
    inherited = [bool(atom.holds(np.array(counts[30 + i // 3 * 3]))) for i in range(30)]
    assert answer.tolist() == inherited and 0 < sum(inherited) < 30, counts
    assert con.store.labelled_frames(info.fingerprint, model.version, 0, 794).tolist() == labelled


def test_gated_skipping_runs_the_cascade_where_a_frame_differs_from_its_anchor(con):
    """run_cascade with skip 4 gated by t−Δ: the anchors and the frames whose difference from
    their anchor reaches delta_Δ reach the reference; the others answer their anchor's answer.
    The gate's scores are recomputed here from frames read by a plain cv2 loop."""
    import cv2

    from vql.engine.cascade import run_cascade
    from vql.engine.executor import atom_counts
    from vql.engine.difference import AnchorGate
    from vql.engine.executor import Context
    from vql.engine.views import downscale

    info = con.store.video("cam")
    model = con.model("centernet")
    ctx = Context(con.store, con.model, False)
    cap = cv2.VideoCapture(SAMPLE_VIDEO)
    frames = [cap.read()[1] for _ in range(60)][30:]
    cap.release()
    gate = AnchorGate("blocked-mse", 32)
    images = downscale(frames, 32)
    g = {30 + i: float(gate.scores(images[i:i + 1], images[i // 4 * 4:i // 4 * 4 + 1])[0]) for i in range(30)}
    off = sorted(v for f, v in g.items() if (f - 30) % 4)  # the scan starts at 30: anchors 30, 34, ...
    delta = (off[len(off) // 2 - 1] + off[len(off) // 2]) / 2  # half of the frames off an anchor go through
    chosen = Candidate("skip 4 -> t-Δ gate -> reference", 0.02, skip=4, gate=gate, gate_delta=delta, gate_pass=0.5)
    count = ModelPredicate("object_count", "person", 0, 0.5, None, "centernet", "n")
    through = sorted(f for f in range(30, 60) if (f - 30) % 4 == 0 or g[f] >= delta)
    atom = Atom(count, ">=", 1, column="vql_a0")
    choice = CascadeChoice(atom, "cascade", "test", Costs(0.001, 0.05), 0.051, chosen)
    answer, ops = run_cascade(ctx, info, model, model.version, choice, 30, 59)
    assert con.store.labelled_frames(info.fingerprint, model.version, 0, 794).tolist() == through
    assert 10 < len(through) < 26
    skip = next(o for o in ops if o.name.startswith("skip 4, t-Δ gate"))
    assert (skip.frames_in, skip.decided, skip.passed_on) == (22, 30 - len(through), len(through) - 8)
    counts = atom_counts(ctx, info, model.version, Atom(count, column="n"), 30, 59)
    k = sorted(counts.values())[len(counts) // 2]
    atom = Atom(count, ">=", k, column="vql_a0")  # holds on some of them
    con.sql("DROP RESULTS cam")
    expected = [bool(atom.holds(np.array(counts[f if f in counts else 30 + (f - 30) // 4 * 4]))) for f in range(30, 60)]
    choice = CascadeChoice(atom, "cascade", "test", Costs(0.001, 0.05), 0.051, chosen)
    answer, ops = run_cascade(ctx, info, model, model.version, choice, 30, 59)  # now the store answers `through`
    assert answer.tolist() == expected and 0 < sum(expected) < 30
    assert next(o for o in ops if o.name.startswith("reference")).frames_in == 0


def test_audit_judges_the_answers_of_the_whole_where_clause(con):
    """WITH (audit := N): N random frames of the scan, labelled by the reference, against the
    query's answers under NOT; with two-sided intervals, in the result and in EXPLAIN ANALYZE."""
    query = "SELECT frame FROM cam WHERE NOT contains('person', region := (0, 0.6, 1, 1)) AND frame < 24 WITH (audit := 10)"
    result = con.sql("EXPLAIN ANALYZE " + query)
    text = "\n".join(r[0] for r in result.fetchall())
    ((claim, a),) = result.metadata["audit"].items()
    assert claim == "WHERE ((NOT contains('person', min_score := 0.5, region := (0, 0.6, 1, 1))) AND (frame < 24))"
    assert a["frames"] == 10 and a["fnr"] == a["fpr"] == 0.0 and a["fnr_ci"][0] == 0.0  # an exact plan makes no error
    assert f"-- audit of 10 random frames ({a['positives']} positive), {claim}" in text
    with pytest.raises(vql.errors.BindError, match="audit must be a number of frames"):
        con.sql("SELECT frame FROM cam WHERE contains('person') WITH (audit := 0.5)")


@pytest.mark.parametrize("where", ["contains('person') AND frame BETWEEN 20 AND 10", "contains('person') AND ts > 100"])
def test_an_empty_scan_answers_nothing(con, where):
    result = con.sql(f"SELECT count(*) FROM cam WHERE {where} WITH (audit := 5)")
    assert result.fetchall() == [(0,)] and result.metadata["cascades"]["vql_a0"]["strategy"] == "exact"
    assert con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall() == [(0,)]


def test_prepare_plans_and_stores_without_running(con):
    query = "SELECT frame FROM cam WHERE contains('person') WITH (fpr := 0.05, fnr := 0.05)"
    prepared = con.prepare(query)
    (plan,) = prepared.metadata["plans"].values()
    assert plan.strategy == "exact" and "training prefix (600 frames) would cover over half" in plan.reason
    assert any("Plan of the model tests: exact" in r[0] for r in prepared.fetchall())
    assert con.sql("SELECT count(*) FROM vql_results").fetchall() == [(0,)]  # nothing ran
    explained = "\n".join(r[0] for r in con.sql("EXPLAIN " + query).fetchall())
    assert "Plan of the model tests: exact" in explained  # EXPLAIN shows the stored plan
    with pytest.raises(vql.errors.BindError, match="prepare takes a SELECT"):
        con.prepare("SHOW VIDEOS")
