"""MetaSchedule tuning of the toy RepNeXt: database written, applied without tuning, resumed, guarded."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from tvm_helpers import SHAPE  # noqa: E402  (the shape the shared `mod` fixture uses)

from repnext_core.compile.tune import database as tuning_db  # noqa: E402
from repnext_core.compile.tune.tuner import tune  # noqa: E402
from repnext_core.compile.tvm.artifact import VMRunner  # noqa: E402
from repnext_core.compile.tvm.build import build_with_report  # noqa: E402
from repnext_core.compile.tvm.conv_tiles import load_tiles  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402

TRIALS = 8


@pytest.fixture(scope="module")
def tuned(mod, tmp_path_factory):
    """The toy tuned for the host with a few trials into a fresh database root."""
    root = tmp_path_factory.mktemp("db")
    return root, tune(mod, "host", TRIALS, root, variant="toy", seed=0, progress=False, tile_candidates=2)


def run(exe, x: np.ndarray) -> np.ndarray:
    return VMRunner(exe)(x)


def test_tuning_writes_a_database_per_variant_shape_target(tuned):
    root, report = tuned
    key = tuning_db.key_for("toy", SHAPE, "float32", resolve_target("host"))
    assert report.db_dir == tuning_db.db_dir(root, key) and report.db_dir.name.startswith("toy_32x32_host-")
    for name in (tuning_db.META_FILE, tuning_db.WORKLOAD_FILE, tuning_db.RECORD_FILE):
        assert (report.db_dir / name).is_file(), name
    assert report.records_before == 0 and not report.interrupted and report.conv_tiles_measured > 0
    assert len(load_tiles(report.db_dir)) == report.conv_tiles_measured
    assert TRIALS <= report.trials_run == tuning_db.count_records(report.db_dir) < 2 * TRIALS
    assert report.task_best_ms and report.est_latency_ms > 0


def test_build_applies_the_database_without_tuning(toy, mod, tuned):
    _, report = tuned
    records = tuning_db.count_records(report.db_dir)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)).numpy()
    exe, built = build_with_report(mod, "host", report.db_dir)
    assert 0 < built.tuned_kernels < built.kernels - built.conv_kernels and built.db["records"] == records
    assert built.measured_tiles == built.conv_kernels > 0
    first = run(exe, x)
    with torch.no_grad():
        ref = toy(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(first, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    again, rebuilt = build_with_report(mod, "host", report.db_dir)
    assert rebuilt.tuned_kernels == built.tuned_kernels
    np.testing.assert_array_equal(run(again, x), first)
    assert tuning_db.count_records(report.db_dir) == records  # building never measures


def test_a_second_run_resumes_and_extends_the_database(mod, tuned):
    root, first = tuned
    report = tune(mod, "host", 4, root, variant="toy", seed=1, progress=False, tile_candidates=2)
    assert report.conv_tiles_measured == 0  # every conv kernel's tile is on record already
    assert report.db_dir == first.db_dir
    assert report.records_before == tuning_db.count_records(first.db_dir) - report.trials_run
    assert report.trials_run >= 4 and report.records_after == tuning_db.count_records(first.db_dir)


def test_a_database_for_another_target_or_shape_is_refused(mod, tuned):
    _, report = tuned
    with pytest.raises(tuning_db.DatabaseMismatch, match="made for another setup: target"):
        build_with_report(mod, "cortex-a72", report.db_dir)
    other_shape = tuning_db.key_for("toy", (1, 3, 64, 64), "float32", resolve_target("host"))
    with pytest.raises(tuning_db.DatabaseMismatch, match="input_shape"):
        tuning_db.open_for(report.db_dir, other_shape, create=False)


def test_a_damaged_last_line_is_dropped(tuned, tmp_path):
    _, report = tuned
    copy = tmp_path / "db"
    shutil.copytree(report.db_dir, copy)
    records = tuning_db.count_records(copy)
    with open(copy / tuning_db.RECORD_FILE, "a") as f:
        f.write('[0, [["trunc')  # a process killed mid-write
    assert tuning_db.repair(copy) == 1 and tuning_db.count_records(copy) == records
    workloads = (copy / tuning_db.WORKLOAD_FILE).read_text().splitlines()
    workloads[0] = workloads[0][:20]  # records count workloads by line: this cannot be dropped safely
    (copy / tuning_db.WORKLOAD_FILE).write_text("\n".join(workloads) + "\n")
    with pytest.raises(tuning_db.DatabaseMismatch, match="damaged in the middle"):
        tuning_db.repair(copy)


@pytest.mark.slow
def test_ctrl_c_keeps_measured_trials_and_the_run_resumes(tmp_path):
    """SIGINT in the middle of `repnext tune`: exit 130, every trial measured so far is in a valid
    database, and the same command later resumes from it. At 96x96: MetaSchedule tunes only the input
    transpose and the pool (the convs, copies and head are hand-scheduled), whose 32x32 search spaces run
    out after about 10 distinct trials, before the interrupt point."""
    cmd = [
        sys.executable,
        "-m",
        "repnext_core.cli",
        "tune",
        "toy",
        "--input-size",
        "96",
        "--db",
        str(tmp_path),
    ]
    proc = subprocess.Popen([*cmd, "--trials", "400"], stderr=subprocess.PIPE, text=True)
    seen, done = [], threading.Event()

    def watch():
        for line in iter(lambda: proc.stderr.read(64), ""):
            seen.append(line)
            counts = re.findall(r"(\d+)/400", "".join(seen)[-200:])
            if counts and int(counts[-1]) >= 12:
                done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(timeout=900), "".join(seen)[-2000:]
    measured = int(re.findall(r"(\d+)/400", "".join(seen))[-1])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130, "".join(seen)[-2000:]
    (db,) = tmp_path.iterdir()
    assert tuning_db.repair(db) == 0
    kept = tuning_db.count_records(db)
    assert measured <= kept < 400
    time.sleep(0.1)
    resumed = subprocess.run([*cmd, "--trials", "4", "--quiet"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert tuning_db.count_records(db) >= kept + 4
