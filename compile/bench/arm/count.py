"""Run a guest program under qemu-aarch64 with the counting plugin, and turn k-vs-1 runs into per-inference figures."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repnext_core.compile.bench.arm.common import EmulationError
from repnext_core.compile.device.tools import require_tool

# Engines must run single-threaded and quiet: the plugin's counters are exact for one guest thread.
ENGINE_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "OMP_NUM_THREADS": "1",
    "TVM_NUM_THREADS": "1",
}
# Build targets that qemu 7.2 cannot emulate as such, mapped to the closest model it has (same ISA level).
QEMU_CPU_STANDIN = {"cortex-a55": "cortex-a76"}
# Plugin output fields that describe the run rather than count instructions (not differenced).
RUN_FIELDS = ("tbs_translated", "tbs_executed", "threads")


@dataclass
class Counts:
    """One counted run: the plugin's totals, the wall time, and where its TB dump went (if any)."""

    values: dict[str, int]
    seconds: float
    tbdump: Path | None = None
    stdout: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def qemu_cpus() -> list[str]:
    """CPU models this qemu-aarch64 can emulate (from `qemu-aarch64 -cpu help`)."""
    qemu = require_tool("qemu-aarch64")
    out = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True, timeout=60).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


def qemu_cpu_for(target: str) -> str:
    """The -cpu to emulate a build target with: itself when qemu has it, else a documented stand-in."""
    cpus = qemu_cpus()
    if target in cpus:
        return target
    standin = QEMU_CPU_STANDIN.get(target)
    if standin in cpus:
        return standin
    raise EmulationError(f"qemu-aarch64 cannot emulate {target} (it has: {', '.join(cpus)})")


def qemu_command(
    guest: Sequence[str], cpu: str, plugin: Path, out: Path, root: Path | None, tbdump: Path | None
) -> list[str]:
    """The qemu-aarch64 command line that runs guest argv with the plugin writing to out (and tbdump)."""
    qemu = require_tool("qemu-aarch64")
    args = f"{plugin},out={out}" + (f",tbdump={tbdump}" if tbdump else "")
    cmd = [qemu, "-cpu", cpu, "-plugin", args]
    if root is not None:
        cmd += ["-L", str(root)]
    return [*cmd, *map(str, guest)]


def run_plain(
    guest: Sequence[str],
    cpu: str,
    root: Path | None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> float:
    """Run guest argv under qemu without the plugin (the correctness check); returns its wall seconds."""
    qemu = require_tool("qemu-aarch64")
    cmd = [qemu, "-cpu", cpu, *(["-L", str(root)] if root is not None else []), *map(str, guest)]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **ENGINE_ENV, **(env or {})},
        )
    except subprocess.TimeoutExpired as e:
        raise EmulationError(f"qemu run timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    if proc.returncode != 0:
        raise EmulationError(
            f"guest exited {proc.returncode} under qemu: {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return time.monotonic() - start


def run_counted(
    guest: Sequence[str],
    cpu: str,
    plugin: Path,
    out_dir: Path,
    tag: str,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    tbdump: bool = False,
    timeout: float = 1800,
    cwd: Path | None = None,
) -> Counts:
    """Run guest argv under qemu with the plugin; the totals land in out_dir/TAG.json (TB dump in TAG.tbs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{tag}.json"
    dump = out_dir / f"{tag}.tbs" if tbdump else None
    for stale in (out, dump):
        if stale is not None:
            stale.unlink(missing_ok=True)
    full_env = {**os.environ, **ENGINE_ENV, **(env or {})}
    cmd = qemu_command(guest, cpu, plugin, out, root, dump)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise EmulationError(f"{tag}: qemu run timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise EmulationError(
            f"{tag}: guest exited {proc.returncode} under qemu: {' '.join(cmd)}\n{proc.stderr[-3000:]}"
        )
    if not out.is_file():
        raise EmulationError(
            f"{tag}: the plugin wrote no {out} (did the guest exit normally?)\n{proc.stderr[-2000:]}"
        )
    values = json.loads(out.read_text())
    return Counts({k: v for k, v in values.items() if isinstance(v, int)}, seconds, dump, proc.stdout)


def per_inference(many: Counts, one: Counts, k: int) -> dict[str, float]:
    """(count with k inferences - count with 1) / (k - 1) for every counter: start-up and the first run cancel."""
    if k < 2:
        raise ValueError(f"k must be at least 2 to difference out start-up, got {k}")
    keys = [key for key in many.values if key not in RUN_FIELDS]
    return {key: (many.values[key] - one.values.get(key, 0)) / (k - 1) for key in keys}
