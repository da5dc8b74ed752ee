"""Native runner and RPC server on this machine: CMake build, parity with fused PyTorch, errors, RPC session."""

from __future__ import annotations

import gc
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("tvm") is None:
    pytest.skip("apache-tvm is not installed (pip install -e .[tvm])", allow_module_level=True)
if shutil.which("cmake") is None:
    pytest.skip("cmake is not installed (apt-get install cmake)", allow_module_level=True)

from tvm_helpers import SHAPE, make_toy_artifact  # noqa: E402

from repnext_core.compile import device  # noqa: E402

RUN_TIMEOUT_S = 120


def toy_input(seed: int = 1) -> np.ndarray:
    """A seeded float32 input of the toy artifact's shape."""
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)).numpy()


def reference(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The fused PyTorch model's output."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def assert_matches(out: np.ndarray, ref: np.ndarray) -> None:
    """Parity at 1e-5 relative to the output's magnitude."""
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    """Run a native program with a timeout, capturing text output."""
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, **kwargs
    )


@pytest.fixture(scope="session")
def host_build(tmp_path_factory) -> device.NativeBuild:
    """Both programs built once per session for this machine, at -O0 (compile time is what matters)."""
    return device.build_runtime("host", tmp_path_factory.mktemp("native-host"), optimize=False)


