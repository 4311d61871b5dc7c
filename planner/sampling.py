"""The labelled sample: how many frames, and train / threshold-fit / evaluation sets that are
disjoint *in time*.

Neighbouring frames of a fixed camera are near-duplicates, so a random frame-level split leaks:
a model is checked on the twins of its training frames. The scan is cut into contiguous blocks
and whole blocks go to one set, interleaved so every set spans the whole video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vql.planner.stats import trials_needed

# Block roles, repeated along the video: 2 train, 3 fit, 1 evaluation (33/50/17): the fit set
# carries the confidence bounds (about 300 of the rarer class for a 1% target), so it gets the
# most; a specialized model learns enough from a third of the sample.
PATTERN = ("train", "fit", "fit", "train", "fit", "eval")
FIT_SHARE = PATTERN.count("fit") / len(PATTERN)


@dataclass(frozen=True, slots=True)
class Split:
    train: np.ndarray
    fit: np.ndarray
    eval: np.ndarray
    blocks: int
    reason: str

    @property
    def frames(self) -> np.ndarray:
        return np.sort(np.concatenate([self.train, self.fit, self.eval]))


def sample_size(frames: int, target: float = 0.01, budget_share: float = 0.08,
                ceiling: int = 6000) -> tuple[int, str]:
    """Frames to label: at least ten times what certifies ``target`` with no error at all
    (``trials_needed``: 299 for 1%), so the fit set can hold that many positives and negatives;
    otherwise ``budget_share`` of the scan, the share of the exact plan's cost spent on it.

    >>> sample_size(36000)
    (2990, 'the 2990-frame floor for a 0.01 target (10 x the 299 trials that certify it with no error)')
    >>> sample_size(795)[0]
    795
    >>> sample_size(1800, target=0.1)[0]
    300
    >>> sample_size(100000)[1]
    '8% of 100000 frames, within [2990, 6000]'
    """
    floor = max(300, 10 * trials_needed(target))
    share = int(frames * budget_share)
    n = min(frames, max(floor, min(ceiling, share)))
    if n == frames:
        why = f"all {frames} frames: the video is shorter than the {floor}-frame floor for a {target:g} target"
    elif n == floor:
        why = (f"the {floor}-frame floor for a {target:g} target (10 x the {trials_needed(target)} trials that "
               f"certify it with no error)")
    else:
        why = f"{budget_share:.0%} of {frames} frames, within [{floor}, {ceiling}]"
    return n, why


def time_block_split(first: int, last: int, n: int, seed: int = 0, block_frames: int | None = None) -> Split:
    """``n`` frames of [first, last] in contiguous blocks assigned to train/fit/eval by PATTERN.

    >>> s = time_block_split(0, 9999, 1000)
    >>> len(s.train) + len(s.fit) + len(s.eval), s.blocks
    (1000, 50)
    """
    total = last - first + 1
    n = min(n, total)
    blocks = max(len(PATTERN), min(total // max(1, block_frames or 0) if block_frames else 50, total))
    edges = np.linspace(first, last + 1, blocks + 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    per_block = np.full(blocks, n // blocks)
    per_block[: n % blocks] += 1
    sets = {"train": [], "fit": [], "eval": []}
    for b in range(blocks):
        lo, hi = edges[b], edges[b + 1]
        k = min(per_block[b], hi - lo)
        chosen = np.sort(rng.choice(np.arange(lo, hi), size=k, replace=False))
        sets[PATTERN[b % len(PATTERN)]].append(chosen)
    arrays = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in sets.items()}
    return Split(arrays["train"], arrays["fit"], arrays["eval"], blocks,
                 f"{blocks} blocks of ~{total // blocks} frames, roles {'/'.join(PATTERN)} repeating")
