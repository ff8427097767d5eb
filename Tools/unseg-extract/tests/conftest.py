"""Fixtures: tiny fake datasets in each layout, random-weight checkpoints in the official key layout,
and ways to run the command (in this process, or as a subprocess that can be killed).

The tests use the package in this source tree (not an installed copy). Everything is seeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

PKG_DIR = Path(__file__).resolve().parents[1]
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(PKG_DIR))

from unseg_extract import cli  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Architecture of each backbone as the official hub builds it (independent of unseg_extract.models).
ARCH = {
    "dino_vits8": ("dino", 8, 384, 12, 28),
    "dino_vitb8": ("dino", 8, 768, 12, 28),
    "dino_vits16": ("dino", 16, 384, 12, 14),
    "dino_vitb16": ("dino", 16, 768, 12, 14),
    "dinov2_vits14": ("dinov2", 14, 384, 12, 37),
    "dinov2_vitb14": ("dinov2", 14, 768, 12, 37),
}


def official_shapes(name: str) -> dict:
    """Key -> shape of the published checkpoint of ``name``, written out from the official code
    (facebookresearch/dino vision_transformer.py; facebookresearch/dinov2 with block_chunks=0)."""
    family, p, d, depth, grid = ARCH[name]
    s = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + grid * grid, d),
         "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,)}
    if family == "dinov2":
        s["mask_token"] = (1, d)
    for i in range(depth):
        b = f"blocks.{i}."
        s.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                  b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                  b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                  b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                  b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
                  b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,)})
        if family == "dinov2":
            s[b + "ls1.gamma"] = (d,)
            s[b + "ls2.gamma"] = (d,)
    s["norm.weight"] = (d,)
    s["norm.bias"] = (d,)
    return s


def official_state_dict(name: str, seed: int = 0) -> dict:
    """A random state dict in the official layout: weights ~ N(0, 0.02), norms 1 / 0, LayerScale 0.5."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in official_shapes(name).items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            t = torch.ones(shape)
        elif k.endswith(".bias") and "norm" in k:
            t = torch.zeros(shape)
        elif k.endswith("gamma"):
            t = torch.full(shape, 0.5)
        elif k == "mask_token":
            t = torch.zeros(shape)
        else:
            t = torch.empty(shape).normal_(0.0, 0.02, generator=g)
        out[k] = t
    return out


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def vits8_ckpt(ckpt_dir) -> Path:
    """A random dino_vits8 checkpoint file (real shapes, 150 keys)."""
    p = ckpt_dir / "dino_deitsmall8_pretrain.pth"
    torch.save(official_state_dict("dino_vits8", seed=8), p)
    return p


@pytest.fixture(scope="session")
def vits16_ckpt(ckpt_dir) -> Path:
    p = ckpt_dir / "dino_deitsmall16_pretrain.pth"
    torch.save(official_state_dict("dino_vits16", seed=16), p)
    return p


@pytest.fixture(scope="session")
def v2s14_ckpt(ckpt_dir) -> Path:
    p = ckpt_dir / "dinov2_vits14_pretrain.pth"
    torch.save(official_state_dict("dinov2_vits14", seed=14), p)
    return p


# ---------------------------------------------------------------------------------------------
# fake datasets


def _palette(i: int) -> np.ndarray:
    r = np.random.default_rng(1000 + i)
    return r.integers(0, 256, 3)


