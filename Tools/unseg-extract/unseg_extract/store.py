"""The feature-store writer: one HDF5 file, written under a temporary name, renamed when complete.

Schema (shared/specs/feature-store.md, version 1): root attributes ``format``, ``version``,
``backbone``, ``patch_size``, ``dataset``, ``split``, and with labels ``protocol``, ``class_names``,
``label_ids = "class"``; datasets ``/features`` [N, h, w, C], ``/images`` [N, S, S, 3] uint8,
``/labels`` [N, S, S] uint8, ``/names`` [N] strings, optional ``/features_flipped`` [N, h, w, C],
``/features_views`` [V, N, h, w, C], ``/boxes`` [M, 5] float32; one image per chunk. With a peer's
head (``--head``): ``/features`` (and the flipped and view features) hold the head's code,
``/features_backbone`` [N, h, w, D] the backbone's features it read (PriMaPs' masks are computed
from these), ``/peer_clusters`` [K, dim] float32 the peer's cluster-probe centroids. With
``--crops C``: ``/features_crops`` [C, N, h, w, C] and ``/crop_boxes`` [C, N, 4] (``crops.py``).

Resumable and byte-deterministic by construction:

- the temporary file is ``.<name>.partial`` next to the output; it records in the root attribute
  ``images_complete`` how many images are written and in ``extract_config`` (JSON) everything the
  bytes depend on, so ``--resume`` continues only a run with the same inputs and options;
- every dataset is created up front with all its chunks allocated (HDF5 "early" allocation, no
  fill), ``/names`` and ``/boxes`` are written at creation, and no timestamps are stored; after that
  a run only overwrites chunk data in place and the fixed-size ``images_complete`` attribute, so
  the file's structure never changes while images are written and an interrupted-then-resumed run
  produces the same bytes as an uninterrupted one;
- after each batch: data, flush, then ``images_complete``, flush: the counter never claims more
  than what is on disk. A killed run leaves only the ``.partial`` file;
- the temporary file is held under an exclusive ``flock`` while it is written, so a second run on
  the same output (``--resume`` included) is refused instead of writing the same file.

Without compression (chunks of early-allocated datasets have a fixed place); the file is created
sparse and filled as images are written. HDF5 format bounds: earliest..v110, readable by HDF5 1.10.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import ExtractError

FORMAT = "unseg.feature-store"
VERSION = 1
LIBVER = ("earliest", "v110")


def partial_path(out: Path) -> Path:
    """The temporary file of output ``out``: ``.<name>.partial`` in the same directory."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


@dataclass(frozen=True)
class Layout:
    """Shapes of one store: N images of ``size x size`` pixels, ``grid x grid`` cells of ``channels``."""

    count: int
    size: int
    grid: tuple
    channels: int
    feature_dtype: str        # "float16" or "float32"
    labels: bool
    flip: bool
    views: int
    boxes: int | None         # number of box rows, None when the store has no /boxes
    backbone_channels: int = 0   # with a peer's head (--head): /features_backbone [N, h, w, D]
    crops: int = 0               # --crops C: /features_crops [C, N, h, w, C'] and /crop_boxes [C, N, 4]


    def bytes_estimate(self) -> int:
        """Bytes of the finished file, data only (HDF5 metadata adds well under 1%)."""
        n, s = self.count, self.size
        feat = self.grid[0] * self.grid[1] * self.channels * (2 if self.feature_dtype == "float16" else 4)
        per = feat * (1 + int(self.flip) + self.views + self.crops) + s * s * 3 + (s * s if self.labels else 0)
        per += self.grid[0] * self.grid[1] * self.backbone_channels * (2 if self.feature_dtype == "float16" else 4)
        return n * per + (self.boxes or 0) * 20


def _dcpl(chunk) -> h5py.h5p.PropDCID:
    """Chunked, all chunks allocated at creation, never filled, no timestamps."""
    p = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    p.set_chunk(tuple(chunk))
    p.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    p.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    p.set_obj_track_times(False)
    return p


