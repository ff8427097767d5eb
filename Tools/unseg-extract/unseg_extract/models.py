"""The six backbones: DINO ViT-S/8, ViT-B/8, ViT-S/16, ViT-B/16 and DINOv2 ViT-S/14, ViT-B/14.

This is the project's own model code; it reproduces the architectures that the official hub entry
points build (facebookresearch/dino ``vision_transformer.py`` at 7c446df, facebookresearch/dinov2
``dinov2/models/vision_transformer.py`` and ``dinov2/layers`` at b8931f7), with the same parameter
names, so the published checkpoints load with ``strict=True``:

- patch embedding ``patch_embed.proj`` (Conv2d, kernel = stride = patch), ``cls_token`` [1, 1, D],
  ``pos_embed`` [1, 1 + M*M, D] (M = 28 for DINO /8, 14 for DINO /16, 37 for DINOv2 /14);
- ``blocks.i``: ``norm1``, ``attn.qkv`` (with bias), ``attn.proj``, ``norm2``, ``mlp.fc1``,
  ``mlp.fc2`` (GELU, ratio 4); DINOv2 adds LayerScale ``ls1.gamma`` / ``ls2.gamma`` and has a
  ``mask_token`` [1, D] (unused at inference, present in the published state dict);
- final ``norm``; every LayerNorm has eps 1e-6. DINO checkpoints: 150 keys; DINOv2: 175.

Features (what PriMaPs and STEGO use): the last block's tokens after the final norm, CLS dropped,
as ``[B, h, w, D]`` with ``h = H // patch``, ``w = W // patch``.

Position embeddings at other input sizes, as both official codes do it: bicubic interpolation of
the M x M grid with ``scale_factor = ((h + 0.1) / M, (w + 0.1) / M)`` (a scale factor, not an output
size: it sets the sampling positions), ``align_corners=False``, no antialiasing; the native grid
with a square input is used as is. Input sides: DINO drops leftover pixels of a side that is not a
multiple of the patch (its Conv2d does); DINOv2 refuses such a side (``PatchEmbed`` asserts), and
so does this code for the DINOv2 family. The extractor itself only accepts crop sizes that are
multiples of the patch, so the stored images always cover exactly the feature grid.

Attention uses ``torch.nn.functional.scaled_dot_product_attention`` (DINOv2's own attention does;
DINO's explicit softmax(QK^T / sqrt(d)) V is the same function, up to float rounding).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExtractError


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: architecture, native position grid, where its official checkpoint is published."""

    name: str
    family: str          # "dino" or "dinov2"
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    native_grid: int     # M: side of the checkpoint's position-embedding grid
    checkpoint_url: str
    default_size: int    # default crop side for the extractor (a multiple of patch_size)

    @property
    def checkpoint_file(self) -> str:
        return self.checkpoint_url.rsplit("/", 1)[-1]

    @property
    def publisher(self) -> str:
        return "facebookresearch/dino" if self.family == "dino" else "facebookresearch/dinov2"


_DINO = "https://dl.fbaipublicfiles.com/dino"
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2"

BACKBONES = {
    s.name: s for s in (
        BackboneSpec("dino_vits8", "dino", 8, 384, 12, 6, 28,
                     f"{_DINO}/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth", 320),
        BackboneSpec("dino_vitb8", "dino", 8, 768, 12, 12, 28,
                     f"{_DINO}/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth", 320),
        BackboneSpec("dino_vits16", "dino", 16, 384, 12, 6, 14,
                     f"{_DINO}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth", 320),
        BackboneSpec("dino_vitb16", "dino", 16, 768, 12, 12, 14,
                     f"{_DINO}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth", 320),
        BackboneSpec("dinov2_vits14", "dinov2", 14, 384, 12, 6, 37,
                     f"{_DINOV2}/dinov2_vits14/dinov2_vits14_pretrain.pth", 322),
        BackboneSpec("dinov2_vitb14", "dinov2", 14, 768, 12, 12, 37,
                     f"{_DINOV2}/dinov2_vitb14/dinov2_vitb14_pretrain.pth", 322),
    )
}

