"""``unseg-extract --head stego:F`` / ``hp:F``: the store holds the peer's code as /features, the
backbone's features as /features_backbone and the peer's cluster probe as /peer_clusters.

The code is checked against the peer's modules re-stated in test_heads.py, applied by hand to the
backbone features of a plain extraction of the same images (float32, <= 1e-5)."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch
from conftest import listing, make_cityscapes, run_sub
from test_heads import write_hp_ckpt, write_stego_ckpt


def _extract(tmp_path, ckpt, out, *extra):
    return run_sub(["cityscapes", "--root", tmp_path / "cs", "--split", "train", "--backbone", "dino_vits8",
                    "--checkpoint", ckpt, "--out", out, "--size", 64, "--batch-size", 3, "--quiet",
                    "--dtype", "float32", *extra])


@pytest.fixture(scope="module")
def plain(tmp_path_factory, vits8_ckpt):
    tmp = tmp_path_factory.mktemp("peer")
    make_cityscapes(tmp / "cs", "train", 5, ids=list(range(7, 34)), block=16)
    r = _extract(tmp, vits8_ckpt, tmp / "plain.h5", "--flip")
    assert r.returncode == 0, r.stderr
    return tmp


@pytest.mark.parametrize("method", ["stego", "hp"])
def test_code_in_the_store_equals_the_peers_modules(plain, vits8_ckpt, method):
    tmp = plain
    ck = tmp / f"{method}.ckpt"
    # The peer's own copy of the backbone is the official checkpoint's (conftest writes it with seed 8).
    ref, _ = (write_stego_ckpt(ck, dim=40, seed=3, backbone_seed=8) if method == "stego"
              else write_hp_ckpt(ck, dim=48, seed=4, backbone_seed=8))
    out = tmp / f"{method}.h5"
    r = _extract(tmp, vits8_ckpt, out, "--head", f"{method}:{ck}", "--flip")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr
    assert "features_backbone" in r.stdout and "peer_clusters" in r.stdout, r.stdout
    ref.eval()
    with h5py.File(tmp / "plain.h5", "r") as p, h5py.File(out, "r") as f:
        dim = 40 if method == "stego" else 48
        assert f["features"].shape == (5, 8, 8, dim) and f["features_backbone"].shape == (5, 8, 8, 384)
        np.testing.assert_array_equal(f["features_backbone"][:], p["features"][:])
        for name in ("features", "features_flipped"):
            want = ref(torch.from_numpy(p[name][:]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
            assert np.abs(f[name][:] - want).max() <= 1e-5, (name, np.abs(f[name][:] - want).max())
        assert f.attrs["backbone"] == f"{method}+dino_vits8" and f.attrs["head"] == method
        sha = hashlib.sha256(ck.read_bytes()).hexdigest()
        assert f.attrs["head_checkpoint_sha256"] == sha and f["peer_clusters"].attrs["head_checkpoint_sha256"] == sha
        assert f.attrs["mask_features"] == "features_backbone"
        assert f["peer_clusters"].shape == (27, dim) and f["peer_clusters"].dtype == np.float32
        np.testing.assert_array_equal(f["images"][:], p["images"][:])
        np.testing.assert_array_equal(f["labels"][:], p["labels"][:])


def test_a_head_trained_on_other_backbone_weights_is_named(plain, vits8_ckpt):
    ck = plain / "stego-other-weights.ckpt"
    write_stego_ckpt(ck, dim=16, seed=5, backbone_seed=9)     # not the seed-8 weights of --checkpoint
    r = _extract(plain, vits8_ckpt, plain / "other-weights.h5", "--head", f"stego:{ck}")
    assert r.returncode == 0, r.stderr
    assert "warning: the backbone weights saved in" in r.stderr and str(ck) in r.stderr, r.stderr


@pytest.mark.parametrize("case", ["missing", "other-method", "width", "patch", "truncated", "syntax"])
def test_bad_heads_write_nothing(plain, vits8_ckpt, case):
    tmp = plain / f"bad-{case}"
    tmp.mkdir()
    ck = tmp / "head.ckpt"
    spec, expect = f"stego:{ck}", None
    if case == "missing":
        expect = "head checkpoint not found"
    elif case == "other-method":
        write_hp_ckpt(ck, dim=16)
        expect = "an HP checkpoint (net_model_state_dict): pass it as --head hp:PATH"
    elif case == "width":
        write_stego_ckpt(ck, d=768, dim=16, backbone="dino_vitb8")
        expect = "768-wide features"
    elif case == "patch":
        write_stego_ckpt(ck, dim=16, backbone="dino_vits16")   # 384 wide like ViT-S/8, 16x16 patches
        expect = "16x16 patches"
    elif case == "truncated":
        write_stego_ckpt(ck, dim=16)
        ck.write_bytes(ck.read_bytes()[:5000])
        expect = "cannot be read as a PyTorch checkpoint"
    else:
        spec, expect = f"stego={ck}", "--head takes METHOD:PATH"
    before = listing(tmp)
    r = run_sub(["cityscapes", "--root", plain / "cs", "--split", "train", "--backbone", "dino_vits8", "--checkpoint",
                 vits8_ckpt, "--out", tmp / "out.h5", "--size", 64, "--quiet", "--head", spec])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert expect in r.stderr, r.stderr
    if case != "syntax":
        assert str(ck) in r.stderr, r.stderr
    assert listing(tmp) == before, "nothing written, the input untouched"


def test_the_head_file_is_never_the_output(plain, vits8_ckpt):
    ck = plain / "head-as-out.h5"              # a head checkpoint named like a store
    write_stego_ckpt(ck, dim=16)
    before = ck.read_bytes()
    r = _extract(plain, vits8_ckpt, ck, "--head", f"stego:{ck}", "--overwrite")
    assert r.returncode == 1 and "is an input of this extraction" in r.stderr and str(ck) in r.stderr, r.stderr
    assert ck.read_bytes() == before
