"""A cascade end to end on a short composed video: EXPLAIN plans nothing, the query plans,
certifies and runs a cascade that saves reference calls, an audit of frames the reference never
labelled for it agrees with the certified targets, and its plan is reused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import vql
from vql.engine.compose import ComposeSpec, compose
from vql.planner.stats import interval
from vql.udfs.tfjs_detector import centernet

QUERY = "SELECT frame FROM street WHERE contains('person') WITH (fpr := 0.1, fnr := 0.1)"


@pytest.fixture(scope="module")
def street(compose_library, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cascade")
    report = compose(compose_library, folder / "street.mp4", ComposeSpec(minutes=4, presence=0.5, seed=5), progress=False)
    return report.path, folder / "cascade.duckdb"


def test_cascade_is_chosen_accurate_and_reused(street):
    video, db = street
    con = vql.connect(db, progress=False)
    con.sql(f"CREATE VIDEO street FROM '{video}'")
    text = "\n".join(r[0] for r in con.sql("EXPLAIN " + QUERY).fetchall())  # plans nothing
    assert ("planned when the query runs: the reference labels a training prefix of at least 600 random frames"
            in text), text
    assert con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall() == [(0,)]

    result = con.sql(QUERY)
    cascade = result.metadata["cascades"]["vql_a0"]
    assert cascade["strategy"] == "cascade", result.metadata["plan_text"]
    assert cascade["fpr_bound"] <= 0.1 and cascade["fnr_bound"] <= 0.1 and cascade["confidence"] == 0.95
    plan = result.metadata["plans"]["vql_frames_street"]
    sample = plan.training_frames + plan.certificate.frames
    labelled = con.sql("SELECT count(*) FROM vql_labelled_frames").fetchall()[0][0]
    decided = result.metadata["frames_decided_by_specialized"] + result.metadata["frames_decided_by_difference"]
    assert decided >= 0.25 * 2400, f"the cheap stages should answer many frames:\n{result.metadata['plan_text']}"
    ops = {o["operator"].split()[0]: o for o in result.metadata["operators"]["vql_a0"]["ops"]}
    sent = result.metadata["frames_sent_to_reference"]
    assert ops["reference"]["frames_in"] == sent < 2400 - sample and labelled == sample + sent
    assert ops["stored"]["decided"] == sample  # the training and certification frames answer from their labels
    answer = {r[0] for r in result.fetchall()}

    # audit: frames drawn uniformly from the scan (what the claim covers), judged by the reference run directly
    rng = np.random.default_rng(0)
    check = np.sort(rng.choice(2400, 200, replace=False))
    cap = cv2.VideoCapture(str(video))
    frames, index, wanted = {}, 0, set(check.tolist())
    while index <= check[-1]:
        ok, frame = cap.read()
        assert ok
        if index in wanted:
            frames[index] = frame
        index += 1
    model = centernet()
    truth = {f: d.count(0, 0.5) >= 1 for f, d in zip(check, model.detect([frames[f] for f in check]))}
    positives = [f for f in check if truth[f]]
    negatives = [f for f in check if not truth[f]]
    missed, accepted = sum(f not in answer for f in positives), sum(f in answer for f in negatives)
    assert len(positives) >= 20 and len(negatives) >= 20
    # a target is broken only when the audit's two-sided 95% interval lies wholly above it
    assert interval(missed, len(positives))[0] <= 0.1 and interval(accepted, len(negatives))[0] <= 0.1, (missed, accepted)
    con.sql("DROP RESULTS street")
    con.close()

    warm = vql.connect(db, progress=False)  # a new session: the plan comes from the store
    again = warm.sql(QUERY)
    assert again.metadata.get("plans_reused") == 1 and again.metadata.get("frames_labelled", 0) == 0
    assert {r[0] for r in again.fetchall()} == answer
    warm.close()


def test_cheap_stages_score_on_one_thread_fewer_beside_the_decoder(vtest_path):
    """The pass's CNN stage runs on torch's threads less one while the decoding thread reads
    (engine/cascade.py: beside_decoding); the reference and everything after keep them all."""
    import torch

    from vql.engine.cascade import CascadePass
    from vql.planner.cascade import Candidate
    from vql.planner.specialized import Architecture, SpecializedCNN, TrainedModel
    from vql.planner.stages import Band, Stage

    seen = []

    class Spy(TrainedModel):
        def scores(self, small, batch=64):
            seen.append(torch.get_num_threads())
            return super().scores(small, batch)

    arch = Architecture(1, 8, 16, 32, "pool")
    spy = Spy(arch, SpecializedCNN(arch), np.zeros((32, 32, 3), np.float32), 0.0)
    chosen = Candidate("cnn", 0.0, stages=(Stage(spy, Band(low=2.0)),))  # every frame answered "no"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = CascadePass(str(vtest_path), None, chosen, 0, np.zeros(0, np.int64),
                             lambda frames: pytest.fail("nothing reaches the reference"), lambda *a: None
                             ).run(np.arange(130))
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        assert result.stage_ops[0].decided == 130 and not result.yes
    finally:
        torch.set_num_threads(before)
