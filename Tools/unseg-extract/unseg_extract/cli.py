"""The ``unseg-extract`` command line: parse, check, call ``extract.run``, report.

Exit codes: 0 done; 1 an error (one paragraph on stderr: the file, what is wrong, what to do);
64 a usage error (bad option, with the usage); 130 interrupted (the temporary file is kept, rerun
with ``--resume``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import __version__, boxes, datasets, extract, models
from .errors import ExtractError

EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

EPILOG = """\
examples:
  # Cityscapes val, DINO ViT-S/8, 320x320 crops (the PriMaPs / STEGO protocol)
  unseg-extract cityscapes --root data/cityscapes --split val \\
      --backbone dino_vits8 --checkpoint weights/dino_deitsmall8_pretrain.pth --out val.h5

  # COCO-Stuff-27 train on a GPU with autocast, flipped features too
  unseg-extract cocostuff --root data/cocostuff --split train --backbone dino_vits8 \\
      --checkpoint weights/dino_deitsmall8_pretrain.pth --out train.h5 --device cuda --half --flip

  # Potsdam-3, DINOv2 ViT-S/14 (crops of 322 = 23 x 14 by default for /14)
  unseg-extract potsdam --root data/potsdam --split train --backbone dinov2_vits14 \\
      --checkpoint weights/dinov2_vits14_pretrain.pth --out potsdam-train.h5

  # a saliency set (image + binary mask with the same stem), with 2 augmented views
  unseg-extract folder --root ECSSD/images --masks ECSSD/ground_truth_mask --name ecssd \\
      --backbone dino_vits16 --checkpoint weights/dino_deitsmall16_pretrain.pth --out ecssd.h5 --views 2

  # a peer's model: STEGO's head on DINO ViT-B/8 (code in /features, DINO features kept for the masks)
  unseg-extract cityscapes --root data/cityscapes --split train --backbone dino_vitb8 \\
      --checkpoint weights/dino_vitbase8_pretrain.pth --head stego:saved_models/cityscapes_vit_base_1.ckpt --out train.h5

  # an interrupted run (Ctrl-C, kill, reboot) continues where it stopped
  unseg-extract cityscapes ... --resume

Nothing is downloaded, ever: --checkpoint is a local copy of the official weights (an error
message says where each one is published). Docs/datasets.md has every dataset's layout, the
store sizes and the recipe to use next.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="unseg-extract",
        usage="unseg-extract {cityscapes,cocostuff,potsdam,folder} --root DIR --backbone NAME --checkpoint FILE "
              "--out FILE [options]",
        description="Extract frozen DINO / DINOv2 features of a dataset on disk into an unseg feature store "
                    "(HDF5: /features, /images, /labels, /names; optionally /features_flipped, /features_views, "
                    "/boxes). Images are resized (shorter side to --size) and centre-cropped as the reference "
                    "pipeline does; labels are stored as the protocol's class ids (255 = ignore).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=datasets.DATASET_NAMES, metavar="DATASET",
                   help="dataset layout: cityscapes (-> cityscapes27), cocostuff (-> cocostuff27), "
                        "potsdam (-> potsdam3), or folder (any folder of images)")
    g = p.add_argument_group("dataset")
    g.add_argument("--root", required=True, type=Path, metavar="DIR",
                   help="dataset root (cityscapes, cocostuff, potsdam) or the folder of images (folder)")
    g.add_argument("--split", help="cityscapes: train, val, test, train_extra; cocostuff: train, val; potsdam: "
                                   "train, val, unlabelled_train (default: train); folder: any name (default: all)")
    g.add_argument("--list", type=Path, dest="list_file", metavar="FILE",
                   help="cocostuff: image list to use instead of curated/<split>/Coco164kFull_Stuff_Coarse_7.txt")
    g.add_argument("--no-labels", action="store_true", help="store no /labels (e.g. test splits)")
    g.add_argument("--labels", type=Path, metavar="DIR", help="folder: label PNGs with the images' stems")
    g.add_argument("--masks", type=Path, metavar="DIR", help="folder: binary masks with the images' stems (saliency: DUTS, ECSSD)")
    g.add_argument("--protocol", help="folder: the labels are raw ids of this protocol (cityscapes27, cocostuff27, "
                                      "potsdam3, genericN)")
    g.add_argument("--label-ids", choices=("raw", "class"),
                   help="folder with --protocol: raw dataset ids (default) or the protocol's class ids")
    g.add_argument("--classes", type=int, help="folder without --protocol: labels hold class ids 0..N-1")
    g.add_argument("--name", default="folder", help="folder: the store's dataset attribute (default: folder)")
    g.add_argument("--boxes", type=Path, dest="boxes_file", metavar="FILE",
                   help="object boxes, one line 'stem x0 y0 x1 y1' per box in original-image pixels -> /boxes")
    g.add_argument("--voc-annotations", type=Path, metavar="DIR", help="object boxes from a VOC Annotations/ folder -> /boxes")

    m = p.add_argument_group("backbone")
    m.add_argument("--backbone", required=True, choices=list(models.BACKBONES), metavar="NAME",
                   help="dino_vits8, dino_vitb8, dino_vits16, dino_vitb16 (facebookresearch/dino), dinov2_vits14, "
                        "dinov2_vitb14 (facebookresearch/dinov2, no registers)")
    m.add_argument("--checkpoint", required=True, type=Path, metavar="FILE",
                   help="the official checkpoint file (.pth) of --backbone, on local disk")
    m.add_argument("--head", metavar="METHOD:FILE",
                   help="a peer's trained head on this backbone: stego:FILE (STEGO's Lightning .ckpt) or hp:FILE "
                        "(HP's ckpt.pth). /features then holds the head's code (eval mode), /features_backbone the "
                        "backbone's features (PriMaPs' masks use them), /peer_clusters the peer's cluster probe "
                        "(unseg fit --init-from-peer). See Docs/fitting.md, 'Boosting a peer'")
    m.add_argument("--size", type=int,
                   help="crop side in pixels, a multiple of the patch (default 320; 322 for dinov2: 14 x 23)")
    m.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    m.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    m.add_argument("--half", action="store_true", help="GPU: autocast to float16")
    m.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored feature type (default float16)")
    m.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's choice, all cores)")
    m.add_argument("--workers", type=int, default=2, help="image-loading threads (default 2)")

    v = p.add_argument_group("extra views")
    v.add_argument("--flip", action="store_true",
                   help="also store features of the horizontally flipped crop, flipped back (/features_flipped)")
    v.add_argument("--views", type=int, default=0,
                   help="also store V photometrically augmented views (/features_views [V, N, h, w, C]): the "
                        "reference's student augmentation (blur, colour jitter, grayscale)")
    v.add_argument("--views-space", choices=("rgb", "normalized"), default="rgb",
                   help="augment the RGB crop (default) or, as the reference code does, the normalised tensor")
    v.add_argument("--crops", type=int, default=0,
                   help="also store C zoomed-in square crops per image, resized to the full size (/features_crops "
                        "[C, N, h, w, C], boxes in /crop_boxes [C, N, 4]): the Two Tricks paper's multi-scale views")
    v.add_argument("--crop-scale", default="0.5,0.5", metavar="MIN,MAX",
                   help="crop side as a fraction of the image side, drawn uniformly in [MIN, MAX] (default 0.5,0.5: "
                        "the reference's half-side crop)")
    v.add_argument("--seed", type=int, default=0, help="seed of the views and crops (per seed, image index, view / crop)")

    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, type=Path, metavar="FILE", help="the store to write (.h5)")
    o.add_argument("--resume", action="store_true",
                   help="continue an interrupted extraction from its temporary file .<out>.partial")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out (when the new one is complete)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--debug-batch-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"unseg-extract {__version__}")
    return p


