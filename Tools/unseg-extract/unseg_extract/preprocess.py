"""Preprocessing as the reference pipeline (PriMaPs' validation transforms) does it.

1. Resize so that the shorter side is ``size`` (the longer side becomes ``int(size * long / short)``,
   torchvision's rule): images bilinear with antialiasing (``align_corners=False``), labels nearest
   (torch's ``nearest``: source index ``floor(dst * in / out)``).
2. Centre crop ``size x size`` (torchvision's rule: offset ``int(round((in - size) / 2))``).
3. For the backbone only: RGB / 255, then ImageNet normalisation
   (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225).

The crop is what ``/images`` (uint8 RGB) and ``/labels`` store. The backbone sees exactly the
stored uint8 crop (the resized image is rounded to uint8 first), so the features describe the
stored pixels; this differs from feeding the float resize by at most 1/510 per pixel value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """Where the crop comes from: original ``(height, width)``, resized ``(height, width)``, crop
    offset ``(top, left)`` in the resized image, and the crop side ``size``."""

    original: tuple
    resized: tuple
    offset: tuple
    size: int

    def map_box(self, box):
        """A box ``(x0, y0, x1, y1)`` in original-image pixel edges -> crop pixel edges, clipped to the
        crop; None when nothing of it is left in the crop. Float coordinates."""
        sy = self.resized[0] / self.original[0]
        sx = self.resized[1] / self.original[1]
        top, left = self.offset
        x0 = min(max(box[0] * sx - left, 0.0), self.size)
        x1 = min(max(box[2] * sx - left, 0.0), self.size)
        y0 = min(max(box[1] * sy - top, 0.0), self.size)
        y1 = min(max(box[3] * sy - top, 0.0), self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return (x0, y0, x1, y1)


def resized_shape(height: int, width: int, size: int) -> tuple:
    """``(h, w)`` after resizing the shorter side to ``size`` (torchvision's rule, long side truncated)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def geometry(height: int, width: int, size: int) -> Geometry:
    """The resize + centre-crop geometry of an ``height x width`` image for crop side ``size``."""
    rh, rw = resized_shape(height, width, size)
    top = int(round((rh - size) / 2.0))
    left = int(round((rw - size) / 2.0))
    return Geometry((height, width), (rh, rw), (top, left), size)


def crop_image(image: np.ndarray, size: int) -> tuple:
    """``[H, W, 3]`` uint8 RGB -> (``[size, size, 3]`` uint8 crop, Geometry).

    Bilinear resize with antialiasing on float values 0..255, rounded to the nearest integer.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    g = geometry(image.shape[0], image.shape[1], size)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()     # [1, 3, H, W]
    if g.resized != g.original:
        t = F.interpolate(t, size=g.resized, mode="bilinear", align_corners=False, antialias=True)
    top, left = g.offset
    t = t[:, :, top:top + size, left:left + size]
    out = t.round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()
    return out, g


def crop_label(label: np.ndarray, size: int) -> np.ndarray:
    """``[H, W]`` uint8 ids -> ``[size, size]`` uint8 crop (nearest resize, same geometry as the image)."""
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label must be [H, W] uint8, got {label.shape} {label.dtype}")
    g = geometry(label.shape[0], label.shape[1], size)
    t = torch.from_numpy(np.ascontiguousarray(label))[None, None]
    if g.resized != g.original:
        t = F.interpolate(t.float(), size=g.resized, mode="nearest").to(torch.uint8)
    top, left = g.offset
    return t[0, 0, top:top + size, left:left + size].contiguous().numpy()


def to_unit(images: np.ndarray) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 -> ``[B, 3, S, S]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, S, S]`` RGB in [0, 1] -> ImageNet-normalised (a new tensor)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
