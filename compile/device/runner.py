"""Running an artifact with the native runner repnext-run, here or under qemu-user for aarch64."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repnext_core.compile.device.runtime_build import ensure_runtime
from repnext_core.compile.device.tools import DeviceError, arch_name, elf_arch, qemu_prefix, tail

QEMU_TIMING_NOTE = "timings under qemu emulation are meaningless (often 100x slower than the board)"


@dataclass(frozen=True)
class NativeRun:
    """What repnext-run produced: the output, its log, the median latency, and whether it was emulated."""

    output: np.ndarray
    log: str
    median_ms: float | None
    emulated: bool


def check_artifact_arch(artifact_dir: str | os.PathLike, arch: str) -> None:
    """Refuse an artifact whose model.so (or meta.json target) is for another CPU than `arch`."""
    from repnext_core.compile.tvm.artifact import read_meta

    meta = read_meta(artifact_dir)
    library = meta.get("files", {}).get("library")
    if not library:
        raise DeviceError(f"{artifact_dir} holds object files for an app, not a model.so to run")
    lib_arch = elf_arch(Path(artifact_dir) / library)
    triple = str(meta.get("target", {}).get("target", {}).get("mtriple", ""))
    if lib_arch != arch:
        how = "with qemu=True (--qemu)" if lib_arch == "aarch64" else "without qemu"
        raise DeviceError(
            f"{artifact_dir} is built for {lib_arch} (target {meta.get('target', {}).get('name')}), "
            f"not {arch}: run it {how}, or rebuild it for {arch}"
        )
    if triple and not triple.startswith(arch) and not (arch == "aarch64" and triple.startswith("arm64")):
        raise DeviceError(f"{artifact_dir}/meta.json says mtriple {triple}, but model.so is {lib_arch}")


def run_native(
    artifact_dir: str | os.PathLike,
    x: np.ndarray,
    qemu: bool = False,
    *,
    warmup: int | None = None,
    repeat: int | None = None,
    threads: int | None = None,
    build_dir: str | os.PathLike | None = None,
    timeout_s: float = 600.0,
) -> NativeRun:
    """Run an artifact with repnext-run (aarch64 under qemu-user when qemu=True); output, log and timing."""
    from repnext_core.compile.tvm.artifact import check_input, read_meta

    target = "aarch64" if qemu else "host"
    arch = arch_name(target)
    prefix = qemu_prefix(arch)
    check_artifact_arch(artifact_dir, arch)
    x = check_input(read_meta(artifact_dir), x)
    build = ensure_runtime(target, build_dir)
    emulated = bool(prefix)
    warmup = (0 if emulated else 3) if warmup is None else warmup
    repeat = (1 if emulated else 10) if repeat is None else repeat
    with tempfile.TemporaryDirectory(prefix="repnext_native_") as tmp:
        np.save(Path(tmp, "x.npy"), x.astype("<f4", copy=False))
        files = ["--input", f"{tmp}/x.npy", "--output", f"{tmp}/y.npy"]
        cmd = [
            *prefix,
            str(build.run_exe),
            str(artifact_dir),
            *files,
            "--warmup",
            str(warmup),
            "--repeat",
            str(repeat),
        ]
        if threads:
            cmd += ["--threads", str(threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"repnext-run did not finish within {timeout_s:g} s: {' '.join(cmd)}") from None
        if proc.returncode != 0:
            raise DeviceError(
                f"repnext-run failed (exit {proc.returncode}):\n{tail(proc.stderr + proc.stdout)}"
            )
        output = np.load(Path(tmp, "y.npy"))
    match = re.search(r"median ([0-9.]+) ms", proc.stdout)
    return NativeRun(output, proc.stdout, float(match.group(1)) if match else None, emulated)


def run_artifact_native(artifact_dir: str | os.PathLike, x: np.ndarray, qemu: bool = False) -> np.ndarray:
    """Run an artifact once with the native runner (under qemu-aarch64 when qemu=True); its output."""
    return run_native(artifact_dir, x, qemu).output
