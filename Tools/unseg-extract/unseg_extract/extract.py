"""The extraction loop: dataset -> crops -> backbone -> store, in batches, resumable.

``run(dataset, options)`` checks everything it can before writing anything (output path, free
space, checkpoint, crop size), then writes the store through ``store.StoreWriter``. Per batch of
B images: read and crop (in a thread pool, one batch ahead), map labels to class ids, forward the
crops (and, on request, their horizontal flips and V photometric views, each as its own forward
pass so ``/features`` does not depend on those options), write, mark complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, augment, crops as cropviews, heads, models, preprocess
from .datasets import Dataset
from .errors import ExtractError
from .store import Layout, StoreWriter, partial_path


@dataclass
class Options:
    """Everything the command line sets besides the dataset (see ``cli.py`` for the meanings)."""

    out: Path
    backbone: str
    checkpoint: Path
    size: int | None = None
    batch_size: int = 8
    device: str = "cpu"
    half: bool = False
    dtype: str = "float16"
    flip: bool = False
    views: int = 0
    views_space: str = "rgb"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    workers: int = 2
    threads: int | None = None
    progress: bool = True
    debug_batch_delay: float = 0.0   # seconds of sleep after each batch (tests kill a run mid-way)
    head: str | None = None          # "stego:PATH" / "hp:PATH": store the peer's code as /features
    crops: int = 0                   # zoomed-in crop views per image (/features_crops, /crop_boxes)
    crop_scale: str = "0.5,0.5"      # MIN,MAX crop side as a fraction of the stored crop's side


class Interrupted(Exception):
    """SIGTERM / SIGINT during the run: the temporary file is kept for ``--resume``."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_options(o: Options) -> models.BackboneSpec:
    """Validates the options that do not need files; returns the backbone spec. Fills ``o.size``."""
    if o.backbone not in models.BACKBONES:
        raise ExtractError(f"unknown backbone '{o.backbone}'; known: {', '.join(models.BACKBONES)}")
    spec = models.BACKBONES[o.backbone]
    p = spec.patch_size
    if o.size is None:
        o.size = spec.default_size
    if o.size < p or o.size % p:
        lo, hi = max(p, o.size // p * p), (o.size // p + 1) * p
        why = ("DINOv2 refuses sides that are not a multiple of 14" if spec.family == "dinov2" else
               "DINO would silently drop the leftover pixels, and the stored images must cover the feature grid")
        raise ExtractError(f"--size {o.size} is not a multiple of the patch size {p} of {o.backbone} ({why}); "
                           f"use --size {lo} or --size {hi}")
    if o.batch_size < 1:
        raise ExtractError(f"--batch-size must be >= 1, got {o.batch_size}")
    if o.views < 0:
        raise ExtractError(f"--views must be >= 0, got {o.views}")
    if not 0 <= o.crops <= 64:
        raise ExtractError(f"--crops must be in 0...64, got {o.crops}")
    cropviews.parse_scale(o.crop_scale)
    if o.workers < 1:
        raise ExtractError(f"--workers must be >= 1, got {o.workers}")
    if o.threads is not None and o.threads < 1:
        raise ExtractError(f"--threads must be >= 1, got {o.threads}")
    if o.dtype not in ("float16", "float32"):
        raise ExtractError(f"--dtype must be float16 or float32, got {o.dtype}")
    if o.device not in ("cpu", "cuda") and not o.device.startswith("cuda:"):
        raise ExtractError(f"--device must be cpu or cuda (or cuda:N), got {o.device}")
    if o.device != "cpu" and not torch.cuda.is_available():
        raise ExtractError(f"--device {o.device}: no CUDA device is available to this torch "
                           f"({torch.__version__}); use --device cpu")
    if o.head is not None:
        heads.parse_spec(o.head)
    if o.half and o.device == "cpu":
        raise ExtractError("--half is autocast to float16 on a GPU; on --device cpu features are computed in "
                           "float32 (and stored as float16 by default): drop --half")
    return spec


def check_output(o: Options, dataset: Dataset, inputs: list) -> None:
    """Refuses an output that is an input, an existing file without --overwrite, a missing folder,
    or a leftover temporary without --resume."""
    out = Path(o.out)
    if out.is_dir():
        raise ExtractError("is a folder; --out takes the path of the store file to write, e.g. train.h5", out)
    if not out.parent.is_dir():
        raise ExtractError("the output's folder does not exist; create it first", out.parent)
    if out.suffix.lower() in (".pth", ".pt", ".png", ".jpg", ".jpeg", ".mat", ".txt"):
        raise ExtractError(f"ends in {out.suffix}, like an input file; name the store *.h5", out)
    absout = os.path.abspath(out)
    candidates = [Path(p) for p in inputs] + [s.image for s in dataset.samples] + \
                 [s.label for s in dataset.samples if s.label is not None]
    for p in candidates:
        if os.path.abspath(p) == absout or (out.exists() and p.exists() and os.path.samefile(p, out)):
            raise ExtractError("is an input of this extraction; writing there would destroy it: choose another --out",
                               out)
    if out.exists() and not o.overwrite:
        raise ExtractError("exists; pass --overwrite to replace it (it is replaced only when the new store is "
                           "complete), or choose another --out", out)
    part = partial_path(out)
    if part.exists() and not o.resume:
        raise ExtractError("is the temporary file of an interrupted (or running) extraction to this output; pass "
                           "--resume to continue it, or delete it to start anew", part)


def _load(dataset: Dataset, i: int, size: int):
    """Reads, crops and maps sample ``i``: (crop [S, S, 3] uint8, labels [S, S] uint8 or None)."""
    s = dataset.samples[i]
    image = dataset.read_image(s)
    crop, _ = preprocess.crop_image(image, size)
    lab = None
    if dataset.has_labels:
        raw = dataset.read_label(s)
        if raw.shape != image.shape[:2]:
            raise ExtractError(f"is {raw.shape[1]}x{raw.shape[0]} but its image {s.image.name} is "
                               f"{image.shape[1]}x{image.shape[0]}; a label map must have the image's size", s.label)
        lab = dataset.to_class_ids(preprocess.crop_label(raw, size), s)
    return crop, lab


def _boxes_rows(dataset: Dataset, size: int) -> np.ndarray:
    """``[M, 5]`` float32 rows (index, x0, y0, x1, y1) in crop pixels from ``dataset.boxes``."""
    from PIL import Image
    rows = []
    for i, s in enumerate(dataset.samples):
        bs = dataset.boxes.get(s.name)
        if not bs:
            continue
        if s.image.suffix.lower() == ".mat":
            hgt, wid = dataset.read_image(s).shape[:2]
        else:
            with Image.open(s.image) as im:
                wid, hgt = im.size
        g = preprocess.geometry(hgt, wid, size)
        for b in bs:
            m = g.map_box(b)
            if m is not None:
                rows.append((i, *m))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


class _Backbone:
    """The model on its device; ``__call__`` maps normalised ``[B, 3, S, S]`` to numpy ``[B, h, w, C]``."""

    def __init__(self, model, device: str, half: bool):
        self.model = model.to(device)
        self.device = device
        self.half = half

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
                y = self.model(x)
            return y.float().cpu().numpy()


def run(dataset: Dataset, o: Options, log=None) -> Path:
    """Extracts ``dataset`` into the store ``o.out``; returns its path. See the module docstring.

    Errors: ExtractError (a bad input: the temporary file is deleted; a failed write, e.g. a full
    disk: it is kept for ``--resume``), Interrupted (SIGINT/SIGTERM: kept for ``--resume``).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    spec = check_options(o)
    head_path = heads.parse_spec(o.head)[1] if o.head else None
    inputs = list(dataset.inputs) + [o.checkpoint] + ([head_path] if head_path else [])
    check_output(o, dataset, inputs)
    if o.threads:
        torch.set_num_threads(o.threads)

    model = models.load_backbone(o.backbone, o.checkpoint)
    head = heads.load_head(o.head, spec.embed_dim, model, o.backbone) if o.head else None
    if head is not None and head.warning:
        log(f"unseg-extract: warning: {head.warning}")
    n = len(dataset.samples)
    grid = (o.size // spec.patch_size, o.size // spec.patch_size)
    boxes = _boxes_rows(dataset, o.size) if dataset.boxes is not None else None
    layout = Layout(n, o.size, grid, head.dim if head else spec.embed_dim, o.dtype, dataset.has_labels, o.flip,
                    o.views, None if boxes is None else len(boxes), spec.embed_dim if head else 0, o.crops)
    names = [s.name for s in dataset.samples]
    ckpt_sha = _sha256(Path(o.checkpoint))
    config = {
        "extractor": f"unseg-extract {__version__}", "dataset": dataset.name, "split": dataset.split,
        "inputs": [os.path.abspath(p) for p in dataset.inputs],
        "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "label_kind": dataset.label_kind, "protocol": dataset.protocol.name if dataset.protocol else None,
        "backbone": o.backbone, "checkpoint_sha256": ckpt_sha, "size": o.size, "dtype": o.dtype,
        "half": o.half, "flip": o.flip, "views": o.views, "views_space": o.views_space, "seed": o.seed,
        "batch_size": o.batch_size, "boxes": None if boxes is None else hashlib.sha256(boxes.tobytes()).hexdigest(),
        "head": None if head is None else head.method, "head_checkpoint_sha256": None if head is None else head.sha256,
        "crops": o.crops, "crop_scale": list(cropviews.parse_scale(o.crop_scale)) if o.crops else None,
    }
    attrs = [("format", "unseg.feature-store"), ("version", 1),
             ("backbone", f"{head.method}+{o.backbone}" if head else o.backbone),
             ("patch_size", spec.patch_size), ("dataset", dataset.name), ("split", dataset.split)]
    if dataset.has_labels:
        attrs += [("protocol", dataset.protocol.name), ("class_names", list(dataset.protocol.class_names)),
                  ("label_ids", "class")]
    attrs += [("crop_size", o.size), ("extractor", f"unseg-extract {__version__}"), ("checkpoint_sha256", ckpt_sha)]
    if o.views:
        attrs += [("views_seed", o.seed), ("views_space", o.views_space)]
    if o.crops:
        attrs += [("crops_seed", o.seed), ("crop_scale", o.crop_scale)]
    peer_attrs = ()
    if head:
        attrs += [("head", head.method), ("head_checkpoint_sha256", head.sha256), ("head_backbone", o.backbone),
                  ("mask_features", "features_backbone")]
        peer_attrs = (("method", head.method), ("head_checkpoint_sha256", head.sha256),
                      ("probe", "argmax of the cosine between the code and each centroid"))

    writer = StoreWriter.resume(o.out, layout, config) if o.resume and partial_path(o.out).exists() else None
    if o.resume and writer is None and partial_path(o.out).exists():
        log(f"unseg-extract: {partial_path(o.out)} is incomplete (killed while being created); starting anew")
        partial_path(o.out).unlink()
    if writer is None:
        need = layout.bytes_estimate()
        free = shutil.disk_usage(Path(o.out).parent).free
        if need > free:
            raise ExtractError(f"the store needs about {need / 2**30:.1f} GiB but the disk has {free / 2**30:.1f} GiB "
                               f"free; free space or write elsewhere", Path(o.out).parent)
        writer = StoreWriter.create(o.out, layout, attrs, names, boxes, config,
                                    None if head is None else head.clusters.numpy(), peer_attrs)
    elif writer.complete:
        log(f"unseg-extract: resuming {partial_path(o.out)} at image {writer.complete} of {n}")

    backbone = _Backbone(model, o.device, o.half)
    code = (lambda x: x) if head is None else (lambda x: head.code(torch.from_numpy(np.ascontiguousarray(x))).numpy())
    old_handlers = {}

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:   # not the main thread
            pass
    pool = ThreadPoolExecutor(max_workers=o.workers)
    bar = None
    try:
        from tqdm import tqdm
        bar = tqdm(total=n, initial=writer.complete, unit="img", desc=f"{dataset.name}/{dataset.split}",
                   disable=not o.progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        starts = list(range(writer.complete, n, o.batch_size))

        def submit(start):
            return [pool.submit(_load, dataset, i, o.size) for i in range(start, min(start + o.batch_size, n))]

        pending = submit(starts[0]) if starts else None
        for k, start in enumerate(starts):
            items = [f.result() for f in pending]
            pending = submit(starts[k + 1]) if k + 1 < len(starts) else None
            crops = np.stack([c for c, _ in items])                                # [B, S, S, 3]
            labels = np.stack([lab for _, lab in items]) if dataset.has_labels else None
            unit = preprocess.to_unit(crops)                                       # [B, 3, S, S]
            plain = backbone(preprocess.normalize(unit))
            feats = code(plain)
            flipped = code(backbone(preprocess.normalize(unit.flip(-1))))[:, :, ::-1] if o.flip else None
            views = None
            if o.views:
                views = np.stack([code(backbone(_view_batch(unit, start, v, o))) for v in range(o.views)])
            zoomed = boxes_c = None
            if o.crops:
                scale = cropviews.parse_scale(o.crop_scale)
                grid_boxes = [[cropviews.draw(o.seed, start + j, c, o.size, spec.patch_size, scale)
                               for j in range(len(items))] for c in range(o.crops)]
                zoomed = np.stack([code(backbone(preprocess.normalize(torch.stack(
                    [cropviews.zoom(unit[j], b, o.size) for j, b in enumerate(bs)])))) for bs in grid_boxes])
                boxes_c = np.array([[[b.x0, b.y0, b.x1, b.y1] for b in bs] for bs in grid_boxes], dtype=np.float32)
            writer.write_batch(start, feats, crops, labels, flipped, views, plain if head else None, zoomed, boxes_c)
            bar.update(len(items))
            if o.debug_batch_delay:
                time.sleep(o.debug_batch_delay)
        return writer.finish()
    except ExtractError:
        writer.abort()
        raise
    except (Interrupted, KeyboardInterrupt):
        writer.close()
        raise Interrupted(f"{writer.complete} of {n} images are complete in {partial_path(o.out)}; "
                          f"rerun the same command with --resume to continue") from None
    except OSError as e:                     # disk full, file system gone: keep what is complete
        writer.close()
        raise ExtractError(f"writing failed ({e}); the {writer.complete} complete images are kept in this temporary "
                           f"file: fix the cause (e.g. free disk space) and rerun the same command with --resume",
                           partial_path(o.out)) from None
    except BaseException:
        writer.close()
        raise
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
        for sig, h in old_handlers.items():
            signal.signal(sig, h)


def _view_batch(unit: torch.Tensor, start: int, view: int, o: Options) -> torch.Tensor:
    """View ``view`` of every image of the batch: ``[B, 3, S, S]`` in [0, 1] -> normalised input."""
    out = []
    for j in range(unit.shape[0]):
        p = augment.draw(o.seed, start + j, view)
        if o.views_space == "rgb":
            out.append(preprocess.normalize(augment.apply(unit[j], p)[None])[0])
        else:
            out.append(augment.apply(preprocess.normalize(unit[j:j + 1])[0], p))
    return torch.stack(out)

