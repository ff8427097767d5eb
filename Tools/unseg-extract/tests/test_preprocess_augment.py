"""Resize / crop geometry, label nearest sampling, box mapping, and the photometric views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unseg_extract import augment, preprocess


def test_resized_shape_and_offsets_follow_torchvision_rules():
    assert preprocess.resized_shape(1024, 2048, 320) == (320, 640)       # Cityscapes
    assert preprocess.resized_shape(480, 640, 320) == (320, 426)         # int() truncates 426.67
    assert preprocess.resized_shape(640, 427, 320) == (479, 320)
    assert preprocess.resized_shape(200, 200, 320) == (320, 320)         # Potsdam tiles are upsampled
    g = preprocess.geometry(480, 640, 320)
    assert g.offset == (0, 53)                                           # round(106 / 2) = 53
    g = preprocess.geometry(481, 640, 320)                               # 425.9... -> 425, round(52.5) = 52
    assert g.resized == (320, 425) and g.offset == (0, 52)


def test_crop_image_identity_and_constant():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    crop, g = preprocess.crop_image(img, 64)
    np.testing.assert_array_equal(crop, img)
    wide = rng.integers(0, 256, (64, 100, 3), dtype=np.uint8)
    crop, g = preprocess.crop_image(wide, 64)
    np.testing.assert_array_equal(crop, wide[:, 18:82])                  # no resize, centre crop only
    const = np.full((97, 131, 3), 77, np.uint8)
    crop, _ = preprocess.crop_image(const, 48)
    assert crop.shape == (48, 48, 3) and (crop == 77).all()


def test_crop_image_antialiases_when_shrinking():
    # A one-pixel checkerboard shrunk 4x: antialiased bilinear averages to grey; plain bilinear would not.
    y, x = np.mgrid[0:128, 0:128]
    board = (((x + y) % 2) * 255).astype(np.uint8)
    crop, _ = preprocess.crop_image(np.stack([board] * 3, axis=2), 32)
    assert np.abs(crop.astype(int) - 128).max() <= 2


def test_crop_label_is_nearest_with_floor_sampling():
    lab = np.arange(40, dtype=np.uint8)[None, :].repeat(20, axis=0)      # 20 x 40, column index as id
    out = preprocess.crop_label(lab, 10)                                 # resize to 10 x 20, crop 10 x 10
    cols = np.floor(np.arange(20) * 40 / 20).astype(int)[5:15]           # torch 'nearest': floor(dst * in / out)
    np.testing.assert_array_equal(out, np.broadcast_to(cols.astype(np.uint8), (10, 10)))
    assert set(np.unique(out)) <= set(range(40))                         # no blending of ids


def test_box_mapping_through_resize_and_crop():
    g = preprocess.geometry(100, 200, 50)            # resized 50 x 100, crop columns 25..75
    assert g.map_box((0, 0, 200, 100)) == (0.0, 0.0, 50.0, 50.0)
    assert g.map_box((60, 10, 100, 30)) == (5.0, 5.0, 25.0, 15.0)
    assert g.map_box((0, 0, 40, 100)) is None        # entirely in the cut-off left part
    assert g.map_box((40, 0, 60, 100)) == (0.0, 0.0, 5.0, 50.0)


def test_normalize_imagenet():
    x = torch.ones(1, 3, 2, 2)
    y = preprocess.normalize(x)
    want = [(1 - m) / s for m, s in zip(preprocess.IMAGENET_MEAN, preprocess.IMAGENET_STD)]
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor(want))


def test_view_draws_are_seeded_per_image_and_view():
    a = augment.draw(0, 5, 1)
    assert a == augment.draw(0, 5, 1)
    assert a != augment.draw(0, 5, 0) and a != augment.draw(0, 6, 1) and a != augment.draw(1, 5, 1)
    assert 0.1 <= a.sigma <= 2.0 and sorted(a.order) == [0, 1, 2, 3]


def test_view_probabilities_match_the_reference():
    # Reference: colour branch p = 0.5, jitter 0.3 within it (0.15), grayscale 0.1 in the other (0.05).
    n = 20000
    draws = [augment.draw(7, i, 0) for i in range(n)]
    color = sum(d.color_branch for d in draws) / n
    jitter = sum(d.jitter for d in draws) / n
    gray = sum(d.gray for d in draws) / n
    assert not any(d.jitter and d.gray for d in draws)
    for got, p in ((color, 0.5), (jitter, 0.15), (gray, 0.05)):
        assert abs(got - p) < 4 * (p * (1 - p) / n) ** 0.5, (got, p)
    sig = np.array([d.sigma for d in draws])
    assert sig.min() >= 0.1 and sig.max() <= 2.0 and abs(sig.mean() - 1.05) < 0.02
    hue = np.array([d.hue for d in draws])
    assert hue.min() >= -0.1 and hue.max() <= 0.1
    b = np.array([d.brightness for d in draws])
    assert b.min() >= 0.9 and b.max() <= 1.1


def test_blur_keeps_constants_and_mean_and_smooths():
    x = torch.full((3, 32, 32), 0.25)
    torch.testing.assert_close(augment.gaussian_blur(x, 1.5), x)
    imp = torch.zeros(3, 41, 41)
    imp[:, 20, 20] = 1.0
    y = augment.gaussian_blur(imp, 1.0)
    assert abs(float(y[0].sum()) - 1.0) < 1e-5
    # Separable Gaussian of sigma 1: ratio of neighbours exp(-1/2).
    assert float(y[0, 20, 21] / y[0, 20, 20]) == pytest.approx(np.exp(-0.5), rel=1e-4)


def test_grayscale_and_hsv_roundtrip_and_identity_jitter():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 16, 16, generator=g)
    gray = augment.grayscale(x)
    torch.testing.assert_close(gray[0], 0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2])
    torch.testing.assert_close(augment.hsv_to_rgb(augment.rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    p = augment.ViewParams(1.0, True, True, False, (3, 0, 2, 1), 1.0, 1.0, 1.0, 0.0)
    torch.testing.assert_close(augment.color_jitter(x, p), x, atol=1e-5, rtol=0)
    # Hue shift of 1/3 turns pure red into pure green.
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    p = augment.ViewParams(1.0, True, True, False, (3,), 1.0, 1.0, 1.0, 1 / 3)
    torch.testing.assert_close(augment.color_jitter(red, p)[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5,
                               rtol=0)
    # Brightness clamps like torchvision's.
    p = augment.ViewParams(1.0, True, True, False, (0,), 1.1, 1.0, 1.0, 0.0)
    assert float(augment.color_jitter(torch.ones(3, 2, 2), p).max()) == 1.0


def test_apply_gray_view_has_equal_channels():
    x = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(1))
    p = augment.ViewParams(0.5, False, False, True, (0, 1, 2, 3), 1, 1, 1, 0)
    y = augment.apply(x, p)
    assert torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])
