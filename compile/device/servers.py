"""Start and stop repnext-rpc-server (natively or under qemu) and TVM's RPC tracker, for tuning on a board."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from repnext_core.compile.device.runtime_build import ensure_runtime
from repnext_core.compile.device.tools import DeviceError, arch_name, qemu_prefix, tail
from repnext_core.compile.device.tracker import TrackerError, tracker_free_sessions


@dataclass
class RpcServer:
    """A running repnext-rpc-server: where it listens, its process, and its log (kept after it stops)."""

    host: str
    port: int
    key: str
    tracker: str | None
    process: subprocess.Popen
    log_path: Path
    final_log: str | None = None

    def log(self) -> str:
        """Everything the server printed so far (or in all, once stopped)."""
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_rpc_server(
    host: str = "127.0.0.1",
    port: int = 0,
    tracker: str | None = None,
    key: str = "",
    qemu: bool = False,
    *,
    build_dir: str | os.PathLike | None = None,
    session_timeout_s: int = 0,
    start_timeout_s: float = 120.0,
) -> Iterator[RpcServer]:
    """Run repnext-rpc-server (aarch64 under qemu when qemu=True) for the duration of the with-block.

    port 0 picks a free port. With tracker="HOST:PORT" and key, waits until the tracker lists the server,
    so that MetaSchedule's RPCRunner can request it right away. The server is stopped on exit.
    """
    target = "aarch64" if qemu else "host"
    prefix = qemu_prefix(arch_name(target))
    build = ensure_runtime(target, build_dir)
    if tracker and not key:
        raise DeviceError("an RPC server behind a tracker needs a key (--key)")
    cmd = [*prefix, str(build.server_exe), "--host", host, "--port", str(port)]
    if tracker:
        cmd += ["--tracker", tracker, "--key", key]
    elif key:
        cmd += ["--key", key]
    if session_timeout_s:
        cmd += ["--timeout", str(session_timeout_s)]
    with tempfile.TemporaryDirectory(prefix="repnext_rpc_") as tmp:
        log_path = Path(tmp, "server.log")
        workdir = Path(tmp, "work")
        workdir.mkdir()
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [*cmd, "--workdir", str(workdir)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = None
        try:
            bound = _wait_for_port(proc, log_path, start_timeout_s)
            server = RpcServer(host, bound, key, tracker, proc, log_path)
            if tracker:
                _wait_for_tracker(server, start_timeout_s)
            yield server
        finally:
            stop_process(proc)
            if server is not None:
                server.final_log = log_path.read_text(errors="replace")


def _wait_for_port(proc: subprocess.Popen, log_path: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(r"listening on .*:(\d+)", log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            raise DeviceError(
                f"repnext-rpc-server exited with {proc.returncode}:\n{tail(log_path.read_text())}"
            )
        time.sleep(0.1)
    raise DeviceError(f"repnext-rpc-server did not start listening within {timeout_s:g} s")


def _wait_for_tracker(server: RpcServer, timeout_s: float) -> None:
    host, _, port = str(server.tracker).rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DeviceError(
                f"repnext-rpc-server exited with {server.process.returncode}:\n{tail(server.log())}"
            )
        with contextlib.suppress(TrackerError):
            if tracker_free_sessions(host, int(port), server.key) > 0:
                return
        time.sleep(0.5)
    raise DeviceError(
        f"repnext-rpc-server did not register with tracker {server.tracker} within {timeout_s:g} s"
    )


@contextlib.contextmanager
def start_rpc_tracker(
    host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 120.0
) -> Iterator[str]:
    """TVM's Python RPC tracker (python -m tvm.exec.rpc_tracker) for the with-block; yields "HOST:PORT".

    port 0 picks a free one. The tracker and its worker process are stopped on exit.
    """
    first = port or _free_port(host)
    cmd = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(first)]
    with tempfile.TemporaryDirectory(prefix="repnext_tracker_") as tmp:
        log_path = Path(tmp, "tracker.log")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [*cmd, "--port-end", str(first + 20)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + start_timeout_s
            bound = None
            while bound is None and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise DeviceError(
                        f"the RPC tracker exited with {proc.returncode}:\n{tail(log_path.read_text())}"
                    )
                match = re.search(r"bind to .*:(\d+)", log_path.read_text(errors="replace"))
                if match:
                    with contextlib.suppress(TrackerError):
                        tracker_free_sessions(host, int(match.group(1)), "")
                        bound = int(match.group(1))
                time.sleep(0.2)
            if bound is None:
                raise DeviceError(f"the RPC tracker did not start within {start_timeout_s:g} s")
            yield f"{host}:{bound}"
        finally:
            stop_process(proc)


@contextlib.contextmanager
def emulated_board(
    key: str = "qemu-aarch64",
    *,
    build_dir: str | os.PathLike | None = None,
    session_timeout_s: int = 0,
) -> Iterator[tuple[str, int, str]]:
    """A local tracker plus the aarch64 repnext-rpc-server under qemu, registered with it.

    Yields (tracker_host, tracker_port, key) for MetaSchedule's RPCRunner; both are stopped on exit.
    """
    with start_rpc_tracker() as address:
        with start_rpc_server(
            tracker=address, key=key, qemu=True, build_dir=build_dir, session_timeout_s=session_timeout_s
        ):
            host, _, port = address.rpartition(":")
            yield host, int(port), key


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process (and its session children), then SIGKILL after grace_s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
