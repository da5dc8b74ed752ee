"""The ARM path end to end under qemu: cross-built programs, an aarch64 artifact, tuning over RPC."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("tvm") is None:
    pytest.skip("apache-tvm is not installed (pip install -e .[tvm])", allow_module_level=True)
_TOOLS = {"cmake": "cmake", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user"}
_MISSING = [f"{tool} (apt-get install {pkg})" for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
if _MISSING:
    pytest.skip(f"missing for the ARM path: {', '.join(_MISSING)}", allow_module_level=True)

from repnext_core.compile import device  # noqa: E402

pytestmark = pytest.mark.slow

from tvm_helpers import SHAPE, make_toy_artifact  # noqa: E402

QEMU_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def arm_build(tmp_path_factory) -> device.NativeBuild:
    """Both programs cross-built for aarch64 (the wheels are fetched once into ~/.cache/repnext)."""
    try:
        return device.build_runtime("aarch64", tmp_path_factory.mktemp("native-aarch64"), optimize=False)
    except device.DeviceError as e:
        if "pip download" in str(e):
            pytest.skip(f"cannot fetch the aarch64 TVM wheels (offline?): {e}")
        raise


@pytest.fixture(scope="session")
def arm_artifact(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """The toy model built for a Raspberry Pi 4 (cortex-a72), linked with aarch64-linux-gnu-g++."""
    return make_toy_artifact(tmp_path_factory.mktemp("arm-artifacts") / "toy-a72", "cortex-a72")


def _file_says(path: Path) -> str:
    return subprocess.run(["file", "-L", str(path)], capture_output=True, text=True, timeout=30).stdout


@pytest.mark.skipif(shutil.which("file") is None, reason="`file` is not installed (apt-get install file)")
def test_cross_built_files_are_aarch64(arm_build, arm_artifact):
    """`file` says AArch64 for both programs, both runtime libraries and the artifact's model.so."""
    paths = [arm_build.run_exe, arm_build.server_exe, arm_artifact[0] / "model.so"]
    paths += [arm_build.install_dir / "lib" / n for n in ("libtvm_runtime.so", "libtvm_ffi.so")]
    for path in paths:
        assert "aarch64" in _file_says(path), path


def test_arm_runner_under_qemu_matches_fused_torch(arm_build, arm_artifact, tmp_path):
    """The install folder, copied elsewhere, runs the aarch64 artifact under qemu like fused PyTorch."""
    board = tmp_path / "board"
    shutil.copytree(arm_build.install_dir, board)  # as if scp'd to the board: only $ORIGIN/../lib is used
    artifact, model = arm_artifact
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)).numpy()
    np.save(tmp_path / "x.npy", x)
    cmd = [*device.qemu_prefix("aarch64"), str(board / "bin" / "repnext-run"), str(artifact)]
    cmd += [
        "--input",
        str(tmp_path / "x.npy"),
        "--output",
        str(tmp_path / "y.npy"),
        "--warmup",
        "0",
        "--repeat",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_run_artifact_native_qemu(arm_build, arm_artifact, tmp_path):
    """The helper behind `repnext run --qemu`; the aarch64 runner refuses an x86_64 model.so."""
    artifact, model = arm_artifact
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4)).numpy()
    result = device.run_native(artifact, x, qemu=True, build_dir=arm_build.build_dir)
    assert result.emulated
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.output, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))

    x86 = tmp_path / "x86"
    shutil.copytree(artifact, x86)
    lib = bytearray((x86 / "model.so").read_bytes())
    lib[18:20] = (62).to_bytes(2, "little")  # EM_X86_64
    (x86 / "model.so").write_bytes(bytes(lib))
    proc = subprocess.run(
        [*device.qemu_prefix("aarch64"), str(arm_build.run_exe), str(x86)],
        capture_output=True,
        text=True,
        timeout=QEMU_TIMEOUT_S,
    )
    assert proc.returncode == 1 and "built for x86_64" in proc.stderr and "runner is aarch64" in proc.stderr
    with pytest.raises(device.DeviceError, match="without qemu"):
        device.run_native(x86, x, qemu=True, build_dir=arm_build.build_dir)


def test_metaschedule_tunes_through_the_arm_rpc_server(arm_build, tmp_path):
    """A few MetaSchedule trials for cortex-a72, measured by the aarch64 server under qemu via a tracker."""
    from repnext_core import reparameterize
    from repnext_core.compile.device.tracker import Tracker
    from repnext_core.compile.tune.tuner import tune
    from repnext_core.testing import toy_model

    model = reparameterize(toy_model(seed=0)).eval()
    with device.start_rpc_tracker() as address:
        host, port = address.split(":")
        with device.start_rpc_server(
            tracker=address, key="qemu-a72", qemu=True, build_dir=arm_build.build_dir
        ) as srv:
            report = tune(
                model,
                "cortex-a72",
                trials=4,
                work_dir=tmp_path / "db",
                input_shape=SHAPE,
                variant="toy",
                runner=Tracker(host, int(port), "qemu-a72"),
                progress=False,
            )
    assert report.records_after - report.records_before >= 4, srv.log()
    assert report.task_best_ms, "no candidate ran successfully on the server"
    assert srv.log().count("load_module") >= 4
    assert srv.process.poll() is not None


def test_emulated_board_serves_a_session(arm_build, tmp_path):
    """The tracker + qemu server pair that `repnext tune --qemu` uses hands out a working session."""
    import tvm
    from tvm import rpc, te
    from tvm.support import cc

    a = te.placeholder((64,), name="A")
    b = te.compute((64,), lambda i: a[i] * 2.0, name="B")
    lib = tvm.tirx.build(te.create_prim_func([a, b]), target={"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    lib.export_library(str(tmp_path / "twice.so"), fcompile=cc.cross_compiler("aarch64-linux-gnu-g++"))
    with device.emulated_board(key="board", build_dir=arm_build.build_dir) as (host, port, key):
        remote = rpc.connect_tracker(host, port).request(key, session_timeout=120)
        remote.upload(str(tmp_path / "twice.so"))
        dev = remote.cpu()
        x = tvm.runtime.tensor(np.arange(64, dtype=np.float32), dev)
        y = tvm.runtime.empty((64,), "float32", dev)
        remote.load_module("twice.so")["main"](x, y)
        np.testing.assert_array_equal(y.numpy(), 2 * np.arange(64, dtype=np.float32))
