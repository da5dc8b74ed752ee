"""Whole models: all six variants fused vs training form, published counts, dense-task outputs."""

import pytest
import torch
from conftest import tol

from repnext_core import (
    VARIANTS,
    RepNeXt,
    count_batchnorms,
    count_macs,
    count_params,
    create_model,
    is_fused,
    list_models,
    reparameterize,
)
from repnext_core.testing import random_model

# The authors' own fuse() keeps one BatchNorm per block; their fused M0 (1000 classes) has this many.
AUTHORS_FUSED_M0 = 2_333_200


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("size", [(224, 224), (97, 131)])
def test_variant_fusion_is_exact(name, size):
    model = random_model(name, seed=1)
    fused = reparameterize(model)
    x = torch.randn(2 if size[0] < 200 else 1, 3, *size)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert out.shape == ref.shape == (x.shape[0], 1000)
    assert (out - ref).abs().max().item() <= tol(ref)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_published_counts(name, upstream_keys):
    spec = VARIANTS[name]
    train, fused = create_model(name), create_model(name, fused=True)
    assert count_params(train) == upstream_keys[name]["params"]
    assert round(count_params(fused) / 1e6, 1) == spec.params_fused_m
    assert round(count_macs(fused) / 1e9, 1) == spec.macs_g
    assert count_batchnorms(fused) == 0 and is_fused(fused) and not is_fused(train)
    if name == "repnext_m0":
        assert count_params(fused) < AUTHORS_FUSED_M0


@pytest.mark.parametrize("name", ["repnext_m0", "repnext_m3"])
def test_fused_tree_built_directly_matches_reparameterized(name):
    model = random_model(name, seed=2)
    fused = reparameterize(model)
    direct = create_model(name, fused=True)
    assert list(direct.state_dict()) == list(fused.state_dict())
    direct.load_state_dict(fused.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(direct(x), fused(x))


def test_features_only_strides_and_fusion():
    model = random_model("repnext_m0", seed=3, features_only=True, out_indices=(0, 1, 2, 3))
    fused = reparameterize(model)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats, ffeats = model(x), fused(x)
    assert [f.shape[1] for f in feats] == [40, 80, 160, 320]
    assert [f.shape[-2:] for f in feats] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    for r, o in zip(feats, ffeats):
        assert (r - o).abs().max().item() <= tol(r)
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]


def test_out_indices_subset():
    model = create_model("repnext_m0", features_only=True, out_indices=(1, 3)).eval()
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [80, 320]


def test_num_classes_distillation_and_drop():
    model = create_model("repnext_m0", num_classes=7, distillation=False, drop_rate=0.2)
    assert not hasattr(model.head, "head_dist")
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    dist = create_model("repnext_m0", num_classes=7).train()(torch.randn(2, 3, 64, 64))
    assert isinstance(dist, tuple) and dist[0].shape == (2, 7)
    assert create_model("repnext_m0", num_classes=0, fused=True)(torch.randn(1, 3, 64, 64)).shape == (1, 320)


def test_list_models_and_unknown_name():
    assert list_models() == [f"repnext_m{i}" for i in range(6)]
    with pytest.raises(ValueError, match="repnext_m0, repnext_m1"):
        create_model("repnext_m9")


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(3, 64, 64), ValueError, "4-D NCHW"),
        (torch.randn(1, 4, 64, 64), ValueError, "3 input channels"),
        (torch.randn(1, 64, 64, 3), ValueError, "permute"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point"),
    ],
)
def test_bad_input_errors(x, error, match):
    for model in (create_model("repnext_m0"), create_model("repnext_m0", fused=True)):
        with pytest.raises(error, match=match):
            model.eval()(x)


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        RepNeXt(embed_dim=(18, 36, 72, 144))
    with pytest.raises(ValueError, match="out_indices"):
        RepNeXt(out_indices=(4,))
    with pytest.raises(ValueError, match="backend"):
        create_model("repnext_m0", fused=True, backend="cuda")


def test_model_level_reparameterize_in_place():
    model = random_model("repnext_m0", seed=4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.reparameterize()(x)
    assert model.fused and count_batchnorms(model) == 0
    assert (out - ref).abs().max().item() <= tol(ref)


def test_registers_with_timm_when_present(monkeypatch):
    import importlib.machinery
    import sys
    import types

    from repnext_core.registry import _register_with_timm

    registered = {}
    timm = types.ModuleType("timm")
    timm.__spec__ = importlib.machinery.ModuleSpec("timm", None)
    models = types.ModuleType("timm.models")
    models.register_model = lambda fn: registered.setdefault(fn.__name__, fn)
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "timm.models", models)
    _register_with_timm()
    assert sorted(registered) == list_models()
    model = registered["repnext_m0"](pretrained=False, num_classes=3, pretrained_cfg=None)
    assert model.num_classes == 3
