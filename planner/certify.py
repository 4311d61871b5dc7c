"""Certifying a chosen plan: one check, on frames no choice looked at.

The guarantee vql gives for ``WITH (fpr := a, fnr := b)``: with probability at least 1 − ALPHA
(95%) over vql's own random sample, the query's frame-level false-negative rate is at most b
and its false-positive rate at most a, jointly, over the frames it scanned. A *claim* is what the
rates are about: the truth value of the whole WHERE clause per frame (or, when WHERE reads other
tables, each model test on its own). Each claim is checked on the certification frames (a
uniform random sample of the frames the training prefix left, see ``planner/sampling.py``):
what the executed plan would answer there against the reference's answer, each rate bounded
one-sided at 1 − ALPHA (Clopper–Pearson).

Why no share of ALPHA per bound: a plan is certified only when *every* bound meets its target
(an intersection–union test). If some rate of some claim really is over its target, the plan
can only be certified when that rate's own bound came out under it, which happens with
probability at most ALPHA; so P(certified and any rate over its target) ≤ ALPHA. The same holds
for a fixed sequence of plans tested in an order chosen before the certification frames are
seen, stopping at the first that fails (``planner/query.py: finish``): the first plan in the
sequence that is really over a target must pass its own test for it or any later plan to be
certified.

Why it holds for the whole scan: frames the reference labels (training, certification and the
frames the cascade sends on) are answered exactly, so the errors of the scan are at most those
the plan would make on the frames outside the training prefix, and the bound covers the rate
there; the scan's positives (negatives) are at least those, so its rates are no higher.

>>> y = np.r_[np.ones(400, bool), np.zeros(3600, bool)]
>>> answer = y.copy(); answer[:2] = False            # two positives missed
>>> c = certify([Claim("q", y, answer)], fpr=0.02, fnr=0.02)
>>> c.passed, round(c.fnr_bound, 4), round(c.fpr_bound, 4), c.confidence
(True, 0.0157, 0.0008, 0.95)
>>> certify([Claim("q", y, answer)], fpr=0.01, fnr=0.01).passed
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vql.planner.stats import pass_probability, pass_probability_at, trials_needed, upper_bound

ALPHA = 0.05  # 1 - the joint confidence of every certificate
ALLOWANCES = (0, 1, 2, 3, 5, 8, 13, 21, 34)  # errors a certification sample may be sized to absorb
SIZE_MARGIN = 1.15  # draw more frames than the expected rarer class needs (its count varies)


@dataclass(frozen=True, slots=True)
class Claim:
    """What a rate is about (``name``), the reference's truth and the plan's answer per frame."""

    name: str
    truth: np.ndarray
    answer: np.ndarray

    def counts(self) -> tuple[int, int, int, int]:
        """(positives, false negatives, negatives, false positives)."""
        t, a = np.asarray(self.truth, bool), np.asarray(self.answer, bool)
        return int(t.sum()), int((t & ~a).sum()), int((~t).sum()), int((~t & a).sum())


@dataclass(frozen=True, slots=True)
class ClaimBounds:
    name: str
    positives: int
    false_negatives: int
    negatives: int
    false_positives: int
    fnr_bound: float
    fpr_bound: float


@dataclass(frozen=True, slots=True)
class Certificate:
    """The outcome of certifying one plan: every claim's counts and bounds on the ``frames``
    certification frames, and whether all bounds meet the targets."""

    fpr_target: float
    fnr_target: float
    frames: int
    claims: tuple[ClaimBounds, ...]
    confidence: float = 1 - ALPHA

    @property
    def fnr_bound(self) -> float:
        return max((c.fnr_bound for c in self.claims), default=0.0)

    @property
    def fpr_bound(self) -> float:
        return max((c.fpr_bound for c in self.claims), default=0.0)

    @property
    def passed(self) -> bool:
        return self.fnr_bound <= self.fnr_target and self.fpr_bound <= self.fpr_target

    def lines(self) -> list[str]:
        out = [f"certification: {self.frames} frames drawn uniformly at random from the scan after every choice "
               f"was made; one-sided Clopper-Pearson bounds at {self.confidence:.0%}; certified only if every bound "
               f"meets its target, so the targets hold jointly at {self.confidence:.0%}"]
        for c in self.claims:
            out.append(f"  {c.name}: fnr <= {c.fnr_bound:.4f} ({c.false_negatives} of {c.positives} positives "
                       f"missed), fpr <= {c.fpr_bound:.4f} ({c.false_positives} of {c.negatives} negatives "
                       f"accepted): {'within' if c.fnr_bound <= self.fnr_target and c.fpr_bound <= self.fpr_target else 'over'} "
                       f"the targets fnr {self.fnr_target:g}, fpr {self.fpr_target:g}")
        return out


def certify(claims: list[Claim], fpr: float, fnr: float, alpha: float = ALPHA) -> Certificate:
    """Bound every claim's two rates on the certification frames (one-sided, 1 − ``alpha``)."""
    confidence = 1 - alpha
    bounds = []
    for claim in claims:
        pos, fn, neg, fp = claim.counts()
        bounds.append(ClaimBounds(claim.name, pos, fn, neg, fp, upper_bound(fn, pos, confidence),
                                  upper_bound(fp, neg, confidence)))
    frames = len(claims[0].truth) if claims else 0
    return Certificate(fpr, fnr, frames, tuple(bounds), 1 - alpha)


