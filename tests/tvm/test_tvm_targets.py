"""TVM target presets, custom JSON targets and their errors (cheap: no compilation)."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

from repnext_core.compile.tvm import targets  # noqa: E402
from repnext_core.compile.tvm.targets import TargetError, resolve_target  # noqa: E402


@pytest.mark.parametrize(
    ("name", "mcpu"),
    [
        ("cortex-a53", "cortex-a53"),
        ("cortex-a55", "cortex-a55"),
        ("rpi4", "cortex-a72"),
        ("RPi5", "cortex-a76"),
    ],
)
def test_arm_presets_and_aliases(name, mcpu):
    spec = resolve_target(name)
    assert spec.name == mcpu and spec.target["mtriple"] == "aarch64-linux-gnu"
    assert "+neon" in spec.target["mattr"] and spec.target["num-cores"] == 4
    assert spec.cross_cc == "aarch64-linux-gnu-g++" and not spec.is_host
    assert spec.tvm_target().attrs["feature.has_asimd"]


def test_host_and_apple_presets():
    host = resolve_target("host")
    assert host.is_host and host.cross_cc is None and host.target["mcpu"]
    apple = resolve_target("apple-arm64")
    assert apple.artifact_kind == targets.OBJECT_FILES and "apple" in apple.target["mtriple"]
    assert len({host.key, apple.key, resolve_target("rpi4").key, resolve_target("rpi5").key}) == 4


def test_custom_json_targets():
    spec = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"}')
    assert spec.name == "custom" and spec.cross_cc == "aarch64-linux-gnu-g++"
    same = resolve_target({"mcpu": "neoverse-n1", "kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    assert same.key == spec.key  # key order does not matter
    riscv = {"kind": "llvm", "mtriple": "riscv64-linux-gnu", "cc": "riscv64-linux-gnu-g++"}
    assert resolve_target(riscv).cross_cc == "riscv64-linux-gnu-g++"
    assert "cc" not in resolve_target(riscv).target


def test_unknown_or_bad_targets_say_what_is_valid():
    with pytest.raises(TargetError, match=r"unknown target 'rpi3'.*cortex-a72 \(rpi4\).*apple-arm64"):
        resolve_target("rpi3")
    with pytest.raises(TargetError, match="does not parse"):
        resolve_target("{kind: llvm")
    with pytest.raises(TargetError, match="only LLVM CPU targets"):
        resolve_target({"kind": "cuda"})
    with pytest.raises(TargetError, match="needs a cross compiler"):
        resolve_target({"kind": "llvm", "mtriple": "riscv64-linux-gnu"})


def test_missing_cross_compiler_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(targets.shutil, "which", lambda _name: None)
    with pytest.raises(TargetError, match="apt-get install g\\+\\+-aarch64-linux-gnu"):
        targets.require_cross_compiler(resolve_target("cortex-a72"))
    assert targets.require_cross_compiler(resolve_target("host")) is None
