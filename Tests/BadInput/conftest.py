"""Fixtures and the shared checker of the bad-input suite (Tests/BadInput/test_bad_input.py).

The suite drives the built binary (`.build/release/unseg`, or $UNSEG_BIN). Session fixtures
build tiny valid inputs once (a synth store with images and labels, a second store of the same
shape with other content, proposals, a fitted checkpoint, predictions, an evaluate JSON); every
case copies what it needs into its own directory, damages it there, runs the binary once and is
checked by `check()`:

- the exit code;
- exit 1: the error is one paragraph that starts with `error:` and contains the case's
  substrings (the offending file, the dataset or attribute, the options of a clash);
  exit 64: ArgumentParser's `Error:` line and `Usage: unseg <command>`, with the option named;
- no `Fatal error`, `Stack dump`, `NSCocoaErrorDomain` / `Error Domain=`, no death by a signal;
- after a failure, no new file or folder anywhere in the case's directory; after a success, new
  files only under the declared outputs; never a `.NAME.tmp-PID-N` leftover;
- every file that existed before the run is byte-identical afterwards (sha256), symlinks still
  point where they pointed.

Run: `python3 -m pytest Tests/BadInput -q` (about a minute on 2 cores). The terminal summary
ends with one line per failing case: exit code and the first line of stderr.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

BIN = os.environ.get("UNSEG_BIN") or str(Path(__file__).resolve().parents[2] / ".build/release/unseg")

# A child may not use more than this much address space: an input that makes the tool allocate
# hundreds of GB must fail inside the child, not push the shared build machine into swap or OOM.
CHILD_ADDRESS_SPACE = 6 << 30

# Traps and raw Foundation errors ("The operation could not be completed." is NSError's own
# description: the issue asks for file-system errors rephrased with the option and the path).
FORBIDDEN = ("Fatal error", "Stack dump", "NSCocoaErrorDomain", "Error Domain=", "Swift runtime failure",
             "Segmentation fault", "Illegal instruction", "Trace/breakpoint trap",
             "The operation could not be completed")

TMP_RE = re.compile(r"^\..+\.tmp-\d+-\d+")

RESULTS: list[dict] = []


# --------------------------------------------------------------------------------------------
# Running the binary


def _child_setup() -> None:
    # Background jobs of a non-interactive shell inherit SIGINT ignored; a user's terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def _binary_stamp():
    try:
        st = os.stat(BIN)
        return (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


def _wait_for_binary(limit: float = 300) -> None:
    """The binary may be rebuilt under us: wait until it exists and has not changed for 2 s."""
    deadline = time.monotonic() + limit
    while True:
        a = _binary_stamp()
        if a is not None and os.access(BIN, os.X_OK) and time.time() - a[0] / 1e9 > 2:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no stable binary at {BIN}")
        time.sleep(0.5)


@dataclass
class Result:
    argv: list
    code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def popen(argv: list, cwd=None) -> subprocess.Popen:
    _wait_for_binary()
    for _ in range(30):
        try:
            return subprocess.Popen([BIN] + [str(a) for a in argv], cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        except OSError as e:  # being replaced by the linker
            if e.errno not in (errno.ETXTBSY, errno.ENOENT, errno.ENOEXEC, errno.EACCES):
                raise
            time.sleep(1)
    raise RuntimeError(f"cannot start {BIN}")


def run_unseg(argv: list, cwd=None, timeout: float = 60) -> Result:
    """Runs `unseg argv...`; reruns when the binary was replaced while it ran."""
    for attempt in range(3):
        _wait_for_binary()
        stamp = _binary_stamp()
        t0 = time.monotonic()
        p = popen(argv, cwd=cwd)
        timed_out = False
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            timed_out = True
        r = Result([str(a) for a in argv], p.returncode, out.decode("utf-8", "replace"),
                   err.decode("utf-8", "replace"), time.monotonic() - t0, timed_out)
        if _binary_stamp() == stamp:
            return r
    return r


def unseg_ok(argv: list, cwd=None) -> Result:
    """For building valid inputs: the command must succeed."""
    r = run_unseg(argv, cwd=cwd)
    assert r.code == 0, f"building an input failed: unseg {' '.join(r.argv)} -> {r.code}\n{r.stderr}"
    return r


# --------------------------------------------------------------------------------------------
# Session inputs

RECIPE = """\
name: "bad-input"
classes: 4
seed: 0
batch_size: 3
stages: [pca-init, cosine-kmeans, primaps-em]
pca-init:
  sample_images: 6
cosine-kmeans:
  epochs: 1
primaps-em:
  epochs: 1
