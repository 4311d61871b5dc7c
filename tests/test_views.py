"""A region predicate's stages read the region (widened by a margin), not the whole frame."""

import numpy as np

from vql.engine.views import downscale
from vql.plan import Atom, ModelPredicate
from vql.planner import plan_format
from vql.planner.cascade import stage_crop, stage_views, train_stages
from vql.planner.cost import Costs
from vql.planner.query import AtomInput, QueryPlan, propose
from vql.planner.sampling import Sample, permutation

BOTTOM = (0.0, 0.5, 1.0, 1.0)
H, W = 144, 192


def _frames(n: int, seed: int = 0):
    """Street-like frames: a textured background and, in most frames, a bright walker whose
    centre is anywhere; the predicate: a walker centred in the bottom half."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(60, 120, (H, W, 3)).astype(np.uint8)
    frames, truth = [], np.zeros(n, bool)
    for i in range(n):
        f = scene.copy()
        if rng.random() < 0.7:
            cy, cx = int(rng.integers(10, H - 10)), int(rng.integers(8, W - 8))
            f[cy - 10:cy + 10, cx - 4:cx + 4] = 230
            truth[i] = cy / H >= 0.5
        frames.append(f)
    return frames, truth


def test_stages_of_a_region_read_its_crop_and_separate_it():
    n = 1600
    frames, truth = _frames(n)
    crop = stage_crop(BOTTOM)
    small = {v: dict(enumerate(downscale(frames, *v))) for v in stage_views(crop)}
    sample = Sample(permutation("walkers", 0, n - 1), n)
    labels = {i: bool(t) for i, t in enumerate(truth)}
    stages = train_stages(sample.train, labels, small, max_steps=500, crop=crop)
    assert all(op.crop == crop and "of (0, 0.42, 1, 1)" in op.name for group in stages.groups for op in group)
    # a walker high in the frame, outside the widened crop, changes nothing a detector reads
    top = [f.copy() for f in frames[:1]]
    top[0][10:30, 90:98] = 230
    detector = stages.groups[0][0]
    assert detector.scores(downscale(top, *detector.view))[0] == detector.scores(downscale(frames[:1], *detector.view))[0]
    # ...and the crop's models separate the region's answer on frames they were not trained on
    sel = sample.select
    atom = Atom(ModelPredicate("contains", "person", 0, 0.5, BOTTOM, "centernet", "n"), column="vql_a0")
    inp = AtomInput(atom, truth[sel], float(truth.mean()), stages.scored(sel, small))
    scores = next(x for op, x, _ in inp.groups[1] if op is not None and op.size == 64)
    pos, neg = scores[truth[sel]], scores[~truth[sel]]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert auc > 0.95, auc
    proposal = propose([inp], None, 0.05, 0.05, 30000, 30000, Costs(decode=1e-3, reference=0.05))
    assert proposal.cascade
    # the crop is part of the stored plan
    plan = QueryPlan("cascade", "constructed", proposal.choices, 0.05, 0.05)
    back = plan_format.loads(plan_format.dumps(plan))
    assert [st.op.crop for st in back.choices[0].chosen.stages] == [crop] * len(back.choices[0].chosen.stages)


def test_a_cascade_run_reads_the_crop_of_each_frame(tmp_path):
    """Through the engine (``run_cascade``, the stand-in reference): a detector reading the crop
    of a top-left region sends the frames with a "person" there to the reference and answers
    "no" to frames that change elsewhere (a dark blob lower down); the same detector reading the
    whole frame sends the blob's frames too."""
    import cv2

    from patches import clip, session
    from vql.engine.cascade import run_cascade
    from vql.engine.difference import DifferenceDetector
    from vql.engine.executor import Context
    from vql.planner.cascade import Candidate, CascadeChoice
    from vql.planner.stages import Band, Stage

    marked, blobs = set(range(10, 20)), set(range(30, 40))
    path = clip(tmp_path / "c.avi", 60, marked, blobs)
    region = (0.0, 0.0, 0.5, 0.1)
    cap = cv2.VideoCapture(path)
    first = cap.read()[1]
    cap.release()

    def sent(crop):
        con, model = session(path)
        info = con.store.video("cam")
        detector = DifferenceDetector("full-mse", 32, downscale([first], 32, crop)[0], crop)
        chosen = Candidate("test", 0.01, (Stage(detector, Band(1.0, np.inf), 1e-4),))
        atom = Atom(ModelPredicate("contains", "person", 0, 0.5, region, "centernet", "n"), column="vql_a0")
        choice = CascadeChoice(atom, "cascade", "test", Costs(0.001, 0.05), 0.051, chosen)
        answer, _ = run_cascade(Context(con.store, con.model, False), info, model, model.version, choice, 0, 59)
        assert set(np.flatnonzero(answer).tolist()) == marked
        return set(con.store.labelled_frames(info.fingerprint, model.version, 0, 59).tolist())

    assert sent(stage_crop(region)) == marked
    assert sent(None) == marked | blobs
