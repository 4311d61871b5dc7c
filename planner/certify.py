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

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from vql.planner.stats import pass_probability, pass_probability_at, trials_needed, upper_bound

ALPHA = 0.05  # 1 - the joint confidence of every certificate
ALLOWANCES = (0, 1, 2, 3, 5, 8, 13, 21, 34)  # errors a certification sample may be sized to absorb
SIZE_MARGINS = (1.15, 1.3)  # sizes tried: these times the frames whose expected rarer class suffices
COUNT_TAIL_SD = 4.5  # the rarer class's count in a certification sample: summed this many sds either side of its mean


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
    """How many certification frames to draw, the errors they absorb at the expected counts, and the
    predicted chance that the certificate then passes: for the proposal itself, and for each
    plan of the certification ladder, most cautious first (``step_chances``, the proposal's
    last; ``planner/query.py``)."""

    frames: int
    allowed_fn: int
    allowed_fp: int
    pass_probability: float
    step_chances: tuple[float, ...] = ()


def sizes(positive_rates: list[float], fpr: float, fnr: float, available: int,
          alpha: float = ALPHA) -> list[int]:
    """Candidate certification sample sizes, in frames, distinct and increasing: for each
    number of errors of each kind in ALLOWANCES (the same for every claim), the frames whose
    expected counts hold enough of each claim's positives and negatives to absorb them, given
    its share of positives (``positive_rates``, measured on the training prefix), times each
    of SIZE_MARGINS. Sizes over ``available`` frames are left out. What a size really absorbs
    depends on the counts it draws (``chances``, ``absorbed``).

    >>> sizes([0.1], 0.01, 0.01, 30000)[:3]
    [3439, 3859, 3887]
    """
    if any(p <= 0 or p >= 1 for p in positive_rates):
        return []
    confidence = 1 - alpha
    positives = [trials_needed(fnr, confidence, a) for a in ALLOWANCES]
    negatives = [trials_needed(fpr, confidence, a) for a in ALLOWANCES]
    out = set()
    for n_pos in positives:
        for n_neg in negatives:
            need = max((max(n_pos / p, n_neg / (1 - p)) for p in positive_rates), default=0.0)
            out |= {math.ceil(margin * need) for margin in SIZE_MARGINS}
    return sorted(n for n in out if n <= available)


def absorbable(trials, target: float, alpha: float = ALPHA) -> np.ndarray:
    """The most errors ``trials`` trials may show with their one-sided 1 − ``alpha`` upper bound
    still within ``target`` (−1: not even none). The Clopper–Pearson bound of k errors is within
    the target exactly when P(Binomial(trials, target) ≤ k) ≤ alpha.

    >>> absorbable([298, 299, 473, 0], 0.01).tolist()
    [-1, 0, 1, -1]
    """
    trials = np.asarray(trials, np.float64)
    k = stats.binom.ppf(alpha, trials, target)
    return np.where(stats.binom.cdf(k, trials, target) <= alpha, k, k - 1).astype(np.int64)


def absorbed(frames: int, positive_rates: list[float], fpr: float, fnr: float, alpha: float = ALPHA) -> tuple[int, int]:
    """The misses and false frames that ``frames`` certification frames can absorb for every
    claim when they hold the expected shares of positives (``positive_rates``).

    >>> absorbed(4188, [0.093], 0.01, 0.01)
    (0, 27)
    """
    pos = [round(frames * p) for p in positive_rates]
    return (int(min(absorbable(pos, fnr, alpha), default=0)),
            int(min(absorbable([frames - k for k in pos], fpr, alpha), default=0)))