@pytest.fixture(scope="session")
def host_artifact(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """The toy model built for this machine."""
    return make_toy_artifact(tmp_path_factory.mktemp("artifacts") / "toy-host", "host")


def test_install_folder_is_self_contained(host_build):
    """bin/ holds both programs (rpath $ORIGIN/../lib), lib/ the two TVM runtime libraries."""
    names = {p.relative_to(host_build.install_dir).as_posix() for p in host_build.install_dir.rglob("*.*")}
    assert {"lib/libtvm_runtime.so", "lib/libtvm_ffi.so"} <= names
    readelf = shutil.which("readelf")
    if readelf:
        dynamic = run([readelf, "-d", host_build.run_exe]).stdout
        assert "$ORIGIN/../lib" in dynamic


def test_runner_matches_fused_torch(host_build, host_artifact, tmp_path):
    """repnext-run on a .npy input writes what the fused PyTorch model computes, and prints latencies."""
    artifact, model = host_artifact
    x = toy_input()
    np.save(tmp_path / "x.npy", x)
    proc = run(
        [host_build.run_exe, artifact, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"]
        + ["--warmup", "1", "--repeat", "3", "--threads", "1"]
    )
    assert proc.returncode == 0, proc.stderr
    assert "median" in proc.stdout and "min" in proc.stdout and "max" in proc.stdout
    assert_matches(np.load(tmp_path / "y.npy"), reference(model, x))


def test_run_artifact_native_helper(host_build, host_artifact):
    """The Python helper the CLI uses gives the same output (and reuses the up-to-date build)."""
    artifact, model = host_artifact
    x = toy_input(seed=2)
    result = device.run_native(artifact, x, build_dir=host_build.build_dir, warmup=0, repeat=2)
    assert not result.emulated and result.median_ms is not None
    assert_matches(result.output, reference(model, x))


def test_runner_without_input_says_so(host_build, host_artifact):
    """No --input: a deterministic input, announced; the output shape is printed."""
    proc = run([host_build.run_exe, host_artifact[0], "--warmup", "0", "--repeat", "1"])
    assert proc.returncode == 0, proc.stderr
    assert "deterministic input" in proc.stdout and "(1, 10)" in proc.stdout


def test_runner_rejects_wrong_input(host_build, host_artifact, tmp_path):
    """A wrong input shape or dtype is refused with the expected shape in the message."""
    np.save(tmp_path / "small.npy", np.zeros((1, 3, 16, 16), np.float32))
    proc = run([host_build.run_exe, host_artifact[0], "--input", tmp_path / "small.npy"])
    assert proc.returncode == 1 and "(1, 3, 16, 16)" in proc.stderr and "(1, 3, 32, 32)" in proc.stderr
    np.save(tmp_path / "f64.npy", np.zeros(SHAPE, np.float64))
    proc = run([host_build.run_exe, host_artifact[0], "--input", tmp_path / "f64.npy"])
    assert proc.returncode == 1 and "float32" in proc.stderr


def _copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_runner_rejects_other_architecture(host_build, host_artifact, tmp_path):
    """A model.so for another CPU (ELF e_machine) or a meta.json naming one is refused before loading."""
    arm = _copy_artifact(host_artifact[0], tmp_path / "arm")
    lib = bytearray((arm / "model.so").read_bytes())
    lib[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    (arm / "model.so").write_bytes(bytes(lib))
    proc = run([host_build.run_exe, arm])
    assert proc.returncode == 1 and "built for aarch64" in proc.stderr
    with pytest.raises(device.DeviceError, match="qemu"):
        device.run_native(arm, toy_input(), build_dir=host_build.build_dir)

    lying = _copy_artifact(host_artifact[0], tmp_path / "lying")
    meta = json.loads((lying / "meta.json").read_text())
    meta["target"]["target"]["mtriple"] = "aarch64-linux-gnu"
    (lying / "meta.json").write_text(json.dumps(meta))
    proc = run([host_build.run_exe, lying])
    assert proc.returncode == 1 and "aarch64-linux-gnu" in proc.stderr


def test_runner_usage_errors(host_build, tmp_path):
    """No artifact dir, a folder without meta.json, an unknown option: exit codes 2 / 1 / 2."""
    assert run([host_build.run_exe]).returncode == 2
    proc = run([host_build.run_exe, tmp_path])
    assert proc.returncode == 1 and "no meta.json" in proc.stderr
    assert run([host_build.run_exe, tmp_path, "--bogus"]).returncode == 2


def _addone_library(path: Path) -> None:
    """A tiny host kernel, main(A, B): B = A + 1 over 1024 floats."""
    import tvm
    from tvm import te
    from tvm.support import cc

    a = te.placeholder((1024,), name="A")
    b = te.compute((1024,), lambda i: a[i] + 1.0, name="B")
    tvm.tirx.build(te.create_prim_func([a, b]), target="llvm").export_library(
        str(path), fcompile=cc.create_shared
    )


def _session_roundtrip(port: int, library: Path) -> None:
    """Upload, load, run, time and random-fill in one session; it ends when this returns."""
    import tvm
    from tvm import rpc

    remote = rpc.connect("127.0.0.1", port, key="k", session_timeout=60)
    remote.upload(str(library))
    mod = remote.load_module(library.name)
    dev = remote.cpu()
    a = tvm.runtime.tensor(np.arange(1024, dtype=np.float32), dev)
    b = tvm.runtime.empty((1024,), "float32", dev)
    mod["main"](a, b)
    np.testing.assert_array_equal(b.numpy(), np.arange(1024, dtype=np.float32) + 1)
    assert mod.time_evaluator("main", dev, number=2, repeat=2)(a, b).median > 0
    remote.get_function("tvm.contrib.random.random_fill_for_measure")(a)
    assert 1.0 <= a.numpy().min() and a.numpy().max() < 10.0
    remote.remove(library.name)


def _upload_error(port: int, name: str) -> str:
    """The error text of uploading to `name` in a fresh session (empty when it is accepted)."""
    from tvm import rpc

    remote = rpc.connect("127.0.0.1", port, key="k", session_timeout=60)
    try:
        remote.upload(bytearray(b"x"), name)
    except Exception as e:  # noqa: BLE001 - the remote error arrives as a TVM error type
        return str(e)
    return ""


def _connect_error(port: int, key: str) -> str:
    """The error text of opening a session with `key` (empty when it is accepted)."""
    from tvm import rpc

    try:
        rpc.connect("127.0.0.1", port, key=key, session_timeout=10)
    except Exception as e:  # noqa: BLE001
        return str(e)
    return ""


def test_rpc_server_session(host_build, tmp_path):
    """A TVM RPC client uploads a module, runs it, times it and random-fills through repnext-rpc-server;
    paths outside the session folder and wrong keys are refused."""
    _addone_library(tmp_path / "addone.so")
    with device.start_rpc_server(key="k", build_dir=host_build.build_dir, session_timeout_s=30) as server:
        _session_roundtrip(server.port, tmp_path / "addone.so")
        gc.collect()  # drop the client's session objects, so that the server takes the next client
        assert "leaves the session directory" in _upload_error(server.port, "../escape.so")
        gc.collect()
        assert "matches key" in _connect_error(server.port, "wrong")
    assert server.process.poll() is not None
    assert "load_module" in server.log() and "session finished" in server.log()


def test_missing_tools_name_the_debian_package(monkeypatch):
    """cmake, the cross compiler and qemu missing: the error says what to apt-get install."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(device.DeviceError, match="apt-get install cmake"):
        device.build_runtime("host")
    with pytest.raises(device.DeviceError, match="apt-get install qemu-user"):
        device.require_tool("qemu-aarch64")
    with pytest.raises(device.DeviceError, match="apt-get install g\\+\\+-aarch64-linux-gnu"):
        device.require_tool("aarch64-linux-gnu-g++")


def test_build_runtime_cli(monkeypatch, capsys, tmp_path):
    """`repnext build-runtime` parses its options and turns a DeviceError into exit code 2."""
    import argparse

    from repnext_core.cli import device as device_cli

    parser = argparse.ArgumentParser()
    device_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build-runtime", "--target", "aarch64", "--build-dir", str(tmp_path)])
    assert args.target == "aarch64" and args.build_dir == str(tmp_path)

    def fail(*a, **k):
        raise device.DeviceError("aarch64-linux-gnu-g++ is not on PATH; install it with: apt-get install x")

    monkeypatch.setattr(device, "build_runtime", fail)
    assert args.func(args) == 2
    assert "apt-get install" in capsys.readouterr().err
