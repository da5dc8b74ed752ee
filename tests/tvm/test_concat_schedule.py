"""Channel splits and concatenations become vector copies, tuning records or not (compile/tvm/concat_schedule.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

import tvm  # noqa: E402

from repnext_core import create_model, reparameterize  # noqa: E402
from repnext_core.compile.tvm.concat_schedule import (  # noqa: E402
    Concat,
    apply_concat_schedules,
    match_concat,
    match_split,
    schedule_concat,
    schedule_split,
)
from repnext_core.compile.tvm.conv_schedule import is_scheduled  # noqa: E402
from repnext_core.compile.tvm.importer import import_model  # noqa: E402
from repnext_core.compile.tvm.pipeline import prepare, schedule  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402

HOST = resolve_target("host")


def concat_func(channels: list[int], dtype: str = "float32", axis: int = 3):
    from tvm import te, topi

    inputs = [te.placeholder((1, 3, 5, c), dtype, name=f"x{i}") for i, c in enumerate(channels)]
    return te.create_prim_func([*inputs, topi.concatenate(inputs, axis=axis)]), inputs


def test_equal_channel_concats_match():
    assert match_concat(concat_func([12] * 4)[0]) == Concat(4, 12, "float32")
    assert match_concat(concat_func([48, 48], "float16")[0]) == Concat(2, 48, "float16")


def test_other_kernels_do_not_match():
    from tvm import te, topi

    assert match_concat(concat_func([8, 16, 8])[0]) is None  # unequal inputs
    assert match_concat(concat_func([4, 4], axis=1)[0]) is None  # not along channels
    x = te.placeholder((1, 3, 5, 8), name="x")
    assert match_concat(te.create_prim_func([x, topi.add(x, x)])) is None


@pytest.mark.parametrize("channels, lanes", [(12, 16), (10, 16), (48, 4)])
def test_scheduled_concat_equals_numpy(channels, lanes):
    func, inputs = concat_func([channels] * 4)
    scheduled = schedule_concat(func, 4, lanes)
    assert is_scheduled(scheduled)
    text = scheduled.script()
    assert "T.vectorized" in text and "T.parallel" in text
    lib = tvm.tirx.build(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target="llvm")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 3, 5, channels)).astype("float32") for _ in inputs]
    out = tvm.runtime.tensor(np.zeros((1, 3, 5, 4 * channels), "float32"))
    lib["main"](*(tvm.runtime.tensor(x) for x in xs), out)
    np.testing.assert_array_equal(out.numpy(), np.concatenate(xs, axis=3))


def split_func(channels: int, parts: int, shape=(1, 6, 5)):
    from tvm import te, topi

    x = te.placeholder((*shape, channels * parts), "float32", name="x")
    return te.create_prim_func([x, *topi.split(x, parts, axis=len(shape))])


def test_equal_channel_splits_match():
    assert match_split(split_func(12, 4)) == Concat(4, 12, "float32")
    assert match_split(split_func(5, 2)) == Concat(2, 5, "float32")
    assert match_concat(split_func(12, 4)) is None and match_split(concat_func([12] * 4)[0]) is None


def test_other_splits_do_not_match():
    from tvm import te, topi

    x = te.placeholder((1, 6, 5, 48), "float32", name="x")
    assert match_split(te.create_prim_func([x, *topi.split(x, [12, 36], axis=3)])) is None  # unequal parts
    assert match_split(te.create_prim_func([x, *topi.split(x, 2, axis=1)])) is None  # not along channels


@pytest.mark.parametrize("channels, lanes", [(12, 8), (10, 16), (48, 4)])
def test_scheduled_split_equals_numpy(channels, lanes):
    scheduled = schedule_split(split_func(channels, 4), lanes)
    assert is_scheduled(scheduled)
    text = scheduled.script()
    assert "T.vectorized" in text and text.count("T.parallel") == 1  # one launch for every part
    lib = tvm.tirx.build(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target="llvm")
    x = np.random.default_rng(0).standard_normal((1, 6, 5, 4 * channels)).astype("float32")
    outs = [tvm.runtime.tensor(np.zeros((1, 6, 5, channels), "float32")) for _ in range(4)]
    lib["main"](tvm.runtime.tensor(x), *outs)
    for out, part in zip(outs, np.split(x, 4, axis=3)):
        np.testing.assert_array_equal(out.numpy(), part)


def copy_kernels(prepared) -> list:
    from tvm import tirx

    return [
        gv
        for gv, f in prepared.functions.items()
        if isinstance(f, tirx.PrimFunc) and (match_concat(f) or match_split(f))
    ]


def test_untuned_model_concats_are_all_scheduled():
    """Without a tuning database (an ARM build made without a board) every token-mixer and downsample
    split and concat of M0 gets the copy schedule; the conv kernels keep theirs."""
    torch.manual_seed(0)
    model = reparameterize(create_model("repnext_m0").eval())
    target = resolve_target("cortex-a76")
    prepared = prepare(import_model(model, (1, 3, 64, 64)), target)
    concats = copy_kernels(prepared)
    assert len(concats) >= 8
    scheduled, counts = schedule(prepared, target)
    assert counts.concat_kernels == len(concats)
    copies, count = apply_concat_schedules(prepared, target.tvm_target())
    assert count == len(concats) and all(is_scheduled(copies[gv]) for gv in concats)
    again, count = apply_concat_schedules(copies, target.tvm_target())
    assert count == 0  # already scheduled kernels are left as they are


def test_concats_are_copies_even_where_a_record_covers_them():
    """MetaSchedule's records for concats were slower than the copies (2.7 ms of M1's 30 ms on AMD Zen 3),
    so a database holding one changes nothing for them, and tuning leaves them (and the splits) out."""
    from tvm.s_tir import meta_schedule as ms

    from repnext_core.compile.tune.tuner import tunable

    torch.manual_seed(0)
    model = reparameterize(create_model("repnext_m0").eval())
    prepared = prepare(import_model(model, (1, 3, 64, 64)), HOST)
    concats = copy_kernels(prepared)
    tasks = ms.relax_integration.extract_tasks(prepared, HOST.tvm_target())
    assert any(match_concat(t.dispatched[0]["main"]) for t in tasks)
    assert any(match_split(t.dispatched[0]["main"]) for t in tasks)
    kept = [t.dispatched[0]["main"] for t in tunable(tasks)]
    assert kept and not any(match_concat(f) or match_split(f) for f in kept)

    # A database whose records cover exactly the copies (each as the unscheduled kernel, as a record
    # of a poor trial would leave it): without the copy schedules going first, these would apply.
    db = ms.database.ScheduleFnDatabase(
        lambda sch: bool(match_concat(sch.mod["main"]) or match_split(sch.mod["main"]))
    )
    scheduled, counts = schedule(prepared, HOST, db)
    assert counts.concat_kernels == len(concats) and counts.tuned_kernels == 0
    copies, _ = apply_concat_schedules(prepared, HOST.tvm_target())
    assert all("T.vectorized" in copies[gv].script() for gv in concats)