def chances(selection: list[Claim], positive_rates: list[float], sized: list[int],
            predicted: list[tuple[float, float] | None] | None = None, *, fpr: float, fnr: float,
            rate_frames: int | None = None, alpha: float = ALPHA) -> np.ndarray:
    """Per size in ``sized`` (frames, as ``sizes`` gives them), the chance that the
    certificate passes on that many certification frames: that every claim's errors stay
    within what its bounds can absorb there (``absorbable``) at the targets. A claim's errors
    are predicted from its errors on the selection frames (an order statistic,
    ``stats.pass_probability``), or from its ``predicted`` (fnr, fpr) where one is given
    (``planner/tails.py``, ``stats.pass_probability_at``).

    How many of the sample's frames fall in a claim's rarer class varies, and a sample that
    draws too few of them fails whatever the plan: the chance is summed over that count, drawn
    from ``frames`` with the claim's share of positives measured on ``rate_frames`` frames
    (beta-binomial; binomial when ``rate_frames`` is None); the other class holds the rest, and
    each class's count decides the errors its bound can absorb.

    >>> y = np.r_[np.ones(100, bool), np.zeros(900, bool)]
    >>> sized = sizes([0.1], 0.01, 0.01, 30000)
    >>> c = chances([Claim("q", y, y)], [0.1], sized, fpr=0.01, fnr=0.01)
    >>> sized[0], round(float(c[0]), 2)
    (3439, 0.17)
    >>> round(float(c.max()), 2)      # 100 positives seen cannot promise 1%...
    0.38
    >>> round(float(chances([Claim("q", y, y)], [0.1], sizes([0.1], 0.05, 0.05, 30000), fpr=0.05, fnr=0.05).max()), 2)
    0.94

    A plan that misses nothing: 5% needs 59 positives with none missed, and 700 frames hold
    fewer with chance 0.07 (0.13 when the share of 10% was measured on 1,000 frames):

    >>> sure = [700, 1000]
    >>> [round(float(c), 2) for c in chances([Claim("q", y, y)], [0.1], sure, [(0.0, 0.0)], fpr=0.05, fnr=0.05)]
    [0.93, 1.0]
    >>> [round(float(c), 2) for c in chances([Claim("q", y, y)], [0.1], sure, [(0.0, 0.0)], fpr=0.05, fnr=0.05,
    ...                                      rate_frames=1000)]
    [0.87, 1.0]
    """
    if not sized:
        return np.ones(0)
    frames, each = np.unique(np.array(sized, np.int64), return_inverse=True)
    out = np.ones(len(frames))
    for k, (claim, p) in enumerate(zip(selection, positive_rates)):
        pos, fn, neg, fp = claim.counts()
        rates = predicted[k] if predicted is not None else None
        if rates is None:
            def miss(allowed, trials):
                return pass_probability(fn, pos, allowed, trials)

            def false(allowed, trials):
                return pass_probability(fp, neg, allowed, trials)
        else:
            def miss(allowed, trials, r=rates[0]):
                return pass_probability_at(r, pos, allowed, trials)

            def false(allowed, trials, r=rates[1]):
                return pass_probability_at(r, neg, allowed, trials)
        p = min(max(float(p), 1e-9), 1 - 1e-9)
        rare_is_pos = p <= 0.5
        rare_rate = p if rare_is_pos else 1 - p
        rare_pass, common_pass = (miss, false) if rare_is_pos else (false, miss)
        rare_target, common_target = (fnr, fpr) if rare_is_pos else (fpr, fnr)
        law = _count_law(tuple(frames.tolist()), rare_rate, rate_frames, rare_target, common_target, alpha)
        (rare_counts, rare_allowed, rare_back), (common_counts, common_allowed, common_back), weights, owner = law
        rare = _piecewise(rare_pass, rare_counts, rare_allowed)[rare_back]
        common = _piecewise(common_pass, common_counts, common_allowed)[common_back]
        out *= np.bincount(owner, weights * rare * common, minlength=len(frames))
    return out[each]


