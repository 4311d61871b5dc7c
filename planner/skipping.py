"""Frame skipping: the cascade evaluates every k-th frame of the scan (its *anchors*) and each
frame in between inherits its anchor's answer (optionally gated by the t−Δ detector,
``engine/difference.py: AnchorGate``). The engine runs such plans (``engine/cascade.py``); the
planner does not choose them at present: its certificate would have to judge each certification
frame by the answer it inherits, which needs its anchor's answer too, and that is not built yet.
"""

from __future__ import annotations

import numpy as np


def anchors(frames: np.ndarray, first: int, k: int) -> np.ndarray:
    """The frame whose answer each frame of a scan starting at ``first`` inherits under skip ``k``.

    >>> anchors(np.array([10, 11, 12, 13, 15]), 10, 2).tolist()
    [10, 10, 12, 12, 14]
    """
    frames = np.asarray(frames, np.int64)
    return first + (frames - first) // k * k