@dataclass(frozen=True, slots=True)
class Sizing:
    """How many certification frames to draw, the errors they are sized to absorb, and the
    predicted chance that the certificate then passes: for the proposal itself, and for each
    plan of the certification ladder, most cautious first (``step_chances``, the proposal's
    last; ``planner/query.py``)."""

    frames: int
    allowed_fn: int
    allowed_fp: int
    pass_probability: float
    step_chances: tuple[float, ...] = ()


def sizes(positive_rates: list[float], fpr: float, fnr: float, available: int,
          alpha: float = ALPHA) -> list[tuple[int, int, int]]:
    """(frames, errors of each kind it absorbs) for each number of errors in ALLOWANCES (the
    same for every claim): the frames that hold enough of each claim's positives and negatives,
    given its share of positives (``positive_rates``, measured on the training prefix). Sizes
    over ``available`` frames are left out.

    >>> sizes([0.1], 0.01, 0.01, 30000)[:2]
    [(3439, 0, 0), (3439, 0, 1)]
    """
    confidence = 1 - alpha
    out = []
    for a_fn in ALLOWANCES:
        for a_fp in ALLOWANCES:
            frames = 0
            for p in positive_rates:
                if p <= 0 or p >= 1:
                    frames = available + 1
                    break
                n_pos, n_neg = trials_needed(fnr, confidence, a_fn), trials_needed(fpr, confidence, a_fp)
                frames = max(frames, math.ceil(SIZE_MARGIN * max(n_pos / p, n_neg / (1 - p))))
            if frames <= available:
                out.append((frames, a_fn, a_fp))
    return out


def chances(selection: list[Claim], positive_rates: list[float], sized: list[tuple[int, int, int]],
            predicted: list[tuple[float, float] | None] | None = None) -> np.ndarray:
    """Per size in ``sized`` ((frames, allowed misses, allowed false frames), as ``sizes`` gives
    them), the chance that that many certification frames show at most the allowed errors for
    every claim: per claim from its errors on the selection frames (an order statistic,
    ``stats.pass_probability``), or from its ``predicted`` (fnr, fpr) where one is given
    (``planner/tails.py``, ``stats.pass_probability_at``).

    >>> y = np.r_[np.ones(100, bool), np.zeros(900, bool)]
    >>> sized = sizes([0.1], 0.01, 0.01, 30000)
    >>> c = chances([Claim("q", y, y)], [0.1], sized)
    >>> sized[0], round(float(c[0]), 2)
    ((3439, 0, 0), 0.03)
    >>> round(float(c.max()), 2)      # 100 positives seen cannot promise 1%...
    0.25
    >>> round(float(chances([Claim("q", y, y)], [0.1], sizes([0.1], 0.05, 0.05, 30000)).max()), 2)   # ...but 5% is likely
    0.85
    >>> [round(float(c), 2) for c in chances([Claim("q", y, y)], [0.1], [(700, 0, 0), (700, 2, 2)], [(0.001, 0.0)])]
    [0.95, 0.99]
    """
    frames = np.array([s[0] for s in sized], np.float64)
    allowed_fn, allowed_fp = np.array([s[1] for s in sized]), np.array([s[2] for s in sized])
    out = np.ones(len(sized))
    for k, (claim, p) in enumerate(zip(selection, positive_rates)):
        pos, fn, neg, fp = claim.counts()
        n_pos, n_neg = np.rint(frames * p), np.rint(frames * (1 - p))
        rates = predicted[k] if predicted is not None else None
        if rates is None:
            out *= pass_probability(fn, pos, allowed_fn, n_pos) * pass_probability(fp, neg, allowed_fp, n_neg)
        else:
            out *= (pass_probability_at(rates[0], pos, allowed_fn, n_pos)
                    * pass_probability_at(rates[1], neg, allowed_fp, n_neg))
    return out


def frames_needed(fpr: float, fnr: float, positive_rate: float, alpha: float = ALPHA) -> int:
    """The certification frames the targets need when nothing at all is missed: about
    3 / (target x share) at 95% (a huge number when a share is 0).

    >>> frames_needed(0.01, 0.01, 0.09)
    3323
    """
    confidence = 1 - alpha
    p = min(max(positive_rate, 1e-12), 1 - 1e-12)
    return math.ceil(max(trials_needed(fnr, confidence) / p, trials_needed(fpr, confidence) / (1 - p)))
