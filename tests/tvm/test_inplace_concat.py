"""The token mixers' concats assembled in place, with no split or concat copy left (compile/tvm/inplace_concat.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

import tvm  # noqa: E402

from repnext_core import reparameterize  # noqa: E402
from repnext_core.compile.tvm.concat_schedule import CONCAT_ATTR, SPLIT_ATTR  # noqa: E402
from repnext_core.compile.tvm.conv_schedule import match_conv  # noqa: E402
from repnext_core.compile.tvm.conv_tiles import apply_conv_schedules  # noqa: E402
from repnext_core.compile.tvm.importer import import_model  # noqa: E402
from repnext_core.compile.tvm.inplace_concat import (  # noqa: E402
    Window,
    concat_fed_kernels,
    window_copy,
    window_view,
)
from repnext_core.compile.tvm.pipeline import prepare, schedule  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402

HOST = resolve_target("host")
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def toy():
    return reparameterize(toy_model(seed=3)).eval()


@pytest.fixture(scope="module")
def prepared(toy):
    return prepare(import_model(toy, SHAPE), HOST)


def _run(func, arrays):
    lib = tvm.tirx.build(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=HOST.tvm_target()
    )
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


def _primfuncs(mod):
    from tvm import tirx

    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}


def test_a_scheduled_chunk_conv_reads_and_writes_channel_windows(prepared):
    """The windowed variant of a scheduled depthwise kernel computes what the kernel computes on the chunk,
    writes only its window of the whole output, and reads only its window of the whole input."""
    convs, _, _ = apply_conv_schedules(prepared, HOST.tvm_target())
    name = sorted(concat_fed_kernels(prepared))[0]
    func = convs[name]
    shapes = [tuple(int(d) for d in p.shape) for p in func.params]
    *pixels, channels = shapes[-1]
    whole = 4 * channels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((*pixels, whole)).astype("float32")
    weights = [rng.standard_normal(s).astype("float32") for s in shapes[1:-1]]
    chunk = np.ascontiguousarray(x[..., 2 * channels : 3 * channels])
    expected = _run(func, [chunk, *weights, np.zeros(shapes[-1], "float32")])[-1]

    last = len(shapes) - 1
    viewed = window_view(
        window_view(func, 0, Window(2 * channels, channels, whole)), last, Window(channels, channels, whole)
    )
    got = _run(viewed, [x, *weights, np.full((*pixels, whole), 7.0, "float32")])[-1]
    np.testing.assert_allclose(got[..., channels : 2 * channels], expected, rtol=1e-6, atol=1e-6)
    assert (got[..., :channels] == 7).all() and (got[..., 2 * channels :] == 7).all()
    x[..., : 2 * channels], x[..., 3 * channels :] = 1e6, -1e6  # outside the input window: not read
    again = _run(viewed, [x, *weights, np.full((*pixels, whole), 7.0, "float32")])[-1]
    np.testing.assert_array_equal(again, got)


def test_window_view_refuses_a_window_of_another_width(prepared):
    scheduled, _ = schedule(prepared, HOST)
    func = next(f for n, f in _primfuncs(scheduled).items() if n.startswith("copy_"))
    width = int(func.params[0].shape[-1])
    with pytest.raises(ValueError, match="channels"):
        window_view(func, 0, Window(0, width + 1, 4 * width))


@pytest.mark.parametrize("width", [4, 10, 40])
def test_window_copy_copies_one_window_into_another(width):
    whole = 4 * width
    func = window_copy(
        (1, 5, 6, whole), "float32", Window(3 * width, width, whole), Window(width, width, whole), 16
    )
    x = np.random.default_rng(width).standard_normal((1, 5, 6, whole)).astype("float32")
    out = np.full_like(x, 7.0)
    got = _run(func, [x, out])[1]
    np.testing.assert_array_equal(got[..., width : 2 * width], x[..., 3 * width :])
    assert (got[..., :width] == 7).all() and (got[..., 2 * width :] == 7).all()


def test_the_kernels_feeding_concats_are_the_token_mixers_depthwise_convs(prepared):
    fed = concat_fed_kernels(prepared)
    funcs = _primfuncs(prepared)
    assert len(fed) >= 6
    for name in fed:
        kernel = match_conv(funcs[name])
        assert kernel is not None and kernel.reduce_channels == 1, name  # depthwise, never an MLP 1x1
    pointwise = [
        n for n, f in funcs.items() if (k := match_conv(f)) and k.taps == (1, 1) and k.reduce_channels > 1
    ]
    assert pointwise and not fed & set(pointwise)


def test_kernels_feeding_concats_keep_their_epilogue_in_channel_vectors(prepared):
    """A tile holding all 4 channels of a chunk over 4 pixels would run its epilogue in 16-lane vectors over
    contiguous outputs; in a window of the concat those outputs are not contiguous, so it must not."""
    import re

    from repnext_core.compile.tvm.conv_schedule import ConvTile, schedule_conv
    from repnext_core.compile.tvm.conv_tiles import workload_key

    funcs = _primfuncs(prepared)
    name = next(n for n in sorted(concat_fed_kernels(prepared)) if int(funcs[n].params[-1].shape[-1]) == 4)
    tile = ConvTile(4, 1, 1, 4)

    def widths(func) -> set[int]:
        return {int(w) for w in re.findall(r"in T\.vectorized\(T\.int64\((\d+)\)", func.script())}

    assert 16 in widths(schedule_conv(funcs[name], tile, epilogue_lanes=16))  # as a kernel on its own
    scheduled, _, measured = apply_conv_schedules(
        prepared, HOST.tvm_target(), {workload_key(funcs[name]): tile}
    )
    assert measured >= 1 and widths(scheduled[name]) == {4}


@pytest.mark.parametrize("target", ["host", "cortex-a76"])
def test_no_split_or_concat_copy_is_left(toy, target):
    """Every block's split and concat and every downsample's concat are gone: the chunk convs read and write
    windows, chained in place, and only the identity chunks are copied (one per block)."""
    spec = resolve_target(target)
    mod = prepare(import_model(toy, SHAPE), spec)
    scheduled, counts = schedule(mod, spec)
    assert counts.concat_kernels >= 8  # the copies were scheduled before they became dead code
    assert counts.concats_in_place == 4 + 3  # every block's and every downsample's
    funcs = _primfuncs(scheduled)
    assert not [n for n, f in funcs.items() if f.attrs and (CONCAT_ATTR in f.attrs or SPLIT_ATTR in f.attrs)]
    main = scheduled["main"].script()
    blocks = 4  # the toy model: one block per stage, three downsamples
    assert main.count("R.call_tir_inplace(copy_") == blocks
    assert main.count("R.call_tir_inplace(") == blocks * 3 + 3  # s, m, l of each block, m of each downsample


def test_built_model_with_windows_matches_torch(toy):
    from tvm import relax

    from repnext_core.compile.tvm.build import build

    exe = build(import_model(toy, SHAPE), "host")
    vm = relax.VirtualMachine(exe, tvm.cpu())
    x = np.random.default_rng(1).standard_normal(SHAPE).astype("float32")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    with torch.no_grad():
        expected = toy(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
