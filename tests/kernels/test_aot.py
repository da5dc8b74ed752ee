"""Ahead-of-time compile of the kernels for sm_80 / sm_90 (no GPU): spills, vector loads, layer shapes."""

from __future__ import annotations

import pytest
from kernel_helpers import needs_triton

from repnext_core.kernels.aot import LAYOUTS, VARIANT_DIMS, model_cases
from repnext_core.model import VARIANTS


def test_variant_dims_come_from_the_model():
    assert VARIANT_DIMS == {n.removeprefix("repnext_"): v.embed_dim for n, v in VARIANTS.items()}
    assert VARIANT_DIMS["m0"] == (40, 80, 160, 320) and len(VARIANT_DIMS) == 6


def test_model_cases_cover_both_layouts():
    cases = model_cases()
    assert {c.layout for c in cases} == set(LAYOUTS)
    for layout in LAYOUTS:
        chunk = {(c.channels, c.size) for c in cases if c.op == "chunk_dwconv" and c.layout == layout}
        assert (40, 56) in chunk and (640, 7) in chunk
    assert {c.layout for c in model_cases(quick=True)} == set(LAYOUTS)


@needs_triton
def test_aot_quick_no_spills_and_vector_loads():
    """A few shipped configs compile for sm_80 and sm_90 without a GPU, spill-free, with v2/v4 loads."""
    from repnext_core.kernels.aot import resource_table, spills

    rows = resource_table(("sm_80", "sm_90"), quick=True)
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90"}
    assert {r["op"] for r in rows} == {"chunk_dwconv", "copy_dwconv", "separable_dwconv2d"}
    assert spills(rows) == []
    assert all(0 < r["regs"] <= 255 for r in rows)
    chunk = [r for r in rows if r["op"] == "chunk_dwconv"]
    assert all(r["ld_vec"] > 0 and r["st_vec"] > 0 for r in chunk)
    # the channels_last chunk kernel (64 channels, 16 per chunk) loads and stores whole channel vectors
    nhwc = [r for r in chunk if r["layout"] == "nhwc"]
    assert {r["arch"] for r in nhwc} == {"sm_80", "sm_90"}
    # at least one vector load per activation tap in the program text, whose row loops are rolled
    # (identity 1 + a 3x3 row 3 + a 7x7 row 7 + the 1x11's one tap); the per-channel weights (stride K*K
    # apart) are scalar loads
    assert all(r["ld_vec"] >= 12 and r["st_vec"] == r["st_global"] for r in nhwc), nhwc


@needs_triton
@pytest.mark.slow
def test_aot_full_sweep_no_spills():
    """Every configuration the autotuner may pick for M0-M5 at 224, every dtype and layout, sm_80 and sm_90."""
    from repnext_core.kernels.aot import resource_table, spills

    rows = resource_table(("sm_80", "sm_90"))
    assert len(rows) > 100
    assert {r["layout"] for r in rows} == set(LAYOUTS)
    assert spills(rows) == [], spills(rows)
