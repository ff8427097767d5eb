"""The store itself: --flip and --views shapes and meaning, float32 on request, same bytes for the same
inputs, and --resume after a killed run giving the same bytes as an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
from conftest import inspect_store, listing, make_cityscapes, render, run_main, run_sub, save_png, subprocess_env

from unseg_extract import augment
from unseg_extract.store import partial_path


def _args(ckpt, out, size=64, batch=2):
    return ["--backbone", "dino_vits8", "--checkpoint", ckpt, "--out", out, "--size", size, "--quiet",
            "--batch-size", batch]


def _folder(path, n, h=64, w=80, mirrored=False):
    """n images of h x w whose colours follow block labels; mirrored=True stores them left-right flipped."""
    for i in range(n):
        lab = (np.arange(w)[None, :] // 9 + np.arange(h)[:, None] // 11 + i) % 6
        img = render(lab.astype(np.uint8), seed=i)
        save_png(path / f"im{i:02d}.png", img[:, ::-1] if mirrored else img)


def test_flip_stores_the_mirrored_features_flipped_back(tmp_path, vits8_ckpt, capsys):
    # W - size = 16 is even, so the centre crop of the mirrored image is the mirror of the crop.
    _folder(tmp_path / "a", 3)
    _folder(tmp_path / "b", 3, mirrored=True)
    code, _, err = run_main(["folder", "--root", tmp_path / "a", "--flip", *_args(vits8_ckpt, tmp_path / "a.h5")],
                            capsys)
    assert code == 0, err
    code, _, err = run_main(["folder", "--root", tmp_path / "b", "--flip", *_args(vits8_ckpt, tmp_path / "b.h5")],
                            capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "a.h5", "r") as fa, h5py.File(tmp_path / "b.h5", "r") as fb:
        assert fa["features_flipped"].shape == (3, 8, 8, 384) and fa["features_flipped"].chunks == (1, 8, 8, 384)
        np.testing.assert_array_equal(fb["images"][:], fa["images"][:][:, :, ::-1])
        a, af = fa["features"][:].astype(np.float32), fa["features_flipped"][:].astype(np.float32)
        b, bf = fb["features"][:].astype(np.float32), fb["features_flipped"][:].astype(np.float32)
        # b's flip = model(a's crop), flipped back to b's orientation, i.e. a's features mirrored.
        np.testing.assert_allclose(bf, a[:, :, ::-1], atol=2e-3, rtol=0)
        np.testing.assert_allclose(af, b[:, :, ::-1], atol=2e-3, rtol=0)
        assert np.abs(af - a).max() > 0.05                       # and flipping does change the features
    assert inspect_store(tmp_path / "a.h5").returncode == 0


def test_views_shape_seed_and_independence_of_batching(tmp_path, vits8_ckpt, capsys):
    _folder(tmp_path / "a", 5)
    outs = {}
    for tag, extra in {"b2": ["--batch-size", 2], "b3": ["--batch-size", 3], "s1": ["--seed", 1],
                       "none": []}.items():
        out = tmp_path / f"{tag}.h5"
        views = [] if tag == "none" else ["--views", 3]
        code, _, err = run_main(["folder", "--root", tmp_path / "a", *views, *_args(vits8_ckpt, out), *extra], capsys)
        assert code == 0, err
        outs[tag] = out
    with h5py.File(outs["b2"], "r") as f2, h5py.File(outs["b3"], "r") as f3, h5py.File(outs["s1"], "r") as fs, \
            h5py.File(outs["none"], "r") as fn:
        v2 = f2["features_views"]
        assert v2.shape == (3, 5, 8, 8, 384) and v2.chunks == (1, 1, 8, 8, 384) and v2.dtype == np.float16
        assert f2.attrs["views_seed"] == 0 and f2.attrs["views_space"] == "rgb"
        assert "features_views" not in fn
        # /features does not depend on --views; a view depends on (seed, image, view), not on the batch.
        np.testing.assert_array_equal(f2["features"][:], fn["features"][:])
        np.testing.assert_allclose(v2[:].astype(np.float32), f3["features_views"][:].astype(np.float32), atol=2e-3)
        feats = f2["features"][:].astype(np.float32)
        views = v2[:].astype(np.float32)
        for v in range(3):
            assert np.abs(views[v] - feats).max() > 0.01           # blurred at least
        assert np.abs(views[0] - views[1]).max() > 0.01
        assert np.abs(fs["features_views"][:].astype(np.float32) - views).max() > 0.01     # other seed


def test_float32_and_same_bytes_twice(tmp_path, vits8_ckpt, capsys):
    make_cityscapes(tmp_path / "cs", "val", 3)
    args = ["cityscapes", "--root", tmp_path / "cs", "--split", "val", "--flip", "--views", 1]
    for out in ("x.h5", "y.h5"):
        code, _, err = run_main([*args, *_args(vits8_ckpt, tmp_path / out)], capsys)
        assert code == 0, err
    time.sleep(1.1)                                           # timestamps, if any were stored, would differ
    code, _, err = run_main([*args, *_args(vits8_ckpt, tmp_path / "z.h5")], capsys)
    assert code == 0, err
    x = (tmp_path / "x.h5").read_bytes()
    assert x == (tmp_path / "y.h5").read_bytes() == (tmp_path / "z.h5").read_bytes()
    code, _, err = run_main([*args, "--dtype", "float32", *_args(vits8_ckpt, tmp_path / "f.h5")], capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "f.h5", "r") as f, h5py.File(tmp_path / "x.h5", "r") as g:
        assert f["features"].dtype == np.float32 and f["features_views"].dtype == np.float32
        np.testing.assert_allclose(f["features"][:], g["features"][:].astype(np.float32), atol=2e-3, rtol=1e-3)
    assert inspect_store(tmp_path / "f.h5").returncode == 0


def _wait_for_progress(partial, proc, at_least, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed: {proc.stderr.read()}")
        if partial.exists():
            try:
                with h5py.File(partial, "r", locking=False) as f:
                    if int(f.attrs.get("images_complete", -1)) >= at_least:
                        return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("no progress within the timeout")


def test_resume_after_kill_gives_the_same_bytes(tmp_path, vits8_ckpt):
    make_cityscapes(tmp_path / "cs", "train", 10)
    base = ["cityscapes", "--root", tmp_path / "cs", "--flip", "--views", 2, "--crops", 2, "--crop-scale", "0.4,0.7"]
    ref = run_sub([*base, *_args(vits8_ckpt, tmp_path / "ref.h5")])
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "out.h5"
    part = partial_path(out)
    assert part.name == ".out.h5.partial"
    cmd = [sys.executable, "-m", "unseg_extract", *[str(a) for a in base], *[str(a) for a in _args(vits8_ckpt, out)],
           "--debug-batch-delay", "1.5"]                 # 5 batches of 2: about 8 s in all
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_progress(part, proc, 2)
        # A second run on the same output while the first is writing: refused, the first goes on.
        r = run_sub([*base, *_args(vits8_ckpt, out), "--resume"])
        assert r.returncode == 1 and "being written by another unseg-extract" in r.stderr, r.stderr
        assert proc.poll() is None, "the first run ended too early for the test"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists() and part.exists()
    with h5py.File(part, "r") as f:
        done = int(f.attrs["images_complete"])
        assert 2 <= done < 10 and done % 2 == 0
    # Without --resume the leftover is refused, and left alone.
    r = run_sub([*base, *_args(vits8_ckpt, out)])
    assert r.returncode == 1 and "--resume" in r.stderr and str(part) in r.stderr and part.exists()
    # With other options it is refused too (it would mix two extractions).
    r = run_sub([*base, *_args(vits8_ckpt, out), "--resume", "--seed", "5"])
    assert r.returncode == 1 and "differs in: seed" in r.stderr and part.exists()
    r = run_sub([*base[:-2], "--crop-scale", "0.5", *_args(vits8_ckpt, out), "--resume"])
    assert r.returncode == 1 and "differs in: crop_scale" in r.stderr and part.exists()
    r = run_sub([*base, *_args(vits8_ckpt, out), "--resume"])
    assert r.returncode == 0, r.stderr
    assert f"resuming {part} at image {done} of 10" in r.stderr
    assert not part.exists()
    assert out.read_bytes() == (tmp_path / "ref.h5").read_bytes()
    with h5py.File(out, "r") as f:
        assert int(f.attrs["images_complete"]) == 10


def test_sigterm_keeps_the_partial_for_resume(tmp_path, vits8_ckpt):
    make_cityscapes(tmp_path / "cs", "train", 6)
    out = tmp_path / "t.h5"
    cmd = [sys.executable, "-m", "unseg_extract", "cityscapes", "--root", str(tmp_path / "cs"),
           *[str(a) for a in _args(vits8_ckpt, out)], "--debug-batch-delay", "0.4"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(partial_path(out), proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and partial_path(out).exists() and not out.exists()
    r = run_sub(["cityscapes", "--root", tmp_path / "cs", *_args(vits8_ckpt, out), "--resume"])
    assert r.returncode == 0, r.stderr
    assert listing(tmp_path).count("t.h5") == 1 and not partial_path(out).exists()


def test_views_in_normalized_space_like_the_reference(tmp_path, vits8_ckpt, capsys):
    _folder(tmp_path / "a", 2)
    for space in ("rgb", "normalized"):
        code, _, err = run_main(["folder", "--root", tmp_path / "a", "--views", 2, "--views-space", space,
                                 *_args(vits8_ckpt, tmp_path / f"{space}.h5")], capsys)
        assert code == 0, err
    with h5py.File(tmp_path / "rgb.h5", "r") as fr, h5py.File(tmp_path / "normalized.h5", "r") as fn:
        assert fn.attrs["views_space"] == "normalized"
        np.testing.assert_array_equal(fr["features"][:], fn["features"][:])
        r, n = fr["features_views"][:].astype(np.float32), fn["features_views"][:].astype(np.float32)
        assert r.shape == n.shape == (2, 2, 8, 8, 384)
        # Blur alone is linear with weights summing to 1, so it commutes with the normalisation: views
        # that got only the blur agree; jitter (clamped to [0, 1]) or grayscale make the spaces differ.
        kinds = set()
        for v in range(2):
            for i in range(2):
                p = augment.draw(0, i, v)
                diff = np.abs(r[v, i] - n[v, i]).max()
                if p.jitter or p.gray:
                    assert diff > 0.05, (v, i, diff)
                else:
                    assert diff < 5e-3, (v, i, diff)
                kinds.add(p.jitter or p.gray)
        assert kinds == {True, False}                 # seed 0 has both kinds among these 4 views


def test_write_failure_keeps_the_complete_images_for_resume(tmp_path, vits8_ckpt, capsys, monkeypatch):
    from unseg_extract.store import StoreWriter
    _folder(tmp_path / "a", 5)
    args = ["folder", "--root", tmp_path / "a"]
    code, _, err = run_main([*args, *_args(vits8_ckpt, tmp_path / "ref.h5")], capsys)
    assert code == 0, err
    real = StoreWriter.write_batch
    calls = []

    def failing(self, start, *a, **k):
        calls.append(start)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, start, *a, **k)

    monkeypatch.setattr(StoreWriter, "write_batch", failing)
    out = tmp_path / "o.h5"
    code, _, err = run_main([*args, *_args(vits8_ckpt, out)], capsys)
    assert code == 1 and "No space left on device" in err and "--resume" in err and "2 complete images" in err
    assert partial_path(out).exists() and not out.exists()
    monkeypatch.setattr(StoreWriter, "write_batch", real)
    code, _, err = run_main([*args, *_args(vits8_ckpt, out), "--resume"], capsys)
    assert code == 0, err
    assert out.read_bytes() == (tmp_path / "ref.h5").read_bytes()


def test_resume_of_a_damaged_partial_starts_anew(tmp_path, vits8_ckpt, capsys):
    _folder(tmp_path / "a", 3)
    args = ["folder", "--root", tmp_path / "a"]
    code, _, err = run_main([*args, *_args(vits8_ckpt, tmp_path / "ref.h5")], capsys)
    assert code == 0, err
    out = tmp_path / "o.h5"
    partial_path(out).write_bytes(b"killed while the HDF5 header was being written")
    code, _, err = run_main([*args, *_args(vits8_ckpt, out), "--resume"], capsys)
    assert code == 0, err
    assert "is incomplete" in err and "starting anew" in err
    assert out.read_bytes() == (tmp_path / "ref.h5").read_bytes() and not partial_path(out).exists()
