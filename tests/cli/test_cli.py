"""The `repnext` CLI: info, verify, fuse, and its errors."""

import subprocess
import sys

import pytest
import torch

from repnext_core import create_model
from repnext_core.cli import main
from repnext_core.testing import random_model


def test_info(capsys):
    assert main(["info", "repnext_m0", "repnext_m1"]) == 0
    out = capsys.readouterr().out
    assert "2,716,480" in out and "0.59" in out and "repnext_m1" in out and "(paper)" in out


def test_verify_random(capsys):
    assert main(["verify", "repnext_m0", "--input-size", "64", "80"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "0 after" in out


def test_fuse_round_trip(tmp_path, capsys):
    model = random_model("repnext_m0", seed=5)
    torch.save({"model": model.state_dict()}, tmp_path / "in.pth")
    out = tmp_path / "fused.pth"
    rc = main(["fuse", "repnext_m0", "--checkpoint", str(tmp_path / "in.pth"), "--out", str(out)])
    assert rc == 0 and out.exists()
    fused = create_model("repnext_m0", fused=True, pretrained=out)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        assert (fused(x) - ref).abs().max() <= 1e-5 + 1e-4 * ref.abs().max()


def test_fuse_interrupted_leaves_no_file(tmp_path, monkeypatch, capsys):
    model = random_model("repnext_m0", seed=5)
    torch.save(model.state_dict(), tmp_path / "in.pth")

    def interrupted(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    rc = main(
        ["fuse", "repnext_m0", "--checkpoint", str(tmp_path / "in.pth"), "--out", str(tmp_path / "o.pth")]
    )
    assert rc == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pth"]
    assert "nothing partial" in capsys.readouterr().err


def test_fuse_wrong_variant_is_a_clear_error(tmp_path, capsys):
    torch.save(random_model("repnext_m1").state_dict(), tmp_path / "m1.pth")
    rc = main(
        ["fuse", "repnext_m0", "--checkpoint", str(tmp_path / "m1.pth"), "--out", str(tmp_path / "o.pth")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "repnext_m1" in err and "Traceback" not in err
    assert not (tmp_path / "o.pth").exists()


def test_unknown_model_lists_valid_names():
    proc = subprocess.run(
        [sys.executable, "-m", "repnext_core.cli", "verify", "resnet50"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "repnext_m0" in proc.stderr


@pytest.mark.parametrize("cmd", [["--help"], ["fuse", "--help"], ["verify", "--help"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd)
    assert e.value.code == 0
    assert "usage: repnext" in capsys.readouterr().out
