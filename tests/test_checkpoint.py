"""Loading the authors' checkpoint layouts, our fused checkpoints, and the errors for bad files."""

import argparse
import os

import pytest
import torch
from conftest import DATA, SHARED_SPEC

from repnext_core import CheckpointError, create_model, identify_variant, load_checkpoint, save_atomic
from repnext_core.testing import random_model


def _upstream_state_dict(keys: list, seed: int = 0) -> dict:
    """A checkpoint shaped exactly as the authors' list says, filled with seeded random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in keys:
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(100)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.1
    return sd


def test_key_list_copy_matches_shared_spec():
    if SHARED_SPEC.exists():
        assert (DATA / "upstream_state_dict_keys.json").read_bytes() == SHARED_SPEC.read_bytes()


@pytest.mark.parametrize("name", [f"repnext_m{i}" for i in range(6)])
def test_strict_load_of_every_variant(name, upstream_keys):
    sd = _upstream_state_dict(upstream_keys[name]["state_dict"])
    model = load_checkpoint(create_model(name), sd, strict=True)
    assert torch.equal(model.state_dict()["head.head.linear.weight"], sd["head.head.linear.weight"])
    assert identify_variant(sd)["variant"] == name


@pytest.mark.parametrize(
    "layout, suffix",
    [("model", ".pth"), ("state_dict_module", ".pth.tar"), ("bare", ".pth"), ("with_args", ".pth")],
)
def test_author_layouts(tmp_path, upstream_keys, layout, suffix):
    sd = _upstream_state_dict(upstream_keys["repnext_m0"]["state_dict"], seed=1)
    obj = {
        "model": {"model": sd},
        "state_dict_module": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "bare": sd,
        "with_args": {"model": sd, "epoch": 299, "args": argparse.Namespace(lr=1e-3, model="repnext_m0")},
    }[layout]
    path = tmp_path / f"ckpt{suffix}"
    torch.save(obj, path)
    model = load_checkpoint(create_model("repnext_m0"), path).eval()
    ref = load_checkpoint(create_model("repnext_m0"), sd).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_fused_from_training_checkpoint_and_fused_round_trip(tmp_path, upstream_keys):
    sd = _upstream_state_dict(upstream_keys["repnext_m0"]["state_dict"], seed=2)
    torch.save({"model": sd}, tmp_path / "train.pth")
    train = create_model("repnext_m0", pretrained=tmp_path / "train.pth").eval()
    fused = create_model("repnext_m0", pretrained=tmp_path / "train.pth", fused=True)
    save_atomic({"model": fused.state_dict()}, tmp_path / "fused.pth")
    again = create_model("repnext_m0", pretrained=tmp_path / "fused.pth", fused=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = train(x)
        assert (fused(x) - ref).abs().max() <= 1e-5 + 1e-4 * ref.abs().max()
        assert torch.equal(again(x), fused(x))
    with pytest.raises(CheckpointError, match="fused=True"):
        create_model("repnext_m0", pretrained=tmp_path / "fused.pth")


def test_wrong_variant_names_the_right_one(upstream_keys):
    sd = _upstream_state_dict(upstream_keys["repnext_m2"]["state_dict"])
    with pytest.raises(CheckpointError, match=r"repnext_m2.*\n.*create_model\('repnext_m2'\)") as err:
        load_checkpoint(create_model("repnext_m1"), sd)
    assert "shape mismatches" in str(err.value)
    with pytest.raises(CheckpointError, match="repnext_m2"):
        create_model("repnext_m1", pretrained=sd)


def test_missing_and_unexpected_keys_are_counted(upstream_keys):
    sd = _upstream_state_dict(upstream_keys["repnext_m0"]["state_dict"])
    sd.pop("stem.stem.0.conv.weight")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 missing keys: stem.stem.0.conv.weight") as err:
        load_checkpoint(create_model("repnext_m0"), sd)
    assert "1 unexpected keys: extra.weight" in str(err.value)
    load_checkpoint(create_model("repnext_m0"), sd, strict=False)  # non-strict tolerates both


def test_corrupt_and_missing_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(random_model("repnext_m0").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    damaged_pickle = tmp_path / "damaged_pickle.pth"
    damaged_pickle.write_bytes(b"\x80\x02garbage" * 10)  # a pickle stream the safe unpickler rejects
    for path in (truncated, garbage, damaged_pickle):
        with pytest.raises(CheckpointError, match="corrupt") as e:
            load_checkpoint(create_model("repnext_m0"), path)
        assert "weights_only" not in str(e.value)  # a damaged file is no reason to turn the safety off
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(create_model("repnext_m0"), tmp_path / "nope.pth")


class Payload:
    """Stands for an object a malicious or sloppy checkpoint might pickle."""


def test_unsafe_objects_are_refused_unless_trusted(tmp_path):
    sd = random_model("repnext_m0").state_dict()
    path = tmp_path / "unsafe.pth"
    torch.save({"model": sd, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"Payload.*trust_checkpoint=True"):
        load_checkpoint(create_model("repnext_m0"), path)
    load_checkpoint(create_model("repnext_m0"), path, trust_checkpoint=True)


def test_save_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def boom(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"a": torch.zeros(1)}, tmp_path / "out.pth")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_atomic({}, tmp_path / "missing_dir" / "x.pth")
