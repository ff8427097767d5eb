"""STEGO's head read from a checkpoint in STEGO's published layout (random weights, written here).

The reference computation re-states STEGO's modules (Dropout2d, 1x1 convs, ReLU) in torch and
is compared with ``heads.StegoHead.code`` to 1e-5; dropout is checked to be off.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from conftest import official_state_dict

from unseg_extract import heads
from unseg_extract.errors import ExtractError


class RefStegoHead(torch.nn.Module):
    """STEGO's DinoFeaturizer head as its code defines it (dropout before each projection)."""

    def __init__(self, d: int, dim: int):
        super().__init__()
        self.dropout = torch.nn.Dropout2d(p=0.1)
        self.cluster1 = torch.nn.Sequential(torch.nn.Conv2d(d, dim, (1, 1)))
        self.cluster2 = torch.nn.Sequential(torch.nn.Conv2d(d, d, (1, 1)), torch.nn.ReLU(), torch.nn.Conv2d(d, dim, (1, 1)))

    def forward(self, image_feat):  # [B, D, h, w]
        return self.cluster1(self.dropout(image_feat)) + self.cluster2(self.dropout(image_feat))


def _fake_omegaconf():
    """A class living in a module named omegaconf.dictconfig, removed again after saving."""
    mod = types.ModuleType("omegaconf.dictconfig")

    class DictConfig:
        def __init__(self, content):
            self._content = content

    DictConfig.__module__ = "omegaconf.dictconfig"
    DictConfig.__qualname__ = "DictConfig"
    mod.DictConfig = DictConfig
    return mod


def write_stego_ckpt(path, d=384, dim=70, k=27, extra=0, seed=0, backbone="dino_vits8", backbone_seed=None):
    torch.manual_seed(seed)
    ref = RefStegoHead(d, dim)
    bb = official_state_dict(backbone, seed if backbone_seed is None else backbone_seed)
    state = {f"net.model.{kk}": v for kk, v in bb.items()}
    for kk, v in ref.state_dict().items():
        state[f"net.{kk}"] = v
    state["cluster_probe.clusters"] = torch.randn(k + extra, dim)
    state["linear_probe.weight"] = torch.randn(k, dim, 1, 1)
    state["linear_probe.bias"] = torch.randn(k)
    mod = _fake_omegaconf()
    sys.modules["omegaconf"] = types.ModuleType("omegaconf")
    sys.modules["omegaconf.dictconfig"] = mod
    try:
        cfg = mod.DictConfig({"dim": dim, "extra_clusters": extra, "dino_feat_type": "feat"})
        torch.save({"epoch": 3, "global_step": 7000, "pytorch-lightning_version": "1.4.9",
                    "state_dict": state, "hyper_parameters": {"n_classes": k, "cfg": cfg}}, path)
    finally:
        del sys.modules["omegaconf.dictconfig"], sys.modules["omegaconf"]
    return ref, state


