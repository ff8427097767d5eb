"""unseg against the tools users pick instead, on the same inputs, in one run, one thread each.

Run by `Tools/bench peers`, which installs the peers into a private venv (pydensecrf2 builds from
source; scikit-learn, scikit-image for its sample photos; numpy, scipy and torch from the system).
No code of the peers is in the project: they are installed packages called from here.

For every task: the inputs are written to a folder, `unseg-bench peers-run` times unseg on them
(writing its outputs), this script times the peer and compares the outputs. The two sides take
turns: each of the rounds (5, 2 with --quick) runs every task once with unseg, then once with the
peers, so a machine that slows down or speeds up during the run affects both alike, and each side's
time is its fastest over the rounds: whatever else the machine does only ever adds time, so the
minimum is the least noisy estimate of what the code costs (Python's timeit reports it for the same
reason). On a shared 2-core machine the medians of 3 rounds moved by 10-15 % between runs.

- dense CRF, 10 iterations, 5 / 10 / 27 labels, real photos 320x320 (the VOC photo of
  ../shared/fixtures when present, scikit-image's astronaut, coffee, chelsea, rocket), the same
  unaries (-log of clipped softmax of a smooth random field) and the field's settings
  (Gaussian sxy 1 compat 3, bilateral sxy 67 srgb 3 compat 4) vs pydensecrf2; agreement = share
  of pixels with the same argmax;
- linear assignment 1000x1000 vs scipy.optimize.linear_sum_assignment; agreement = same total cost;
- k-means (K 27, 4 k-means++ restarts, Lloyd, tol 1e-4) vs scikit-learn; inertia ratio;
- spectral eigenpairs (16 smallest generalised eigenpairs of the feature affinity at 40x40
  cells) vs scipy.sparse.linalg.eigsh as Deep Spectral Methods calls it; largest eigenvalue gap;
- a PriMaPs-EM step (batch 32 of 40x40x384, K 27, 320x320) vs a straightforward torch
  implementation of the same step (E-step, majority vote inside the masks, class-weighted
  cross-entropy, backward, Adam); both losses printed (their normalisations differ: ours divides
  by all pixels, torch's weighted mean by the labelled ones' weights).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def median_time(fn, repeats, warmup=0):
    ts = []
    out = None
    for _ in range(warmup):
        fn()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2], out


def photos(fixture: Path | None, size: int = 320):
    from PIL import Image
    out = []
    if fixture and fixture.exists():
        import h5py
        with h5py.File(fixture, "r") as f:
            if "images" in f:
                out.append(("voc", np.ascontiguousarray(f["images"][0][:size, :size])))
    try:
        import skimage.data as d
        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            im = Image.fromarray(getattr(d, name)()).convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            out.append((name, np.ascontiguousarray(np.asarray(im.crop((left, top, left + size, top + size))), dtype=np.uint8)))
    except ImportError:
        pass
    return out


def smooth_probs(rng, h, w, labels):
    """A smooth random field of class scores (8x8 logits upsampled) plus pixel noise, softmaxed."""
    import torch
    low = torch.from_numpy(rng.normal(0, 3, (1, labels, 8, 8)).astype(np.float32))
    up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
    up += rng.normal(0, 1.0, up.shape).astype(np.float32)
    up -= up.max(0, keepdims=True)
    p = np.exp(up)
    p /= p.sum(0, keepdims=True)
    return p.astype(np.float32)  # [L, H, W]


def torch_em_step(torch, feats, masks, state, h, w, H, W, k, gamma=2.0):
    f = torch.nn.functional
    v, g, mv, mg, opt = state
    b = feats.shape[0]
    with torch.no_grad():
        wm = mg[:, None] * mv / mv.norm(dim=1, keepdim=True)
        lm = (feats @ wm.T).permute(0, 2, 1).reshape(b, k, h, w)
        cls = f.interpolate(lm, size=(H, W), mode="bilinear", align_corners=False).argmax(1).reshape(b, -1)
        labels = torch.full_like(cls, 255)
        for i in range(b):
            mk = masks[i]
            for mid in torch.unique(mk):
                if mid == 0:
                    continue
                sel = mk == mid
                labels[i][sel] = torch.bincount(cls[i][sel], minlength=k).argmax()
    wr = g[:, None] * v / v.norm(dim=1, keepdim=True)
    lr = (feats @ wr.T).permute(0, 2, 1).reshape(b, k, h, w)
    logp = f.log_softmax(f.interpolate(lr, size=(H, W), mode="bilinear", align_corners=False), 1)
    with torch.no_grad():
        cw = (1 - logp.exp().mean((0, 2, 3))).clamp(min=0) ** gamma
    loss = f.nll_loss(logp, labels.reshape(b, H, W), weight=cw, ignore_index=255)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unseg-bench", required=True, help="the built unseg-bench binary")
    ap.add_argument("--fixture", default=str(Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "voc-effnet.h5"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    rounds = 2 if a.quick else 5
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="unseg-peers-"))
    tasks, peer = [], {}

    def put(name, arr):
        np.ascontiguousarray(arr).tofile(tmp / name)
        return name

    ims = photos(Path(a.fixture))
    if a.quick:
        ims = ims[:2]
    for pname, img in ims:
        h, w = img.shape[:2]
        put(f"{pname}.rgb", img)
        for labels in (5, 10, 27):
            p = smooth_probs(rng, h, w, labels)
            tid = f"crf-{pname}-{labels}"
            put(tid + ".probs", p.reshape(labels, -1).T)  # [H*W, L], pixel-major for unseg
            tasks.append(dict(kind="crf", id=tid, image=f"{pname}.rgb", probs=tid + ".probs", height=h, width=w, labels=labels))
            peer[tid] = (img, p)
    n = 1000
    cost = rng.random((n, n))
    tasks.append(dict(kind="lsa", id="lsa-1000", n=n, cost=put("lsa.cost", cost)))
    kn, kd, kk = (5000 if a.quick else 20000), 64, 27
    centres = rng.normal(0, 1, (kk, kd)).astype(np.float32)
    x = (centres[rng.integers(0, kk, kn)] + rng.normal(0, 0.6, (kn, kd))).astype(np.float32)
    tasks.append(dict(kind="kmeans", id="kmeans", n=kn, d=kd, k=kk, restarts=4, data=put("kmeans.data", x)))
    spectral_inputs = []
    fx = Path(a.fixture)
    if fx.exists():
        import h5py
        with h5py.File(fx, "r") as f:
            feat = f["features"][0].astype(np.float32)
        spectral_inputs.append(("spectral-voc", feat.reshape(-1, feat.shape[-1])))
    spectral_inputs.append(("spectral-noise", rng.normal(0, 1, (1600, 384)).astype(np.float32)))
    for sid, feat in spectral_inputs:
        tasks.append(dict(kind="spectral", id=sid, n=feat.shape[0], c=feat.shape[1], k=16, features=put(sid + ".f", feat)))
    b = 8 if a.quick else 32
    h = w = 40
    H = W = 320
    c, k = 384, 27
    cls_c = rng.normal(0, 1, (k, c)).astype(np.float32)
    feats = np.empty((b, h * w, c), np.float32)
    masks = np.zeros((b, H * W), np.uint8)
    for i in range(b):
        blocks = rng.integers(0, k, (4, 4))
        cellc = np.kron(blocks, np.ones((10, 10), int)).reshape(-1)
        feats[i] = cls_c[cellc] + rng.normal(0, 0.8, (h * w, c)).astype(np.float32)
        mb = np.kron(np.arange(1, 17).reshape(4, 4), np.ones((80, 80), int)).astype(np.uint8)
        masks[i] = mb.reshape(-1)
    protos = rng.normal(0, 1, (k, c)).astype(np.float32)
    tasks.append(dict(kind="em", id="em-step", batch=b, h=h, w=w, c=c, k=k, H=H, W=W,
                      features=put("em.f", feats), masks=put("em.m", masks), prototypes=put("em.p", protos)))
    # One timed run per task and round; each side runs every task once untimed first (unseg in every
    # round, its process being fresh; the peers in the first round, their process lives on).
    (tmp / "manifest.json").write_text(json.dumps(dict(tasks=tasks, repeats=1, warmup=1)))
    import pydensecrf.densecrf as dcrf

    def peer_round(ut, warm):
        """Each task once with the peer (after `warm` untimed runs); rows (task, unseg s, peer s, peer name, agreement)."""
        rows = []
        for t in tasks:
            peer_task(t, ut, rows, warm)
        return rows

    def peer_task(t, ut, rows, warm):
        def median_time_1(fn):
            return median_time(fn, 1, warm)
        tid = t["id"]
        if t["kind"] == "crf":
            img, p = peer[tid]
            labels, hh, ww = p.shape

            def run_crf():
                d = dcrf.DenseCRF2D(ww, hh, labels)
                d.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(p, 1e-5, 1.0)).reshape(labels, -1)))
                d.addPairwiseGaussian(sxy=1, compat=3)
                d.addPairwiseBilateral(sxy=67, srgb=3, rgbim=np.array(img, dtype=np.uint8, order="C"), compat=4)
                return np.argmax(np.array(d.inference(10)).reshape(labels, -1), 0)
            pt, ref = median_time_1(run_crf)
            ours = np.fromfile(tmp / (tid + ".out"), np.int32)
            rows.append((tid, ut[tid], pt, "pydensecrf2", f"{100 * np.mean(ours == ref):.2f} % pixels agree"))
        elif t["kind"] == "lsa":
            from scipy.optimize import linear_sum_assignment
            pt, (r, cc) = median_time_1(lambda: linear_sum_assignment(cost))
            ours = np.fromfile(tmp / (tid + ".out"), np.float64)[0]
            rows.append((tid, ut[tid], pt, "scipy lsa", f"total cost {ours:.6f} vs {cost[r, cc].sum():.6f}"))
        elif t["kind"] == "kmeans":
            from sklearn.cluster import KMeans
            from threadpoolctl import threadpool_limits
            with threadpool_limits(1):
                pt, km = median_time_1(lambda: KMeans(n_clusters=kk, n_init=4, init="k-means++", algorithm="lloyd",
                                                    max_iter=300, tol=1e-4, random_state=0).fit(x))
            ours = np.fromfile(tmp / (tid + ".out"), np.float64)[0]
            rows.append((tid, ut[tid], pt, "scikit-learn", f"inertia ratio {ours / km.inertia_:.4f}"))
        elif t["kind"] == "spectral":
            from scipy.sparse.linalg import eigsh
            feat = dict(spectral_inputs)[tid]

            def run_eigsh():
                fn = feat / np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-12)
                wa = fn @ fn.T
                wa = wa * (wa > 0)
                wa = wa / wa.max()
                d = np.diag(wa.sum(1))
                return np.sort(eigsh(d - wa, k=16, sigma=0, which="LM", M=d)[0])
            pt, vals = median_time_1(run_eigsh)
            ours = np.sort(np.fromfile(tmp / (tid + ".out"), np.float32).astype(np.float64))
            gap = np.max(np.abs(ours[:16] - vals)) if len(ours) >= 16 else float("nan")
            rows.append((tid, ut[tid], pt, "scipy eigsh", f"max eigenvalue gap {gap:.1e}"))
        elif t["kind"] == "em":
            ft = torch.from_numpy(feats)
            mt = torch.from_numpy(masks.astype(np.int64))
            v = torch.from_numpy(protos.copy()).requires_grad_()
            g = torch.ones(k, requires_grad=True)
            state = (v, g, torch.from_numpy(protos.copy()), torch.ones(k), torch.optim.Adam([v, g], lr=5e-3))
            pt, loss = median_time_1(lambda: torch_em_step(torch, ft, mt, state, h, w, H, W, k))
            ours = np.fromfile(tmp / (tid + ".out"), np.float64)[0]
            rows.append((tid, ut[tid], pt, "torch (CPU)", f"loss {ours:.4f} (unseg) / {loss:.4f} (torch)"))


    unseg_times, peer_times, last = {}, {}, []
    for r in range(rounds):
        print(f"  round {r + 1} of {rounds}: unseg (1 thread), then the peers", flush=True)
        subprocess.run([a.unseg_bench, "peers-run", str(tmp)], check=True)
        ut = json.loads((tmp / "unseg-times.json").read_text())
        last = peer_round(ut, 1 if r == 0 else 0)
        for tid, u, p, _, _ in last:
            unseg_times.setdefault(tid, []).append(u)
            peer_times.setdefault(tid, []).append(p)
    rows = [(tid, min(unseg_times[tid]), min(peer_times[tid]), name, agree) for tid, _, _, name, agree in last]

    print(f"\n  fastest of {rounds} rounds per side")
    print(f"  {'task':<26} {'unseg':>10} {'peer':>10} {'unseg faster':>13}  peer          agreement")
    for tid, u, p, name, agree in rows:
        print(f"  {tid:<26} {u * 1e3:8.1f}ms {p * 1e3:8.1f}ms {p / u:12.2f}x  {name:<13} {agree}")
    crf = [r for r in rows if r[0].startswith("crf-")]
    for labels in (5, 10, 27):
        sel = [r for r in crf if r[0].endswith(f"-{labels}")]
        if sel:
            ratio = np.exp(np.mean([np.log(r[2] / r[1]) for r in sel]))
            agree = min(float(r[4].split()[0]) for r in sel)
            print(f"  dense CRF, {labels} labels: unseg {ratio:.2f}x pydensecrf2's speed (geometric mean over {len(sel)} photos), "
                  f"lowest agreement {agree:.2f} %")
    subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