def _piecewise(chance, counts: np.ndarray, allowed: np.ndarray, points: int = 32, exact: int = 8) -> np.ndarray:
    """``chance(allowed, counts)`` over sorted ``counts`` (0 where ``allowed`` < 0),
    computed exactly at both ends of every run of equal ``allowed`` up to ``exact`` and at
    about ``points`` counts spread over them, and linearly in between: within a run only the
    count changes, and the chance falls smoothly with it; past ``exact`` errors allowed, one
    more changes it little, and runs are short (a common class of thousands absorbs one more
    error every 1 / target frames), so interpolating across them costs little.

    >>> c = np.arange(100, 400); a = (c >= 299).astype(int)
    >>> f = lambda k, n: np.exp(-n / 300.0) * (1 + k)
    >>> bool(np.allclose(_piecewise(f, c, a), f(a, c), rtol=2e-3))
    True
    """
    if len(counts) == 0:
        return np.zeros(0)
    change = np.flatnonzero(np.diff(allowed)) + 1
    change = change[allowed[change - 1] <= exact]
    picked = np.unique(np.concatenate([[0, len(counts) - 1], change, change - 1,
                                       np.linspace(0, len(counts) - 1, points).round().astype(np.int64)]))
    values = np.where(allowed[picked] >= 0, chance(np.maximum(allowed[picked], 0), counts[picked]), 0.0)
    return np.interp(counts, counts[picked], values)


@functools.lru_cache(maxsize=8)
def _count_law(frames: tuple[int, ...], rate: float, rate_frames: int | None, rare_target: float,
               common_target: float, alpha: float):
    """For sample sizes ``frames``, the counts their rarer class may take (within COUNT_TAIL_SD
    standard deviations of its mean) and the other class's with each: per class, the distinct
    counts, the errors each can absorb at its target and the map back to the entries; each
    entry's probability (normalised per size) and size. The planner asks for the same sizes
    and rates at every plan of a ladder: computed once.

    >>> (rare, allowed, back), (common, _, common_back), w, owner = _count_law((700,), 0.1, None, 0.05, 0.05, 0.05)
    >>> int(rare[allowed >= 0].min()), round(float(w[rare[back] < 59].sum()), 2), bool((rare[back] + common[common_back] == 700).all())
    (59, 0.07, True)
    """
    n = np.asarray(frames, np.float64)
    spread = 1.0 if rate_frames is None else (n + rate_frames) / (1.0 + rate_frames)  # beta-binomial overdispersion
    sd = np.sqrt(n * rate * (1 - rate) * spread)
    low = np.maximum(0, np.floor(n * rate - COUNT_TAIL_SD * sd - 1)).astype(np.int64)
    high = np.minimum(n, np.ceil(n * rate + COUNT_TAIL_SD * sd + 1)).astype(np.int64)
    owner = np.repeat(np.arange(len(n)), high - low + 1)
    counts = np.concatenate([np.arange(a, b + 1) for a, b in zip(low, high)])
    size = n[owner]
    pmf = (stats.binom.pmf(counts, size, rate) if rate_frames is None
           else stats.betabinom.pmf(counts, size, rate * rate_frames, (1 - rate) * rate_frames))
    weights = pmf / np.bincount(owner, pmf, minlength=len(n))[owner]
    classes = []
    for c, target in ((counts, rare_target), (size.astype(np.int64) - counts, common_target)):
        distinct, back = np.unique(c, return_inverse=True)
        classes.append((distinct, absorbable(distinct, target, alpha), back))
    return classes[0], classes[1], weights, owner


def frames_needed(fpr: float, fnr: float, positive_rate: float, alpha: float = ALPHA) -> int:
    """The certification frames the targets need when nothing at all is missed: about
    3 / (target x share) at 95% (a huge number when a share is 0).

    >>> frames_needed(0.01, 0.01, 0.09)
    3323
    """
    confidence = 1 - alpha
    p = min(max(positive_rate, 1e-12), 1 - 1e-12)
    return math.ceil(max(trials_needed(fnr, confidence) / p, trials_needed(fpr, confidence) / (1 - p)))
