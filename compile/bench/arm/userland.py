"""An aarch64 Python userland from Debian bookworm arm64 packages, with a /proc/cpuinfo per emulated core."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from repnext_core.compile.bench.arm.common import EmulationError, arm_dir, run_checked
from repnext_core.compile.device.tools import require_tool
from repnext_core.files import write_text_atomic

SUITES = ("bookworm", "bookworm-updates")
SECURITY = "bookworm-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# What python3.11 and the engines' wheels load (libgomp for onnxruntime/ncnn, libstdc++ for all of them).
DEBS = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libstdc++6",
    "libgcc-s1",
    "libgomp1",
    "zlib1g",
    "libffi8",
    "libexpat1",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libnsl2",
    "libtirpc3",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libcom-err2",
    "libkrb5support0",
    "libkeyutils1",
    "libdb5.3",
    "media-types",
)
PYTHON = "usr/bin/python3.11"

# /proc/cpuinfo as an arm64 Linux kernel prints it, one core (qemu-user would otherwise show the x86 host's).
_FEATURES_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_FEATURES_V82 = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)
CORES: dict[str, tuple[str, str, str, str]] = {  # name: (variant, part, revision, features)
    "cortex-a53": ("0x0", "0xd03", "4", _FEATURES_V80),
    "cortex-a55": ("0x2", "0xd05", "0", _FEATURES_V82),
    "cortex-a72": ("0x0", "0xd08", "3", _FEATURES_V80),
    "cortex-a76": ("0x4", "0xd0b", "1", _FEATURES_V82),
}


def cpuinfo_text(core: str) -> str:
    """The /proc/cpuinfo of a one-core board with this ARM core (implementer, part id, feature flags)."""
    if core not in CORES:
        raise EmulationError(f"no /proc/cpuinfo description for {core}; known: {', '.join(CORES)}")
    variant, part, revision, features = CORES[core]
    return (
        "processor\t: 0\nBogoMIPS\t: 50.00\n"
        f"Features\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        f"CPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
    )


def _apt_options(work: Path) -> list[str]:
    """apt options for an arm64-only private state: the host's sources, lists and caches are not touched."""
    for sub in ("lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    status = work / "status"
    status.touch()
    lines = [f"deb [arch=arm64 signed-by={KEYRING}] http://deb.debian.org/debian {s} main" for s in SUITES]
    lines.append(
        f"deb [arch=arm64 signed-by={KEYRING}] http://deb.debian.org/debian-security {SECURITY} main"
    )
    sources = write_text_atomic(work / "sources.list", "\n".join(lines) + "\n")
    return [
        "-o",
        "APT::Architecture=arm64",
        "-o",
        "APT::Architectures::=arm64",
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={work / 'lists'}",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache={work / 'cache'}",
        "-o",
        "Dir::Etc::Preferences=/dev/null",
        "-o",
        "Dir::Etc::PreferencesParts=/dev/null",
    ]


def fetch_debs(cache_root: Path) -> list[Path]:
    """The arm64 .deb files of DEBS, downloaded once with `apt-get download` into the cache."""
    work = arm_dir(cache_root) / "apt-arm64"
    debs = work / "debs"
    have = {p.name.split("_")[0] for p in debs.glob("*.deb")} if debs.is_dir() else set()
    missing = [name for name in DEBS if name not in have]
    if missing:
        require_tool("apt-get")
        opts = _apt_options(work)
        run_checked(["apt-get", *opts, "update"], "apt-get update (private arm64 lists)", 600)
        debs.mkdir(parents=True, exist_ok=True)
        run_checked(["apt-get", *opts, "download", *missing], "apt-get download (arm64)", 900, cwd=debs)
    return sorted(debs.glob("*.deb"))


def base_root(cache_root: Path) -> Path:
    """Every deb unpacked with `dpkg -x` into one folder (built under a temp name, then renamed)."""
    root = arm_dir(cache_root) / "userland" / "base"
    if (root / PYTHON).is_file():
        return root
    require_tool("dpkg")
    debs = fetch_debs(cache_root)
    tmp = root.with_name(f".base.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        run_checked(["dpkg", "-x", str(deb), str(tmp)], f"unpacking {deb.name}", 300)
    if not (tmp / PYTHON).is_file():
        raise EmulationError(f"the unpacked debs have no {PYTHON}; delete {debs.parent} and retry")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def core_root(cache_root: Path, core: str) -> Path:
    """A hard-linked copy of the base root whose /proc/cpuinfo and /sys cpu lists describe one `core`."""
    root = arm_dir(cache_root) / "userland" / core
    info = cpuinfo_text(core)
    cpuinfo = root / "proc" / "cpuinfo"
    if not (cpuinfo.is_file() and cpuinfo.read_text() == info and (root / PYTHON).is_file()):
        base = base_root(cache_root)
        tmp = root.with_name(f".{core}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["cp", "-al", str(base), str(tmp)], check=True)
        write_text_atomic(tmp / "proc" / "cpuinfo", info)
        for name in ("possible", "present", "online"):
            write_text_atomic(tmp / "sys" / "devices" / "system" / "cpu" / name, "0\n")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return root


def python_argv(root: Path) -> list[str]:
    """The guest argv that starts the root's python3.11 without the user site (-L goes to qemu separately)."""
    return [str(root / PYTHON), "-s"]