def _lock(path: Path, create: bool) -> int:
    """Opens ``path`` (creating it when ``create``; it must not exist then) and takes an exclusive
    ``flock`` on it, so two extractions never write one file. Returns the descriptor.

    HDF5's own file locking is not relied on (it is off in some builds); h5py opens the file with
    ``locking=False`` and this lock, held until the file is renamed or deleted, does the job.
    """
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o644)
    except FileExistsError:
        raise ExtractError("appeared while this run was starting: another unseg-extract is writing this output; "
                           "wait for it or stop it", path) from None
    except OSError as e:
        raise ExtractError(f"cannot be opened ({e.strerror}); check that the folder is writable", path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ExtractError("is being written by another unseg-extract process (it holds the lock); wait for it to "
                           "finish or stop it, then rerun with --resume", path) from None
    return fd


def _string_attr(f, name, value):
    f.attrs.create(name, value, dtype=h5py.string_dtype())


class StoreWriter:
    """Writes one store (see the module docstring). Use ``create`` or ``resume``, then
    ``write_batch`` in order, then ``finish`` (rename into place) or ``abort``."""

    def __init__(self, out: Path, file: h5py.File, layout: Layout, complete: int, lock_fd: int):
        self.out = Path(out)
        self.lock_fd = lock_fd
        self.partial = partial_path(out)
        self.file = file
        self.layout = layout
        self.complete = complete

    # -- creation --------------------------------------------------------------------------

    @classmethod
    def create(cls, out: Path, layout: Layout, attrs: list, names: list, boxes, config: dict,
               peer_clusters=None, peer_attrs=()) -> "StoreWriter":
        """Creates the temporary file with every attribute and dataset; ``images_complete = 0``.

        ``attrs``: ``[(name, value)]`` root attributes in the order written (str, int or list of
        str). ``names``: N image names. ``boxes``: ``[M, 5]`` float32 or None. ``config``: the JSON
        of everything the bytes depend on. ``peer_clusters``: the peer's cluster-probe centroids
        ``[K, dim]`` float32 (``/peer_clusters``, with ``peer_attrs``) or None.
        """
        path = partial_path(out)
        lock = _lock(path, create=True)
        try:
            f = h5py.File(path, "w", libver=LIBVER, track_order=False, locking=False)
        except OSError as e:
            os.close(lock)
            path.unlink(missing_ok=True)
            raise ExtractError(f"cannot create the temporary file ({e}); check that the folder is writable", path) \
                from None
        try:
            for k, v in attrs:
                if isinstance(v, str):
                    _string_attr(f, k, v)
                elif isinstance(v, (list, tuple)):
                    f.attrs.create(k, np.array(list(v), dtype=object), dtype=h5py.string_dtype())
                else:
                    f.attrs.create(k, np.int64(v))
            _string_attr(f, "extract_config", json.dumps(config, sort_keys=True))
            f.attrs.create("images_complete", np.int64(-1))
            n, s, (h, w), c = layout.count, layout.size, layout.grid, layout.channels
            ft = np.dtype(layout.feature_dtype)

            def make(name, shape, dtype, chunk):
                f.create_dataset(name, shape=shape, dtype=dtype, dcpl=_dcpl(chunk), track_times=False)

            make("features", (n, h, w, c), ft, (1, h, w, c))
            make("images", (n, s, s, 3), np.uint8, (1, s, s, 3))
            if layout.labels:
                make("labels", (n, s, s), np.uint8, (1, s, s))
            if layout.flip:
                make("features_flipped", (n, h, w, c), ft, (1, h, w, c))
            if layout.views:
                make("features_views", (layout.views, n, h, w, c), ft, (1, 1, h, w, c))
            if layout.crops:
                make("features_crops", (layout.crops, n, h, w, c), ft, (1, 1, h, w, c))
                make("crop_boxes", (layout.crops, n, 4), np.float32, (layout.crops, 1, 4))
            if layout.backbone_channels:
                d = layout.backbone_channels
                make("features_backbone", (n, h, w, d), ft, (1, h, w, d))
            if peer_clusters is not None:
                ds = f.create_dataset("peer_clusters", data=np.asarray(peer_clusters, dtype=np.float32),
                                      track_times=False)
                for k, v in peer_attrs:
                    if isinstance(v, str):
                        _string_attr(ds, k, v)
                    else:
                        ds.attrs.create(k, np.int64(v))
            f.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype(),
                             track_times=False)
            if boxes is not None:
                f.create_dataset("boxes", data=np.asarray(boxes, dtype=np.float32).reshape(-1, 5), track_times=False)
            f.flush()
            f.attrs.modify("images_complete", np.int64(0))
            f.flush()
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            os.close(lock)
            raise
        return cls(out, f, layout, 0, lock)

    @classmethod
    def resume(cls, out: Path, layout: Layout, config: dict):
        """Opens the temporary file of an interrupted run with the same ``config``.

        Returns the writer, or None when the file is unusable (killed while being created): the
        caller then starts anew. ExtractError when another run holds it or its config differs.
        """
        path = partial_path(out)
        fd = _lock(path, create=False)
        try:
            f = h5py.File(path, "r+", libver=LIBVER, locking=False)
        except OSError:
            os.close(fd)
            return None
        try:
            done = int(f.attrs.get("images_complete", -1))
            old = f.attrs.get("extract_config")
            if done < 0 or old is None or f["features"].shape[0] != layout.count or done > layout.count:
                f.close()
                os.close(fd)
                return None
            old = json.loads(old if isinstance(old, str) else old.decode())
        except Exception:  # noqa: BLE001 - a damaged file: start anew
            f.close()
            os.close(fd)
            return None
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            f.close()
            os.close(fd)
            raise ExtractError(
                f"belongs to an extraction with other inputs or options (differs in: {', '.join(diff)}); "
                f"rerun with the same arguments to resume it, or delete it to start anew", path)
        return cls(out, f, layout, done, fd)

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, start: int, features, images, labels=None, flipped=None, views=None, backbone=None,
                    crops=None, crop_boxes=None) -> None:
        """Writes images ``start .. start+B-1`` and marks them complete.

        ``features``/``flipped``: ``[B, h, w, C]`` float; ``images``: ``[B, S, S, 3]`` uint8;
        ``labels``: ``[B, S, S]`` uint8; ``views``: ``[V, B, h, w, C]``; ``backbone``: ``[B, h, w, D]``
        (with a peer's head: the features the head read). ``start`` must equal
        ``self.complete`` (batches are written in order).
        """
        if start != self.complete:
            raise ValueError(f"batch starts at {start} but {self.complete} images are complete")
        b = len(features)
        end = start + b
        dt = np.dtype(self.layout.feature_dtype)
        f = self.file
        f["features"][start:end] = np.asarray(features, dtype=dt)
        f["images"][start:end] = images
        if self.layout.labels:
            f["labels"][start:end] = labels
        if self.layout.flip:
            f["features_flipped"][start:end] = np.asarray(flipped, dtype=dt)
        if self.layout.views:
            f["features_views"][:, start:end] = np.asarray(views, dtype=dt)
        if self.layout.backbone_channels:
            f["features_backbone"][start:end] = np.asarray(backbone, dtype=dt)
        if self.layout.crops:
            f["features_crops"][:, start:end] = np.asarray(crops, dtype=dt)
            f["crop_boxes"][:, start:end] = np.asarray(crop_boxes, dtype=np.float32)
        f.flush()
        f.attrs.modify("images_complete", np.int64(end))
        f.flush()
        self.complete = end

    def finish(self) -> Path:
        """Closes the file and renames it to the output path (atomic on one file system)."""
        if self.complete != self.layout.count:
            raise ValueError(f"only {self.complete} of {self.layout.count} images written")
        self.file.close()
        os.replace(self.partial, self.out)
        self._unlock()
        return self.out

    def _unlock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def close(self) -> None:
        """Closes the temporary file and keeps it (for ``--resume``)."""
        if self.file.id.valid:
            self.file.close()
        self._unlock()

    def abort(self) -> None:
        """Closes and deletes the temporary file."""
        if self.file.id.valid:
            self.file.close()
        self.partial.unlink(missing_ok=True)
        self._unlock()
