"""The TVM RPC tracker client (the one implementation of its protocol here): parse HOST:PORT, ask for its\nsummary, open sessions, and run a built model on a board behind it."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONNECT_TIMEOUT_S = 5.0


class TrackerError(RuntimeError):
    """The RPC tracker does not answer, or no server with the key is registered; says how to fix it."""


@dataclass(frozen=True)
class Tracker:
    """An RPC tracker and the device key its servers registered with (rpc_server --key)."""

    host: str
    port: int
    key: str

    @classmethod
    def parse(cls, address: str, key: str) -> Tracker:
        """'HOST:PORT' plus key -> Tracker; a ValueError names the expected form."""
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"tracker address must be HOST:PORT, got {address!r}")
        if not key:
            raise ValueError("an RPC tracker needs the device key its servers use (--key)")
        return cls(host, int(port), key)

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (key {self.key!r})"

    def check(self, timeout: float = CONNECT_TIMEOUT_S) -> int:
        """Number of servers registered under the key; TrackerError when the tracker is silent or has none."""
        summary = self._summary(timeout)
        servers = [
            s for s in summary.get("server_info", []) if str(s.get("key", "")).split(":")[-1] == self.key
        ]
        if not servers:
            raise TrackerError(
                f"RPC tracker {self.host}:{self.port} has no server with key {self.key!r}; on the board run: "
                f"python -m tvm.exec.rpc_server --tracker {self.host}:{self.port} --key {self.key}"
            )
        return len(servers)

    def _summary(self, timeout: float) -> dict:
        return tracker_summary(self.host, self.port, timeout)

    def session(self, timeout_s: int = 60):
        """An RPC session on one of the key's servers (checked first, so a dead tracker fails fast)."""
        from tvm import rpc

        self.check()
        return rpc.connect_tracker(self.host, self.port).request(self.key, session_timeout=timeout_s)


def tracker_summary(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> dict:
    """The tracker's SUMMARY answer (queue and server info), over a socket with a timeout (TVM's own
    client retries for a minute); TrackerError when nothing or something else answers."""
    from tvm.rpc import base

    hint = (
        f"RPC tracker {host}:{port} did not answer within {timeout:g} s; start one with "
        f"python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port {port}"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            magic = struct.unpack("<i", base.recvall(sock, 4))[0]
            if magic != base.RPC_TRACKER_MAGIC:
                raise TrackerError(f"{host}:{port} answers but is not a TVM RPC tracker")
            base.sendjson(sock, [base.TrackerCode.SUMMARY])
            code, summary = base.recvjson(sock)
    except (OSError, struct.error) as e:
        raise TrackerError(f"{hint} ({type(e).__name__}: {e})") from None
    if code != base.TrackerCode.SUCCESS:
        raise TrackerError(f"RPC tracker {host}:{port} refused the summary request")
    return summary


def tracker_free_sessions(host: str, port: int, key: str, timeout: float = CONNECT_TIMEOUT_S) -> int:
    """How many servers with `key` the tracker can hand out now."""
    summary = tracker_summary(host, port, timeout)
    return int(summary.get("queue_info", {}).get(key, {}).get("free", 0))


def run_remote(artifact_dir: str | os.PathLike, tracker: Tracker, x: np.ndarray) -> np.ndarray:
    """Upload an artifact's model.so to a server behind the tracker and run it there on `x`."""
    import tvm
    from tvm import relax

    from repnext_core.compile.tvm.artifact import check_input, read_meta

    artifact_dir = Path(artifact_dir)
    meta = read_meta(artifact_dir)
    x = check_input(meta, x)
    remote = tracker.session()
    remote.upload(str(artifact_dir / meta["files"]["library"]), "model.so")
    dev = remote.cpu()
    vm = relax.VirtualMachine(remote.load_module("model.so"), dev)
    return vm["main"](tvm.runtime.tensor(x, dev)).numpy()
