"""Tools for the native programs: finding cmake / cross compiler / qemu, ELF architectures, errors."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

ARCHES = ("host", "aarch64")
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"
_ELF_MACHINES = {183: "aarch64", 62: "x86_64", 40: "arm", 243: "riscv", 3: "x86"}
_TOOLS = {  # program -> Debian package that provides it
    "cmake": "cmake",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "qemu-aarch64": "qemu-user",
    "gcc": "gcc",
    "pkg-config": "pkg-config",
    "llvm-mc-19": "llvm-19",
    "llvm-mca-19": "llvm-19",
    "llvm-nm-19": "llvm-19",
    "llvm-readelf-19": "llvm-19",
    "apt-get": "apt (this needs a Debian host)",
    "dpkg": "dpkg (this needs a Debian host)",
}


class DeviceError(ValueError):
    """A missing tool, a failed native build or run, or an artifact for another CPU; says what to do."""


def require_tool(name: str) -> str:
    """Path of a build/run tool, or a DeviceError naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        package = _TOOLS.get(name, name)
        raise DeviceError(f"{name} is not on PATH; install it with: apt-get install {package}")
    return path


def host_arch() -> str:
    """This machine's CPU in ELF naming (x86_64, aarch64, ...)."""
    machine = os.uname().machine.lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def elf_arch(path: str | os.PathLike) -> str:
    """The CPU an ELF file is for (from e_machine), or a DeviceError when it is not ELF."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise DeviceError(f"{path} is not an ELF shared library")
    (machine,) = struct.unpack("<H" if header[5] == 1 else ">H", header[18:20])
    return _ELF_MACHINES.get(machine, f"e_machine {machine}")


def arch_name(target: str) -> str:
    """'host' -> this machine's CPU name, 'aarch64' stays, anything else is a DeviceError."""
    if target not in ARCHES:
        raise DeviceError(f"--target must be one of {', '.join(ARCHES)}, got {target!r}")
    return host_arch() if target == "host" else target


def qemu_prefix(arch: str) -> list[str]:
    """The command prefix that runs `arch` binaries here: [] natively, qemu-user otherwise."""
    if arch == host_arch():
        return []
    if arch != "aarch64":
        raise DeviceError(f"cannot run {arch} binaries on this {host_arch()} machine")
    if not Path(AARCH64_SYSROOT, "lib").is_dir():
        raise DeviceError(
            f"no aarch64 sysroot at {AARCH64_SYSROOT}; install it with: apt-get install g++-aarch64-linux-gnu"
        )
    return [require_tool("qemu-aarch64"), "-L", AARCH64_SYSROOT]


def tail(text: str, lines: int = 40) -> str:
    """The last lines of a tool's output, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])
