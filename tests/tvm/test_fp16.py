"""fp16 builds for ARMv8.2-A cores: refused where the core has no fp16, half-precision NEON code, and outputs
within the stated bound of fp32 (under qemu, slow)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from repnext_core import reparameterize  # noqa: E402
from repnext_core.compile.tvm.build import build_artifact  # noqa: E402
from repnext_core.compile.tvm.pipeline import FP16_BOUND, check_precision  # noqa: E402
from repnext_core.compile.tvm.targets import TargetError, resolve_target  # noqa: E402
from repnext_core.testing import random_model, toy_model  # noqa: E402

OBJDUMP = "aarch64-linux-gnu-objdump"


@pytest.mark.parametrize("target", ["cortex-a53", "cortex-a72", "host"])
def test_cores_without_fp16_are_refused_with_what_to_do(target):
    with pytest.raises(TargetError, match=r"no fp16 arithmetic .*--precision fp32.*cortex-a76"):
        check_precision("fp16", resolve_target(target))


@pytest.mark.parametrize("target", ["cortex-a55", "cortex-a76", "apple-arm64"])
def test_armv82_cores_take_fp16(target):
    assert check_precision("fp16", resolve_target(target)) == "fp16"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp32, fp16"):
        check_precision("bf16", resolve_target("cortex-a76"))


@pytest.fixture(scope="module")
def toy_fp16(tmp_path_factory):
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.fail("aarch64-linux-gnu-g++ is missing: apt-get install g++-aarch64-linux-gnu (make setup)")
    model = reparameterize(toy_model(seed=0)).eval()
    out = tmp_path_factory.mktemp("fp16") / "toy"
    path, report = build_artifact(model, out, "cortex-a76", variant="toy", input_size=32, precision="fp16")
    return path, report, model


def test_fp16_build_is_half_precision_neon_and_says_so(toy_fp16):
    path, report, _ = toy_fp16
    meta = json.loads((path / "meta.json").read_text())
    assert meta["precision"] == "fp16" and meta["dtype"] == "float32"  # the model's input stays float32
    assert report.precision == "fp16" and report.summary().startswith("fp16")
    assert report.conv_kernels > 0
    if shutil.which(OBJDUMP) is None:
        pytest.fail(f"{OBJDUMP} is missing: apt-get install binutils-aarch64-linux-gnu")
    asm = subprocess.run([OBJDUMP, "-d", str(path / "model.so")], capture_output=True, text=True).stdout
    assert asm.count(".8h") > 100  # conv schedules vectorize 8 half lanes per register
    assert any("fmla" in line and ".8h" in line for line in asm.splitlines())


def _run_under_qemu(path, x):
    from repnext_core.compile import device

    return device.run_artifact_native(path, x, qemu=True)


@pytest.mark.slow
def test_toy_fp16_under_qemu_within_the_bound(toy_fp16):
    path, _, model = toy_fp16
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = _run_under_qemu(path, x)
    err = float(np.abs(y - ref).max())
    assert 0 < err <= FP16_BOUND * float(np.abs(ref).max())  # nonzero: it really computed in fp16


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", ["repnext_m0", "repnext_m1", "repnext_m2", "repnext_m3", "repnext_m4", "repnext_m5"]
)
def test_every_variant_fp16_within_the_bound(variant, tmp_path):
    """Against fused float32 PyTorch (which the fp32 build matches to ~1e-6), randomized BatchNorm stats."""
    fused = reparameterize(random_model(variant, seed=0))
    path, _ = build_artifact(fused, tmp_path / variant, "cortex-a76", variant=variant, precision="fp16")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        ref = fused(torch.from_numpy(x)).numpy()
    err = float(np.abs(_run_under_qemu(path, x) - ref).max())
    assert err <= FP16_BOUND * float(np.abs(ref).max()), (
        f"{variant}: {err:.3e} vs max|y| {np.abs(ref).max():.3f}"
    )
