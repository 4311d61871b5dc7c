"""A cascade end to end on a short composed video: it is chosen, it saves reference calls, its
answers on frames outside the labelled sample are within target, and its plan is reused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import vql
from vql.engine.compose import ComposeSpec, compose
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
    text = "\n".join(r[0] for r in con.sql("EXPLAIN " + QUERY).fetchall())  # plans: labels the sample
    assert "Cascade vql_a0 = contains('person', min_score := 0.5): cascade" in text, text
    assert "held-out evaluation" in text and "alternative exact" in text
    sample = {r[0] for r in con.sql("SELECT frame FROM vql_labelled_frames").fetchall()}
    assert 0 < len(sample) < 1200

    result = con.sql(QUERY)
    cascade = result.metadata["cascades"]["vql_a0"]
    assert cascade["strategy"] == "cascade"
    assert cascade["eval_fpr"] <= 0.1 + 0.1 and cascade["eval_fnr"] <= 0.1 + 0.1
    decided = result.metadata["frames_decided_by_specialized"] + result.metadata["frames_decided_by_difference"]
    assert decided >= 0.25 * 2400, f"the cheap stages should answer many frames:\n{result.metadata['plan_text']}"
    ops = {o["operator"].split()[0]: o for o in result.metadata["operators"]["vql_a0"]["ops"]}
    assert ops["reference"]["frames_in"] == result.metadata["frames_sent_to_reference"] < 2400 - len(sample)
    assert ops["stored"]["decided"] == len(sample)  # the sample's frames are answered from their labels
    answer = {r[0] for r in result.fetchall()}

    # held-out check: frames outside the planning sample, against the reference run directly
    rng = np.random.default_rng(0)
    check = np.sort(rng.choice(sorted(set(range(2400)) - sample), 120, replace=False))
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
    fnr = sum(f not in answer for f in positives) / max(1, len(positives))
    fpr = sum(f in answer for f in negatives) / max(1, len(negatives))
    assert len(positives) >= 20 and len(negatives) >= 20
    assert fnr <= 0.1 + 0.1 and fpr <= 0.1 + 0.1, (fpr, fnr)
    con.sql("DROP RESULTS street")
    con.close()

    warm = vql.connect(db, progress=False)  # a new session: the plan comes from the store
    again = warm.sql(QUERY)
    assert again.metadata.get("plans_reused") == 1 and again.metadata.get("frames_labelled", 0) == 0
    assert {r[0] for r in again.fetchall()} == answer
    warm.close()
