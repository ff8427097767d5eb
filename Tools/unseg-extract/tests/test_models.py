"""The model code against the official architectures: key layout (strict loading), token counts and
shapes at 224 / 320 / 448, the position-embedding interpolation (+0.1 offset, bicubic), the block
arithmetic (against a plain re-derivation), and the checkpoint errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ARCH, official_shapes, official_state_dict

from unseg_extract import models
from unseg_extract.errors import ExtractError

SIZES = (224, 320, 448)


@pytest.mark.parametrize("name", list(ARCH))
def test_official_layout_loads_strict_and_token_shapes(name):
    family, p, d, depth, grid = ARCH[name]
    sd = official_state_dict(name, seed=1)
    assert len(sd) == (150 if family == "dino" else 175)
    model = models.build(name)
    model.load_state_dict(sd, strict=True)                       # raises on any missing / unexpected key
    assert model.pos_embed.shape == (1, 1 + grid * grid, d)
    # Position embeddings for each size, computed for real on the loaded weights.
    for s in SIZES:
        if family == "dinov2" and s % p:
            continue
        pos = model.interpolate_pos_encoding(s // p, s // p, torch.float32)
        assert pos.shape == (1, 1 + (s // p) ** 2, d)
    # Token counts and feature shapes of the whole network (shapes only: meta tensors).
    meta = model.to("meta")
    for s in SIZES:
        x = torch.empty(2, 3, s, s, device="meta")
        if family == "dinov2" and s % p:                          # 320 is not a multiple of 14
            with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
                meta(x)
            continue
        g = s // p
        assert meta.forward_tokens(x).shape == (2, 1 + g * g, d)
        assert meta(x).shape == (2, g, g, d)
    if family == "dinov2":
        assert meta(torch.empty(1, 3, 322, 322, device="meta")).shape == (1, 23, 23, d)


def _bicubic_weights(t: float, a: float = -0.75) -> np.ndarray:
    def k(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0
    return np.array([k(t + 1), k(t), k(1 - t), k(2 - t)])


def _resample_axis(a: np.ndarray, out: int, scale: float, axis: int) -> np.ndarray:
    """Bicubic (Keys, a = -0.75) along ``axis``: source position ``(i + 0.5) * scale - 0.5``, borders clamped."""
    a = np.moveaxis(a, axis, 0)
    m = a.shape[0]
    res = np.zeros((out,) + a.shape[1:])
    for i in range(out):
        src = (i + 0.5) * scale - 0.5
        f = math.floor(src)
        w = _bicubic_weights(src - f)
        for j, wj in zip(range(f - 1, f + 3), w):
            res[i] += wj * a[min(max(j, 0), m - 1)]
    return np.moveaxis(res, 0, axis)


@pytest.mark.parametrize("name,cells", [("dino_vits8", 40), ("dino_vits16", 20), ("dinov2_vits14", 23),
                                        ("dinov2_vits14", 32)])
def test_position_interpolation_uses_the_offset_scale_factor(name, cells):
    torch.manual_seed(3)
    spec = models.BACKBONES[name]
    model = models.VisionTransformer(spec)
    m, d = spec.native_grid, spec.embed_dim
    with torch.no_grad():
        model.pos_embed.normal_()
    got = model.interpolate_pos_encoding(cells, cells, torch.float32)[0].detach().numpy()
    grid = model.pos_embed[0, 1:].detach().numpy().reshape(m, m, d).astype(np.float64)
    # The official codes pass scale_factor = (cells + 0.1) / M: sampling step M / (cells + 0.1).
    step = m / (cells + 0.1)
    want = _resample_axis(_resample_axis(grid, cells, step, 0), cells, step, 1).reshape(cells * cells, d)
    np.testing.assert_allclose(got[1:], want, atol=2e-5, rtol=0)
    np.testing.assert_array_equal(got[0], model.pos_embed[0, 0].detach().numpy())     # CLS untouched
    # An output-size interpolation (step M / cells) is measurably different: the test can tell.
    plain = _resample_axis(_resample_axis(grid, cells, m / cells, 0), cells, m / cells, 1).reshape(-1, d)
    assert np.abs(plain - want).max() > 1e-2


def _reference_forward(sd: dict, spec, x: np.ndarray) -> np.ndarray:
    """Plain float64 numpy forward of the official block arithmetic, native-size input only."""
    p, d, heads = spec.patch_size, spec.embed_dim, spec.num_heads
    g = {k: v.double().numpy() for k, v in sd.items()}
    b, _, hgt, wid = x.shape
    h, w = hgt // p, wid // p
    patches = x.reshape(b, 3, h, p, w, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, h * w, 3 * p * p)
    t = patches @ g["patch_embed.proj.weight"].reshape(d, -1).T + g["patch_embed.proj.bias"]
    t = np.concatenate([np.broadcast_to(g["cls_token"], (b, 1, d)), t], axis=1) + g["pos_embed"]

    def ln(v, pre):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * g[pre + ".weight"] + g[pre + ".bias"]

    from scipy.special import erf
    for i in range(spec.depth):
        pre = f"blocks.{i}."
        y = ln(t, pre + "norm1")
        qkv = y @ g[pre + "attn.qkv.weight"].T + g[pre + "attn.qkv.bias"]
        n = qkv.shape[1]
        qkv = qkv.reshape(b, n, 3, heads, d // heads).transpose(2, 0, 3, 1, 4)
        att = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * (d // heads) ** -0.5
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, n, d)
        y = y @ g[pre + "attn.proj.weight"].T + g[pre + "attn.proj.bias"]
        t = t + (y * g[pre + "ls1.gamma"] if spec.family == "dinov2" else y)
        y = ln(t, pre + "norm2") @ g[pre + "mlp.fc1.weight"].T + g[pre + "mlp.fc1.bias"]
        y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
        y = y @ g[pre + "mlp.fc2.weight"].T + g[pre + "mlp.fc2.bias"]
        t = t + (y * g[pre + "ls2.gamma"] if spec.family == "dinov2" else y)
    return ln(t, "norm")[:, 1:].reshape(b, h, w, d)


@pytest.mark.parametrize("family", ["dino", "dinov2"])
def test_block_arithmetic_matches_a_plain_rederivation(family):
    # A narrow, shallow model of each family (same code path, small numbers) at its native size.
    spec = models.BackboneSpec("tiny", family, 4, 32, 2, 4, 3, "file:///tiny.pth", 12)
    model = models.VisionTransformer(spec).eval().double()       # float64: differences of 1e-6 show
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.empty(prm.shape, dtype=torch.float64).normal_(0, 0.5, generator=gen))
    x = torch.empty(2, 3, 12, 12, dtype=torch.float64).normal_(generator=gen)
    with torch.no_grad():
        got = model(x).numpy()
    want = _reference_forward(model.state_dict(), spec, x.numpy())
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=1e-9)
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))


def test_dino_drops_leftover_pixels_dinov2_refuses(vits8_ckpt):
    model = models.load_backbone("dino_vits8", vits8_ckpt)
    x = torch.empty(1, 3, 70, 69).normal_(generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model(x)
        b = model(x[:, :, :64, :64].contiguous())
    assert a.shape == (1, 8, 8, 384)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    v2 = models.VisionTransformer(models.BACKBONES["dinov2_vits14"])
    with pytest.raises(ValueError, match="DINOv2 refuses"):
        v2(torch.zeros(1, 3, 70, 71))


def test_load_backbone_file_roundtrip(vits8_ckpt):
    model = models.load_backbone("dino_vits8", vits8_ckpt)
    sd = torch.load(vits8_ckpt, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_checkpoint_errors(tmp_path, vits8_ckpt):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ExtractError) as e:
        models.load_backbone("dino_vits16", missing)
    assert "not found" in str(e.value) and "dino_deitsmall16_pretrain.pth" in str(e.value)
    assert "https://" in str(e.value) and str(missing) in str(e.value)
    # The dino_vits8 file for dino_vits16: same keys, other shapes.
    with pytest.raises(ExtractError) as e:
        models.load_backbone("dino_vits16", vits8_ckpt)
    assert "other shapes" in str(e.value) and "looks like a dino_vits8" in str(e.value)
    # Renamed keys (a training checkpoint's prefix).
    sd = {"backbone." + k: v for k, v in official_state_dict("dino_vits16").items()}
    bad = tmp_path / "prefixed.pth"
    torch.save(sd, bad)
    with pytest.raises(ExtractError) as e:
        models.load_backbone("dino_vits16", bad)
    assert "key layout" in str(e.value) and "150 missing" in str(e.value) and "prefix" in str(e.value)
    # A DINOv2 file given for a DINO backbone.
    v2 = tmp_path / "v2.pth"
    torch.save({k: torch.zeros(s) for k, s in official_shapes("dinov2_vits14").items()}, v2)
    with pytest.raises(ExtractError) as e:
        models.load_backbone("dino_vits16", v2)
    assert "unexpected key" in str(e.value) and "looks like a dinov2_vits14" in str(e.value)
    # A training checkpoint wrapper, and a file that is not a checkpoint.
    wrapped = tmp_path / "full.pth"
    torch.save({"teacher": {"x": torch.zeros(1)}, "epoch": 3}, wrapped)
    with pytest.raises(ExtractError, match="training checkpoint"):
        models.load_backbone("dino_vits16", wrapped)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractError, match="cannot be read as a PyTorch checkpoint"):
        models.load_backbone("dino_vits16", junk)


def test_guess_backbone_on_every_layout():
    for name in ARCH:
        sd = {k: torch.zeros(s) if np.prod(s) < 5_000_000 else torch.zeros(1) for k, s in official_shapes(name).items()}
        for k in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
            sd[k] = torch.zeros(official_shapes(name)[k])
        assert models.guess_backbone(sd) == name


def test_flops_per_image():
    spec = models.BACKBONES["dino_vits8"]
    n, d = 1601, 384
    want = 2 * (1600 * 384 * 192 + 12 * (12 * n * d * d + 2 * n * n * d))
    assert models.flops_per_image(spec, 320, 320) == pytest.approx(want)
