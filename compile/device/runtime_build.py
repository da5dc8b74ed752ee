"""CMake builds of repnext-run and repnext-rpc-server for host or aarch64, with a deployable install folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repnext_core.compile.device.tools import DeviceError, arch_name, elf_arch, require_tool, tail
from repnext_core.compile.device.wheels import fetch_runtime
from repnext_core.files import cache_root

RUN_EXE, SERVER_EXE = "repnext-run", "repnext-rpc-server"


@dataclass(frozen=True)
class NativeBuild:
    """A built pair of programs and the deployable folder (bin/ + lib/) that `cmake --install` laid out."""

    arch: str
    build_dir: Path
    install_dir: Path

    @property
    def run_exe(self) -> Path:
        """The runner in the install folder (rpath $ORIGIN/../lib: runs when the folder is copied)."""
        return self.install_dir / "bin" / RUN_EXE

    @property
    def server_exe(self) -> Path:
        """The RPC server in the install folder."""
        return self.install_dir / "bin" / SERVER_EXE


# In a checkout, sources/ holds links to CMakeLists.txt, cmake/ and native/ at the top of the repository;
# a wheel carries them as package data (copies), so `pip install .` can build the runtime too.
SOURCES = Path(__file__).parent / "sources"


def source_root() -> Path:
    """The CMake project of the native programs: CMakeLists.txt, cmake/ and native/src/."""
    missing = [n for n in ("CMakeLists.txt", "cmake", "native/src") if not (SOURCES / n).exists()]
    if missing:
        raise DeviceError(
            f"the native sources are missing from {SOURCES} ({', '.join(missing)}): this installation of "
            "repnext was built without them; reinstall from a repnext checkout with `pip install .`"
        )
    return SOURCES


def default_build_dir(target: str) -> Path:
    """build/native-<host|aarch64> in a checkout; in an installed package, CACHE_ROOT/native/<target>."""
    checkout = (SOURCES / "CMakeLists.txt").resolve().parent  # the links lead back to the checkout
    if (checkout / "pyproject.toml").is_file():
        return checkout / "build" / f"native-{target}"
    return cache_root() / "native" / target


def build_runtime(
    target: str = "host",
    build_dir: str | os.PathLike | None = None,
    install_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    log=None,
    optimize: bool = True,
) -> NativeBuild:
    """Configure, build and install both programs for `target` (host or aarch64) with CMake.

    The install folder (default BUILD_DIR/install) holds bin/ and lib/ and can be copied to the board.
    `log` (a callable taking a line) receives progress; CMake's output is shown only on failure.
    optimize=False compiles at -O0 (about 3x faster; for tests, where the programs' speed does not matter).
    """
    arch = arch_name(target)
    cmake = require_tool("cmake")
    root = source_root()
    build = Path(build_dir) if build_dir else default_build_dir(target)
    install = Path(install_dir) if install_dir else build / "install"
    args = [f"-DCMAKE_INSTALL_PREFIX={install.resolve()}"]
    args += (
        ["-DCMAKE_BUILD_TYPE=Release"]
        if optimize
        else ["-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_FLAGS_DEBUG=-O0"]
    )
    if target == "host":
        args.append(f"-DPython3_EXECUTABLE={sys.executable}")
    else:
        require_tool("aarch64-linux-gnu-g++")
        runtime = fetch_runtime(arch)
        args += [
            f"-DCMAKE_TOOLCHAIN_FILE={root / 'cmake' / 'aarch64-linux-gnu.cmake'}",
            f"-DTVM_RUNTIME_DIR={runtime / 'lib'}",
            f"-DTVM_INCLUDE_DIRS={runtime / 'include'}",
        ]
    say = log or (lambda line: None)
    say(f"configuring {arch} build in {build}")
    _cmake([cmake, "-S", str(root), "-B", str(build), *args], "configure")
    say("compiling")
    _cmake([cmake, "--build", str(build), "-j", str(jobs or os.cpu_count() or 1)], "build")
    _cmake([cmake, "--install", str(build)], "install")
    result = NativeBuild(arch, build, install)
    for exe in (result.run_exe, result.server_exe):
        if elf_arch(exe) != arch:
            raise DeviceError(f"{exe} came out as {elf_arch(exe)}, expected {arch}")
    return result


def _cmake(cmd: Sequence[str], step: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise DeviceError(f"CMake {step} failed ({' '.join(cmd)}):\n{tail(proc.stdout + proc.stderr)}")


def ensure_runtime(target: str = "host", build_dir: str | os.PathLike | None = None) -> NativeBuild:
    """An installed build for `target`, (re)built only when missing or older than the native sources."""
    build = Path(build_dir) if build_dir else default_build_dir(target)
    existing = NativeBuild(arch_name(target), build, build / "install")
    exes = (existing.run_exe, existing.server_exe)
    if all(p.is_file() for p in exes):
        root = source_root()
        sources = [
            root / "CMakeLists.txt",
            *root.joinpath("cmake").glob("*.cmake"),
            *root.joinpath("native").rglob("*"),
        ]
        newest = max(p.stat().st_mtime for p in sources if p.is_file())
        if min(p.stat().st_mtime for p in exes) >= newest:
            return existing
    return build_runtime(target, build)
