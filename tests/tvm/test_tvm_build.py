"""TVM build path on the toy RepNeXt: host parity, artifact round trip, ARM and Apple cross builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from tvm_helpers import SHAPE  # noqa: E402  (the shape the shared `mod` fixture uses)

from repnext_core.compile.tvm.artifact import (  # noqa: E402
    ArtifactError,
    ArtifactMeta,
    VMRunner,
    export_artifact,
    load_artifact,
    read_meta,
)
from repnext_core.compile.tvm.build import build, build_with_report  # noqa: E402
from repnext_core.compile.tvm.importer import main_signature  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402

EM_AARCH64 = 183
MACHO_64 = b"\xcf\xfa\xed\xfe"
CPU_TYPE_ARM64 = 0x0100000C


@pytest.fixture(scope="module")
def x():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).numpy()


@pytest.fixture(scope="module")
def host_build(mod):
    """One untuned host build (executable and report) shared by the host tests."""
    return build_with_report(mod, "host")


def assert_matches_torch(out: np.ndarray, model, x: np.ndarray) -> None:
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def export(mod, target: str, out_dir, exe=None, **meta):
    spec = resolve_target(target)
    shape, dtype, out_shape = main_signature(mod)
    exe = exe or build(mod, spec)
    return export_artifact(exe, out_dir, ArtifactMeta(spec, shape, dtype, out_shape, **meta))


def test_import_signature(mod):
    assert main_signature(mod) == (SHAPE, "float32", (1, 10))


def test_host_build_matches_torch(toy, host_build, x):
    exe, report = host_build
    assert report.kernels > 0 and report.tuned_kernels == 0 and report.db is None
    assert_matches_torch(VMRunner(exe)(x), toy, x)


def _misaligned_copy(x: np.ndarray, alignment: int) -> np.ndarray:
    """`x` copied to an address 4 bytes past a multiple of `alignment`."""
    buf = np.empty(x.size + alignment, x.dtype)
    start = (-buf.ctypes.data // x.itemsize + 1) % (alignment // x.itemsize)
    out = buf[start : start + x.size].reshape(x.shape)
    out[...] = x
    assert out.ctypes.data % alignment == x.itemsize
    return out


def test_the_runner_reads_aligned_inputs_in_place_and_copies_the_rest(toy, host_build, x):
    """An aligned writable input is read in place (left as it was); a misaligned or read-only one is copied
    into the one tensor the runner keeps (no fresh pages each call), yet every call sees its own input."""
    runner = VMRunner(host_build[0])
    aligned = torch.from_numpy(x).clone().numpy()  # torch aligns to 64 bytes
    assert aligned.ctypes.data % VMRunner.ALIGNMENT == 0
    before = aligned.copy()
    out = runner(aligned)
    assert_matches_torch(out, toy, x)
    assert runner._input is None and np.array_equal(aligned, before)
    assert out.flags.owndata and out.flags.writeable

    misaligned = _misaligned_copy(x, VMRunner.ALIGNMENT)
    assert_matches_torch(runner(misaligned), toy, x)
    held = runner._input
    assert held is not None
    other = _misaligned_copy(0.5 - 2 * x, VMRunner.ALIGNMENT)
    assert_matches_torch(runner(other), toy, other)
    assert runner._input is held
    readonly = aligned.copy()
    readonly.flags.writeable = False
    assert_matches_torch(runner(readonly), toy, x)
    assert runner._input is held and np.array_equal(held.numpy(), readonly)  # copied in, not read in place
    assert_matches_torch(runner(aligned), toy, x)


def test_profile_times_each_kernel_of_the_module(toy, mod, host_build, x):
    from tvm import tirx

    from repnext_core.compile.tvm.kernel_profile import format_profile, profile_vm
    from repnext_core.compile.tvm.pipeline import prepare, schedule
    from repnext_core.profile import count_macs

    exe, report = host_build
    spec = resolve_target("host")
    scheduled, _ = schedule(prepare(mod, spec), spec)
    names = {gv.name_hint for gv, f in scheduled.functions.items() if isinstance(f, tirx.PrimFunc)}
    runner = VMRunner(exe)
    profile = profile_vm(runner.vm, x, runs=3, kernel_names=names, macs=report.kernel_macs)
    assert {k.name for k in profile.kernels} == names  # every kernel called, none missed or invented
    assert all(k.calls >= 1 and k.ms > 0 for k in profile.kernels)
    # MACs read from the scheduled kernels, times their calls, are the torch model's own count
    assert sum(k.macs * k.calls for k in profile.kernels if k.macs) == count_macs(toy, SHAPE[2:])
    assert all(k.gflops > 0 for k in profile.kernels if k.macs)
    assert [k.ms for k in profile.kernels] == sorted((k.ms for k in profile.kernels), reverse=True)
    assert profile.kernel_ms < profile.instrumented_ms
    assert_matches_torch(runner(x), toy, x)  # the hook is removed afterwards
    table = format_profile(profile, top=2, sgemm_gflops=100.0)
    assert profile.kernels[0].name in table and f"({len(names) - 2} more kernels)" in table
    assert "of sgemm" in table and "100.0 GFLOP/s" in table


def test_artifact_round_trip_in_a_fresh_process(toy, mod, host_build, x, tmp_path):
    out = export(mod, "host", tmp_path / "art", host_build[0], variant="toy", checkpoint_sha256="ab" * 32)
    meta = read_meta(out)
    assert meta["variant"] == "toy" and meta["input_shape"] == list(SHAPE) and meta["dtype"] == "float32"
    assert meta["target"]["name"] == "host" and meta["checkpoint_sha256"] == "ab" * 32
    assert meta["tvm_version"] and meta["tuning_db"] is None and meta["files"] == {"library": "model.so"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temp dirs left behind
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np; from repnext_core.compile.tvm.artifact import run_artifact; "
        "np.save(sys.argv[2], run_artifact(sys.argv[1], np.load(sys.argv[3])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert_matches_torch(np.load(tmp_path / "y.npy"), toy, x)
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(out).run(x[:, :, :16])


def test_export_replaces_an_existing_artifact_whole(mod, host_build, tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export(mod, "host", out, host_build[0])
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "model.so"]
    with pytest.raises(ArtifactError, match="not a TVM artifact"):
        read_meta(tmp_path)


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-objdump") is None, reason="needs binutils-aarch64-linux-gnu"
)
@pytest.mark.parametrize("target", ["cortex-a72", "cortex-a76"])
def test_cross_build_is_aarch64_with_neon(mod, target, tmp_path):
    out = export(mod, target, tmp_path / target)
    lib = (out / "model.so").read_bytes()
    assert lib[:4] == b"\x7fELF" and int.from_bytes(lib[18:20], "little") == EM_AARCH64
    asm = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", str(out / "model.so")],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert len(re.findall(r"\bfmla\s+v\d+\.4s", asm)) > 10, "no NEON fused multiply-adds in the kernels"
    assert json.loads((out / "meta.json").read_text())["target"]["target"]["mcpu"] == target
    with pytest.raises(ArtifactError, match=f"built for {target} and cannot run on this machine"):
        load_artifact(out)


def test_apple_build_is_macho_arm64_objects(mod, tmp_path):
    out = export(mod, "apple-arm64", tmp_path / "ios")
    objects = read_meta(out)["files"]["objects"]
    assert objects and all(name.endswith(".o") for name in objects)
    for name in objects:
        head = (out / name).read_bytes()[:8]
        assert head[:4] == MACHO_64 and int.from_bytes(head[4:8], "little") == CPU_TYPE_ARM64, name
