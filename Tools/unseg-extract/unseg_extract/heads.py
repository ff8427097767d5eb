"""A peer's segmentation head (STEGO, HP) read from its published checkpoint: ``--head``.

STEGO (mhamilton723/STEGO) trains a projection on frozen DINO patch features and publishes a
PyTorch Lightning checkpoint: ``state_dict`` with the backbone under ``net.model.*``, the head as
``net.cluster1.0`` (a 1x1 conv, D -> dim) and ``net.cluster2.{0,2}`` (1x1 conv D -> D, ReLU,
1x1 conv D -> dim), the cluster probe ``cluster_probe.clusters`` [K + extra, dim] and a linear
probe ``linear_probe`` (1x1 conv dim -> K); ``hyper_parameters`` holds OmegaConf objects.

The features STEGO's head reads are the last block's tokens after the final LayerNorm, CLS
dropped (its ``get_intermediate_feat`` appends ``self.norm(x)``): the features unseg-extract
stores. The code is ``cluster1(f) + cluster2(f)``; STEGO applies Dropout2d(0.1) before each
term in training, and this module applies the head in eval mode (no dropout).

HP (hynnsk/HP) builds on STEGO's code: the same head and features (its DinoFeaturizer, feat type
"feat", also after the final LayerNorm), saved by its ``run.py`` as a plain dict
(``net_model_state_dict``: ``cluster1.*``, ``cluster2.*``; ``cluster_model_state_dict['clusters']``).
PriMaPs (visinf/primaps, ``train.py --stego-ckpt / --hp-ckpt``) fits PriMaPs-EM on this code,
with the masks computed from the plain backbone's features, and starts the prototypes from the
cluster probe's centroids with gains 1.

Reading a Lightning checkpoint without Lightning or OmegaConf installed: the unpickler below
rebuilds tensors and plain containers and turns every other class it meets into an inert
placeholder, so nothing in the file runs and nothing outside torch needs importing.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import torch

from .errors import ExtractError

_SAFE_BUILTINS = {"set", "frozenset", "slice", "complex", "tuple", "list", "dict", "bytearray", "int", "float", "str"}


class _Placeholder:
    """Stands in for a class the checkpoint names but we do not need (OmegaConf, Lightning)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    # Containers pickled with APPENDS / SETITEMS opcodes.
    def append(self, v):
        pass

    def extend(self, v):
        pass

    def __setitem__(self, k, v):
        pass


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch" or module.startswith("torch."):
            return super().find_class(module, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return super().find_class(module, name)
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if module == "_codecs" and name == "encode":
            return super().find_class(module, name)
        return type(name, (_Placeholder,), {"__module__": "unseg_extract.heads.placeholder"})


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``."""

    Unpickler = _Unpickler
    __name__ = "unseg_extract.heads._PickleModule"

    @staticmethod
    def load(f, **kwargs):
        return _Unpickler(f, **kwargs).load()


@dataclass
class PeerHead:
    """A peer's head (STEGO's or HP's), float32 on the CPU: ``code(f)`` for patch features ``f [B, h, w, D]``.

    Both peers define the same head (HP builds on STEGO's code): ``cluster1`` a 1x1 conv D -> dim,
    ``cluster2`` 1x1 conv D -> D, ReLU, 1x1 conv D -> dim; code = cluster1(f) + cluster2(f).
    """

    method: str            # "stego" or "hp"
    w1: torch.Tensor       # [dim, D]     cluster1.0
    b1: torch.Tensor       # [dim]
    w2a: torch.Tensor      # [D, D]       cluster2.0
    b2a: torch.Tensor      # [D]
    w2b: torch.Tensor      # [dim, D]     cluster2.2
    b2b: torch.Tensor      # [dim]
    clusters: torch.Tensor  # [K + extra, dim] the cluster probe's centroids
    sha256: str
    backbone_patch: torch.Tensor | None = None   # the peer's own copy of patch_embed.proj.weight, if it has one
    warning: str | None = None                   # set by load_head: the peer's backbone copy differs from ours

    @property
    def dim(self) -> int:
        return self.w1.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.w1.shape[1]

    @torch.no_grad()
    def code(self, f: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, D]`` -> ``[B, h, w, dim]``: the linear plus the nonlinear 1x1 projection (eval mode)."""
        f = f.float()
        linear = f @ self.w1.T + self.b1
        hidden = torch.relu(f @ self.w2a.T + self.b2a)
        return linear + (hidden @ self.w2b.T + self.b2b)

    @torch.no_grad()
    def cluster_probe(self, code: torch.Tensor) -> torch.Tensor:
        """The peer's cluster probe: argmax over clusters of the cosine of code and cluster, ``[B, h, w]``."""
        c = torch.nn.functional.normalize(code.float(), dim=-1)
        k = torch.nn.functional.normalize(self.clusters, dim=1)
        return (c @ k.T).argmax(dim=-1)


StegoHead = PeerHead   # the name of the first step (issue 23)

_HEAD_KEYS = ("w1", "b1", "w2a", "b2a", "w2b", "b2b")

_STEGO_HEAD = {
    "net.cluster1.0.weight": "w1", "net.cluster1.0.bias": "b1",
    "net.cluster2.0.weight": "w2a", "net.cluster2.0.bias": "b2a",
    "net.cluster2.2.weight": "w2b", "net.cluster2.2.bias": "b2b",
    "cluster_probe.clusters": "clusters",
}

_HP_NET = {
    "cluster1.0.weight": "w1", "cluster1.0.bias": "b1",
    "cluster2.0.weight": "w2a", "cluster2.0.bias": "b2a",
    "cluster2.2.weight": "w2b", "cluster2.2.bias": "b2b",
}

_EXPECTED = ("a STEGO checkpoint as mhamilton723/STEGO publishes it (a PyTorch Lightning file whose state_dict "
             "has net.cluster1.0.weight, net.cluster2.{0,2}.weight and cluster_probe.clusters)")

_EXPECTED_HP = ("an HP checkpoint as hynnsk/HP saves it (ckpt.pth: a dict with net_model_state_dict holding "
                "cluster1.0.weight and cluster2.{0,2}.weight, and cluster_model_state_dict holding clusters)")

METHODS = ("stego", "hp")


def parse_spec(spec: str) -> tuple:
    """``"stego:PATH"`` / ``"hp:PATH"`` -> (method, path); ExtractError for anything else."""
    method, sep, path = str(spec).partition(":")
    if not sep or method.lower() not in METHODS or not path:
        raise ExtractError(f"--head takes METHOD:PATH with METHOD one of {', '.join(METHODS)} "
                           f"(e.g. --head stego:cityscapes_vit_base_1.ckpt), got '{spec}'")
    return method.lower(), path


def _read(path: str, expected: str):
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "ckpt.pth")):
        path = os.path.join(path, "ckpt.pth")     # HP's run folder (the PriMaPs README passes the folder)
    if not os.path.isfile(path):
        raise ExtractError(f"head checkpoint not found; expected {expected}", path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExtractError(f"cannot be read as a PyTorch checkpoint ({first}; a truncated download?); "
                           f"expected {expected}", path) from None
    return path, ck


def _head(method: str, path: str, t: dict, feature_dim: int, names: dict, expected: str,
          patch_weight=None) -> PeerHead:
    """Checks and flattens the tensors ``t`` (by attribute) read from ``path``; ``names``: attribute -> key."""
    for attr in ("w1", "w2a", "w2b"):
        if t[attr].dim() == 4:
            if tuple(t[attr].shape[2:]) != (1, 1):
                raise ExtractError(f"{names[attr]}: a {tuple(t[attr].shape[2:])} convolution, the peer's head is 1x1; "
                                   f"expected {expected}", path)
            t[attr] = t[attr][:, :, 0, 0]
    if t["w1"].dim() != 2:
        raise ExtractError(f"{names['w1']} has shape {list(t['w1'].shape)}; expected [dim, D, 1, 1]; "
                           f"expected {expected}", path)
    dim, d = t["w1"].shape
    if d != feature_dim:
        raise ExtractError(f"the head reads {d}-wide features ({names['w1']} {list(t['w1'].shape)}) but the "
                           f"backbone's features are {feature_dim}-wide: a head trained on another backbone; "
                           f"pass the backbone the head was trained with", path)
    want = {"b1": (dim,), "w2a": (d, d), "b2a": (d,), "w2b": (dim, d), "b2b": (dim,)}
    wrong = [f"{names[a]} {tuple(t[a].shape)} (needs {s})" for a, s in want.items() if tuple(t[a].shape) != s]
    if t["clusters"].dim() != 2 or t["clusters"].shape[1] != dim:
        wrong.append(f"{names['clusters']} {tuple(t['clusters'].shape)} (needs [K, {dim}])")
    if wrong:
        raise ExtractError(f"the head's tensors do not fit together: {'; '.join(wrong)}; expected {expected}", path)
    bad = [names[a] for a, v in t.items() if not torch.isfinite(v).all()]
    if bad:
        raise ExtractError(f"{', '.join(bad)} hold NaN or infinite values: a damaged checkpoint", path)
    from .extract import _sha256   # here, not at the top: extract imports this module
    pw = patch_weight.detach().float() if isinstance(patch_weight, torch.Tensor) else None
    return PeerHead(method=method, **t, sha256=_sha256(path), backbone_patch=pw)


def _top_keys(ck) -> str:
    return ", ".join(map(str, list(ck)[:5])) if isinstance(ck, dict) else type(ck).__name__


def _what_else(ck, wanted: str) -> str:
    """What a checkpoint without the ``wanted`` top-level key is instead: the other peer's file, a
    plain backbone, or its top-level keys."""
    if isinstance(ck, dict):
        if wanted != "net_model_state_dict" and "net_model_state_dict" in ck:
            return "an HP checkpoint (net_model_state_dict): pass it as --head hp:PATH"
        if wanted != "state_dict" and "state_dict" in ck:
            return "a Lightning checkpoint (state_dict), as STEGO publishes: pass it as --head stego:PATH"
        if "cls_token" in ck:
            return "a plain backbone state dict, not a segmentation head"
    return f"no {wanted} (top level: {_top_keys(ck)})"


def load_stego(path, feature_dim: int) -> PeerHead:
    """Reads STEGO's head from ``path`` for a backbone of width ``feature_dim``.

    Errors (ExtractError naming the file and what was expected): missing file; a file torch
    cannot read (truncated, not PyTorch); a checkpoint of another method or a backbone-only file;
    a head for another backbone width; shapes that do not fit together.
    """
    path, ck = _read(os.fspath(path), _EXPECTED)
    state = ck.get("state_dict") if isinstance(ck, dict) else None
    if not isinstance(state, dict):
        raise ExtractError(f"is {_what_else(ck, 'state_dict')}; expected {_EXPECTED}", path)
    missing = [k for k in _STEGO_HEAD if k not in state]
    if missing:
        hint = (" (it has a state_dict but not STEGO's head: a checkpoint of another method, or one saved "
                "before the head was added)")
        raise ExtractError(f"misses {', '.join(missing)}{hint}; expected {_EXPECTED}", path)
    t = {attr: state[k].detach().float() for k, attr in _STEGO_HEAD.items()}
    return _head("stego", path, t, feature_dim, {a: k for k, a in _STEGO_HEAD.items()}, _EXPECTED,
                 state.get("net.model.patch_embed.proj.weight"))


def load_hp(path, feature_dim: int) -> PeerHead:
    """Reads HP's head from ``path`` (the ``ckpt.pth`` HP's ``run.py`` saves, or its folder).

    HP's ``net_model_state_dict`` is its DinoFeaturizer: the backbone under ``model.*``, the head as
    ``cluster1`` / ``cluster2`` (what its evaluation and PriMaPs' ``HPFeaturizer`` use: output [1]),
    and EMA copies ``ema_model1`` / ``ema_model2`` that the code does not read. The cluster probe is
    ``cluster_model_state_dict['clusters']``. Errors as ``load_stego``.
    """
    path, ck = _read(os.fspath(path), _EXPECTED_HP)
    if not isinstance(ck, dict) or "net_model_state_dict" not in ck:
        raise ExtractError(f"is {_what_else(ck, 'net_model_state_dict')}; expected {_EXPECTED_HP}", path)
    net = ck["net_model_state_dict"]
    clusters = ck.get("cluster_model_state_dict")
    missing = [k for k in _HP_NET if not isinstance(net, dict) or k not in net]
    if not isinstance(clusters, dict) or "clusters" not in clusters:
        missing.append("cluster_model_state_dict['clusters']")
    if missing:
        raise ExtractError(f"misses {', '.join(missing)} (a checkpoint of another method, or one saved without "
                           f"the head or the cluster probe); expected {_EXPECTED_HP}", path)
    t = {attr: net[k].detach().float() for k, attr in _HP_NET.items()}
    t["clusters"] = clusters["clusters"].detach().float()
    names = {a: f"net_model_state_dict['{k}']" for k, a in _HP_NET.items()}
    names["clusters"] = "cluster_model_state_dict['clusters']"
    return _head("hp", path, t, feature_dim, names, _EXPECTED_HP, net.get("model.patch_embed.proj.weight"))


def load_head(spec: str, feature_dim: int, backbone=None, backbone_name: str = "") -> PeerHead:
    """``--head METHOD:PATH`` -> the peer's head for features of width ``feature_dim``.

    With ``backbone`` (the loaded model), the peer's own copy of the backbone (STEGO and HP save
    it beside the head) is compared with it: another patch size is an error (a head trained on,
    say, ViT-S/16 features read ViT-S/8 ones); other weights of the same shape return a warning
    in ``head.warning`` (the head was trained on another checkpoint of the backbone).
    """
    method, path = parse_spec(spec)
    head = (load_stego if method == "stego" else load_hp)(path, feature_dim)
    mine = getattr(getattr(getattr(backbone, "patch_embed", None), "proj", None), "weight", None)
    if head.backbone_patch is not None and mine is not None:
        theirs = head.backbone_patch
        if tuple(theirs.shape) != tuple(mine.shape):
            raise ExtractError(f"the head was trained on a backbone with {theirs.shape[-1]}x{theirs.shape[-1]} patches "
                               f"(its patch_embed.proj.weight {list(theirs.shape)}) but --backbone {backbone_name} has "
                               f"{mine.shape[-1]}x{mine.shape[-1]}: pass the backbone the head was trained with", path)
        if not torch.equal(theirs, mine.detach().float().cpu()):
            head.warning = (f"the backbone weights saved in {path} differ from --checkpoint's (patch_embed.proj.weight): "
                            f"the head was trained on another checkpoint of {backbone_name}; its code may not mean what it "
                            f"did in training")
    return head
