"""The pooled CNN's input size is picked from the objects on the training frames
(``planner/cascade.py: pool_size``): a video of small objects gets a larger input, at which
they no longer vanish, and the model separates held-out frames the default size does not."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from patches import clip, session
from vql.engine.executor import Context, predicate_extents
from vql.engine.views import downscale
from vql.planner.cascade import pool_size, stage_crop, stage_views, train_stages
from vql.planner.labelling import _pool_sizes
from vql.planner.sampling import Sample, permutation
from vql.plan import Atom, ModelPredicate
from vql.planner.specialized import POOL_SIZES

H, W = 144, 192
WALKER = (12, 2)  # pixels: 5.3 tall at 64, 8.0 at 96; 2 wide, which INTER_LINEAR at 64 mostly loses


def _frames(n: int, seed: int):
    """A textured street with sensor noise; on ~30% of the frames a thin dark walker anywhere."""
    rng = np.random.default_rng(seed)
    scene = np.random.default_rng(0).integers(80, 150, (H, W, 3))
    truth = rng.random(n) < 0.3
    frames = []
    for i in range(n):
        f = np.clip(scene + rng.normal(0, 6, (H, W, 3)), 0, 255).astype(np.uint8)
        if truth[i]:
            y, x = rng.integers(10, H - 20), rng.integers(10, W - 10)
            f[y:y + WALKER[0], x:x + WALKER[1]] = rng.integers(10, 40)
        frames.append(f)
    return frames, truth


def _below_every_positive(model, frames, truth) -> float:
    """The share of held-out frames without a walker that the model scores below every walker."""
    s = model.scores(downscale(frames, *model.view))
    return float(np.mean(s[~truth] < s[truth].min()))


def test_small_objects_get_a_larger_input_that_separates_them(monkeypatch):
    monkeypatch.setenv("VQL_CNN_PRECISION", "float32")  # the same arithmetic on every CPU
    n = 300
    frames, truth = _frames(n, 1)
    small = {v: dict(enumerate(downscale(frames, *v))) for v in stage_views(None)}
    train = Sample(permutation("walkers", 0, n - 1), n).order  # every frame trains here
    labels = {i: bool(t) for i, t in enumerate(truth)}
    extents = np.tile(np.array([WALKER[0] / H, WALKER[1] / W]), (int(truth.sum()), 1))
    size = pool_size(extents, None)
    picked = train_stages(train, labels, small, max_steps=60, size=size)
    default = train_stages(train, labels, small, max_steps=60)
    pooled = {s.arch.head: s for s in picked.groups[1]}["pool"]
    assert pooled.size == 96 and (96, None) in picked.views and "@96" in pooled.name
    assert {s.arch.head: s for s in default.groups[1]}["pool"].size == POOL_SIZES[0] == 64
    held, held_truth = _frames(300, 2)
    at_96 = _below_every_positive(pooled, held, held_truth)
    at_64 = _below_every_positive({s.arch.head: s for s in default.groups[1]}["pool"], held, held_truth)
    assert at_96 >= 0.95 and at_64 < 0.5, (at_96, at_64)


def test_the_size_follows_the_median_object_in_the_crop():
    walker = np.array([[0.15, 0.04]])
    assert pool_size(np.zeros((0, 2)), None) == 64  # no objects: the default
    assert pool_size(walker, None) == 64
    assert pool_size(walker * 0.4, None) == 128
    assert pool_size(walker * 0.4, (0.0, 0.42, 1.0, 1.0)) == 96  # a region's crop enlarges it
    assert pool_size(walker * 0.1, None) == 128  # none large enough: the largest
    # the median decides: two far objects outvote one near
    assert pool_size(np.array([[0.5, 0.2], [0.05, 0.01], [0.05, 0.01]]), None) == 128


def test_extents_are_those_of_the_objects_the_predicate_counts(tmp_path):
    """Read from the stored labels: the stand-in reference's 8x8 patches on a 96x64 clip, only
    those centred in the predicate's region, only on the frames asked about."""
    con, model = session(clip(tmp_path / "c.avi", 12, marked={1, 2, 5}, counts={7: 3}))
    con.sql("SELECT frame FROM cam WHERE contains('person') WITH (exact)")
    info = con.store.video("cam")
    ctx = Context(con.store, con.model, False)
    person = ModelPredicate("contains", "person", 0, 0.5, None, "centernet", "n")
    got = predicate_extents(ctx, info, model.version, person, np.array([1, 2, 3, 7]))
    assert got.shape == (5, 2) and np.allclose(got, [[8 / 64, 8 / 96]])  # 1 + 1 + 0 + 3 objects
    left = ModelPredicate("contains", "person", 0, 0.5, (0.0, 0.0, 0.1, 1.0), "centernet", "n")
    assert len(predicate_extents(ctx, info, model.version, left, np.array([7]))) == 1  # the first slot only
    assert len(predicate_extents(ctx, info, model.version, person, np.array([], np.int64))) == 0
    car = ModelPredicate("contains", "car", 1, 0.5, None, "centernet", "n")
    assert len(predicate_extents(ctx, info, model.version, car, np.arange(12))) == 0
    # planning picks each atom's size on the training frames and keeps the frames at its views only
    atoms = [Atom(person, column="vql_a0"), Atom(replace(left, column="m"), column="vql_a1")]
    small = {v: {} for a in atoms for v in stage_views(stage_crop(a.predicate.region))}
    assert len(small) == 8
    sizes = _pool_sizes(ctx, SimpleNamespace(info=info), atoms, np.arange(12), small)
    # a patch is 8 pixels tall at 64 in the whole frame; in the left region's crop (0.18 of the
    # frame's width, all of its height) its larger side, the width, spans 8 / 96 / 0.18 x 64 = 30
    assert sizes == {"vql_a0": 64, "vql_a1": 64}
    assert set(small) == {(64, None), (32, None), (64, stage_crop(left.region)), (32, stage_crop(left.region))}
