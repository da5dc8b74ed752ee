"""Tuning and running through a TVM RPC tracker and server on 127.0.0.1 (the board setup, on loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from repnext_core import reparameterize  # noqa: E402
from repnext_core.compile.device.tracker import Tracker, TrackerError, run_remote  # noqa: E402
from repnext_core.compile.tune.tuner import tune  # noqa: E402
from repnext_core.compile.tvm.artifact import ArtifactMeta, export_artifact  # noqa: E402
from repnext_core.compile.tvm.build import build_with_report  # noqa: E402
from repnext_core.compile.tvm.importer import import_model, main_signature  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402

pytestmark = pytest.mark.slow

SHAPE = (1, 3, 32, 32)
KEY = "repnext-loopback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracker():
    """A tracker and one server registered under KEY, both on 127.0.0.1, stopped afterwards."""
    port, server_port = free_port(), free_port()
    python = [sys.executable, "-m"]
    procs = [
        subprocess.Popen(
            [
                *python,
                "tvm.exec.rpc_tracker",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--port-end",
                str(port + 1),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    tracker = Tracker("127.0.0.1", port, KEY)
    try:
        procs.append(
            subprocess.Popen(
                [*python, "tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", KEY]
                + ["--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 1)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 120  # both import TVM first (5-30 s on a busy machine)
        while True:
            try:
                tracker.check(timeout=2)
                break
            except TrackerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield tracker
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_tune_and_run_through_the_tracker(tracker, tmp_path):
    model = reparameterize(toy_model(seed=0)).eval()
    mod = import_model(model, SHAPE)
    report = tune(mod, "host", 4, tmp_path / "db", variant="toy", runner=tracker, seed=0, progress=False)
    assert report.trials_run >= 4 and report.task_best_ms, "no candidate ran on the RPC server"

    spec = resolve_target("host")
    exe, built = build_with_report(mod, spec, report.db_dir)
    assert built.tuned_kernels > 0
    shape, dtype, out_shape = main_signature(mod)
    artifact = export_artifact(
        exe, tmp_path / "art", ArtifactMeta(spec, shape, dtype, out_shape, variant="toy")
    )
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)).numpy()
    out = run_remote(artifact, tracker, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_a_key_without_servers_is_named(tracker):
    with pytest.raises(TrackerError, match="no server with key 'nobody'.*rpc_server --tracker"):
        Tracker(tracker.host, tracker.port, "nobody").check()