def render(label: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` uint8 whose colours follow ``label`` (one colour per id) plus noise."""
    rng = np.random.default_rng(seed)
    img = np.stack([_palette(int(v)) for v in range(256)])[label].astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def block_label(h: int, w: int, ids, block: int, offset: int = 0) -> np.ndarray:
    """``[h, w]`` uint8 of ``block x block`` tiles cycling through ``ids`` (starting at ``offset``)."""
    ids = list(ids)
    lab = np.zeros((h, w), np.uint8)
    k = offset
    for y in range(0, h, block):
        for x in range(0, w, block):
            lab[y:y + block, x:x + block] = ids[k % len(ids)]
            k += 1
    return lab


def save_png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def make_cityscapes(root: Path, split: str, n: int, h: int = 64, w: int = 128, ids=range(0, 34), block: int = 8):
    """``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` + ``gtFine/.../*_gtFine_labelIds.png``; returns the
    raw label maps by name."""
    raws = {}
    for i in range(n):
        city = ("aachen", "bremen")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        raw = block_label(h, w, ids, block, offset=i * 5)
        save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", render(raw, seed=i))
        save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
        raws[stem] = raw
    return raws


def make_cocostuff(root: Path, split: str, n: int, size: int = 64, ids=list(range(182)) + [255], extra=1):
    """``images/{split}2017/*.jpg``, ``annotations/{split}2017/*.png``, curated list of the first n images
    (``extra`` more images exist on disk but are not listed)."""
    sub = {"train": "train2017", "val": "val2017"}[split]
    raws, listed = {}, []
    for i in range(n + extra):
        stem = f"{i:012d}"
        raw = block_label(size, size, ids, 4, offset=i * 7)
        path = root / "images" / sub / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(raw, seed=i)).save(path, quality=95)
        save_png(root / "annotations" / sub / f"{stem}.png", raw)
        if i < n:
            listed.append(stem)
            raws[stem] = raw
    lst = root / "curated" / sub / "Coco164kFull_Stuff_Coarse_7.txt"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("".join(s + "\n" for s in reversed(listed)))
    return raws


def make_potsdam(root: Path, n_train: int = 3, n_test: int = 2, n_unlabelled: int = 2, size: int = 64):
    """``imgs/*.mat`` (img: [H, W, 4] uint8 RGBIR), ``gt/*.mat`` (gt: ids 0..5), the three split lists."""
    from scipy.io import savemat
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    raws = {}
    lists = {"labelled_train.txt": [], "labelled_test.txt": [], "unlabelled_train.txt": []}
    k = 0
    for fname, count, labelled in (("labelled_train.txt", n_train, True), ("labelled_test.txt", n_test, True),
                                   ("unlabelled_train.txt", n_unlabelled, False)):
        for _ in range(count):
            stem = f"{k}"
            raw = block_label(size, size, [0, 1, 2, 3, 4, 5, 255], 8, offset=k)
            rgb = render(raw, seed=k)
            ir = np.full((size, size, 1), 200, np.uint8)
            savemat(root / "imgs" / f"{stem}.mat", {"img": np.concatenate([rgb, ir], axis=2)})
            if labelled:
                savemat(root / "gt" / f"{stem}.mat", {"gt": raw})
                raws[stem] = raw
            lists[fname].append(stem)
            k += 1
    for fname, stems in lists.items():
        (root / fname).write_text("".join(s + "\n" for s in stems))
    return raws


# ---------------------------------------------------------------------------------------------
# running the command


def run_main(args, capsys=None):
    """Runs ``unseg-extract args`` in this process; returns (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:       # argparse usage errors and --help
        code = e.code
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_sub(args, **kw) -> subprocess.CompletedProcess:
    """Runs ``python -m unseg_extract args`` as a subprocess (text output captured)."""
    return subprocess.run([sys.executable, "-m", "unseg_extract", *[str(a) for a in args]], env=subprocess_env(),
                          capture_output=True, text=True, **kw)


def unseg_bin() -> Path:
    """The built unseg binary: $UNSEG_BIN, else <repo>/.build/release/unseg."""
    p = Path(os.environ.get("UNSEG_BIN", REPO / ".build" / "release" / "unseg"))
    if not p.is_file():
        pytest.fail(f"the unseg binary is not at {p}: build it (swift build -c release) or set UNSEG_BIN")
    return p


def run_unseg(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(unseg_bin()), *[str(a) for a in args]], capture_output=True, text=True, cwd=cwd)


def inspect_store(path: Path) -> subprocess.CompletedProcess:
    """``unseg inspect`` of a store, with whichever form the binary takes (``--store F`` or ``F``)."""
    helptext = run_unseg("help", "inspect").stdout
    return run_unseg("inspect", "--store", path) if "--store" in helptext else run_unseg("inspect", path)


def listing(folder: Path) -> list:
    """Every file under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
