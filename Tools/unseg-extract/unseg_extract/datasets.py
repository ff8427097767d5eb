"""Datasets in the layouts users already have on disk, giving images and label maps.

Every dataset is a list of samples (name, image file, label file or none) built and checked before
anything is written, plus readers: ``read_image`` -> ``[H, W, 3]`` uint8 RGB and ``read_label`` ->
``[H, W]`` uint8 raw ids; ``to_class_ids`` maps raw ids to the protocol's class ids (255 ignore)
and refuses ids the protocol does not know. Samples are sorted by name, so the order (and the
store's bytes) does not depend on the file system.

- ``cityscapes``: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
  ``gtFine/{split}/{city}/*_gtFine_labelIds.png`` -> cityscapes27.
- ``cocostuff``: ``images/{train2017,val2017}/*.jpg``, ``annotations/{...}/*.png`` (stuffthingmaps,
  fine ids 0..181, 255 ignore), the curated list ``curated/{...}/Coco164kFull_Stuff_Coarse_7.txt``
  (or a list file given with ``list_file``) -> cocostuff27.
- ``potsdam``: ``imgs/*.mat`` (key ``img``, RGB of RGBIR), ``gt/*.mat`` (key ``gt``, 0..5), split lists
  ``labelled_train.txt`` (train), ``labelled_test.txt`` (val), ``unlabelled_train.txt`` (no labels)
  -> potsdam3.
- ``folder``: any folder of images; optional label PNGs with the same stem (class ids, or raw ids of a
  protocol) or binary masks (saliency: 0 background, 1 foreground).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import protocols
from .errors import ExtractError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
DATASET_NAMES = ("cityscapes", "cocostuff", "potsdam", "folder")


@dataclass(frozen=True)
class Sample:
    """One image: its name in the store (``/names``), its image file and its label file (or None)."""

    name: str
    image: Path
    label: Path | None = None


@dataclass
class Dataset:
    """A list of samples and how to read them.

    ``protocol``: the label protocol (None: no labels). ``label_kind``: ``raw`` (ids of the dataset,
    mapped through ``protocol.lut``), ``class`` (class ids already), ``mask`` (binary masks, > 127 is
    foreground) or None. ``boxes``: name -> list of (x0, y0, x1, y1) in original-image pixel edges.
    """

    name: str
    split: str
    samples: list
    protocol: protocols.Protocol | None = None
    label_kind: str | None = None
    inputs: list = field(default_factory=list)
    boxes: dict | None = None

    @property
    def has_labels(self) -> bool:
        return self.label_kind is not None

    def read_image(self, s: Sample) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB of sample ``s``."""
        if s.image.suffix.lower() == ".mat":
            return _read_potsdam_image(s.image)
        try:
            with Image.open(s.image) as im:
                return np.array(im.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise ExtractError(f"cannot be read as an image ({e}); replace or remove the file", s.image) from None

    def read_label(self, s: Sample) -> np.ndarray:
        """``[H, W]`` uint8 raw ids (or 0/1 for masks) of sample ``s``."""
        if s.label is None:
            raise ValueError(f"sample {s.name} has no label")
        if s.label.suffix.lower() == ".mat":
            return _read_potsdam_label(s.label)
        try:
            with Image.open(s.label) as im:
                if self.label_kind == "mask":
                    return (np.array(im.convert("L"), dtype=np.uint8) > 127).astype(np.uint8)
                if im.mode not in ("L", "P", "1"):
                    raise ExtractError(
                        f"is a {im.mode} image; label files must be 8-bit single-channel PNGs of ids "
                        f"(mode L or P), not colour or 16-bit pictures; export the id maps, not the coloured ones",
                        s.label)
                return np.array(im, dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise ExtractError(f"cannot be read as a label image ({e}); replace the file", s.label) from None

    def to_class_ids(self, raw: np.ndarray, s: Sample) -> np.ndarray:
        """``[H, W]`` raw ids -> class ids (255 ignore); ExtractError naming the file for unknown ids."""
        if self.label_kind == "mask":
            return raw
        p = self.protocol
        bad = np.unique(raw[~p.valid_raw[raw]])
        if bad.size:
            ids = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            raise ExtractError(
                f"contains label id(s) {ids} outside the {p.name} protocol (expected {p.raw_description}); "
                f"check that the file belongs to this dataset and that the protocol / --label-ids is right",
                s.label)
        return p.lut[raw]


def _fail(msg, path=None):
    raise ExtractError(msg, path)


def _require_dir(path: Path, what: str, todo: str) -> None:
    if not path.is_dir():
        _fail(f"{what} folder not found; {todo}", path)


def _missing_check(samples, what: str, folder: Path, todo: str) -> None:
    missing = [s for s in samples if s.label is not None and not s.label.is_file()]
    if missing:
        ex = ", ".join(m.label.name for m in missing[:3])
        _fail(f"{len(missing)} of {len(samples)} {what} file(s) are missing (e.g. {ex}); {todo}", folder)


# ---------------------------------------------------------------------------------------------
# cityscapes


def cityscapes(root: Path, split: str, labels: bool = True) -> Dataset:
    """Cityscapes ``split`` (train, val, test, train_extra) under ``root``; labels -> cityscapes27."""
    root = Path(root)
    layout = ("expected leftImg8bit/{split}/{city}/*_leftImg8bit.png and gtFine/{split}/{city}/"
              "*_gtFine_labelIds.png under the root (leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip "
              "from cityscapes-dataset.com, unpacked into one folder)")
    _require_dir(root, "dataset root", layout)
    img_dir = root / "leftImg8bit" / split
    _require_dir(img_dir, f"image (split '{split}')", layout)
    gt_dir = root / "gtFine" / split
    if labels:
        _require_dir(gt_dir, f"label (split '{split}')", layout + "; or pass --no-labels to extract images only")
    samples = []
    for city in sorted(p for p in img_dir.iterdir() if p.is_dir()):
        for f in sorted(city.glob("*_leftImg8bit.png")):
            stem = f.name[: -len("_leftImg8bit.png")]
            lab = gt_dir / city.name / f"{stem}_gtFine_labelIds.png" if labels else None
            samples.append(Sample(stem, f, lab))
    if not samples:
        _fail(f"no *_leftImg8bit.png files in city folders; {layout}", img_dir)
    samples.sort(key=lambda s: s.name)
    if labels:
        _missing_check(samples, "*_gtFine_labelIds.png", gt_dir,
                       "unpack gtFine_trainvaltest.zip next to leftImg8bit, or pass --no-labels")
    return Dataset("cityscapes", split, samples, protocols.CITYSCAPES27 if labels else None,
                   "raw" if labels else None, [root])


# ---------------------------------------------------------------------------------------------
# cocostuff

COCO_LIST = "Coco164kFull_Stuff_Coarse_7.txt"
COCO_SPLITS = {"train": "train2017", "val": "val2017"}


def cocostuff(root: Path, split: str, list_file: Path | None = None, labels: bool = True) -> Dataset:
    """COCO-Stuff ``split`` (train, val) under ``root``, curated list; labels -> cocostuff27."""
    root = Path(root)
    layout = ("expected images/{train2017,val2017}/*.jpg, annotations/{train2017,val2017}/*.png (stuffthingmaps_"
              "trainval2017.zip) and curated/{train2017,val2017}/" + COCO_LIST + " under the root, or a list "
              "file given with --list")
    if split not in COCO_SPLITS:
        _fail(f"cocostuff has no split '{split}'; use train (train2017) or val (val2017)")
    _require_dir(root, "dataset root", layout)
    sub = COCO_SPLITS[split]
    img_dir, ann_dir = root / "images" / sub, root / "annotations" / sub
    _require_dir(img_dir, "image", layout)
    if labels:
        _require_dir(ann_dir, "annotation", layout + "; or pass --no-labels")
    lst = Path(list_file) if list_file else root / "curated" / sub / COCO_LIST
    if not lst.is_file():
        _fail("image list not found; " + layout + " (STEGO's curated lists: 49,629 train / 2,175 val images "
              "of the 27-class protocol)", lst)
    ids = []
    with open(lst, encoding="utf-8") as fh:
        for line in fh:
            t = line.strip()
            if t and not t.startswith("#"):
                ids.append(Path(t).stem if t.endswith((".jpg", ".png")) else t)
    if not ids:
        _fail("image list is empty; " + layout, lst)
    if len(set(ids)) != len(ids):
        _fail("image list names an image twice; remove the duplicates", lst)
    samples = sorted((Sample(i, img_dir / f"{i}.jpg", ann_dir / f"{i}.png" if labels else None) for i in ids),
                     key=lambda s: s.name)
    missing = [s for s in samples if not s.image.is_file()]
    if missing:
        _fail(f"{len(missing)} of {len(samples)} images named in {lst} are missing (e.g. "
              f"{', '.join(m.image.name for m in missing[:3])}); unpack {sub}.zip into images/{sub} or fix the list",
              img_dir)
    if labels:
        _missing_check(samples, "annotation PNG", ann_dir, f"unpack stuffthingmaps_trainval2017.zip into annotations/")
    return Dataset("cocostuff", split, samples, protocols.COCOSTUFF27 if labels else None,
                   "raw" if labels else None, [root, lst])


# ---------------------------------------------------------------------------------------------
# potsdam

POTSDAM_SPLITS = {"train": "labelled_train.txt", "val": "labelled_test.txt",
                  "unlabelled_train": "unlabelled_train.txt"}


def _loadmat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat
    try:
        m = loadmat(str(path))
    except NotImplementedError:
        _fail("is a MATLAB v7.3 file; save it as v7 or earlier (scipy reads those)", path)
    except Exception as e:  # noqa: BLE001 - scipy raises several kinds
        _fail(f"cannot be read as a MATLAB .mat file ({e}); replace it", path)
    if key not in m:
        keys = ", ".join(k for k in m if not k.startswith("__"))
        _fail(f"has no variable '{key}' (it has: {keys}); the Potsdam layout stores images as 'img' and labels "
              f"as 'gt'", path)
    return np.asarray(m[key])


def _read_potsdam_image(path: Path) -> np.ndarray:
    a = _loadmat(path, "img")
    if a.ndim != 3 or a.shape[2] < 3:
        _fail(f"'img' has shape {list(a.shape)}; expected [H, W, 4] (RGBIR) or [H, W, 3]", path)
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = a.astype(np.float64)
    if np.issubdtype(a.dtype, np.floating) and a.max() <= 1.0:
        a = a * 255.0
    return np.ascontiguousarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def _read_potsdam_label(path: Path) -> np.ndarray:
    a = _loadmat(path, "gt")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        _fail(f"'gt' has shape {list(a.shape)}; expected [H, W] ids 0..5", path)
    if a.min() < 0 or a.max() > 255:
        _fail(f"'gt' holds values {int(a.min())}..{int(a.max())}; expected ids 0..5 (255 = ignore)", path)
    return a.astype(np.uint8)


def potsdam(root: Path, split: str, labels: bool = True) -> Dataset:
    """Potsdam ``split`` (train, val, unlabelled_train) under ``root``; labels -> potsdam3."""
    root = Path(root)
    layout = ("expected imgs/*.mat (key 'img'), gt/*.mat (key 'gt') and the split lists labelled_train.txt, "
              "labelled_test.txt, unlabelled_train.txt under the root (the IIC / STEGO Potsdam layout)")
    if split not in POTSDAM_SPLITS:
        _fail(f"potsdam has no split '{split}'; use train (labelled_train.txt), val (labelled_test.txt) or "
              f"unlabelled_train")
    _require_dir(root, "dataset root", layout)
    _require_dir(root / "imgs", "image", layout)
    labels = labels and split != "unlabelled_train"
    if labels:
        _require_dir(root / "gt", "label", layout + "; or pass --no-labels")
    lst = root / POTSDAM_SPLITS[split]
    if not lst.is_file():
        _fail("split list not found; " + layout, lst)
    with open(lst, encoding="utf-8") as fh:
        ids = [Path(t.strip()).stem if t.strip().endswith(".mat") else t.strip() for t in fh if t.strip()]
    if not ids:
        _fail("split list is empty; " + layout, lst)
    if len(set(ids)) != len(ids):
        _fail("split list names an image twice; remove the duplicates", lst)
    samples = sorted((Sample(i, root / "imgs" / f"{i}.mat", root / "gt" / f"{i}.mat" if labels else None)
                      for i in ids), key=lambda s: s.name)
    missing = [s for s in samples if not s.image.is_file()]
    if missing:
        _fail(f"{len(missing)} of {len(samples)} images named in {lst.name} are missing (e.g. "
              f"{', '.join(m.image.name for m in missing[:3])})", root / "imgs")
    if labels:
        _missing_check(samples, "gt .mat", root / "gt", "restore the gt folder, or pass --no-labels")
    return Dataset("potsdam", split, samples, protocols.POTSDAM3 if labels else None,
                   "raw" if labels else None, [root])


# ---------------------------------------------------------------------------------------------
# folder


def _images_in(folder: Path) -> dict:
    found = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
            if f.stem in found:
                _fail(f"two files share the stem '{f.stem}' ({found[f.stem].name}, {f.name}); names must be unique "
                      f"(they pair images with labels and name the store's images)", folder)
            found[f.stem] = f
    return found


def folder(root: Path, split: str = "all", name: str = "folder", labels_dir: Path | None = None,
           masks_dir: Path | None = None, protocol: str | None = None, label_ids: str | None = None,
           classes: int | None = None) -> Dataset:
    """Every image in ``root`` (not recursive), with optional labels of the same stem.

    Labels: ``labels_dir`` with 8-bit PNG ids. With ``protocol`` (cityscapes27, cocostuff27,
    potsdam3, genericN) the ids are the dataset's raw ids (``label_ids="raw"``, the default) or the
    protocol's class ids (``label_ids="class"``); without it they are class ids ``0..classes-1``.
    ``masks_dir``: binary masks (saliency: DUTS, ECSSD), any image format, > 127 is foreground;
    stored as classes 0 background, 1 foreground (protocol generic2).
    """
    root = Path(root)
    _require_dir(root, "image", "pass the folder that holds the images")
    images = _images_in(root)
    if not images:
        _fail(f"holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass the folder that holds them", root)
    if labels_dir and masks_dir:
        _fail("--labels and --masks exclude each other: give label PNGs or binary masks")
    proto, kind, inputs = None, None, [root]
    if labels_dir:
        labels_dir = Path(labels_dir)
        _require_dir(labels_dir, "label", "pass the folder of label PNGs (same stems as the images)")
        if protocol:
            try:
                base = protocols.named(protocol)
            except ValueError as e:
                _fail(str(e))
            kind = label_ids or "raw"
            if classes is not None and classes != base.class_count:
                _fail(f"--classes {classes} contradicts --protocol {protocol} ({base.class_count} classes)")
            proto = base if kind == "raw" else protocols.class_id_protocol(base)
        else:
            if label_ids == "raw":
                _fail("--label-ids raw needs --protocol: raw ids are mapped through a protocol's table")
            if classes is None:
                _fail("label PNGs of class ids need the class count: pass --classes N (ids 0..N-1, 255 ignore), "
                      "or --protocol P for raw ids of a known protocol")
            if not 1 <= classes <= 255:
                _fail(f"--classes must be in 1..255, got {classes}")
            proto, kind = protocols.generic(classes), "class"
        labs = {}
        for f in sorted(labels_dir.iterdir()):
            if f.is_file() and f.suffix.lower() == ".png":
                labs[f.stem] = f
        samples = [Sample(stem, img, labs.get(stem, labels_dir / f"{stem}.png")) for stem, img in images.items()]
        _missing_check(samples, "label PNG", labels_dir, "every image needs a label PNG of the same stem "
                       "(e.g. a.jpg -> a.png); move unlabelled images elsewhere")
        inputs.append(labels_dir)
    elif masks_dir:
        masks_dir = Path(masks_dir)
        _require_dir(masks_dir, "mask", "pass the folder of binary masks (same stems as the images)")
        masks = _images_in(masks_dir)
        samples = [Sample(stem, img, masks.get(stem, masks_dir / f"{stem}.png")) for stem, img in images.items()]
        _missing_check(samples, "mask", masks_dir, "every image needs a mask of the same stem (e.g. a.jpg -> a.png)")
        proto, kind = protocols.generic(2, ("background", "foreground")), "mask"
        inputs.append(masks_dir)
    else:
        if protocol or classes is not None or label_ids:
            _fail("--protocol / --classes / --label-ids describe labels: pass --labels DIR too")
        samples = [Sample(stem, img, None) for stem, img in images.items()]
    samples.sort(key=lambda s: s.name)
    return Dataset(name, split, samples, proto, kind, inputs)
