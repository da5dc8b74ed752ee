"""Conv tile search: candidates for the target, the conv_tiles.json records, resuming, and timing on a board.

An in-process RPC session (tvm.rpc.LocalSession) stands in for the board here; the run over the aarch64
server under qemu is tests/device/test_runtime_arm.py::test_conv_tiles_are_tuned_on_the_arm_rpc_server."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest

pytest.importorskip("tvm")

import tvm  # noqa: E402
from tvm import rpc  # noqa: E402

from repnext_core.cli.main import main  # noqa: E402
from repnext_core.compile.device.tracker import Tracker, TrackerError  # noqa: E402
from repnext_core.compile.tune import tile_search  # noqa: E402
from repnext_core.compile.tune.tile_search import FLUSH, make_timer, search_tiles  # noqa: E402
from repnext_core.compile.tvm.conv_schedule import (  # noqa: E402
    ConvTile,
    candidate_tiles,
    default_tile,
    schedule_conv,
    vector_unit,
)
from repnext_core.compile.tvm.conv_tiles import (  # noqa: E402
    FORMAT,
    TILES_FILE,
    conv_kernels,
    load_tiles,
    workload_key,
)
from repnext_core.compile.tvm.pipeline import prepare  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402

HOST = resolve_target("host")
A72 = resolve_target("cortex-a72")


@pytest.fixture(scope="module")
def prepared(mod):
    return prepare(mod, HOST)


@pytest.fixture(scope="module")
def few(prepared):
    """Three of the toy's conv kernels as a module of their own (searching all of them takes a while)."""
    items = list(conv_kernels(prepared).items())[:3]
    return tvm.IRModule({gv: func for gv, (_, func) in items})


@dataclass
class FakeTimer:
    """The first candidate of every kernel (the heuristic's tile) takes 2 ms, the second 1 ms; the
    `fail_at`-th call raises what a lost board raises."""

    fail_at: int = 0
    calls: int = 0

    def __call__(self, func) -> float:
        self.calls += 1
        if self.calls == self.fail_at:
            raise TrackerError("RPC tracker 127.0.0.1:9190 has no server with key 'rpi5'")
        return 2e-3 if self.calls % 2 else 1e-3


def never(func) -> float:
    raise AssertionError("a kernel on record was measured again")


def test_the_fastest_tile_is_recorded_in_the_shared_format(few, tmp_path):
    timer = FakeTimer()
    assert search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=timer) == 3
    assert timer.calls == 6
    data = json.loads((tmp_path / TILES_FILE).read_text())
    assert data["format"] == FORMAT and len(data["kernels"]) == 3
    unit = vector_unit(A72.tvm_target())
    for gv, (kernel, func) in conv_kernels(few).items():
        ranked = candidate_tiles(kernel, unit, 2)  # the board's NEON unit: 4 float32 lanes
        assert ranked[0] == default_tile(kernel, unit) and ranked[1].vec == 4
        assert data["kernels"][workload_key(func)] == {
            "name": gv.name_hint,
            "tile": ranked[1].to_json(),
            "ms": 1.0,
            "heuristic_ms": 2.0,
            "candidates": 2,
        }
    assert load_tiles(tmp_path) == {k: ConvTile(**e["tile"]) for k, e in data["kernels"].items()}


def test_kernels_on_record_are_skipped(few, tmp_path):
    search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=FakeTimer())
    assert search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=never) == 0
    path = tmp_path / TILES_FILE
    data = json.loads(path.read_text())
    dropped = sorted(data["kernels"])[0]
    kept = {k: v for k, v in data["kernels"].items() if k != dropped}
    path.write_text(json.dumps({**data, "kernels": kept}))
    timer = FakeTimer()
    assert search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=timer) == 1
    assert timer.calls == 2
    again = json.loads(path.read_text())["kernels"]
    assert set(again) == set(data["kernels"]) and all(again[k] == v for k, v in kept.items())


def test_a_lost_board_keeps_the_kernels_measured_so_far(few, tmp_path):
    with pytest.raises(TrackerError) as raised:
        search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=FakeTimer(fail_at=4))
    message = str(raised.value)
    assert "lost the board at kernel" in message and "no server with key 'rpi5'" in message
    assert "1 of 3 kernels" in message and str(tmp_path) in message and "resume" in message
    assert len(load_tiles(tmp_path)) == 1
    timer = FakeTimer()
    assert search_tiles(few, A72, tmp_path, limit=2, progress=False, timer=timer) == 2
    assert timer.calls == 4 and len(load_tiles(tmp_path)) == 3


class Broken(RuntimeError):
    pass


@dataclass
class Remote:
    """A tvm.rpc.LocalSession (upload, load_module, remote time evaluator: the RPC session API, served in
    this process) that can break at a step, or lack the cache flush."""

    board: FakeBoard
    session: object = field(default_factory=lambda: rpc.LocalSession())

    def _step(self, name: str) -> None:
        self.board.steps.append(name)
        if name == self.board.break_at and len(self.board.sessions) > self.board.good_sessions:
            raise Broken(
                f"Socket closed during {name}\n  File rpc_endpoint.cc, line 400\n  more C++ traceback"
            )

    def upload(self, path, target=None):
        self._step("upload")
        self.board.uploads.append(target)
        return self.session.upload(path, target)

    def load_module(self, path):
        self._step("load_module")
        module = self.session.load_module(path)
        if self.board.break_at != "timing" or len(self.board.sessions) <= self.board.good_sessions:
            return module
        remote = self

        class Module:
            def time_evaluator(self, *args, **kwargs):
                remote._step("timing")

        return Module()

    def cpu(self):
        return self.session.cpu()

    def get_function(self, name):
        if name == FLUSH and not self.board.has_flush:
            raise AttributeError(f"Module has no function '{name}'")
        return self.session.get_function(name)