LAYER_NORM_EPS = 1e-6
POS_INTERP_OFFSET = 0.1


class PatchEmbed(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, (H//p)*(W//p), D]`` by a p x p convolution with stride p."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, ``[B, N, D]`` -> ``[B, N, D]``; qkv with bias, scale ``d**-0.5``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])    # [B, heads, N, d/heads]
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc1`` (D -> 4D), GELU (exact erf form), ``fc2`` (4D -> D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale ``gamma`` [D] (DINOv2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, layer_scale: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """A DINO or DINOv2 ViT backbone; ``forward`` gives the patch features ``[B, h, w, D]``."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.spec = spec
        d, m = spec.embed_dim, spec.native_grid
        self.patch_embed = PatchEmbed(spec.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + m * m, d))
        if spec.family == "dinov2":
            self.mask_token = nn.Parameter(torch.zeros(1, d))
        self.blocks = nn.ModuleList(
            Block(d, spec.num_heads, layer_scale=spec.family == "dinov2") for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)

    def grid_size(self, height: int, width: int) -> tuple:
        """Feature grid ``(h, w)`` for an input of ``height x width`` pixels (checks DINOv2's rule)."""
        p = self.spec.patch_size
        if self.spec.family == "dinov2" and (height % p or width % p):
            raise ValueError(f"{self.spec.name}: input {height}x{width} is not a multiple of the patch size "
                             f"{p}; DINOv2 refuses it (use e.g. {height // p * p} or {(height // p + 1) * p})")
        return height // p, width // p

    def interpolate_pos_encoding(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """Position embeddings ``[1, 1 + h*w, D]`` for an ``h x w`` grid (see the module docstring)."""
        m = self.spec.native_grid
        pos = self.pos_embed
        if h * w == m * m and h == w:
            return pos if self.spec.family == "dino" else pos.to(dtype)
        pos = pos.float()
        patch_pos = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)            # [1, D, M, M]
        patch_pos = F.interpolate(patch_pos, mode="bicubic", align_corners=False, antialias=False,
                                  scale_factor=((h + POS_INTERP_OFFSET) / m, (w + POS_INTERP_OFFSET) / m))
        if patch_pos.shape[-2:] != (h, w):
            raise AssertionError(f"position grid interpolated to {tuple(patch_pos.shape[-2:])}, expected {(h, w)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        out = torch.cat((pos[:, :1], patch_pos), dim=1)
        # DINO keeps the float32 parameter dtype; DINOv2 casts back to the tokens' dtype.
        return out if self.spec.family == "dino" else out.to(dtype)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised RGB -> all tokens after the final norm ``[B, 1 + h*w, D]``."""
        b, _, height, width = x.shape
        h, w = self.grid_size(height, width)
        t = self.patch_embed(x)                                                     # [B, h*w, D]
        # Under autocast the patch tokens are float16 and the float32 CLS token promotes the
        # concatenation to float32, as in both official codes: the residual stream stays float32.
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + self.interpolate_pos_encoding(h, w, t.dtype)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised RGB -> patch features ``[B, h, w, D]`` (CLS dropped)."""
        b, _, height, width = x.shape
        h, w = self.grid_size(height, width)
        return self.forward_tokens(x)[:, 1:].reshape(b, h, w, -1)


def build(name: str) -> VisionTransformer:
    """An untrained model of backbone ``name`` (see ``BACKBONES``), in eval mode."""
    return VisionTransformer(BACKBONES[name]).eval()


def flops_per_image(spec: BackboneSpec, height: int, width: int) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass at ``height x width``.

    Counts the matrix products: patch embedding, per block qkv (3ND^2), QK^T and AV (2N^2 D),
    projection (ND^2) and MLP (8ND^2), with N = 1 + h*w tokens; norms, softmax and GELU are
    left out (a few percent).
    """
    h, w = height // spec.patch_size, width // spec.patch_size
    n, d = 1 + h * w, spec.embed_dim
    patch = h * w * d * 3 * spec.patch_size ** 2
    block = 3 * n * d * d + 2 * n * n * d + n * d * d + 8 * n * d * d
    return 2.0 * (patch + spec.depth * block)


def guess_backbone(state: dict):
    """The backbone whose official key layout and shapes ``state`` has, or None."""
    try:
        d = state["cls_token"].shape[-1]
        p = state["patch_embed.proj.weight"].shape[-1]
        grid = round(math.sqrt(state["pos_embed"].shape[1] - 1))
    except (KeyError, AttributeError, IndexError, TypeError):
        return None
    family = "dinov2" if "blocks.0.ls1.gamma" in state else "dino"
    for s in BACKBONES.values():
        if (s.family, s.embed_dim, s.patch_size, s.native_grid) == (family, d, p, grid):
            return s.name
    return None


def _where_to_get(spec: BackboneSpec) -> str:
    return (f"the official {spec.name} checkpoint is {spec.checkpoint_file}, published by {spec.publisher} at "
            f"{spec.checkpoint_url}; download it once on a machine with network access and pass its path with "
            f"--checkpoint (unseg-extract never downloads anything)")


def load_state_dict(spec: BackboneSpec, path) -> dict:
    """Reads an official checkpoint file: a plain state dict of the backbone (no head, no wrapper).

    Errors (ExtractError naming the file): missing file (says where the official file is
    published), not a PyTorch file, a training checkpoint instead of the backbone weights.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExtractError(f"checkpoint file not found; {_where_to_get(spec)}", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExtractError(f"cannot be read as a PyTorch checkpoint ({first}); {_where_to_get(spec)}", path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        wrapped = [k for k in ("teacher", "student", "model", "state_dict") if isinstance(state, dict) and k in state]
        hint = (f"it is a training checkpoint (keys {', '.join(wrapped)}), not the published backbone weights; "
                if wrapped else "it is not a plain state dict of tensors; ")
        raise ExtractError(hint + _where_to_get(spec), path)
    return state


def load_backbone(name: str, path) -> VisionTransformer:
    """Builds backbone ``name`` and loads the checkpoint at ``path`` with ``strict=True``.

    Returns the model in eval mode, float32, on the CPU. Errors (ExtractError naming the file):
    see ``load_state_dict``; keys that differ from the official layout (lists some, says which
    backbone the file looks like); a tensor of the wrong shape (a checkpoint of another size).
    """
    spec = BACKBONES[name]
    state = load_state_dict(spec, path)
    model = VisionTransformer(spec)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    looks = guess_backbone(state)
    looks_note = (f"; it looks like a {looks} checkpoint: pass --backbone {looks}" if looks and looks != name else "")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        if any(k.startswith("register_tokens") for k in unexpected):
            parts.append("DINOv2 with registers is not supported")
        if any(k.startswith("module.") or k.startswith("backbone.") for k in unexpected):
            parts.append("keys carry a 'module.'/'backbone.' prefix: this is a training checkpoint")
        raise ExtractError(f"does not have the key layout of the official {name} checkpoint ({len(want)} keys): "
                           f"{'; '.join(parts)}{looks_note}. {_where_to_get(spec)[0].upper()}{_where_to_get(spec)[1:]}",
                           path)
    wrong = [f"{k} {list(state[k].shape)} (needs {list(v.shape)})" for k, v in want.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ExtractError(f"has the key layout of {name} but {len(wrong)} tensor(s) of other shapes: "
                           f"{'; '.join(wrong[:3])}: a checkpoint of another backbone size{looks_note}. "
                           f"{_where_to_get(spec)[0].upper()}{_where_to_get(spec)[1:]}", path)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
