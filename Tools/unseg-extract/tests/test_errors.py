"""Bad inputs: a clear one-paragraph error naming the file and what to do, a non-zero exit, and no
output or temporary file left behind (inputs untouched)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from conftest import listing, make_cityscapes, make_cocostuff, make_potsdam, official_state_dict, run_main, save_png


def _args(ckpt, out, backbone="dino_vits8", size=64):
    return ["--backbone", backbone, "--checkpoint", ckpt, "--out", out, "--size", size, "--quiet"]


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _fails(tmp_path, capsys, argv, code, *needles):
    before = listing(tmp_path)
    got, out, err = run_main(argv, capsys)
    assert got == code, (got, err)
    for n in needles:
        assert str(n) in err, (n, err)
    assert listing(tmp_path) == before, "an error left files behind"
    return err


def test_missing_folders(tmp_path, vits8_ckpt, capsys):
    out = tmp_path / "o.h5"
    err = _fails(tmp_path, capsys, ["cityscapes", "--root", tmp_path / "nowhere", *_args(vits8_ckpt, out)], 1,
                 tmp_path / "nowhere", "dataset root folder not found", "leftImg8bit/{split}")
    assert err.count("\n") == 1                                          # one paragraph
    make_cityscapes(tmp_path / "cs", "train", 1)
    _fails(tmp_path, capsys, ["cityscapes", "--root", tmp_path / "cs", "--split", "val", *_args(vits8_ckpt, out)], 1,
           tmp_path / "cs" / "leftImg8bit" / "val", "split 'val'")
    make_cocostuff(tmp_path / "coco", "val", 1)
    (tmp_path / "coco" / "curated" / "val2017" / "Coco164kFull_Stuff_Coarse_7.txt").unlink()
    _fails(tmp_path, capsys, ["cocostuff", "--root", tmp_path / "coco", "--split", "val", *_args(vits8_ckpt, out)], 1,
           "Coco164kFull_Stuff_Coarse_7.txt", "image list not found", "--list")
    make_potsdam(tmp_path / "pd")
    (tmp_path / "pd" / "gt" / "0.mat").unlink()
    _fails(tmp_path, capsys, ["potsdam", "--root", tmp_path / "pd", *_args(vits8_ckpt, out)], 1,
           "1 of 3 gt .mat file(s) are missing", "0.mat")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "pd", *_args(vits8_ckpt, out)], 1, "holds no images")


def test_unknown_dataset_and_bad_options_are_usage_errors(tmp_path, vits8_ckpt, capsys):
    out = tmp_path / "o.h5"
    _fails(tmp_path, capsys, ["imagenet", "--root", tmp_path, *_args(vits8_ckpt, out)], 64,
           "invalid choice: 'imagenet'", "cityscapes")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path, *_args(vits8_ckpt, out, backbone="vit_huge")], 64,
           "--backbone")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path, "--size", "x", *_args(vits8_ckpt, out)[:-3]], 64, "--size")


def test_size_must_be_a_multiple_of_the_patch(tmp_path, vits8_ckpt, v2s14_ckpt, capsys):
    save_png(tmp_path / "img" / "a.png", np.zeros((64, 64, 3), np.uint8))
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, tmp_path / "o.h5", size=60)], 1,
           "--size 60 is not a multiple of the patch size 8", "--size 56 or --size 64")
    # DINOv2 at 320: refused (the official model asserts), 322 suggested.
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img",
                              *_args(v2s14_ckpt, tmp_path / "o.h5", backbone="dinov2_vits14", size=320)], 1,
           "DINOv2 refuses", "--size 308 or --size 322")


def test_checkpoint_missing_wrong_keys_wrong_size(tmp_path, vits8_ckpt, capsys):
    save_png(tmp_path / "img" / "a.png", np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "o.h5"
    root = ["folder", "--root", tmp_path / "img"]
    _fails(tmp_path, capsys, [*root, *_args(tmp_path / "w.pth", out)], 1, tmp_path / "w.pth", "not found",
           "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
           "never downloads")
    sd = official_state_dict("dino_vits16")
    sd["blocks.3.attn.qkv.w"] = sd.pop("blocks.3.attn.qkv.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(sd, bad)
    _fails(tmp_path, capsys, [*root, *_args(bad, out, backbone="dino_vits16")], 1, bad,
           "key layout of the official dino_vits16", "blocks.3.attn.qkv.weight", "blocks.3.attn.qkv.w")
    bad.unlink()
    _fails(tmp_path, capsys, [*root, *_args(vits8_ckpt, out, backbone="dino_vits16")], 1, vits8_ckpt,
           "patch_embed.proj.weight [384, 3, 8, 8] (needs [384, 3, 16, 16])",
           "pos_embed [1, 785, 384] (needs [1, 197, 384])", "--backbone dino_vits8")


def test_label_id_outside_protocol_leaves_nothing(tmp_path, vits8_ckpt, capsys):
    make_cityscapes(tmp_path / "cs", "val", 5)
    lab = tmp_path / "cs" / "gtFine" / "val" / "bremen" / "bremen_000003_000019_gtFine_labelIds.png"
    a = np.zeros((64, 128), np.uint8)
    a[:, 64:] = 40
    save_png(lab, a)
    argv = ["cityscapes", "--root", tmp_path / "cs", "--split", "val", "--batch-size", 2,
            *_args(vits8_ckpt, tmp_path / "o.h5")]
    _fails(tmp_path, capsys, argv, 1, lab, "label id(s) 40 outside the cityscapes27 protocol",
           "labelIds 0..33")
    # The same for COCO-Stuff (an id past 181) and Potsdam (an id past 5).
    make_cocostuff(tmp_path / "coco", "val", 1, ids=[3, 200])
    _fails(tmp_path, capsys, ["cocostuff", "--root", tmp_path / "coco", "--split", "val",
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "200", "cocostuff27")
    from scipy.io import savemat
    make_potsdam(tmp_path / "pd")
    savemat(tmp_path / "pd" / "gt" / "1.mat", {"gt": np.full((64, 64), 6, np.uint8)})
    _fails(tmp_path, capsys, ["potsdam", "--root", tmp_path / "pd", *_args(vits8_ckpt, tmp_path / "o.h5")], 1,
           "1.mat", "label id(s) 6 outside the potsdam3")
    # Folder class ids beyond --classes.
    save_png(tmp_path / "fi" / "a.png", np.zeros((64, 64, 3), np.uint8))
    save_png(tmp_path / "fl" / "a.png", np.full((64, 64), 7, np.uint8))
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "fi", "--labels", tmp_path / "fl", "--classes", 5,
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "label id(s) 7 outside the generic5")


def test_label_files_that_are_not_id_maps(tmp_path, vits8_ckpt, capsys):
    save_png(tmp_path / "fi" / "a.png", np.zeros((64, 64, 3), np.uint8))
    save_png(tmp_path / "fl" / "a.png", np.zeros((64, 64, 3), np.uint8))              # an RGB "label"
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "fi", "--labels", tmp_path / "fl", "--classes", 5,
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, tmp_path / "fl" / "a.png", "RGB image")
    save_png(tmp_path / "fl" / "a.png", np.zeros((32, 64), np.uint8))
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "fi", "--labels", tmp_path / "fl", "--classes", 5,
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "is 64x32 but its image a.png is 64x64")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "fi", "--labels", tmp_path / "fl",
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "--classes N")
    (tmp_path / "fl" / "a.png").unlink()
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "fi", "--labels", tmp_path / "fl", "--classes", 5,
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "1 of 1 label PNG file(s) are missing")
    _fails(tmp_path, capsys, ["cityscapes", "--root", tmp_path / "fi", "--classes", 5,
                              *_args(vits8_ckpt, tmp_path / "o.h5")], 1, "--classes only apply to the folder dataset")


def test_output_equal_to_an_input_is_refused(tmp_path, vits8_ckpt, capsys):
    save_png(tmp_path / "img" / "a.png", np.zeros((64, 64, 3), np.uint8))
    save_png(tmp_path / "img" / "b.png", np.zeros((64, 64, 3), np.uint8))
    before = _sha(vits8_ckpt)
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, vits8_ckpt),
                              "--overwrite"], 1, "like an input file")
    img = tmp_path / "img" / "a.png"
    b0 = _sha(img)
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, img), "--overwrite"], 1)
    lst = tmp_path / "list.h5"
    lst.write_text("a 0 0 1 1\n")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", "--boxes", lst, *_args(vits8_ckpt, lst),
                              "--overwrite"], 1, "is an input of this extraction")
    assert _sha(vits8_ckpt) == before and _sha(img) == b0
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, tmp_path / "img")], 1,
           "is a folder")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, tmp_path / "no" / "o.h5")], 1,
           "folder does not exist")


def test_existing_output_needs_overwrite(tmp_path, vits8_ckpt, capsys):
    save_png(tmp_path / "img" / "a.png", np.full((64, 64, 3), 9, np.uint8))
    out = tmp_path / "o.h5"
    out.write_bytes(b"old")
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, out)], 1, "exists",
           "--overwrite")
    assert out.read_bytes() == b"old"
    code, _, err = run_main(["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, out), "--overwrite"], capsys)
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


@pytest.mark.parametrize("opt,msg", [(["--half"], "--half is autocast"), (["--views", "-1"], "--views must be"),
                                     (["--batch-size", "0"], "--batch-size must be"),
                                     (["--device", "cuda:0"], "no CUDA device")])
def test_bad_option_values(tmp_path, vits8_ckpt, capsys, opt, msg):
    if opt[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    save_png(tmp_path / "img" / "a.png", np.zeros((64, 64, 3), np.uint8))
    _fails(tmp_path, capsys, ["folder", "--root", tmp_path / "img", *_args(vits8_ckpt, tmp_path / "o.h5"), *opt], 1,
           msg)


def test_help_has_examples(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    assert "examples:" in out and "unseg-extract cityscapes --root" in out and "--resume" in out
