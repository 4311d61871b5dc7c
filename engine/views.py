"""What a cheap stage reads: a frame cut to a crop (a region predicate's region; None: the whole
frame), then downscaled to size x size. The sample pass and the cascade keep each frame once
per view (``View``: (size, crop)) its stages read."""

from __future__ import annotations

import numpy as np

Crop = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the frame
View = tuple[int, Crop | None]  # what a stage reads: frames cut to the crop (None: whole), then size x size


def crop_pixels(crop: Crop, width: int, height: int) -> tuple[int, int, int, int]:
    """A crop's pixel box (x0, y0, x1, y1), at least one pixel each way.

    >>> crop_pixels((0.0, 0.5, 1.0, 1.0), 768, 576), crop_pixels((0.5, 0.5, 0.5, 0.5), 768, 576)
    ((0, 288, 768, 576), (384, 288, 385, 289))
    """
    x0, y0 = min(width - 1, int(crop[0] * width)), min(height - 1, int(crop[1] * height))
    return x0, y0, max(x0 + 1, min(width, round(crop[2] * width))), max(y0 + 1, min(height, round(crop[3] * height)))


def downscale(frames, size: int, crop: Crop | None = None) -> np.ndarray:
    """BGR frames -> [N, size, size, 3] uint8, cut to ``crop`` first (INTER_AREA would be
    sharper but costs 3-4× more).

    >>> f = np.zeros((576, 768, 3), np.uint8); f[288:] = 200
    >>> int(downscale([f], 32).mean()), int(downscale([f], 32, (0.0, 0.5, 1.0, 1.0)).mean())
    (100, 200)
    """
    import cv2

    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        if crop is not None:
            x0, y0, x1, y1 = crop_pixels(crop, frame.shape[1], frame.shape[0])
            frame = frame[y0:y1, x0:x1]
        out[i] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def crop_text(crop: Crop | None) -> str:
    """How a stage's name says what part of the frame it reads ("" for the whole frame).

    >>> crop_text((0.0, 0.5, 1.0, 1.0)), crop_text(None)
    (' of (0, 0.5, 1, 1)', '')
    """
    return "" if crop is None else " of (" + ", ".join(f"{c:g}" for c in crop) + ")"
