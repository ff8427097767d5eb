"""End to end: a fake Cityscapes folder -> unseg-extract (random-weight ViT-S/8) -> unseg propose ->
unseg fit (a tiny recipe derived from Recipes/demo.yaml) -> unseg predict -> unseg evaluate."""

from __future__ import annotations

import json
import re

from conftest import REPO, make_cityscapes, run_sub, run_unseg, unseg_bin

# Smaller settings for a 12-image store; keys of either recipe layout (flat or per stage) that exist.
TINY = {"pca_sample_images": "8", "sample_images": "8", "warmup_epochs": "2", "epochs": "2", "batch_size": "4",
        "checkpoint_every": "4", "momentum_every": "1"}


def tiny_recipe(path):
    """Recipes/demo.yaml of the repository the unseg binary was built from, with the TINY values."""
    src = REPO / "Recipes" / "demo.yaml"
    for d in unseg_bin().absolute().parents:                        # <repo>/.build/release/unseg
        if (d / "Package.swift").is_file() and (d / "Recipes" / "demo.yaml").is_file():
            src = d / "Recipes" / "demo.yaml"
            break
    text = src.read_text()
    done = 0
    for key, value in TINY.items():
        text, n = re.subn(rf"(?m)^(\s*){key}:.*$", rf"\g<1>{key}: {value}", text)
        done += n
    assert re.search(r"(?m)^batch_size: 4$", text) and done >= 4, f"{src} has not the expected keys"
    text = re.sub(r'(?m)^name:.*$', 'name: "e2e-tiny"', text)
    path.write_text(text)
    return path


def _runner(cwd):
    """``unseg(*args)``: runs the binary in ``cwd`` and fails the test on a non-zero exit."""
    def unseg(*args):
        r = run_unseg(*args, cwd=cwd)
        assert r.returncode == 0, f"unseg {args[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r
    return unseg


def test_extract_propose_fit_predict_evaluate(tmp_path, vits8_ckpt):
    ids = list(range(7, 34)) + [0, 3]                                 # all 27 classes and some void
    make_cityscapes(tmp_path / "cs", "train", 12, ids=ids, block=16)
    make_cityscapes(tmp_path / "cs", "val", 4, ids=ids, block=16)
    stores = {}
    for split in ("train", "val"):
        out = tmp_path / f"{split}.h5"
        r = run_sub(["cityscapes", "--root", tmp_path / "cs", "--split", split, "--backbone", "dino_vits8",
                     "--checkpoint", vits8_ckpt, "--out", out, "--size", 64, "--batch-size", 4, "--quiet"])
        assert r.returncode == 0, r.stderr
        stores[split] = out

    unseg = _runner(tmp_path)
    unseg("propose", "--store", stores["train"], "--out", tmp_path / "train-proposals.h5", "--threads", 2)
    recipe = tiny_recipe(tmp_path / "tiny.yaml")
    unseg("fit", "--recipe", recipe, "--store", stores["train"], "--proposals", tmp_path / "train-proposals.h5",
          "--checkpoint", tmp_path / "ckpt.h5", "--threads", 2)
    unseg("predict", "--checkpoint", tmp_path / "ckpt.h5", "--store", stores["val"], "--out", tmp_path / "pred.h5",
          "--threads", 2)
    r = unseg("evaluate", "--store", stores["val"], "--predictions", tmp_path / "pred.h5", "--json",
              tmp_path / "metrics.json")
    text = r.stdout
    assert re.search(r"(?m)^mIoU +\d+\.\d+", text) and re.search(r"(?m)^Acc +\d+\.\d+", text), text
    assert "road" in text and "bicycle" in text, text                # the store's cityscapes27 class names
    m = json.loads((tmp_path / "metrics.json").read_text())
    import h5py
    with h5py.File(stores["val"], "r") as f:
        valid = int((f["labels"][:] != 255).sum())
    assert m["pixels"] == valid and 0.0 <= m["miou"] <= 100.0, m     # unseg read our labels as class ids