@dataclass(frozen=True)
class FakeBoard(Tracker):
    """A Tracker whose sessions are Remote ones; after `good_sessions` sessions they break at `break_at`."""

    break_at: str = ""
    good_sessions: int = 0
    has_flush: bool = True
    sessions: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    uploads: list = field(default_factory=list)

    def session(self, timeout_s: int = 60):
        self.sessions.append(timeout_s)
        return Remote(self)


def board(**kwargs) -> FakeBoard:
    return FakeBoard("127.0.0.1", 9190, "rpi5", **kwargs)


def scheduled_kernel(few):
    (kernel, func), *_ = conv_kernels(few).values()
    return schedule_conv(func, default_tile(kernel, vector_unit(HOST.tvm_target())), weights="packed")


def test_the_board_timer_uploads_loads_and_times_there_with_cold_caches(few):
    fake = board()
    timer = make_timer(HOST, fake, budget_s=0.002)
    kernel = scheduled_kernel(few)
    assert timer(kernel) > 0 and timer(kernel) > 0
    assert timer.preproc == FLUSH
    assert len(fake.sessions) == 2 and fake.uploads == [tile_search.KERNEL_SO] * 2
    assert fake.steps == ["upload", "load_module"] * 2


def test_a_board_without_the_cache_flush_times_warm_and_says_so_once(few, caplog):
    timer = make_timer(HOST, board(has_flush=False), budget_s=0.002)
    kernel = scheduled_kernel(few)
    with caplog.at_level(logging.WARNING, logger=tile_search.__name__):
        assert timer(kernel) > 0 and timer(kernel) > 0
    assert timer.preproc == ""
    assert [r.getMessage() for r in caplog.records] == [
        f"the runtime that times the conv tiles has no {FLUSH}: timing them with warm caches"
    ]


@pytest.mark.parametrize("step", ["upload", "load_module", "timing"])
def test_a_session_that_breaks_is_a_one_line_tracker_error(few, step):
    fake = board(break_at=step)
    with pytest.raises(TrackerError) as raised:
        make_timer(HOST, fake)(scheduled_kernel(few))
    message = str(raised.value)
    assert message.startswith("the RPC server behind tracker 127.0.0.1:9190 (key 'rpi5') stopped answering")
    assert f"(Broken: Socket closed during {step})" in message and "\n" not in message
    assert fake.steps[-1] == step


def test_a_search_over_a_board_that_goes_away_keeps_its_records(few, tmp_path):
    """Through the real board timer: two sessions per kernel, the fifth one breaks."""
    fake = board(break_at="upload", good_sessions=4)
    with pytest.raises(TrackerError, match=r"lost the board .*stopped answering.*\(2 of 3 kernels"):
        search_tiles(few, HOST, tmp_path, limit=2, progress=False, runner=fake)
    assert len(fake.sessions) == 5 and len(load_tiles(tmp_path)) == 2


def test_timers_for_where_the_kernels_can_run():
    with pytest.raises(ValueError, match="cannot run on this machine.*--tracker"):
        make_timer(A72, "local")
    with pytest.raises(TypeError, match="TargetSpec"):
        make_timer(A72.tvm_target(), board())
    with pytest.raises(ValueError, match="runner must be"):
        make_timer(HOST, "rpc")
    assert make_timer(HOST.tvm_target(), "local").load is tile_search._in_process


def test_cli_tune_for_a_board_measures_tiles_there_and_a_lost_board_exits_2(monkeypatch, tmp_path, capsys):
    """`repnext tune --target cortex-a72 --tracker`: the tile search runs with the board's timer; when the
    board goes away one error line says what is kept, exit 2; the same command resumes after the kept."""
    timers = []

    def fake_make_timer(target, runner, budget_s):
        assert target == A72 and isinstance(runner, Tracker) and runner.key == "rpi5"
        timers.append(FakeTimer(fail_at=5 if not timers else 0))
        return timers[-1]

    monkeypatch.setattr(Tracker, "check", lambda self, timeout=5.0: 1)  # a tracker with the board on it
    monkeypatch.setattr(tile_search, "make_timer", fake_make_timer)
    cmd = ["tune", "toy", "--input-size", "32", "--target", "cortex-a72", "--tracker", "127.0.0.1:9190"]
    cmd += ["--key", "rpi5", "--trials", "0", "--tile-candidates", "2", "--db", str(tmp_path), "--quiet"]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("repnext tune: error: the conv tile search lost the board at kernel")
    assert "no server with key 'rpi5'" in lines[0] and "run the same command again to resume" in lines[0]
    (db,) = tmp_path.iterdir()
    assert db.name.startswith("toy_32x32_cortex-a72-") and len(load_tiles(db)) == 2

    assert main(cmd) == 0
    out = capsys.readouterr().out
    total = len(load_tiles(db))
    assert total > 2 and f"{total - 2} conv kernel(s) had their tiles measured" in out
    assert timers[-1].calls == 2 * (total - 2)
