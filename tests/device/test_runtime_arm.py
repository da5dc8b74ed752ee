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


def test_conv_tiles_are_tuned_on_the_arm_rpc_server(arm_build, tmp_path):
    """The conv tile search for cortex-a72 over the emulated board (tracker + aarch64 server under qemu):
    every conv kernel's tile recorded, a second run measures nothing (resume), a build uses them."""
    from repnext_core import reparameterize
    from repnext_core.compile.device.tracker import Tracker
    from repnext_core.compile.tune.tile_search import FLUSH, make_timer
    from repnext_core.compile.tune.tuner import tune
    from repnext_core.compile.tvm.build import build_artifact
    from repnext_core.compile.tvm.conv_schedule import default_tile, schedule_conv, vector_unit
    from repnext_core.compile.tvm.conv_tiles import conv_kernels, load_tiles
    from repnext_core.compile.tvm.importer import import_model
    from repnext_core.compile.tvm.pipeline import prepare
    from repnext_core.compile.tvm.targets import resolve_target
    from repnext_core.testing import toy_model

    model = reparameterize(toy_model(seed=0)).eval()
    root = tmp_path / "db"
    spec = resolve_target("cortex-a72")
    settings = dict(input_shape=SHAPE, variant="toy", progress=False, tile_candidates=2)
    with device.emulated_board(key="qemu-tiles", build_dir=arm_build.build_dir) as (host, port, key):
        board = Tracker(host, port, key)
        first = tune(model, spec, 0, root, runner=board, **settings)
        tiles = load_tiles(first.db_dir)
        again = tune(model, spec, 0, root, runner=board, **settings)
        timer = make_timer(spec, board)
        kernel, func = next(iter(conv_kernels(prepare(import_model(model, SHAPE), spec)).values()))
        seconds = timer(schedule_conv(func, default_tile(kernel, vector_unit(spec.tvm_target())), "packed"))
    assert first.conv_tiles_measured == len(tiles) > 0 and first.trials_run == 0
    assert again.conv_tiles_measured == 0 and load_tiles(first.db_dir) == tiles
    assert all(tile.vec == 4 for tile in tiles.values())  # NEON: 4 float32 lanes
    assert seconds > 0 and timer.preproc == FLUSH  # the aarch64 runtime flushes the caches
    _, report = build_artifact(
        model, tmp_path / "toy-a72", spec, variant="toy", input_size=SHAPE[-1], db_roots=[root]
    )
    assert report.measured_tiles == report.conv_kernels == len(tiles)


def test_a_board_lost_during_the_tile_search_keeps_its_records(arm_build, tmp_path):
    """`repnext tune --tracker` whose board (the qemu server) dies mid tile search: exit 2 with one error
    line, the kernels measured so far stay in conv_tiles.json, and the same command later resumes."""
    import re
    import sys
    import threading
    import time

    from repnext_core.compile.tvm.conv_tiles import load_tiles

    def command(tracker: str, key: str) -> list[str]:
        return [
            *(sys.executable, "-m", "repnext_core.cli", "tune", "toy", "--input-size", str(SHAPE[-1])),
            *("--target", "cortex-a72", "--tracker", tracker, "--key", key, "--trials", "0"),
            *("--tile-candidates", "2", "--db", str(tmp_path)),
        ]

    with device.start_rpc_tracker() as address:
        with device.start_rpc_server(
            tracker=address, key="qemu-lost", qemu=True, build_dir=arm_build.build_dir
        ) as srv:
            cmd = command(address, "qemu-lost")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            seen = []
            threading.Thread(
                target=lambda: seen.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True
            ).start()
            deadline = time.monotonic() + QEMU_TIMEOUT_S
            while not re.search(r" [3-9]/\d+ \[", "".join(seen)):
                assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)[-2000:]
                time.sleep(0.1)
            device.stop_process(srv.process)
            assert proc.wait(timeout=QEMU_TIMEOUT_S) == 2, "".join(seen)[-2000:]
    time.sleep(0.2)  # the reader thread drains the pipe
    errors = [line for line in "".join(seen).splitlines() if line.startswith("repnext tune:")]
    assert len(errors) == 1 and "Traceback" not in "".join(seen), "".join(seen)[-2000:]
    assert "lost the board" in errors[0] and "run the same command again to resume" in errors[0]
    (db,) = tmp_path.iterdir()
    kept = load_tiles(db)
    assert len(kept) >= 3 and f"({len(kept)} of " in errors[0]

    with device.emulated_board(key="qemu-lost", build_dir=arm_build.build_dir) as (host, port, key):
        resumed = subprocess.run(
            [*command(f"{host}:{port}", key), "--quiet"],
            capture_output=True,
            text=True,
            timeout=QEMU_TIMEOUT_S,
        )
    assert resumed.returncode == 0, resumed.stderr
    total = len(load_tiles(db))
    assert (
        total > len(kept) and f"{total - len(kept)} conv kernel(s) had their tiles measured" in resumed.stdout
    )