"""

TINY = ["--images", "6", "--size", "32", "--patch", "4", "--channels", "16", "--classes", "4"]


@dataclass
class Base:
    dir: Path
    files: dict = field(default_factory=dict)

    def __getitem__(self, k: str) -> Path:
        return self.files[k]


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Base:
    d = tmp_path_factory.mktemp("base")
    b = Base(d)
    f = b.files
    f["store"], f["other"] = d / "store.h5", d / "other.h5"
    unseg_ok(["synth", "--out", f["store"], "--seed", "0"] + TINY)
    # Same shape, same classes, other images.
    unseg_ok(["synth", "--out", f["other"], "--seed", "0", "--split", "val"] + TINY)
    f["store5"] = d / "store5.h5"
    unseg_ok(["synth", "--out", f["store5"], "--seed", "0", "--images", "5"] + TINY[2:])
    f["store32"] = d / "store32.h5"
    unseg_ok(["synth", "--out", f["store32"], "--seed", "0", "--channels", "32"] + TINY[:6] + TINY[8:])
    f["recipe"] = d / "recipe.yaml"
    f["recipe"].write_text(RECIPE)
    f["props"], f["other_props"], f["props5"] = d / "props.h5", d / "other-props.h5", d / "props5.h5"
    unseg_ok(["propose", "--store", f["store"], "--out", f["props"]])
    unseg_ok(["propose", "--store", f["other"], "--out", f["other_props"]])
    unseg_ok(["propose", "--store", f["store5"], "--out", f["props5"]])
    f["ckpt"] = d / "ckpt.h5"
    unseg_ok(["fit", "--recipe", f["recipe"], "--store", f["store"], "--checkpoint", f["ckpt"]])
    f["preds"], f["other_preds"] = d / "preds.h5", d / "other-preds.h5"
    unseg_ok(["predict", "--checkpoint", f["ckpt"], "--store", f["store"], "--out", f["preds"]])
    unseg_ok(["predict", "--checkpoint", f["ckpt"], "--store", f["other"], "--out", f["other_preds"]])
    f["json"] = d / "metrics.json"
    unseg_ok(["evaluate", "--store", f["store"], "--predictions", f["preds"], "--json", f["json"]])
    # Long enough to interrupt: PriMaPs + CRF on 400 images takes ~3 s on 2 cores.
    f["big"] = d / "big.h5"
    unseg_ok(["synth", "--out", f["big"], "--images", "400", "--size", "64", "--patch", "8",
              "--channels", "384", "--classes", "4"])
    return b


# --------------------------------------------------------------------------------------------
# A case's directory and its inputs


class Env:
    """One case's directory. `p` maps names to paths used in argv and in expected substrings."""

    def __init__(self, d: Path, base: Base):
        self.dir = d
        self.base = base
        self.p: dict[str, str] = {"d": str(d)}
        self.expect_removed: set[str] = set()   # pre-existing files the run must remove
        self.keep_tmp: set[str] = set()          # pre-existing temporaries the run must keep
        self.outputs: list[str] = []             # where a successful run may create files

    def path(self, name: str, key: str | None = None) -> str:
        s = str(self.dir / name)
        if key:
            self.p[key] = s
        return s

    def copy(self, what: str, name: str | None = None, key: str | None = None) -> str:
        src = self.base[what]
        dst = self.path(name or src.name, key or what)
        shutil.copyfile(src, dst)
        return dst

    def text(self, name: str, content: str | bytes, key: str | None = None) -> str:
        s = self.path(name, key)
        Path(s).write_bytes(content if isinstance(content, bytes) else content.encode())
        return s

    def edit(self, path: str, fn: Callable[[h5py.File], None]) -> str:
        with h5py.File(path, "r+") as f:
            fn(f)
        return path

    def symlink(self, name: str, target: str, key: str | None = None) -> str:
        s = self.path(name, key)
        os.symlink(target, s)
        return s

    def hardlink(self, name: str, target: str, key: str | None = None) -> str:
        s = self.path(name, key)
        os.link(target, s)
        return s

    def mkdir(self, name: str, key: str | None = None) -> str:
        s = self.path(name, key)
        os.makedirs(s, exist_ok=True)
        return s

    def store(self, name: str = "store.h5", key: str = "store", *, n: int = 6, h: int = 8, w: int = 8,
              c: int = 16, patch=4, images: bool = True, labels: bool = True, names=None,
              dtype=np.float16, features=None, attrs: dict | None = None) -> str:
        """A store written with h5py as a user's script would (features from the session store
        where the shape allows, so the data are realistic)."""
        s = self.path(name, key)
        if features is None:
            with h5py.File(self.base["store"], "r") as src:
                f0 = src["features"][()].astype(np.float32)
            if f0.shape == (n, h, w, c):
                features = f0
            else:
                features = np.random.default_rng(1).standard_normal((n, h, w, c)).astype(np.float32)
        with h5py.File(s, "w") as f:
            f.attrs.update({"format": "unseg.feature-store", "version": 1, "backbone": "test",
                            "patch_size": patch, "dataset": "synthetic", "split": "train"})
            for k, v in (attrs or {}).items():
                if v is None:
                    del f.attrs[k]
                else:
                    f.attrs[k] = v
            shape = features.shape
            chunked = features.ndim >= 2 and all(shape[1:])
            f.create_dataset("features", data=features.astype(dtype), chunks=(1,) + shape[1:] if chunked else None,
                             maxshape=(None,) + shape[1:] if chunked else None)
            N = shape[0]
            H, W = (h * patch, w * patch) if isinstance(patch, int) and 0 < patch <= 64 else (32, 32)
            if images:
                img = np.random.default_rng(2).integers(0, 255, (N, H, W, 3), dtype=np.uint8)
                f.create_dataset("images", data=img, chunks=(1, H, W, 3), maxshape=(None, H, W, 3))
            if labels:
                lab = np.random.default_rng(3).integers(0, 4, (N, H, W), dtype=np.uint8)
                f.create_dataset("labels", data=lab, chunks=(1, H, W), maxshape=(None, H, W))
                f.attrs["protocol"] = "generic4"
                f.attrs["class_names"] = [f"class_{i:02d}" for i in range(4)]
            if names is None:
                names = [f"img_{i}" for i in range(N)]
            if names is not False:
                f.create_dataset("names", data=names, dtype=h5py.string_dtype("utf-8"),
                                 maxshape=(None,))
        return s

    def checkpoint(self, name: str = "ckpt.h5", key: str = "ckpt", edit=None) -> str:
        s = self.copy("ckpt", name, key)
        if edit:
            self.edit(s, edit)
        return s


