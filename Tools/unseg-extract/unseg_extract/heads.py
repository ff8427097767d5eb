"""A peer's segmentation head read from its published checkpoint (issue 23, the loader only).

STEGO (mhamilton723/STEGO) trains a projection on frozen DINO patch features and publishes a
PyTorch Lightning checkpoint: ``state_dict`` with the backbone under ``net.model.*``, the head as
``net.cluster1.0`` (a 1x1 conv, D -> dim) and ``net.cluster2.{0,2}`` (1x1 conv D -> D, ReLU,
1x1 conv D -> dim), the cluster probe ``cluster_probe.clusters`` [K + extra, dim] and a linear
probe ``linear_probe`` (1x1 conv dim -> K); ``hyper_parameters`` holds OmegaConf objects.

The features STEGO's head reads are the last block's tokens after the final LayerNorm, CLS
dropped (its ``get_intermediate_feat`` appends ``self.norm(x)``): the features unseg-extract
stores. The code is ``cluster1(f) + cluster2(f)``; STEGO applies Dropout2d(0.1) before each
term in training, and this module applies the head in eval mode (no dropout).

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
class StegoHead:
    """STEGO's head, float32 on the CPU: ``code(f)`` for patch features ``f [B, h, w, D]``."""

    w1: torch.Tensor       # [dim, D]     cluster1.0
    b1: torch.Tensor       # [dim]
    w2a: torch.Tensor      # [D, D]       cluster2.0
    b2a: torch.Tensor      # [D]
    w2b: torch.Tensor      # [dim, D]     cluster2.2
    b2b: torch.Tensor      # [dim]
    clusters: torch.Tensor  # [K + extra, dim] cluster_probe.clusters
    sha256: str

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
        """STEGO's cluster probe: argmax over clusters of the cosine of code and cluster, ``[B, h, w]``."""
        c = torch.nn.functional.normalize(code.float(), dim=-1)
        k = torch.nn.functional.normalize(self.clusters, dim=1)
        return (c @ k.T).argmax(dim=-1)


_STEGO_HEAD = {
    "net.cluster1.0.weight": "w1", "net.cluster1.0.bias": "b1",
    "net.cluster2.0.weight": "w2a", "net.cluster2.0.bias": "b2a",
    "net.cluster2.2.weight": "w2b", "net.cluster2.2.bias": "b2b",
    "cluster_probe.clusters": "clusters",
}

_EXPECTED = ("a STEGO checkpoint as mhamilton723/STEGO publishes it (a PyTorch Lightning file whose state_dict "
             "has net.cluster1.0.weight, net.cluster2.{0,2}.weight and cluster_probe.clusters)")


def load_stego(path, feature_dim: int) -> StegoHead:
    """Reads STEGO's head from ``path`` for a backbone of width ``feature_dim``.

    Errors (ExtractError naming the file and what was expected): missing file; a file torch
    cannot read (truncated, not PyTorch); a checkpoint of another method or a backbone-only file;
    a head for another backbone width; shapes that do not fit together.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExtractError(f"head checkpoint not found; expected {_EXPECTED}", path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExtractError(f"cannot be read as a PyTorch checkpoint ({first}; a truncated download?); "
                           f"expected {_EXPECTED}", path) from None
    state = ck.get("state_dict") if isinstance(ck, dict) else None
    if not isinstance(state, dict):
        if isinstance(ck, dict) and "net_model_state_dict" in ck:
            what = "an HP checkpoint (net_model_state_dict): pass it as --head hp:PATH"
        elif isinstance(ck, dict) and "cls_token" in ck:
            what = "a plain backbone state dict, not a segmentation head"
        else:
            keys = ", ".join(list(ck)[:5]) if isinstance(ck, dict) else type(ck).__name__
            what = f"no state_dict (top level: {keys})"
        raise ExtractError(f"is {what}; expected {_EXPECTED}", path)
    missing = [k for k in _STEGO_HEAD if k not in state]
    if missing:
        hint = (" (it has a state_dict but not STEGO's head: a checkpoint of another method, or one saved "
                "before the head was added)")
        raise ExtractError(f"misses {', '.join(missing)}{hint}; expected {_EXPECTED}", path)
    t = {attr: state[k].detach().float() for k, attr in _STEGO_HEAD.items()}
    for attr in ("w1", "w2a", "w2b"):
        if t[attr].dim() == 4:
            if tuple(t[attr].shape[2:]) != (1, 1):
                raise ExtractError(f"{attr}: a {tuple(t[attr].shape[2:])} convolution, STEGO's head is 1x1; "
                                   f"expected {_EXPECTED}", path)
            t[attr] = t[attr][:, :, 0, 0]
    dim, d = t["w1"].shape
    if d != feature_dim:
        raise ExtractError(f"the head reads {d}-wide features (net.cluster1.0.weight {list(state['net.cluster1.0.weight'].shape)}) "
                           f"but the backbone's features are {feature_dim}-wide: a head trained on another backbone; "
                           f"pass the backbone the head was trained with", path)
    want = {"b1": (dim,), "w2a": (d, d), "b2a": (d,), "w2b": (dim, d), "b2b": (dim,)}
    wrong = [f"{a} {tuple(t[a].shape)} (needs {s})" for a, s in want.items() if tuple(t[a].shape) != s]
    if t["clusters"].dim() != 2 or t["clusters"].shape[1] != dim:
        wrong.append(f"cluster_probe.clusters {tuple(t['clusters'].shape)} (needs [K, {dim}])")
    if wrong:
        raise ExtractError(f"the head's tensors do not fit together: {'; '.join(wrong)}; expected {_EXPECTED}", path)
    from .extract import _sha256   # here, not at the top: extract will import this module
    return StegoHead(**t, sha256=_sha256(path))
