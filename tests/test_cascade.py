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
