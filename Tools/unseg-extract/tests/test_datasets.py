"""Each dataset layout end to end through the command: the images, crops and sizes stored, every raw
id of each protocol mapped to the right class, the store's attributes, and `unseg inspect` accepting
the store."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import (inspect_store, make_cityscapes, make_cocostuff, make_potsdam, render, run_main, save_png)

from unseg_extract import protocols

# The spec's COCO-Stuff table (shared/specs/evaluation.md), written out independently of the package.
COCO_TABLE = """
0 71-76
1 77-82
2 51-60
3 61-70
4 83-90
5 43-50
6 25-32
7 15-24
8 9-14
9 0
10 33-42
11 1-8
12 101-102
13 100,113-117
14 120-121,152,169
15 97,106-107,109,111,122,129,132,155,160,164
16 99,131,138,142
17 91-92,103-104,108,130,136,140,151,166-167
18 170-176
19 179-180
20 94-95,127,150,157,165
21 110,124-125,135,139,143-144,146,148,153,158
22 93,96,118,123,128,133,141,162,168
23 105,156
24 126,134,149,159,161,181
25 98,112,137,145,163
26 119,147,154,177-178
"""


def coco_expected() -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    seen = []
    for line in COCO_TABLE.strip().splitlines():
        coarse, ranges = line.split()
        for r in ranges.split(","):
            a, _, b = r.partition("-")
            for fine in range(int(a), int(b or a) + 1):
                lut[fine] = int(coarse)
                seen.append(fine)
    assert sorted(seen) == list(range(182))          # each fine id exactly once
    return lut


def test_protocol_tables_match_the_spec():
    np.testing.assert_array_equal(protocols.COCOSTUFF27.lut, coco_expected())
    cs = np.full(256, 255, np.uint8)
    cs[7:34] = np.arange(27)
    np.testing.assert_array_equal(protocols.CITYSCAPES27.lut, cs)
    pd = np.full(256, 255, np.uint8)
    pd[[0, 4]], pd[[1, 5]], pd[[2, 3]] = 0, 1, 2
    np.testing.assert_array_equal(protocols.POTSDAM3.lut, pd)
    assert len(protocols.CITYSCAPES27.class_names) == 27 and protocols.CITYSCAPES27.class_names[0] == "road"
    assert protocols.COCOSTUFF27.class_names[9] == "person" and len(protocols.COCOSTUFF27.class_names) == 27
    assert protocols.POTSDAM3.class_names == ("road/car", "building/clutter", "vegetation")


def _common(ckpt, out, size=64):
    return ["--backbone", "dino_vits8", "--checkpoint", ckpt, "--out", out, "--size", size, "--quiet",
            "--batch-size", 3]


def _check_store(path, n, size, grid, channels=384):
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "unseg.feature-store" and f.attrs["version"] == 1
        assert f.attrs["patch_size"] == size // grid
        assert f["features"].shape == (n, grid, grid, channels) and f["features"].dtype == np.float16
        assert f["features"].chunks == (1, grid, grid, channels)
        assert f["images"].shape == (n, size, size, 3) and f["images"].chunks == (1, size, size, 3)
        assert f["names"].shape == (n,)
        assert np.isfinite(f["features"][:].astype(np.float32)).all()
    r = inspect_store(path)
    assert r.returncode == 0, r.stderr
    assert f"{n} images, {grid}x{grid} cells x {channels} channels" in r.stdout


def test_cityscapes_every_labelid_mapped(tmp_path, vits8_ckpt, capsys):
    raws = make_cityscapes(tmp_path / "cs", "val", 3, ids=list(range(34)) + [255])
    make_cityscapes(tmp_path / "cs", "train", 1)                       # another split is not picked up
    out = tmp_path / "val.h5"
    code, stdout, err = run_main(["cityscapes", "--root", tmp_path / "cs", "--split", "val",
                                  *_common(vits8_ckpt, out)], capsys)
    assert code == 0, err
    assert "wrote" in stdout and "3 images" in stdout
    _check_store(out, 3, 64, 8)
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert (a["backbone"], a["dataset"], a["split"], a["protocol"], a["label_ids"]) == \
               ("dino_vits8", "cityscapes", "val", "cityscapes27", "class")
        assert list(a["class_names"]) == list(protocols.CITYSCAPES27.class_names)
        names = [n.decode() for n in f["names"][:]]
        assert names == sorted(raws)                                    # sorted, suffix stripped
        seen = set()
        for i, name in enumerate(names):
            raw = raws[name][:, 32:96]                                  # 64 x 128 -> no resize, centre crop
            want = np.where((raw >= 7) & (raw <= 33), raw.astype(int) - 7, 255)
            np.testing.assert_array_equal(f["labels"][i], want)
            seen |= set(np.unique(raw).tolist())
        assert seen == set(range(34)) | {255}                           # every raw id went through


def test_cityscapes_resize_crop_sizes(tmp_path, vits8_ckpt, capsys):
    make_cityscapes(tmp_path / "cs", "train", 2, h=96, w=192)
    out = tmp_path / "t.h5"
    code, _, err = run_main(["cityscapes", "--root", tmp_path / "cs", *_common(vits8_ckpt, out, size=48)], capsys)
    assert code == 0, err
    _check_store(out, 2, 48, 6)
    with h5py.File(out, "r") as f:
        assert f.attrs["split"] == "train" and f.attrs["crop_size"] == 48
        # 96 x 192 -> 48 x 96 (nearest: every second pixel), crop columns 24..72.
        name = f["names"][0].decode()
        from PIL import Image
        raw = np.array(Image.open(tmp_path / "cs" / "gtFine" / "train" / name.split("_")[0] /
                                  f"{name}_gtFine_labelIds.png"))
        r = raw[::2, ::2][:, 24:72]
        np.testing.assert_array_equal(f["labels"][0], np.where((r >= 7) & (r <= 33), r.astype(int) - 7, 255))


def test_cocostuff_curated_list_and_fine_to_coarse(tmp_path, vits8_ckpt, capsys):
    raws = make_cocostuff(tmp_path / "coco", "val", 3)
    out = tmp_path / "coco.h5"
    code, _, err = run_main(["cocostuff", "--root", tmp_path / "coco", "--split", "val",
                             *_common(vits8_ckpt, out)], capsys)
    assert code == 0, err
    _check_store(out, 3, 64, 8)
    lut = coco_expected()
    with h5py.File(out, "r") as f:
        assert f.attrs["protocol"] == "cocostuff27" and f.attrs["dataset"] == "cocostuff"
        names = [n.decode() for n in f["names"][:]]
        assert names == sorted(raws)                                    # the unlisted image is left out
        seen = set()
        for i, name in enumerate(names):
            np.testing.assert_array_equal(f["labels"][i], lut[raws[name]])
            seen |= set(np.unique(raws[name]).tolist())
        assert seen == set(range(182)) | {255}


def test_cocostuff_list_option(tmp_path, vits8_ckpt, capsys):
    make_cocostuff(tmp_path / "coco", "train", 3, extra=0)
    lst = tmp_path / "mine.txt"
    lst.write_text("000000000002.jpg\n\n000000000000\n")
    out = tmp_path / "c.h5"
    code, _, err = run_main(["cocostuff", "--root", tmp_path / "coco", "--list", lst, *_common(vits8_ckpt, out)],
                            capsys)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert [n.decode() for n in f["names"][:]] == ["000000000000", "000000000002"]


def test_potsdam_mat_files_and_splits(tmp_path, vits8_ckpt, capsys):
    raws = make_potsdam(tmp_path / "pd")
    out = tmp_path / "pd.h5"
    code, _, err = run_main(["potsdam", "--root", tmp_path / "pd", "--split", "val", *_common(vits8_ckpt, out)],
                            capsys)
    assert code == 0, err
    _check_store(out, 2, 64, 8)
    lut = np.full(256, 255, np.uint8)
    lut[[0, 4]], lut[[1, 5]], lut[[2, 3]] = 0, 1, 2
    with h5py.File(out, "r") as f:
        assert f.attrs["protocol"] == "potsdam3"
        names = [n.decode() for n in f["names"][:]]
        assert names == ["3", "4"]                                       # labelled_test.txt
        for i, name in enumerate(names):
            np.testing.assert_array_equal(f["labels"][i], lut[raws[name]])
            np.testing.assert_array_equal(f["images"][i], render(raws[name], seed=int(name)))   # RGB of RGBIR
    out2 = tmp_path / "pd-u.h5"
    code, _, err = run_main(["potsdam", "--root", tmp_path / "pd", "--split", "unlabelled_train",
                             *_common(vits8_ckpt, out2)], capsys)
    assert code == 0, err
    with h5py.File(out2, "r") as f:
        assert "labels" not in f and "protocol" not in f.attrs and f["features"].shape[0] == 2


def test_folder_class_ids_raw_ids_masks(tmp_path, vits8_ckpt, capsys):
    imgs, labs, masks = tmp_path / "img", tmp_path / "lab", tmp_path / "mask"
    rng = np.random.default_rng(4)
    raw = {}
    for i in range(3):
        lab = rng.integers(0, 5, (64, 64)).astype(np.uint8)
        lab[:4] = 255
        raw[f"p{i}"] = lab
        save_png(imgs / f"p{i}.png", render(lab, i))
        save_png(labs / f"p{i}.png", lab)
        m = np.zeros((64, 64), np.uint8)
        m[10:40, 20:50] = 255
        m[40, 20] = 100                                                   # below the threshold: background
        save_png(masks / f"p{i}.png", m)
    out = tmp_path / "cls.h5"
    code, _, err = run_main(["folder", "--root", imgs, "--labels", labs, "--classes", 5, "--name", "toy",
                             *_common(vits8_ckpt, out)], capsys)
    assert code == 0, err
    _check_store(out, 3, 64, 8)
    with h5py.File(out, "r") as f:
        assert (f.attrs["dataset"], f.attrs["protocol"], f.attrs["split"]) == ("toy", "generic5", "all")
        np.testing.assert_array_equal(f["labels"][1], raw["p1"])
    # The same PNGs as raw potsdam ids: 0..4 -> 0,1,2,2,0.
    out = tmp_path / "raw.h5"
    code, _, err = run_main(["folder", "--root", imgs, "--labels", labs, "--protocol", "potsdam3",
                             *_common(vits8_ckpt, out)], capsys)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert f.attrs["protocol"] == "potsdam3"
        np.testing.assert_array_equal(f["labels"][2], protocols.POTSDAM3.lut[raw["p2"]])
    # Binary masks (saliency).
    out = tmp_path / "sal.h5"
    code, _, err = run_main(["folder", "--root", imgs, "--masks", masks, *_common(vits8_ckpt, out)], capsys)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert f.attrs["protocol"] == "generic2" and list(f.attrs["class_names"]) == ["background", "foreground"]
        lab = f["labels"][0]
        assert lab.sum() == 30 * 30 and lab[10:40, 20:50].all() and set(np.unique(lab)) == {0, 1}


def test_folder_boxes_text_and_voc(tmp_path, vits8_ckpt, capsys):
    imgs = tmp_path / "img"
    for stem, (h, w) in {"a": (64, 128), "b": (128, 64), "c": (64, 64)}.items():
        save_png(imgs / f"{stem}.jpg", np.zeros((h, w, 3), np.uint8))
    box = tmp_path / "boxes.txt"
    box.write_text("# stem x0 y0 x1 y1\n"
                   "a 40 0 80 32\n"            # a: 64 x 128, crop columns 32..96 -> (8, 0, 48, 32)
                   "a 0 0 20 64\n"             # entirely cut off -> dropped
                   "b 0 100 64 128\n"          # b: crop rows 32..96 -> (0, 64, 64, 64): empty -> dropped
                   "b 0 10.5 64 60\n"          # -> (0, 0, 64, 28)
                   "\n"
                   "c 1 2 3 4\n")
    out = tmp_path / "boxes.h5"
    code, _, err = run_main(["folder", "--root", imgs, "--boxes", box, *_common(vits8_ckpt, out, size=32)], capsys)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert f["boxes"].dtype == np.float32
        # a: 64 x 128 -> 32 x 64, crop columns 16..48; b: 128 x 64 -> 64 x 32, rows 16..48; c: halved.
        np.testing.assert_allclose(f["boxes"][:], [[0, 4, 0, 24, 16], [1, 0, 0, 32, 14], [2, 0.5, 1, 1.5, 2]])
    # VOC XML: 1-based inclusive corners.
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "c.xml").write_text("<annotation><object><name>x</name><bndbox><xmin>11</xmin><ymin>21</ymin>"
                               "<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>")
    out = tmp_path / "voc.h5"
    code, _, err = run_main(["folder", "--root", imgs, "--voc-annotations", ann, *_common(vits8_ckpt, out, size=64)],
                            capsys)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["boxes"][:], [[2, 10, 20, 30, 40]])
    r = inspect_store(out)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("line,msg", [("zz 0 0 1 1", "not in the dataset"), ("c 0 0 1", "5 fields"),
                                      ("c 5 0 1 1", "empty or inverted"), ("c a b c d", "not numbers")])
def test_bad_box_lines(tmp_path, vits8_ckpt, capsys, line, msg):
    imgs = tmp_path / "img"
    save_png(imgs / "c.png", np.zeros((64, 64, 3), np.uint8))
    box = tmp_path / "boxes.txt"
    box.write_text("c 1 1 2 2\n" + line + "\n")
    code, _, err = run_main(["folder", "--root", imgs, "--boxes", box, *_common(vits8_ckpt, tmp_path / "o.h5")],
                            capsys)
    assert code == 1 and msg in err and f"{box}:2" in err
    assert not (tmp_path / "o.h5").exists()


def test_other_backbones_and_the_dinov2_default_size(tmp_path, vits16_ckpt, v2s14_ckpt, capsys):
    save_png(tmp_path / "img" / "a.png", render(np.zeros((100, 150), np.uint8), 1))
    save_png(tmp_path / "img" / "b.png", render(np.ones((150, 100), np.uint8), 2))
    runs = {"s16.h5": ("dino_vits16", vits16_ckpt, ["--size", 64], 64, 4),
            "v2.h5": ("dinov2_vits14", v2s14_ckpt, [], 322, 23)}          # no --size: 322 = 23 x 14
    for out, (bb, ck, size, side, grid) in runs.items():
        code, _, err = run_main(["folder", "--root", tmp_path / "img", "--backbone", bb, "--checkpoint", ck,
                                 "--out", tmp_path / out, "--quiet", *size], capsys)
        assert code == 0, err
        _check_store(tmp_path / out, 2, side, grid)
        with h5py.File(tmp_path / out, "r") as f:
            assert f.attrs["backbone"] == bb and f.attrs["crop_size"] == side
