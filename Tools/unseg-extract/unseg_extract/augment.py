"""Photometric views: the reference's student augmentation (visinf/primaps, ``transforms.Compose``
with ``student_augs``), seeded per (seed, image index, view).

Per view, as the reference draws it:

1. Gaussian blur, always: sigma ~ U(0.1, 2.0), kernel 21 x 21 (separable, reflect padding; the
   kernel shrinks to the largest odd size the image allows when a side is 10 pixels or less).
2. With probability 0.5 the colour branch, else the grey branch:
   - colour: with probability 0.3, colour jitter with brightness, contrast, saturation 0.1 and
     hue 0.1 (factors ~ U(0.9, 1.1), hue shift ~ U(-0.1, 0.1)), the four in a random order, each
     clamped to [0, 1] like torchvision's ``ColorJitter`` on tensors;
   - grey: with probability 0.1, grayscale (0.2989 R + 0.587 G + 0.114 B on all three channels).

The random numbers come from ``numpy.random.default_rng([seed, image_index, view])`` and are drawn
in a fixed order whatever branch is taken, so a view depends only on (seed, index, view): the
same bytes on a resumed run, with any batch size.

Where it is applied: ``space="rgb"`` (default) augments the RGB crop in [0, 1] and normalises
afterwards. The reference applies the augmentation after ImageNet normalisation (its Compose
normalises first), where the jitter's clamp to [0, 1] cuts off all negative normalised values;
``space="normalized"`` reproduces that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
BLUR_KERNEL = 21
BLUR_SIGMA = (0.1, 2.0)
COLOR_BRANCH_P = 0.5
JITTER_P = 0.3
GRAY_P = 0.1
JITTER_STRENGTH = 0.1   # brightness, contrast, saturation (factor range 1 +- 0.1) and hue (+- 0.1)


@dataclass(frozen=True)
class ViewParams:
    """The random draws of one view."""

    sigma: float
    color_branch: bool
    jitter: bool
    gray: bool
    order: tuple          # permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue)
    brightness: float
    contrast: float
    saturation: float
    hue: float


def draw(seed: int, index: int, view: int) -> ViewParams:
    """The parameters of view ``view`` of image ``index`` for ``seed`` (all drawn, in a fixed order)."""
    rng = np.random.default_rng([int(seed), int(index), int(view)])
    sigma = float(rng.uniform(*BLUR_SIGMA))
    branch = float(rng.random())
    u_jitter = float(rng.random())
    u_gray = float(rng.random())
    order = tuple(int(i) for i in rng.permutation(4))
    s = JITTER_STRENGTH
    b, c, sat = (float(v) for v in rng.uniform(1 - s, 1 + s, size=3))
    hue = float(rng.uniform(-s, s))
    color = branch < COLOR_BRANCH_P
    return ViewParams(sigma, color, color and u_jitter < JITTER_P, (not color) and u_gray < GRAY_P,
                      order, b, c, sat, hue)


def gaussian_blur(x: torch.Tensor, sigma: float, kernel: int = BLUR_KERNEL) -> torch.Tensor:
    """``[3, H, W]`` -> blurred ``[3, H, W]``: separable Gaussian, reflect padding."""
    limit = 2 * min(x.shape[-2:]) - 1           # reflect padding needs pad < side
    k = min(kernel, limit if limit % 2 else limit - 1)
    if k < 3:
        return x
    r = k // 2
    t = torch.linspace(-r, r, k, dtype=torch.float32)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = (w / w.sum()).to(x.dtype)
    y = F.pad(x[None], (r, r, r, r), mode="reflect")                      # [1, 3, H+2r, W+2r]
    y = F.conv2d(y, w.view(1, 1, 1, k).expand(3, 1, 1, k), groups=3)
    y = F.conv2d(y, w.view(1, 1, k, 1).expand(3, 1, k, 1), groups=3)
    return y[0]


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` -> ``[1, H, W]`` luma (ITU-R 601 weights as torchvision)."""
    r, g, b = GRAY_WEIGHTS
    return (r * x[0] + g * x[1] + b * x[2])[None]


def _blend(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * a + (1.0 - factor) * b).clamp(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` RGB -> HSV, hue in [0, 1)."""
    r, g, b = x[0], x[1], x[2]
    maxc, _ = x.max(dim=0)
    minc, _ = x.min(dim=0)
    delta = maxc - minc
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    s = torch.where(flat, torch.zeros_like(s), s)
    h = torch.where(maxc == r, (g - b) / safe,
                    torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(flat, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack((h, s, maxc))


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` HSV (hue in [0, 1)) -> RGB."""
    h, s, v = x[0], x[1], x[2]
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    table = torch.stack([torch.stack(c) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))])
    return table.gather(1, i[None, None].expand(3, 1, *i.shape))[:, 0]    # [3, H, W]


def color_jitter(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """Brightness, contrast, saturation and hue in ``p.order``, each clamped to [0, 1]."""
    for op in p.order:
        if op == 0:
            x = _blend(x, torch.zeros_like(x), p.brightness)
        elif op == 1:
            x = _blend(x, grayscale(x).mean().expand_as(x), p.contrast)
        elif op == 2:
            x = _blend(x, grayscale(x).expand_as(x), p.saturation)
        else:
            hsv = rgb_to_hsv(x)
            hsv = torch.stack((torch.remainder(hsv[0] + p.hue, 1.0), hsv[1], hsv[2]))
            x = hsv_to_rgb(hsv)
    return x


def apply(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """One view: ``[3, H, W]`` float -> augmented ``[3, H, W]`` float (see the module docstring)."""
    y = gaussian_blur(x, p.sigma)
    if p.jitter:
        y = color_jitter(y, p)
    if p.gray:
        y = grayscale(y).expand(3, -1, -1).contiguous()
    return y
