"""The aarch64 TVM runtime: pip download the wheels once, extract the two libraries and the headers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from repnext_core.compile.device.tools import DeviceError, elf_arch, tail
from repnext_core.files import cache_root

AARCH64_PLATFORM = "manylinux_2_28_aarch64"
# Versions of the wheels whose runtime the programs link; artifacts must come from the same TVM.
TVM_DIST, FFI_DIST = "apache-tvm", "apache-tvm-ffi"
PINNED = {TVM_DIST: "0.27.0.post1", FFI_DIST: "0.1.14.post1"}


def wheel_versions() -> dict[str, str]:
    """Versions of apache-tvm / apache-tvm-ffi to fetch: the installed ones (artifacts come from them)."""
    from importlib import metadata

    versions = {}
    for dist, pinned in PINNED.items():
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = pinned
    return versions


def fetch_runtime(arch: str = "aarch64", versions: dict[str, str] | None = None) -> Path:
    """Download (once) the `arch` wheels and extract libtvm_runtime.so, libtvm_ffi.so and the headers.

    Returns a folder with lib/ and include/, cached under cache_root(); pass its lib/ as TVM_RUNTIME_DIR.
    """
    if arch != "aarch64":
        raise DeviceError(
            f"only aarch64 runtimes are fetched; the host uses the installed wheels (got {arch})"
        )
    versions = versions or wheel_versions()
    name = f"{arch}-tvm{versions[TVM_DIST]}-ffi{versions[FFI_DIST]}"
    out = cache_root() / "tvm-runtime" / name
    if (out / "COMPLETE").is_file():
        return out
    wheels = _download_wheels(versions, cache_root() / "wheels")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out.parent))
    try:
        _extract_runtime(wheels, tmp)
        for lib in ("libtvm_runtime.so", "libtvm_ffi.so"):
            if elf_arch(tmp / "lib" / lib) != arch:
                raise DeviceError(f"{lib} from the downloaded wheel is not {arch}")
        (tmp / "COMPLETE").write_text(json.dumps(versions) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _download_wheels(versions: dict[str, str], dest: Path) -> dict[str, Path]:
    """pip download the aarch64 wheels into dest unless they are there already."""
    dest.mkdir(parents=True, exist_ok=True)
    found = _find_wheels(versions, dest)
    if len(found) == len(versions):
        return found
    # Only the two .so files are used, and they do not depend on the Python version of the wheel's tag.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--platform", AARCH64_PLATFORM, "--python-version", "3.11", "-d", str(dest)]
    cmd += [f"{dist}=={version}" for dist, version in versions.items()]
    print(f"downloading the aarch64 TVM wheels (~100 MB, once) into {dest}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    found = _find_wheels(versions, dest)
    if proc.returncode != 0 or len(found) != len(versions):
        raise DeviceError(f"pip download of the aarch64 wheels failed:\n{tail(proc.stdout + proc.stderr)}")
    return found


def _find_wheels(versions: dict[str, str], dest: Path) -> dict[str, Path]:
    found = {}
    for dist, version in versions.items():
        stem = dist.replace("-", "_")
        hits = sorted(dest.glob(f"{stem}-{version}-*aarch64*.whl"))
        if hits:
            found[dist] = hits[-1]
    return found


def _extract_runtime(wheels: dict[str, Path], out: Path) -> None:
    """The two libraries into out/lib, tvm/ffi and dlpack headers into out/include."""
    wanted = {
        (TVM_DIST, "tvm/lib/libtvm_runtime.so"): "lib/libtvm_runtime.so",
        (FFI_DIST, "tvm_ffi/lib/libtvm_ffi.so"): "lib/libtvm_ffi.so",
    }
    for (dist, member), target in wanted.items():
        with zipfile.ZipFile(wheels[dist]) as zf:
            _extract_member(zf, member, out / target)
    with zipfile.ZipFile(wheels[FFI_DIST]) as zf:
        for member in zf.namelist():
            for prefix in ("tvm_ffi/include/", "tvm_ffi/3rdparty/dlpack/include/"):
                if member.startswith(prefix) and not member.endswith("/") and ".." not in member:
                    _extract_member(zf, member, out / "include" / member[len(prefix) :])


def _extract_member(zf: zipfile.ZipFile, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
