"""The classifier head becomes a register-tiled matrix-vector product over packed weights, whether or not a
tuning record covers it (compile/tvm/matmul_schedule.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

import tvm  # noqa: E402

from repnext_core import create_model, reparameterize  # noqa: E402
from repnext_core.compile.tvm.conv_schedule import is_scheduled  # noqa: E402
from repnext_core.compile.tvm.importer import import_model  # noqa: E402
from repnext_core.compile.tvm.matmul_schedule import (  # noqa: E402
    MatVec,
    apply_matvec_schedules,
    match_matvec,
    schedule_matvec,
    tile_width,
)
from repnext_core.compile.tvm.pipeline import prepare, schedule  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402


def head_func(k: int, n: int, batch: int = 1, bias: bool = True, weight_kn: bool = True):
    """x[batch, k] @ W (+ b) as legalized Relax writes it: W stored [k, n] (FoldConstant's transpose)."""
    from tvm import te, topi

    x = te.placeholder((batch, k), name="x")
    w = te.placeholder((k, n) if weight_kn else (n, k), name="w")
    y = topi.matmul(x, w, transp_b=not weight_kn)
    if not bias:
        return te.create_prim_func([x, w, y])
    b = te.placeholder((n,), name="b")
    return te.create_prim_func([x, w, b, topi.add(y, b)])


def test_batch1_heads_match():
    assert match_matvec(head_func(384, 1000)) == MatVec(384, 1000, "float32")
    assert match_matvec(head_func(64, 24, bias=False)) == MatVec(64, 24, "float32")


def test_other_kernels_do_not_match():
    from tvm import te, topi

    assert match_matvec(head_func(64, 24, batch=2)) is None  # a batch: MetaSchedule's business
    assert match_matvec(head_func(64, 24, weight_kn=False)) is None  # W [n, k]: outputs not contiguous
    x = te.placeholder((1, 8), name="x")
    assert match_matvec(te.create_prim_func([x, topi.sum(x, axis=1)])) is None


@pytest.mark.parametrize(
    "outputs, lanes, expected", [(1000, 4, (5, 4)), (1000, 16, (5, 8)), (24, 16, (3, 8)), (7, 4, (7, 1))]
)
def test_tile_width_divides_the_outputs(outputs, lanes, expected):
    vectors, width = tile_width(outputs, lanes)
    assert (vectors, width) == expected
    assert outputs % (vectors * width) == 0 and vectors <= 8


@pytest.mark.parametrize("weights", ["keep", "packed"])
@pytest.mark.parametrize("k, n, bias", [(384, 1000, True), (40, 24, False), (16, 7, True)])
def test_scheduled_head_equals_numpy(k, n, bias, weights):
    func = head_func(k, n, bias=bias)
    vectors, lanes = tile_width(n, 16)
    scheduled = schedule_matvec(func, vectors, lanes, weights)
    assert is_scheduled(scheduled)
    assert "T.vectorized" in scheduled.script() or tile_width(n, 16)[1] == 1
    lib = tvm.tirx.build(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target="llvm")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, k)).astype("float32")
    w = rng.standard_normal((k, n)).astype("float32")
    b = rng.standard_normal(n).astype("float32")
    out = tvm.runtime.tensor(np.zeros((1, n), "float32"))
    width = vectors * lanes
    panels = w.reshape(k, n // width, width).transpose(1, 0, 2).copy()  # [n / width, k, width]
    args = [x, panels if weights == "packed" else w, b] if bias else [x, panels if weights == "packed" else w]
    lib["main"](*(tvm.runtime.tensor(a) for a in args), out)
    np.testing.assert_allclose(out.numpy(), x @ w + (b if bias else 0), rtol=1e-5, atol=1e-4)


def test_untuned_model_head_is_scheduled():
    """Without a tuning database (an ARM build made without a board) M0's head gets the tiled schedule."""
    from tvm import tirx

    torch.manual_seed(0)
    target = resolve_target("cortex-a76")
    prepared = prepare(
        import_model(reparameterize(create_model("repnext_m0").eval()), (1, 3, 64, 64)), target
    )
    heads = [gv for gv, f in prepared.functions.items() if isinstance(f, tirx.PrimFunc) and match_matvec(f)]
    assert len(heads) == 1
    scheduled, counts = schedule(prepared, target)
    # its weights packed at build time, the head kernel is renamed (..._prepacked)
    (head,) = [
        f
        for gv, f in scheduled.functions.items()
        if isinstance(f, tirx.PrimFunc) and gv.name_hint.startswith(heads[0].name_hint)
    ]
    assert counts.matvec_kernels == 1 and is_scheduled(head)
    assert apply_matvec_schedules(scheduled, target.tvm_target())[1] == 0  # scheduled ones are left alone


def test_head_is_ours_with_packed_weights_even_where_a_record_covers_it():
    """MetaSchedule's record for M0's head took 0.077 ms on Zen 4 against 0.034 ms for the tiles over packed
    panels, so a database holding one changes nothing for it, and tuning leaves it out."""
    from tvm import tirx
    from tvm.s_tir import meta_schedule as ms

    from repnext_core.compile.tune.tuner import tunable

    torch.manual_seed(0)
    host = resolve_target("host")
    prepared = prepare(import_model(reparameterize(create_model("repnext_m0").eval()), (1, 3, 64, 64)), host)
    tasks = ms.relax_integration.extract_tasks(prepared, host.tvm_target())
    assert any(match_matvec(t.dispatched[0]["main"]) for t in tasks)
    assert not any(match_matvec(t.dispatched[0]["main"]) for t in tunable(tasks))

    db = ms.database.ScheduleFnDatabase(lambda sch: bool(match_matvec(sch.mod["main"])))
    scheduled, counts = schedule(prepared, host, db)
    assert counts.matvec_kernels == 1 and counts.tuned_kernels == 0
    (head,) = [
        f
        for gv, f in scheduled.functions.items()
        if isinstance(f, tirx.PrimFunc) and "matmul" in gv.name_hint
    ]
    vectors, lanes = tile_width(1000, 16)
    assert [int(d) for d in head.params[1].ty.shape] == [1000 // (vectors * lanes), 320, vectors * lanes]
