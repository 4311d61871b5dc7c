"""Frame skipping: the cascade evaluates every k-th frame of the scan (its *anchors*) and each
frame in between inherits its anchor's answer; those frames are only grabbed by the decoder.

Its error is the anchor's answer against the frame's own label, so certifying a skip needs the
reference's labels of the fit frames' anchors. Before paying for those, the planner estimates
the error of propagation alone from the pairs the sample already holds (sample frames whose
anchor happens to be labelled too): reference flicker and objects entering or leaving make a
frame disagree with its anchor, and when that alone spends the budget, no anchor is labelled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

SKIPS = (2, 4, 8)  # the skips the planner tries
MIN_PAIRS = 20  # positives off an anchor needed to estimate propagation at all
GATE_PASSES = (0.05, 0.1, 0.2, 0.35, 0.5)  # shares of the frames off an anchor a t−Δ gate may send on


def anchors(frames: np.ndarray, first: int, k: int) -> np.ndarray:
    """The frame whose answer each frame of a scan starting at ``first`` inherits under skip ``k``.

    >>> anchors(np.array([10, 11, 12, 13, 15]), 10, 2).tolist()
    [10, 10, 12, 12, 14]
    """
    frames = np.asarray(frames, np.int64)
    return first + (frames - first) // k * k


@dataclass(frozen=True, slots=True)
class SkipEstimate:
    """Propagation alone under skip k, estimated on the sample's own neighbouring pairs."""

    k: int
    pairs: int  # sample frames off an anchor whose anchor is labelled too
    positives: int  # of them, frames on which the atom holds
    fnr: float  # point estimates over all frames (anchors inherit nothing)
    fpr: float

    def admissible(self, fnr: float, fpr: float) -> bool:
        return self.positives >= MIN_PAIRS and self.fnr < fnr and self.fpr < fpr

    def describe(self) -> str:
        return (f"skip {self.k}: {self.fnr:.2%} of positives and {self.fpr:.2%} of negatives would inherit a wrong "
                f"answer from their anchor ({self.pairs} neighbouring pairs in the sample, {self.positives} positive)")


def estimate(truth: dict[int, bool], first: int, k: int) -> SkipEstimate:
    """Propagation error of skip ``k`` from labelled frames whose anchor is labelled too.

    >>> truth = {f: 100 <= f < 120 for f in range(0, 400)}      # one 20-frame appearance
    >>> e = estimate(truth, 0, 2); e.pairs, e.positives, round(e.fnr, 3), e.fpr
    (200, 10, 0.0, 0.0)
    >>> e = estimate({f: 101 <= f < 121 for f in range(400)}, 0, 2); round(e.fnr, 3), round(e.fpr, 4)
    (0.05, 0.0026)
    """
    _, _, t, ta = _pairs(truth, first, k)
    off = (k - 1) / k  # share of frames that inherit
    fnr = off * float((t & ~ta).sum()) / max(1, int(t.sum()))
    fpr = off * float((~t & ta).sum()) / max(1, int((~t).sum()))
    return SkipEstimate(k, len(t), int(t.sum()), fnr, fpr)


def _pairs(truth: dict[int, bool], first: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frames, their anchors, the frames' truth, the anchors' truth) of the labelled frames off
    an anchor under skip ``k`` whose anchor is labelled too."""
    frames = np.array(sorted(truth), np.int64)
    a = anchors(frames, first, k)
    usable = (a != frames) & np.array([int(x) in truth for x in a], bool)
    f_use, a_use = frames[usable], a[usable]
    return (f_use, a_use, np.array([truth[int(f)] for f in f_use], bool),
            np.array([truth[int(x)] for x in a_use], bool))


@dataclass(frozen=True, slots=True)
class GateEstimate:
    """A t−Δ gate under skip k, estimated on the sample's own neighbouring pairs."""

    k: int
    metric: str
    pairs: int
    positives: int
    gate_pass: float  # measured share of frames off an anchor it would send on (1.0: no share in GATE_PASSES will do)
    seconds: float  # measured per frame

    def describe(self) -> str:
        if self.gate_pass >= 1.0:
            return (f"skip {self.k} gated by t-Δ {self.metric}: no gate passing at most {GATE_PASSES[-1]:.0%} of the "
                    f"frames off an anchor keeps their inherited errors under half the targets "
                    f"({self.pairs} pairs, {self.positives} positive)")
        return (f"skip {self.k} gated by t-Δ {self.metric}: sending {self.gate_pass:.0%} of the frames off an anchor "
                f"through the cascade keeps their inherited errors under half the targets "
                f"({self.pairs} pairs, {self.positives} positive)")


def gate_estimate(truth: dict[int, bool], images: dict[int, np.ndarray], first: int, k: int, fnr: float, fpr: float,
                  gate) -> GateEstimate:
    """The smallest share in GATE_PASSES that ``gate`` must send on under skip ``k`` so that the
    sample's pairs (frames off an anchor whose anchor is labelled too; ``images`` their downscaled
    frames) inherit under half of each target in errors (the stages keep the other half).

    >>> from vql.engine.difference import AnchorGate
    >>> truth = {f: (f // 10) % 2 == 1 for f in range(1000)}          # 10-frame runs, a change shows
    >>> images = {f: np.full((32, 32, 3), 100 + 50 * truth[f], np.uint8) for f in truth}
    >>> estimate(truth, 0, 4).fnr > 0.1                                # plain skipping fails
    True
    >>> g = gate_estimate(truth, images, 0, 4, 0.01, 0.01, AnchorGate("full-mse", 32))
    >>> round(g.gate_pass, 3)          # the frames just after a change (2 in 15 off an anchor)
    0.133
    """
    f_use, a_use, t, ta = _pairs(truth, first, k)
    start = time.perf_counter()
    g = gate.scores(np.stack([images[int(f)] for f in f_use]), np.stack([images[int(x)] for x in a_use])) \
        if len(f_use) else np.zeros(0)
    seconds = (time.perf_counter() - start) / max(1, len(f_use))
    off = (k - 1) / k
    share = 1.0
    if t.sum() >= MIN_PAIRS and (~t).any():
        for candidate in GATE_PASSES:
            inherits = g < np.quantile(g, 1 - candidate)  # ties can make the share larger: it is measured
            fn = off * float((t & ~ta & inherits).sum()) / int(t.sum())
            fp = off * float((~t & ta & inherits).sum()) / int((~t).sum())
            if fn < fnr / 2 and fp < fpr / 2:
                share = float((~inherits).mean())
                break
    return GateEstimate(k, gate.metric, len(t), int(t.sum()), share, seconds)
