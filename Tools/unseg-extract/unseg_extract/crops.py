"""Zoomed-in crop views for the Two Tricks paper's multi-scale consistency (issue 24, first step).

``--crops C`` stores, per image, the features of C square crops of the stored S x S crop, each
resized (bilinear, as torch's ``interpolate(align_corners=False)``) back to S x S before the
backbone: ``/features_crops [C, N, h, w, D]``, with their boxes ``/crop_boxes [C, N, 4]``
(x0, y0, x1, y1 in pixels of the stored crop, exclusive ends). Crop c of image i is drawn from a
generator seeded with (seed, i, c, 0x43524f50): its side is ``round(u * S)`` pixels with u uniform
in ``--crop-scale MIN,MAX`` (fractions of the side; the reference's crop is half the side, so
the default is 0.5,0.5), at least one patch, and its origin uniform over the positions inside the
image. The reference (alpErenSari/segmentation-tricks) crops h/2 x w/2 and upscales x2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ExtractError

SEED_TAG = 0x43524F50   # "CROP"


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int


def parse_scale(text: str) -> tuple:
    """``"0.3,0.7"`` -> (0.3, 0.7); one value means both. ExtractError unless 0 < MIN <= MAX <= 1."""
    try:
        parts = [float(v) for v in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not (0 < parts[0] <= parts[1] <= 1):
        raise ExtractError(f"--crop-scale takes MIN,MAX with 0 < MIN <= MAX <= 1 (fractions of the crop's side; "
                           f"the reference's is 0.5,0.5), got '{text}'")
    return parts[0], parts[1]


def draw(seed: int, index: int, crop: int, size: int, patch: int, scale: tuple) -> Box:
    """The box of crop ``crop`` of image ``index``: a pure function of its arguments."""
    rng = np.random.default_rng([int(seed), int(index), int(crop), SEED_TAG])
    u = float(rng.uniform(scale[0], scale[1])) if scale[1] > scale[0] else scale[0]
    side = int(min(size, max(patch, round(u * size))))
    x0 = int(rng.integers(0, size - side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    return Box(x0, y0, x0 + side, y0 + side)


def zoom(unit: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """``[3, S, S]`` in [0, 1] -> the box resized to ``[3, size, size]`` (bilinear, align_corners=False)."""
    part = unit[:, box.y0:box.y1, box.x0:box.x1][None]
    if part.shape[-1] == size and part.shape[-2] == size:
        return part[0]
    return torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear", align_corners=False)[0]