def make_dataset(a) -> datasets.Dataset:
    """The dataset the arguments name, checked (files present, options consistent)."""
    folder_only = {"--labels": a.labels, "--masks": a.masks, "--protocol": a.protocol, "--label-ids": a.label_ids,
                   "--classes": a.classes}
    if a.dataset != "folder":
        used = [k for k, v in folder_only.items() if v is not None]
        if used:
            raise ExtractError(f"{', '.join(used)} only apply to the folder dataset; {a.dataset} has its own "
                               f"layout and protocol")
    if a.list_file is not None and a.dataset != "cocostuff":
        raise ExtractError("--list only applies to cocostuff")
    labels = not a.no_labels
    if a.dataset == "cityscapes":
        ds = datasets.cityscapes(a.root, a.split or "train", labels)
    elif a.dataset == "cocostuff":
        ds = datasets.cocostuff(a.root, a.split or "train", a.list_file, labels)
    elif a.dataset == "potsdam":
        ds = datasets.potsdam(a.root, a.split or "train", labels)
    else:
        if a.no_labels and (a.labels or a.masks):
            raise ExtractError("--no-labels contradicts --labels / --masks")
        ds = datasets.folder(a.root, a.split or "all", a.name, a.labels, a.masks, a.protocol, a.label_ids,
                             a.classes)
    if a.boxes_file and a.voc_annotations:
        raise ExtractError("--boxes and --voc-annotations exclude each other: give one source of boxes")
    names = {s.name for s in ds.samples}
    if a.boxes_file:
        ds.boxes = boxes.read_text(a.boxes_file, names)
        ds.inputs.append(a.boxes_file)
    elif a.voc_annotations:
        ds.boxes = boxes.read_voc(a.voc_annotations, names)
        ds.inputs.append(a.voc_annotations)
    return ds


def _summary(path: Path, seconds: float) -> str:
    import h5py
    with h5py.File(path, "r") as f:
        feats = f["features"]
        parts = [f"features {list(feats.shape)} {feats.dtype}"]
        for k in ("images", "labels", "features_flipped", "features_views", "boxes", "features_backbone",
                  "peer_clusters", "features_crops"):
            if k in f:
                parts.append(f"{k} {list(f[k].shape)}")
        n = feats.shape[0]
        proto = f.attrs.get("protocol")
    size = os.path.getsize(path)
    return (f"wrote {path}: {n} images, {', '.join(parts)}" + (f", protocol {proto}" if proto is not None else "")
            + f"; {size / 2**20:.1f} MiB in {seconds:.1f} s")


def main(argv=None) -> int:
    """Runs the command; returns the exit code."""
    a = build_parser().parse_args(argv)
    opts = extract.Options(out=a.out, backbone=a.backbone, checkpoint=a.checkpoint, size=a.size,
                           batch_size=a.batch_size, device=a.device, half=a.half, dtype=a.dtype, flip=a.flip,
                           views=a.views, views_space=a.views_space, seed=a.seed, resume=a.resume,
                           overwrite=a.overwrite, workers=a.workers, threads=a.threads, progress=not a.quiet,
                           debug_batch_delay=a.debug_batch_delay, head=a.head, crops=a.crops, crop_scale=a.crop_scale)
    t0 = time.time()
    try:
        extract.check_options(opts)
        ds = make_dataset(a)
        out = extract.run(ds, opts)
    except ExtractError as e:
        print(f"unseg-extract: error: {e}", file=sys.stderr)
        return e.exit_code
    except extract.Interrupted as e:
        print(f"unseg-extract: interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:               # before any file was written
        print("unseg-extract: interrupted before writing anything", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(_summary(out, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