def test_peer_head_extract_propose_fit_from_the_peer_test(tmp_path, vits8_ckpt):
    """--head stego: extract (code + backbone features + cluster probe) -> propose (masks from the
    backbone) -> fit from the peer's cluster probe -> test (the peer's row beside PriMaPs-EM's).
    With zero EM epochs, unseg predict equals STEGO's cluster probe applied by hand in torch
    (bilinear upsampling of the code as STEGO's eval does, cosine to the centroids, argmax)."""
    import h5py
    import numpy as np
    import torch
    from test_heads import write_stego_ckpt

    ids = list(range(7, 34)) + [0, 3]
    make_cityscapes(tmp_path / "cs", "train", 12, ids=ids, block=16)
    make_cityscapes(tmp_path / "cs", "val", 4, ids=ids, block=16)
    head = tmp_path / "cityscapes_vit_small_1.ckpt"
    write_stego_ckpt(head, d=384, dim=32, k=27, seed=11)
    stores = {}
    for split in ("train", "val"):
        out = tmp_path / f"{split}.h5"
        r = run_sub(["cityscapes", "--root", tmp_path / "cs", "--split", split, "--backbone", "dino_vits8",
                     "--checkpoint", vits8_ckpt, "--head", f"stego:{head}", "--out", out, "--size", 64,
                     "--batch-size", 4, "--quiet"])
        assert r.returncode == 0, r.stderr
        stores[split] = out

    unseg = _runner(tmp_path)
    r = unseg("propose", "--store", stores["train"], "--out", tmp_path / "props.h5", "--threads", 2)
    assert "/features_backbone" in r.stdout, r.stdout
    src = (REPO / "Recipes" / "cityscapes27-stego_dino_vitb8.yaml").read_text()
    for key, value in {"batch_size": "4", "checkpoint_every": "4", "momentum_every": "1", "epochs": "2"}.items():
        src = re.sub(rf"(?m)^(\s*){key}:.*$", rf"\g<1>{key}: {value}", src)
    recipe = tmp_path / "peer.yaml"
    recipe.write_text(src)
    unseg("fit", "--recipe", recipe, "--store", stores["train"], "--proposals", tmp_path / "props.h5",
          "--init-from-peer", stores["train"], "--checkpoint", tmp_path / "ck.h5", "--threads", 2)
    r = unseg("test", "--checkpoint", tmp_path / "ck.h5", "--store", stores["val"], "--threads", 2,
              "--json", tmp_path / "test.json")
    assert "peer's cluster probe" in r.stdout and "momentum (theta_m)" in r.stdout, r.stdout
    rows = json.loads((tmp_path / "test.json").read_text())["rows"]
    assert [x["prototypes"] for x in rows][:1] == ["peer"], rows

    # Zero EM epochs: the prototypes are the peer's probe; predictions equal it applied by hand.
    recipe.write_text(re.sub(r"(?m)^(\s*)epochs:.*$", r"\g<1>epochs: 0", src))
    unseg("fit", "--recipe", recipe, "--store", stores["train"], "--init-from-peer", stores["train"],
          "--checkpoint", tmp_path / "ck0.h5", "--threads", 2)
    unseg("predict", "--checkpoint", tmp_path / "ck0.h5", "--store", stores["val"], "--out", tmp_path / "p0.h5",
          "--threads", 2)
    with h5py.File(stores["val"], "r") as f, h5py.File(tmp_path / "p0.h5", "r") as p:
        code = torch.from_numpy(f["features"][:].astype(np.float32)).permute(0, 3, 1, 2)
        up = torch.nn.functional.interpolate(code, size=f["labels"].shape[1:], mode="bilinear", align_corners=False)
        k = torch.nn.functional.normalize(torch.from_numpy(f["peer_clusters"][:]), dim=1)
        probe = torch.einsum("bchw,nc->bnhw", torch.nn.functional.normalize(up, dim=1), k).argmax(1).numpy()
        got = p["predictions"][:]
    same = (got == probe).mean()
    assert same >= 0.999, f"unseg predict agrees with STEGO's probe on {same:.4%} of the pixels"
