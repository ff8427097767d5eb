"""``--crops C``: zoomed-in crop views (issue 24, first step). The stored crop features are
checked against the backbone applied by hand to the box of the stored image, resized with
torch's bilinear interpolation; boxes are seeded per (seed, image, crop) and lie inside the image."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import listing, make_cityscapes, run_sub

from unseg_extract import crops, models, preprocess
from unseg_extract.errors import ExtractError


def test_boxes_are_seeded_inside_the_image_and_at_least_a_patch():
    seen = set()
    for i in range(30):
        for c in range(3):
            b = crops.draw(7, i, c, 64, 8, (0.05, 0.9))
            assert 0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 64
            assert b.x1 - b.x0 == b.y1 - b.y0 >= 8, b
            assert crops.draw(7, i, c, 64, 8, (0.05, 0.9)) == b, "a pure function of (seed, image, crop)"
            seen.add((b.x0, b.y0, b.x1 - b.x0))
    assert len(seen) > 60, "crops vary"
    assert crops.draw(7, 0, 0, 64, 8, (0.5, 0.5)).x1 - crops.draw(7, 0, 0, 64, 8, (0.5, 0.5)).x0 == 32
    assert crops.draw(8, 0, 0, 64, 8, (0.05, 0.9)) != crops.draw(7, 0, 0, 64, 8, (0.05, 0.9))


@pytest.mark.parametrize("text", ["0", "0.6,0.5", "1.2", "a,b", "0.1,0.2,0.3", "-0.5,0.5"])
def test_bad_crop_scales_are_named(text):
    with pytest.raises(ExtractError) as e:
        crops.parse_scale(text)
    assert "--crop-scale takes MIN,MAX" in str(e.value)


def test_crop_features_are_the_backbone_on_the_zoomed_box(tmp_path, vits8_ckpt):
    make_cityscapes(tmp_path / "cs", "train", 3, ids=list(range(7, 34)), block=16)
    out = tmp_path / "c.h5"
    r = run_sub(["cityscapes", "--root", tmp_path / "cs", "--backbone", "dino_vits8", "--checkpoint", vits8_ckpt,
                 "--out", out, "--size", 64, "--batch-size", 2, "--quiet", "--dtype", "float32", "--crops", 3,
                 "--crop-scale", "0.3,1.0", "--seed", 4])
    assert r.returncode == 0, r.stderr
    assert "features_crops [3, 3, 8, 8, 384]" in r.stdout, r.stdout
    model = models.load_backbone("dino_vits8", vits8_ckpt)
    with h5py.File(out, "r") as f:
        assert f["features_crops"].shape == (3, 3, 8, 8, 384) and f["crop_boxes"].shape == (3, 3, 4)
        assert f.attrs["crops_seed"] == 4 and f.attrs["crop_scale"] == "0.3,1.0"
        for i in range(3):
            unit = preprocess.to_unit(f["images"][i:i + 1])[0]
            for c in range(3):
                x0, y0, x1, y1 = (int(v) for v in f["crop_boxes"][c, i])
                assert (x0, y0, x1, y1) == tuple(vars(crops.draw(4, i, c, 64, 8, (0.3, 1.0))).values())
                part = unit[:, y0:y1, x0:x1][None]
                zoomed = torch.nn.functional.interpolate(part, size=(64, 64), mode="bilinear", align_corners=False)
                with torch.inference_mode():
                    want = model(preprocess.normalize(zoomed)).numpy()[0]
                got = f["features_crops"][c, i]
                assert np.abs(got - want).max() <= 1e-4, (i, c, np.abs(got - want).max())


def test_bad_crop_options_write_nothing(tmp_path, vits8_ckpt):
    make_cityscapes(tmp_path / "cs", "train", 2)
    before = listing(tmp_path)
    for extra, expect in ((["--crops", "-1"], "--crops must be in 0...64"),
                          (["--crops", "2", "--crop-scale", "0.9,0.2"], "--crop-scale takes MIN,MAX")):
        r = run_sub(["cityscapes", "--root", tmp_path / "cs", "--backbone", "dino_vits8", "--checkpoint", vits8_ckpt,
                     "--out", tmp_path / "o.h5", "--size", 64, "--quiet", *extra])
        assert r.returncode == 1 and expect in r.stderr, r.stderr
    assert listing(tmp_path) == before


def test_unseg_reads_the_crops_fits_with_them_and_refuses_bad_boxes(tmp_path, vits8_ckpt):
    """The extractor's crops through the unseg binary: inspect counts them, a fit with the
    consistency term reads them; a box moved outside the image, or shrunk under a patch, is
    refused naming /crop_boxes, the crop and the image, and the damaged store is left as it was."""
    from test_end_to_end import tiny_recipe
    from conftest import run_unseg
    make_cityscapes(tmp_path / "cs", "train", 8, ids=list(range(7, 34)), block=16)
    out = tmp_path / "c.h5"
    r = run_sub(["cityscapes", "--root", tmp_path / "cs", "--backbone", "dino_vits8", "--checkpoint", vits8_ckpt,
                 "--out", out, "--size", 64, "--batch-size", 4, "--quiet", "--crops", 2])
    assert r.returncode == 0, r.stderr
    r = run_unseg("inspect", out)
    assert r.returncode == 0 and "crop views: 2" in r.stdout, r.stdout + r.stderr
    recipe = tiny_recipe(tmp_path / "tiny.yaml")
    recipe.write_text(recipe.read_text().replace("primaps-em:\n", "primaps-em:\n  consistency_weight: 1\n", 1))
    r = run_unseg("fit", "--recipe", recipe, "--store", out, "--checkpoint", tmp_path / "ck.h5", "--threads", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "M-step consistency: weight 1.0" in r.stdout + r.stderr, r.stdout + r.stderr
    for name, box, needle in (("outside", [40, 8, 72, 40], "outside the 64x64 image"),
                              ("small", [8, 8, 12, 40], "a side under one patch")):
        bad = tmp_path / f"bad-{name}.h5"
        bad.write_bytes(out.read_bytes())
        with h5py.File(bad, "r+") as f:
            f["crop_boxes"][1, 5] = np.array(box, np.float32)
        before = bad.read_bytes()
        for args in (("inspect", bad), ("fit", "--recipe", recipe, "--store", bad, "--checkpoint", tmp_path / f"ck-{name}.h5")):
            r = run_unseg(*args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert "/crop_boxes" in r.stderr and "crop 1 of image 5" in r.stderr and needle in r.stderr, r.stderr
        assert bad.read_bytes() == before and not (tmp_path / f"ck-{name}.h5").exists()
