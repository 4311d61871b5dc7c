"""Difference detectors: cheap scores of how much a downscaled frame differs from a reference image.

A fixed camera's frames mostly show the same background. A frame that differs from the
background image (the per-pixel median of sample frames on which the predicate is false) by
less than a threshold δ is answered "no" without running anything else. The score is the
*blocked* mean squared error: the frame is cut into a grid of blocks and the largest block's
MSE is kept, so a small walker in one corner is not averaged away by an unchanged rest.

>>> bg = np.zeros((32, 32, 3), np.uint8)
>>> frames = np.zeros((2, 32, 32, 3), np.uint8); frames[1, :8, :8] = 40
>>> block_mse(frames, bg, grid=4).round(1).tolist()       # one block of 16 changed by 40
[0.0, 1600.0]
>>> full_mse(frames, bg).round(1).tolist()                # the same change, averaged over all
[0.0, 100.0]

Lighting drifts (clouds, auto-exposure): the *gain-compensated* variant first scales each frame,
per channel, to the background's mean brightness, so a uniformly brighter empty street scores
(almost) nothing while a walker still does.

>>> bg = np.full((32, 32, 3), 100, np.uint8)
>>> frames = np.full((2, 32, 32, 3), 110, np.uint8); frames[1, :8, :8] = 200   # 10% brighter; a walker
>>> block_mse(frames, bg).round().tolist()
[100.0, 10000.0]
>>> block_mse_gain(frames, bg).round().tolist()
[0.0, 5325.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vql.engine.views import Crop, View, crop_text

GRID = 4  # blocks per side


def full_mse(small: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean squared difference over the whole frame, per frame of [N, H, W, C] uint8."""
    diff = small.astype(np.float32) - reference.astype(np.float32)
    return (diff * diff).reshape(len(small), -1).mean(axis=1)


def block_mse(small: np.ndarray, reference: np.ndarray, grid: int = GRID) -> np.ndarray:
    """The largest per-block mean squared difference over a grid × grid cut of each frame."""
    n, h, w, c = small.shape
    diff = small.astype(np.float32) - reference.astype(np.float32)
    sq = (diff * diff)[:, : h - h % grid, : w - w % grid]
    blocks = sq.reshape(n, grid, (h - h % grid) // grid, grid, (w - w % grid) // grid, c).mean(axis=(2, 4, 5))
    return blocks.reshape(n, -1).max(axis=1)


def block_mse_gain(small: np.ndarray, reference: np.ndarray, grid: int = GRID) -> np.ndarray:
    """``block_mse`` after scaling each frame's channels to the reference's mean brightness."""
    x = small.astype(np.float32)
    gain = reference.reshape(-1, reference.shape[-1]).astype(np.float32).mean(axis=0) / np.maximum(
        x.reshape(len(x), -1, x.shape[-1]).mean(axis=1), 1.0)
    return block_mse(x * gain[:, None, None, :], reference, grid)


# name -> score function; the planner tries each and keeps what pays.
DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "blocked-mse": block_mse,
    "blocked-mse-gain": block_mse_gain,
    "full-mse": full_mse,
}


@dataclass
class DifferenceDetector:
    """A detector fitted for one video and predicate: its metric, image size and background."""

    metric: str
    size: int
    background: np.ndarray  # [size, size, 3] uint8
    crop: Crop | None = None  # the part of the frame it reads (a region predicate's region)

    @property
    def name(self) -> str:
        return f"{self.metric}@{self.size}{crop_text(self.crop)} vs background"

    @property
    def view(self) -> View:
        return self.size, self.crop

    def scores(self, small: np.ndarray) -> np.ndarray:
        if not len(small):
            return np.zeros(0, np.float32)
        return DETECTORS[self.metric](small, self.background)


@dataclass
class AnchorGate:
    """The t−Δ detector: how much each frame differs from its *anchor*, the frame Δ < k before it
    whose answer it inherits under frame skip k (``planner/skipping.py``). A frame below the
    gate's δ inherits; one above it goes through the cascade itself. Anchors are always computed,
    so answers never chain from one inherited frame to the next.

    >>> frames = np.zeros((2, 32, 32, 3), np.uint8); frames[1, :8, :8] = 40   # a walker enters
    >>> AnchorGate("blocked-mse", 32).scores(frames, np.zeros_like(frames)).round().tolist()
    [0.0, 1600.0]
    """

    metric: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.metric}@{self.size} vs anchor (t-Δ)"

    @property
    def view(self) -> View:
        return self.size, None

    def scores(self, small: np.ndarray, anchor_small: np.ndarray) -> np.ndarray:
        """Per frame of [N, H, W, C] uint8, its difference from its anchor's image (same shape)."""
        if not len(small):
            return np.zeros(0, np.float32)
        return DETECTORS[self.metric](small, anchor_small)




def background(small: np.ndarray) -> np.ndarray:
    """The per-pixel median of [N, H, W, C] uint8 frames: the scene with passers-by removed."""
    return np.median(small, axis=0).astype(np.uint8)
