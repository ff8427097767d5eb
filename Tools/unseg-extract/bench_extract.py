#!/usr/bin/env python3
"""CPU extraction throughput of DINO ViT-S/8 at 320x320, next to the physical floor.

Prints, measured in the same run with the same thread count (default 2):
- torch sgemm GFLOP/s (2048 x 2048 float32 products): the peak the model's matrix products can reach;
- the model's FLOPs per image (``models.flops_per_image``: the matrix products, 2 per multiply-add);
- forward throughput (images/s) and the GFLOP/s it implies, as a fraction of sgemm;
- the whole command (``unseg-extract folder``: JPEG decode, resize, crop, forward, HDF5 write) in images/s.

Random weights with the real shapes: the speed does not depend on the values.

    python3 Tools/unseg-extract/bench_extract.py [--quick] [--threads N] [--backbone NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and images")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--backbone", default="dino_vits8")
    ap.add_argument("--size", type=int, default=320)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from unseg_extract import datasets, extract, models

    torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 5
    spec = models.BACKBONES[args.backbone]
    print(f"extract: {args.backbone} at {args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}, "
          f"{reps} interleaved rounds")

    # Interleaved rounds: sgemm, forward batch 1, forward batch 4. On a shared machine the load
    # changes within a run; the best round of each is the least disturbed estimate, and the
    # fraction of peak is best forward over best sgemm. Medians are printed too.
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    gen = torch.Generator().manual_seed(0)
    model = models.build(args.backbone)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.empty(p.shape).normal_(0, 0.02, generator=gen))
    inputs = {bs: torch.randn(bs, 3, args.size, args.size, generator=gen) for bs in (1, 4)}

    def fwd(bs):
        with torch.inference_mode():
            model(inputs[bs])

    torch.mm(a, b)
    fwd(1)
    rounds = {"sgemm": [], 1: [], 4: []}
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        rounds["sgemm"].append(3 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
        for bs in (1, 4):
            t = time.perf_counter()
            fwd(bs)
            rounds[bs].append(bs / (time.perf_counter() - t))
    peak = max(rounds["sgemm"])
    flops = models.flops_per_image(spec, args.size, args.size)
    print(f"  sgemm {n}x{n}x{n} float32        best {peak:7.1f}  median {statistics.median(rounds['sgemm']):7.1f} GFLOP/s")
    print(f"  model FLOPs per image           {flops / 1e9:7.1f} GFLOP (matrix products)")
    for bs in (1, 4):
        best, med = max(rounds[bs]), statistics.median(rounds[bs])
        print(f"  forward, batch {bs}             best {best:7.3f}  median {med:7.3f} images/s   "
              f"best {best * flops / 1e9:6.1f} GFLOP/s = {best * flops / 1e9 / peak:.2f} of sgemm")

    count = 4 if args.quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "img").mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(tmp / "img" / f"{i}.jpg",
                                                                                     quality=90)
        ckpt = tmp / spec.checkpoint_file
        torch.save(model.state_dict(), ckpt)
        ds = datasets.folder(tmp / "img")
        opts = extract.Options(out=tmp / "bench.h5", backbone=args.backbone, checkpoint=ckpt, size=args.size,
                               batch_size=4, threads=args.threads, progress=False)
        t = time.perf_counter()
        extract.run(ds, opts, log=lambda m: None)
        total = time.perf_counter() - t
        size = os.path.getsize(tmp / "bench.h5")
    print(f"  unseg-extract folder, {count} JPEGs 640x480 -> store, batch 4: {count / total:.3f} images/s "
          f"({total:.1f} s, checkpoint load included; {size / count / 2**20:.2f} MiB/image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
