"""The planning sample: a seeded uniform random order of the scanned frames, consumed as a prefix.

Frames of one video are not independent (a walker stays in view for seconds), but frames drawn
uniformly at random from the scan are exchangeable, whatever the temporal correlation: a bound
computed on such a sample holds for the scan. So the planner draws every frame it labels from one
random permutation of the scan, seeded by the video's content fingerprint and the frame range
(every predicate on a video walks the same order, and the labels one query paid for serve the
next), and takes consecutive pieces of it:

- ``train``: the first third of the training prefix (TRAIN_PART): the specialized models and
  the difference detectors' background are fitted on it;
- ``select``: the other two thirds: every choice (stages, thresholds, how large the
  certification sample must be, cascade or exact) is made on it, and the chance that the
  certificate passes is predicted there, so it gets the larger part (a model trained on 1,000
  frames separates the composed videos as well as one trained on 1,800:
  benchmarks/results/stages_steps.json);
- ``certify``: the next frames, drawn only once all choices are made: the one chosen plan is
  checked on them, and nothing else looks at them.

A prefix of a uniform random permutation, whatever its length (even one chosen by looking at
the prefix itself), leaves the rest of the scan in uniform random order: the certification
frames are a uniform sample of the frames the training prefix did not cover.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

TRAIN_SHARE = 0.075  # of the scan, for the training prefix (at a 1% target: ``scale``)
TRAIN_FLOOR = 600
TRAIN_CEILING = 3000
TRAIN_PART = 3  # the first 1 / TRAIN_PART of the prefix trains the stages, the rest selects the plan
MIN_RARE = 200  # frames of each test's rarer class the training prefix should hold (its training part ~67)
MAX_TRAIN_SHARE = 0.25  # of the scan: the most the training prefix grows to
FULL_TARGET = 0.01  # the target at which the prefix takes TRAIN_SHARE, TRAIN_CEILING and MIN_RARE in full


def permutation(fingerprint: str, first: int, last: int) -> np.ndarray:
    """The scan's frames in the seeded random order every plan on this video and range uses.

    >>> p = permutation("abc", 10, 19); sorted(p.tolist()) == list(range(10, 20))
    True
    >>> bool((permutation("abc", 10, 19) == p).all()), bool((permutation("abd", 10, 19) == p).all())
    (True, False)
    """
    seed = int.from_bytes(hashlib.sha256(f"{fingerprint}|{first}|{last}".encode()).digest()[:8], "little")
    return first + np.random.default_rng(seed).permutation(max(0, last - first + 1)).astype(np.int64)


def scale(target: float) -> float:
    """The share of the 1%-target prefix (its share of the scan, ceiling and rarer-class count)
    that a looser target takes: ``sqrt(FULL_TARGET / target)``, at most 1.

    A looser target needs less of the prefix on both sides: the specialized models may miss
    more, and the selection frames show misses at rate ``target`` with proportionally fewer
    positives. Proportionally fewer (``FULL_TARGET / target``: a fifth at 5%) would leave the
    tail fits of ``planner/tails.py`` (the lowest 5% of the positives' scores) two or three
    points on the composed hour, so the prefix shrinks by the square root of it: a set rule, not
    fitted to any certification frames (README, "DuckDB on one thread, a prefix sized by the
    target, count-aware sizing"; benchmarks/results/prefix_by_target60_5pct.json).

    >>> scale(0.01), round(scale(0.05), 3), scale(0.001)
    (1.0, 0.447, 1.0)
    """
    return min(1.0, math.sqrt(FULL_TARGET / max(target, 1e-12)))


def training_size(frames: int, target: float) -> tuple[int, str]:
    """Frames in the training prefix: TRAIN_SHARE of the scan, at most TRAIN_CEILING, both
    times ``scale(target)``; at least ``9 / target`` (so that its selection part, two thirds of
    it, holds ``6 / target`` frames: enough to tell a rate near ``target`` from zero) and at
    least TRAIN_FLOOR.

    >>> training_size(36000, 0.01)
    (2700, '7.5% of 36000 frames, within [900, 3000]')
    >>> training_size(36000, 0.05)
    (1207, '3.4% of 36000 frames (7.5% at a 1% target, x0.447 at 5%), within [600, 1342]')
    >>> training_size(12000, 0.05)[0], training_size(6000, 0.01)[0], training_size(100000, 0.01)[0]
    (600, 900, 3000)
    >>> training_size(795, 0.01)[0]      # over half of the scan: the planner answers exactly
    900
    """
    k = scale(target)
    floor = max(TRAIN_FLOOR, math.ceil(9 / max(target, 1e-9)))
    ceiling = max(floor, round(TRAIN_CEILING * k))
    n = max(floor, min(ceiling, round(frames * TRAIN_SHARE * k)))  # may exceed a short scan: then exact
    share = f"{TRAIN_SHARE * k:.1%} of {frames} frames"
    if k < 1:
        share += f" ({TRAIN_SHARE:.1%} at a {FULL_TARGET:.0%} target, x{k:.3f} at {target * 100:g}%)"
    return n, f"{share}, within [{floor}, {ceiling}]"


def min_rare(target: float) -> int:
    """Frames of each test's rarer class the training prefix should hold: MIN_RARE, times
    ``scale(target)``.

    >>> min_rare(0.01), min_rare(0.05)
    (200, 89)
    """
    return round(MIN_RARE * scale(target))


def grow(n_train: int, frames: int, rare: int, target: float = FULL_TARGET) -> int:
    """The training prefix's next size: half as large again while the rarer class of some test
    holds fewer than ``min_rare(target)`` of its frames (``rare``), up to MAX_TRAIN_SHARE of the
    scan; ``n_train`` itself when it is done. Growing looks at the prefix only, so the frames
    after it stay in uniform random order.

    >>> grow(600, 6000, 60), grow(1350, 6000, 150), grow(1500, 6000, 170), grow(900, 36000, 250)
    (900, 1500, 1500, 900)
    >>> grow(1207, 36000, 112, 0.05), grow(1207, 36000, 80, 0.05)
    (1207, 1810)
    """
    if rare >= min_rare(target):
        return n_train
    return max(n_train, min(int(MAX_TRAIN_SHARE * frames), n_train + n_train // 2))


@dataclass(frozen=True, slots=True)
class Sample:
    """Consecutive pieces of the scan's random order: ``train`` and ``select`` (the training
    prefix, ``n_train`` frames, a third and two thirds) and the ``n_certify`` frames after it.

    >>> s = Sample(np.arange(10), 9, 1)
    >>> s.train.tolist(), s.select.tolist(), s.certify.tolist()
    ([0, 1, 2], [3, 4, 5, 6, 7, 8], [9])
    """

    order: np.ndarray
    n_train: int
    n_certify: int = 0

    @property
    def train(self) -> np.ndarray:
        return self.order[: self.n_train // TRAIN_PART]

    @property
    def select(self) -> np.ndarray:
        return self.order[self.n_train // TRAIN_PART: self.n_train]

    @property
    def prefix(self) -> np.ndarray:
        return self.order[: self.n_train]

    @property
    def certify(self) -> np.ndarray:
        return self.order[self.n_train: self.n_train + self.n_certify]
