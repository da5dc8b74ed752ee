"""What the emulation modules share: the error type, the cache folder, tools and checked subprocess runs."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from repnext_core.compile.device.tools import DeviceError


class EmulationError(DeviceError):
    """A missing tool or a failed step, with the command that fixes it in the message."""


def arm_dir(cache_root: Path) -> Path:
    """The folder under the cache root that holds everything this package fetches or builds."""
    path = Path(cache_root) / "arm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_checked(cmd: Sequence[str], what: str, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, raising EmulationError with its stderr tail when it fails or times out."""
    try:
        proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        raise EmulationError(f"{what}: timed out after {timeout:.0f} s: {' '.join(map(str, cmd))}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise EmulationError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return proc
