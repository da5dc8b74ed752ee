"""`repnext tune | build | run` through the CLI entry point, on the toy model, with their error messages."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from repnext_core import reparameterize  # noqa: E402
from repnext_core.cli import main  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_does_not_import_tvm():
    code = (
        "import argparse, sys; from repnext_core.cli import tvm as tvm_cli; "
        "p = argparse.ArgumentParser(); tvm_cli.register(p.add_subparsers()); "
        "print('tvm' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_build_then_run_on_the_host(capsys, tmp_path):
    out = tmp_path / "toy"
    rc, stdout, err = _run(
        capsys, "build", "toy", "--input-size", "32", "--db", str(tmp_path), "--out", str(out)
    )
    assert rc == 0, err
    assert "no tuning database" in stdout and "(0 with measured tiles), 0/" in stdout
    meta = json.loads((out / "meta.json").read_text())
    assert (
        meta["variant"] == "toy" and meta["input_shape"] == [1, 3, 32, 32] and meta["output_shape"] == [1, 10]
    )
    assert meta["kernel_macs"] and all(v > 0 for v in meta["kernel_macs"].values())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7)).numpy()
    np.save(tmp_path / "x.npy", x)
    rc, stdout, err = _run(
        capsys, "run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")
    )
    assert rc == 0, err
    assert "top-5 classes" in stdout
    rc, stdout, err = _run(capsys, "profile", str(out), "--runs", "2", "--top", "3")
    assert rc == 0, err
    assert "calls per inference" in stdout and "more kernels)" in stdout and "conv2d" in stdout
    assert "GFLOP/s" in stdout and "of sgemm" in stdout  # meta.json carries the kernels' MACs
    with torch.no_grad():
        ref = reparameterize(toy_model(seed=0)).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max())
    )


def test_errors_are_one_clear_line(capsys, tmp_path):
    rc, _, err = _run(capsys, "build", "toy", "--target", "rpi3", "--out", str(tmp_path / "x"))
    assert rc == 2 and "unknown target 'rpi3'" in err and "cortex-a72 (rpi4)" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    rc, _, err = _run(
        capsys, "tune", "toy", "--input-size", "32", "--tracker", f"127.0.0.1:{port}", "--key", "pi"
    )
    assert rc == 2 and f"RPC tracker 127.0.0.1:{port} did not answer" in err and "rpc_tracker" in err
    rc, _, err = _run(capsys, "tune", "toy", "--tracker", "nohostport", "--key", "pi")
    assert rc == 2 and "HOST:PORT" in err
    rc, _, err = _run(capsys, "run", str(tmp_path))
    assert rc == 2 and "not a TVM artifact" in err
    rc, _, err = _run(capsys, "profile", str(tmp_path))
    assert rc == 2 and "not a TVM artifact" in err
    rc, _, err = _run(capsys, "build", "repnext_m9", "--out", str(tmp_path / "x"))
    assert rc == 2 and "repnext_m0" in err