def test_code_matches_stego_modules_in_eval_and_dropout_is_off(tmp_path):
    p = tmp_path / "stego.ckpt"
    ref, state = write_stego_ckpt(p)
    assert "omegaconf" not in sys.modules and "omegaconf.dictconfig" not in sys.modules
    head = heads.load_stego(p, feature_dim=384)
    assert (head.dim, head.feature_dim, tuple(head.clusters.shape)) == (70, 384, (27, 70))
    f = torch.randn(2, 5, 6, 384)
    ref.eval()
    want = ref(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    got = head.code(f)
    assert got.shape == (2, 5, 6, 70)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    # In training mode STEGO's dropout changes the code: ours is the eval-mode code.
    ref.train()
    torch.manual_seed(1)
    noisy = ref(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert (noisy - want).abs().max() > 1e-2
    assert torch.equal(head.code(f), got), "deterministic, no dropout"


def test_cluster_probe_is_cosine_argmax(tmp_path):
    p = tmp_path / "stego.ckpt"
    write_stego_ckpt(p, extra=2)
    head = heads.load_stego(p, feature_dim=384)
    code = head.code(torch.randn(1, 4, 4, 384))
    c = code.reshape(-1, 70)
    sims = torch.stack([torch.nn.functional.cosine_similarity(c, kk[None], dim=1) for kk in head.clusters], dim=1)
    assert torch.equal(head.cluster_probe(code).reshape(-1), sims.argmax(dim=1))
    assert head.clusters.shape[0] == 29


def test_nothing_in_the_file_runs(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran code from the checkpoint')",))

    p = tmp_path / "evil.ckpt"
    _, state = write_stego_ckpt(tmp_path / "ok.ckpt")
    torch.save({"state_dict": state, "hyper_parameters": Boom()}, p)
    head = heads.load_stego(p, feature_dim=384)   # exec is replaced by a placeholder
    assert head.dim == 70


@pytest.mark.parametrize("case", ["missing", "truncated", "hp", "backbone", "other-method", "width", "clusters"])
def test_bad_checkpoints_are_named(tmp_path, case):
    p = tmp_path / f"{case}.ckpt"
    expect = "expected a STEGO checkpoint"
    if case == "missing":
        pass
    elif case == "truncated":
        write_stego_ckpt(p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        expect = "cannot be read as a PyTorch checkpoint"
    elif case == "hp":
        torch.save({"net_model_state_dict": {}, "cluster_model_state_dict": {"clusters": torch.zeros(27, 512)}}, p)
        expect = "an HP checkpoint"
    elif case == "backbone":
        torch.save(official_state_dict("dino_vits8"), p)
        expect = "a plain backbone state dict"
    elif case == "other-method":
        torch.save({"state_dict": {"net.model.cls_token": torch.zeros(1, 1, 384), "linear_probe.weight": torch.zeros(27, 70, 1, 1)}}, p)
        expect = "misses net.cluster1.0.weight"
    elif case == "width":
        write_stego_ckpt(p, d=768, backbone="dino_vitb8")
        expect = "768-wide features"
    elif case == "clusters":
        _, state = write_stego_ckpt(tmp_path / "ok.ckpt")
        state["cluster_probe.clusters"] = torch.zeros(27, 64)
        torch.save({"state_dict": state}, p)
        expect = "cluster_probe.clusters"
    before = p.read_bytes() if p.exists() else None
    with pytest.raises(ExtractError) as e:
        heads.load_stego(p, feature_dim=384)
    assert str(p) in str(e.value) and expect in str(e.value), str(e.value)
    assert (p.read_bytes() if p.exists() else None) == before, "the input is not touched"


# ---------------------------------------------------------------------------------------------
# HP (hynnsk/HP): the same head in a plain dict, saved by its run.py


class RefHPFeaturizerHead(torch.nn.Module):
    """HP's DinoFeaturizer head (model/dino/DinoFeaturizer.py): cluster1, cluster2 and their EMA
    copies ema_model1 / ema_model2; forward()[1] (what HP's eval and PriMaPs read) is cluster1 + cluster2."""

    def __init__(self, d: int, dim: int):
        super().__init__()
        self.dropout = torch.nn.Dropout2d(p=0.1)
        self.cluster1 = torch.nn.Sequential(torch.nn.Conv2d(d, dim, (1, 1)))
        self.cluster2 = torch.nn.Sequential(torch.nn.Conv2d(d, d, (1, 1)), torch.nn.ReLU(), torch.nn.Conv2d(d, dim, (1, 1)))
        self.ema_model1 = torch.nn.Sequential(torch.nn.Conv2d(d, dim, (1, 1)))
        self.ema_model2 = torch.nn.Sequential(torch.nn.Conv2d(d, d, (1, 1)), torch.nn.ReLU(), torch.nn.Conv2d(d, dim, (1, 1)))

    def forward(self, image_feat):  # [B, D, h, w] -> code
        code = self.cluster1(self.dropout(image_feat))
        code += self.cluster2(self.dropout(image_feat))
        return code


def write_hp_ckpt(path, d=384, dim=512, k=27, seed=0, backbone="dino_vits8", backbone_seed=None):
    torch.manual_seed(seed)
    ref = RefHPFeaturizerHead(d, dim)
    bb = official_state_dict(backbone, seed if backbone_seed is None else backbone_seed)
    net = {f"model.{kk}": v for kk, v in bb.items()}
    net.update(ref.state_dict())
    clusters = torch.randn(k, dim)
    torch.save({"epoch": 2, "iter": 800, "best_epoch": 2, "best_iter": 800, "net_model_state_dict": net,
                "net_optimizer_state_dict": None, "linear_model_state_dict": {"weight": torch.randn(k, dim, 1, 1),
                                                                             "bias": torch.randn(k)},
                "linear_optimizer_state_dict": None, "cluster_model_state_dict": {"clusters": clusters},
                "cluster_optimizer_state_dict": None, "best": 1.5}, path)
    return ref, clusters


def test_hp_code_matches_hp_modules_in_eval(tmp_path):
    p = tmp_path / "ckpt.pth"
    ref, clusters = write_hp_ckpt(p, dim=64)
    head = heads.load_head(f"hp:{tmp_path}", feature_dim=384)     # HP's run folder holds ckpt.pth
    assert (head.method, head.dim, head.feature_dim) == ("hp", 64, 384)
    assert torch.equal(head.clusters, clusters)
    f = torch.randn(2, 5, 6, 384)
    ref.eval()
    want = ref(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert torch.allclose(head.code(f), want, atol=1e-5, rtol=0), (head.code(f) - want).abs().max()
    ref.train()
    torch.manual_seed(1)
    assert (ref(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) - want).abs().max() > 1e-2, "dropout acts in training only"


@pytest.mark.parametrize("case", ["stego", "no-clusters", "width", "nan"])
def test_bad_hp_checkpoints_are_named(tmp_path, case):
    p = tmp_path / f"{case}.pth"
    if case == "stego":
        write_stego_ckpt(p)
        expect = "pass it as --head stego:PATH"
    elif case == "no-clusters":
        write_hp_ckpt(p, dim=32)
        ck = torch.load(p, weights_only=True)
        del ck["cluster_model_state_dict"]
        torch.save(ck, p)
        expect = "misses cluster_model_state_dict['clusters']"
    elif case == "width":
        write_hp_ckpt(p, d=768, dim=32, backbone="dino_vitb8")
        expect = "768-wide features"
    else:
        write_hp_ckpt(p, dim=32)
        ck = torch.load(p, weights_only=True)
        ck["net_model_state_dict"]["cluster1.0.weight"][0, 0] = float("nan")
        torch.save(ck, p)
        expect = "NaN or infinite"
    before = p.read_bytes()
    with pytest.raises(ExtractError) as e:
        heads.load_hp(p, feature_dim=384)
    assert str(p) in str(e.value) and expect in str(e.value), str(e.value)
    assert p.read_bytes() == before


@pytest.mark.parametrize("spec", ["stego", "dino:x.ckpt", "hp:", ":x"])
def test_head_spec_syntax(spec):
    with pytest.raises(ExtractError) as e:
        heads.parse_spec(spec)
    assert "--head takes METHOD:PATH" in str(e.value)