# --------------------------------------------------------------------------------------------
# Snapshots and the shared checker


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(d: Path) -> dict:
    """Every entry under d (symlinks not followed): path -> ('file', sha) | ('link', target) | ('dir',)."""
    snap = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = Path(root) / n
            if p.is_symlink():
                snap[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                snap[str(p)] = ("dir",)
            else:
                snap[str(p)] = ("file", _sha(p))
    return snap


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def file_problems(env: Env, before: dict, after: dict, code: int) -> list[str]:
    problems = []
    created = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    if code == 0:
        stray = [p for p in created if not _under(p, env.outputs)]
        if stray:
            problems.append(f"files outside the outputs: {stray}")
    elif created:
        problems.append(f"a failed run left new files: {created}")
    missing = [p for p in gone if p not in env.expect_removed]
    if missing:
        problems.append(f"inputs removed or replaced: {missing}")
    not_removed = [p for p in env.expect_removed if p in after]
    if not_removed:
        problems.append(f"stale temporaries not removed: {not_removed}")
    changed = [p for p in before if p in after and before[p] != after[p] and before[p][0] != "dir"]
    if changed:
        problems.append(f"inputs changed (not byte-identical / link retargeted): {changed}")
    leftovers = [p for p in after if TMP_RE.match(Path(p).name) and p not in env.keep_tmp]
    if leftovers:
        problems.append(f"temporaries left: {leftovers}")
    return problems


def message_problems(r: Result, code: int, needles, command: str) -> list[str]:
    problems = []
    both = r.stdout + r.stderr
    for bad in FORBIDDEN:
        if bad in both:
            problems.append(f"output contains {bad!r}")
    err = r.stderr.strip()
    if code == 1:
        lines = err.splitlines()
        starts = [i for i, l in enumerate(lines) if l.startswith("error:")]
        if not starts:
            problems.append("no line starts with 'error:'")
        else:
            # Informational lines printed before a mid-run problem was found (fit's stage log) may
            # precede it; the error itself is the last paragraph, one paragraph, only one of them.
            para = "\n".join(lines[starts[0]:])
            if len(starts) > 1 or "\n\n" in para or not para.strip():
                problems.append("the error is not one paragraph")
            err = para
    elif code == 64:
        if "Usage: unseg " + command not in err or not re.search(r"(?m)^Error: ", err):
            problems.append(f"not ArgumentParser's usage error for {command}")
    if code == 0 and re.search(r"(?m)^error:", err):
        problems.append("a successful run printed an error")
    for n in needles:
        if isinstance(n, re.Pattern):
            if not n.search(err):
                problems.append(f"message lacks /{n.pattern}/")
        elif n.startswith("~"):  # case-insensitive phrase
            if n[1:].lower() not in err.lower():
                problems.append(f"message lacks {n[1:]!r}")
        elif n not in err:
            problems.append(f"message lacks {n!r}")
    return problems


def describe(r: Result) -> str:
    if r.timed_out:
        return "timed out (killed)"
    if r.code < 0:
        return f"killed by {signal.Signals(-r.code).name}"
    return f"exit {r.code}"


def first_line(r: Result) -> str:
    """The line that says what happened: the error, or the trap's message."""
    lines = [l.strip() for l in r.stderr.splitlines() if l.strip()]
    for l in lines:
        if re.match(r"(?i)error:", l) or "Fatal error" in l or "runtime failure" in l:
            return l[:400]
    return lines[-1][:400] if lines else "(stderr empty)"


def record(case_id: str, r: Result | None, problems: list[str]) -> None:
    RESULTS.append({"case": case_id, "code": None if r is None else describe(r),
                    "stderr": None if r is None else first_line(r),
                    "seconds": None if r is None else round(r.seconds, 3), "problems": problems})


def fail_if(case_id: str, r: Result | None, problems: list[str]) -> None:
    record(case_id, r, problems)
    if problems:
        detail = "" if r is None else f"\n--- {describe(r)}; stderr:\n{r.stderr.strip()[:2000]}\n--- stdout:\n{r.stdout.strip()[:600]}"
        pytest.fail("; ".join(problems) + detail, pytrace=False)


def format_needles(env: Env, needles) -> list:
    return [n if isinstance(n, re.Pattern) else n.format(**env.p) for n in needles]


def check(env: Env, case_id: str, argv: list, code: int, needles=(), extra=None, timeout: float = 60) -> Result:
    """Runs the case once and applies every check; `extra(env, result)` returns more problems."""
    command = str(argv[0])
    needles = format_needles(env, needles)
    before = snapshot(env.dir)
    r = run_unseg(argv, cwd=env.dir, timeout=timeout)
    after = snapshot(env.dir)
    problems = []
    if r.code != code:
        problems.append(f"expected exit {code}, got {describe(r)}")
    problems += message_problems(r, code, needles, command)
    problems += file_problems(env, before, after, code)
    if extra and r.code == code:
        problems += extra(env, r) or []
    fail_if(case_id, r, problems)
    return r


@pytest.fixture
def env(tmp_path, base) -> Env:
    d = tmp_path / "case"
    d.mkdir()
    return Env(d, base)


# For the summary only: which bullet of the issue a case checks, from its id (first match wins).
CATEGORIES = [
    ("foreign maps (PNG, HDF5)", r"evaluate/(png-|h5-|plain-h5|export-folder|resize-|clusters-)"),
    ("concurrency", r"two-writers|killed-writer|killed-during"),
    ("interrupts and leftovers", r"sig|stale|temporary|with-overlays|with-report"),
    ("recipe", r"recipe"),
    ("odd names", r"odd-names|name-300|names-with|duplicate-names|non-utf8|empty-and-dot"),
    ("non-writable output paths", r"under-regular-file|is-regular-file|is-a-directory|is-directory|missing-directory"),
    ("usage errors (64)", r"/(size-|images-0|patch-0|channels-0|deflate|overlay-count|threshold|classes-0|val-images)"),
    ("provenance and ids", r"other-store|replaced|image-count-mismatch|id-|matching-(not|wrong|class)|with-matching"),
    ("non-finite and degenerate", r"nan|inf-|zero-prototype|all-zero|constant"),
    ("header, shape, file kind", r"patch-size|features-|count-mismatch|channel-mismatch|not-hdf5|truncated|resume-|"
                                 r"checkpoint-is-a-store|predictions-is-proposals"),
    ("zero images", r"zero-images"),
    ("output == input", r"-is-|symlink|hardlink|spelling|folder-of-inputs"),
]


def category(case_id: str) -> str:
    for name, pattern in CATEGORIES:
        if re.search(pattern, case_id):
            return name
    return "other"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    failing = [x for x in RESULTS if x["problems"]]
    tr = terminalreporter
    tr.section(f"bad-input cases: {len(RESULTS)} run, {len(failing)} failing")
    counts: dict = {}
    for x in RESULTS:
        c = counts.setdefault(category(x["case"]), [0, 0])
        c[0] += 1
        c[1] += bool(x["problems"])
    for name, (n, f) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
        tr.write_line(f"  {name:28s} {n:3d} cases, {f:3d} failing")
    for x in failing:
        tr.write_line(f"FAIL {x['case']}: {x['code']}: {x['stderr']}  [{'; '.join(x['problems'])[:300]}]")
    out = os.environ.get("BADINPUT_RESULTS")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=1))
