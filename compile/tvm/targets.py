"""TVM target presets (host, ARM boards, Apple) and custom JSON targets, with their cross compilers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Artifact kinds: a shared library the Relax VM loads, or object files for a foreign linker (Xcode).
SHARED_LIBRARY = "so"
OBJECT_FILES = "objects"

AARCH64_LINUX_CC = "aarch64-linux-gnu-g++"


class TargetError(ValueError):
    """An unknown or unusable target; the message says what to do."""


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target: the TVM target JSON plus how to link for it."""

    name: str
    target: Mapping[str, Any]
    cross_cc: str | None = None
    artifact_kind: str = SHARED_LIBRARY
    description: str = ""
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_host(self) -> bool:
        """True when code built for this target runs on this machine (no cross compiler involved)."""
        return self.cross_cc is None and self.artifact_kind == SHARED_LIBRARY and "mtriple" not in self.target

    @property
    def key(self) -> str:
        """Directory-safe id: name plus a hash of the target JSON, so tuning records never mix targets."""
        digest = hashlib.sha256(canonical_json(self.target).encode()).hexdigest()[:10]
        return f"{self.name}-{digest}"

    @property
    def has_fp16(self) -> bool:
        """ARMv8.2-A half-precision arithmetic (NEON .8h), which fp16 builds need."""
        return str(self.target.get("mtriple", "")).startswith(("aarch64", "arm64")) and "+fullfp16" in (
            self.target.get("mattr") or ()
        )

    def tvm_target(self):
        """The tvm.target.Target (imports tvm lazily so that the CLI's --help works without it)."""
        import tvm

        return tvm.target.Target(dict(self.target))

    def to_json(self) -> dict[str, Any]:
        """What meta.json and database metadata record about the target."""
        return {"name": self.name, "key": self.key, "target": dict(self.target), "cross_cc": self.cross_cc}


def canonical_json(obj: Any) -> str:
    """Stable JSON text (sorted keys, lists for tuples) used for hashing and comparing targets."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


def _arm_linux(mcpu: str, mattr: list[str], cores: int, description: str, aliases=()) -> TargetSpec:
    target = {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": mcpu,
        "mattr": mattr,
        "num-cores": cores,
    }
    return TargetSpec(mcpu, target, AARCH64_LINUX_CC, SHARED_LIBRARY, description, tuple(aliases))


# Features are spelled out although mcpu implies them, so that meta.json says what the code may use.
_ARM_PRESETS = (
    _arm_linux("cortex-a53", ["+neon"], 4, "ARMv8.0-A, e.g. Raspberry Pi 3, many low-end boards"),
    _arm_linux("cortex-a55", ["+neon", "+dotprod", "+fullfp16"], 4, "ARMv8.2-A little core, e.g. RK3566"),
    _arm_linux("cortex-a72", ["+neon"], 4, "ARMv8.0-A, Raspberry Pi 4", aliases=("rpi4",)),
    _arm_linux("cortex-a76", ["+neon", "+dotprod", "+fullfp16"], 4, "ARMv8.2-A, Raspberry Pi 5", ("rpi5",)),
    TargetSpec(
        "apple-arm64",
        {
            "kind": "llvm",
            "mtriple": "aarch64-apple-ios",  # = arm64-apple-ios; TVM keys its ARM rules on "aarch64"
            "mcpu": "apple-a14",
            "mattr": ["+neon", "+fullfp16"],
            "num-cores": 6,
        },
        None,
        OBJECT_FILES,
        "iPhone/iPad arm64: Mach-O object files to link into an Xcode app (TVM cannot link for iOS here)",
    ),
)


def host_spec() -> TargetSpec:
    """This machine: LLVM's name for the CPU and the physical core count."""
    import tvm

    target = {
        "kind": "llvm",
        "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
        "num-cores": _physical_cores(),
    }
    return TargetSpec("host", target, None, SHARED_LIBRARY, "this machine")


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def preset_names() -> list[str]:
    """Preset names with their aliases, for help texts and error messages."""
    names = ["host"]
    for spec in _ARM_PRESETS:
        names.append(spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else ""))
    return names


def _custom_spec(target: Mapping[str, Any]) -> TargetSpec:
    """A JSON target; an optional "cc" key names the cross compiler (it is not passed to TVM)."""
    target = dict(target)
    if target.get("kind") != "llvm":
        raise TargetError(f"only LLVM CPU targets are supported, got kind={target.get('kind')!r}")
    cc = target.pop("cc", None)
    triple = str(target.get("mtriple", ""))
    kind = OBJECT_FILES if "apple" in triple else SHARED_LIBRARY
    if cc is None and triple.startswith("aarch64") and "linux" in triple:
        cc = AARCH64_LINUX_CC
    if cc is None and triple and kind == SHARED_LIBRARY and not _is_host_triple(triple):
        raise TargetError(f'custom target for {triple!r} needs a cross compiler: add "cc": "<triple>-g++"')
    return TargetSpec("custom", target, cc, kind, "custom JSON target")


def _is_host_triple(triple: str) -> bool:
    import platform

    return triple.split("-")[0] == platform.machine()


def resolve_target(target: str | Mapping[str, Any] | TargetSpec) -> TargetSpec:
    """Preset name or alias, JSON text, dict, or TargetSpec -> TargetSpec; unknown names list the presets."""
    if isinstance(target, TargetSpec):
        return target
    if isinstance(target, Mapping):
        return _custom_spec(target)
    text = str(target).strip()
    if text.startswith("{"):
        try:
            return _custom_spec(json.loads(text))
        except json.JSONDecodeError as e:
            raise TargetError(f"target JSON does not parse: {e}") from None
    name = text.lower()
    if name == "host":
        return host_spec()
    for spec in _ARM_PRESETS:
        if name == spec.name or name in spec.aliases:
            return spec
    raise TargetError(
        f"unknown target {text!r}; presets: {', '.join(preset_names())}; "
        'or a JSON target such as \'{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}\''
    )


def require_cross_compiler(spec: TargetSpec) -> str | None:
    """The cross compiler's path (None for host and object-file targets); a clear error when missing."""
    if spec.cross_cc is None:
        return None
    path = shutil.which(spec.cross_cc)
    if path is None:
        package = _debian_package(spec.cross_cc)
        raise TargetError(
            f"cross compiler {spec.cross_cc!r} for target {spec.name} is not on PATH; "
            f"install it with: apt-get install {package}"
        )
    return path


def _debian_package(cc: str) -> str:
    """aarch64-linux-gnu-g++ -> g++-aarch64-linux-gnu (Debian's naming of cross toolchains)."""
    triple, _, tool = cc.rpartition("-")
    return f"{tool}-{triple}" if triple else cc


def linker(spec: TargetSpec):
    """The fcompile for export_library: TVM's host compiler, or the cross compiler's wrapper."""
    from tvm.support import cc

    path = require_cross_compiler(spec)
    return cc.cross_compiler(path) if path else cc.create_shared
