"""Fetch QEMU's plugin API header from Debian's qemu source package and build our counting plugin."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tarfile
from pathlib import Path

from repnext_core.compile.bench.arm.common import EmulationError, arm_dir, run_checked
from repnext_core.compile.device.tools import require_tool

PLUGIN_SOURCE = Path(__file__).resolve().parent / "insn_count.c"
HEADER_MEMBER = "include/qemu/qemu-plugin.h"
REFERENCE_MEMBERS = ("contrib/plugins/cache.c",)  # kept beside the header to read, never compiled
DEB_SRC_LINES = (
    "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
    "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian-security bookworm-security main",
)


def private_apt_options(state_dir: Path, sources: Path) -> list[str]:
    """apt options that use our own sources list and list folder, leaving the system's apt state alone."""
    (state_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    return [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={state_dir / 'lists'}",
    ]


def _orig_tarball(cache_root: Path) -> Path:
    """Debian's qemu orig tarball, downloaded once with `apt-get source --download-only`."""
    work = arm_dir(cache_root) / "qemu-src"
    dl = work / "dl"
    found = sorted(dl.glob("qemu_*.orig.tar.*")) if dl.is_dir() else []
    if found:
        return found[-1]
    require_tool("apt-get")
    sources = work / "sources.list"
    work.mkdir(parents=True, exist_ok=True)
    sources.write_text("\n".join(DEB_SRC_LINES) + "\n")
    opts = private_apt_options(work, sources)
    run_checked(["apt-get", *opts, "update"], "apt-get update (private deb-src list)", timeout=600)
    dl.mkdir(parents=True, exist_ok=True)
    run_checked(["apt-get", *opts, "source", "--download-only", "qemu"], "apt-get source qemu", 900, cwd=dl)
    found = sorted(dl.glob("qemu_*.orig.tar.*"))
    if not found:
        raise EmulationError(f"apt-get source qemu left no orig tarball in {dl}")
    return found[-1]


def fetch_plugin_header(cache_root: Path) -> Path:
    """The folder holding qemu-plugin.h (API v1, from Debian's qemu 7.2 sources), extracted once."""
    inc = arm_dir(cache_root) / "qemu-src" / "ref" / "include" / "qemu"
    if (inc / "qemu-plugin.h").is_file():
        return inc
    tarball = _orig_tarball(cache_root)
    ref = inc.parent.parent
    with tarfile.open(tarball) as tar:
        for member in tar:
            rel = member.name.split("/", 1)[-1]
            if member.isfile() and (rel == HEADER_MEMBER or rel in REFERENCE_MEMBERS):
                data = tar.extractfile(member).read()
                target = ref / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + ".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
    if not (inc / "qemu-plugin.h").is_file():
        raise EmulationError(f"{tarball} has no {HEADER_MEMBER}")
    return inc


def _glib_cflags() -> list[str]:
    require_tool("pkg-config")
    proc = subprocess.run(["pkg-config", "--cflags", "glib-2.0"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulationError(
            "pkg-config finds no glib-2.0; install it with: apt-get install -y libglib2.0-dev"
        )
    return shlex.split(proc.stdout)


def build_plugin(cache_root: Path, source: Path = PLUGIN_SOURCE) -> Path:
    """Compile the plugin into the cache (named by a hash of source and header) and return the .so path."""
    require_tool("gcc")
    inc = fetch_plugin_header(cache_root)
    digest = hashlib.sha256(Path(source).read_bytes() + (inc / "qemu-plugin.h").read_bytes()).hexdigest()[:12]
    out = arm_dir(cache_root) / "plugin" / f"insn_count-{digest}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [
        "gcc",
        "-O2",
        "-Wall",
        "-shared",
        "-fPIC",
        *_glib_cflags(),
        f"-I{inc}",
        str(source),
        "-o",
        str(tmp),
    ]
    try:
        run_checked(cmd, "building the qemu plugin", timeout=300)
        os.replace(tmp, out)  # a running qemu keeps the old inode: never rewrite a loaded .so in place
    finally:
        tmp.unlink(missing_ok=True)
    return out
