"""Pure-Python pieces: cache root resolution, tolerances, per-inference arithmetic, TB dump parsing."""

from __future__ import annotations

import numpy as np
import pytest

from repnext_core.compile.bench.arm import count, engines, mca
from repnext_core.compile.bench.arm.bench import count_engines, format_counts
from repnext_core.compile.bench.arm.common import EmulationError
from repnext_core.files import write_text_atomic


def test_tolerances():
    """fp32 engines: 1e-5 + 1e-4 max|y|; fp16 engines: 3e-2 max|y|."""
    ref = np.array([[-2.0, 1.0]])
    assert engines.tolerance(engines.ENGINES["ort"], ref) == pytest.approx(1e-5 + 2e-4)
    assert engines.tolerance(engines.ENGINES["ncnn-fp16"], ref) == pytest.approx(6e-2)


def test_per_inference_skips_run_fields():
    """Counters are differenced and divided by k - 1; run descriptors are left out."""
    one = count.Counts({"insns": 100, "fma_v4s": 10, "threads": 1, "tbs_executed": 5}, 1.0)
    many = count.Counts({"insns": 500, "fma_v4s": 50, "threads": 1, "tbs_executed": 9}, 2.0)
    assert count.per_inference(many, one, 5) == {"insns": 100, "fma_v4s": 10}
    with pytest.raises(ValueError):
        count.per_inference(many, one, 1)


def test_tbdump_merges_retranslations(tmp_path):
    """Two records of the same block (a re-translation) add their executions."""
    dump = write_text_atomic(tmp_path / "d.tbs", "400000 1f2003d5 3\n400000 1f2003d5 4\n400004 c0035fd6 1\n")
    assert mca.read_tbdump(dump) == {(0x400000, "1f2003d5"): 7, (0x400004, "c0035fd6"): 1}


FMLA, NOP, RET, BNE, B, CBZ = "20cc224e", "1f2003d5", "c0035fd6", "c1ffff54", "02000014", "400000b4"


def test_branches_are_recognised():
    assert all(mca.ends_in_branch(NOP + w) for w in (RET, BNE, B, CBZ))
    assert not any(mca.ends_in_branch(RET + w) for w in (FMLA, NOP))


def test_blocks_split_without_a_branch_are_joined():
    """A loop body qemu split at a page boundary is modeled in one piece; true block ends stay apart."""
    delta = {
        (0x1000, FMLA * 2): 5,  # split (no branch), its successor ran as often: joined
        (0x1008, FMLA + BNE): 5,
        (0x2000, FMLA): 5,  # its successor ran less often (entered from elsewhere too): kept apart
        (0x2004, FMLA + RET): 4,
        (0x3000, FMLA + BNE): 2,  # ends in a branch: kept apart
        (0x3008, FMLA + RET): 2,
    }
    joined = mca.stitch(delta)
    assert joined[(0x1000, FMLA * 3 + BNE)] == 5 and (0x1008, FMLA + BNE) not in joined
    assert {k: v for k, v in joined.items() if k[0] != 0x1000} == {
        k: v for k, v in delta.items() if k[0] > 0x1008
    }
    # three pieces chain into one
    chain = {(0x10, FMLA): 7, (0x14, FMLA): 7, (0x18, FMLA + RET): 7}
    assert mca.stitch(chain) == {(0x10, FMLA * 3 + RET): 7}


def test_a_block_entered_by_two_fall_throughs_joins_both():
    """A loop head and its first pass from the preheader (two blocks qemu ended at a page) both fall into the
    block after the page: it is modeled as part of each, since their executions sum to its own."""
    delta = {
        (0x1FF0, FMLA * 4): 3,  # preheader's first pass
        (0x1FF8, FMLA * 2): 30,  # loop head (the branch back lands here)
        (0x2000, FMLA + BNE): 33,
        (0x3000, FMLA): 2,  # falls into a block also entered by a branch (sum 2 < 9): kept apart
        (0x3004, FMLA + RET): 9,
    }
    assert mca.stitch(delta) == {
        (0x1FF0, FMLA * 5 + BNE): 3,
        (0x1FF8, FMLA * 3 + BNE): 30,
        (0x3000, FMLA): 2,
        (0x3004, FMLA + RET): 9,
    }


def test_a_wrong_output_is_refused_not_counted(tmp_path):
    ref = np.linspace(-4, 4, 1000, dtype=np.float32).reshape(1, -1)
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, ref + 1e-6)
    np.save(bad, ref * 1.01)  # 1% off: within fp16's bound, far outside fp32's
    assert engines.check_output(engines.ENGINES["ort"], good, ref) == pytest.approx(1e-6, rel=0.5)
    with pytest.raises(EmulationError, match="refused"):
        engines.check_output(engines.ENGINES["ort"], bad, ref)
    assert engines.check_output(engines.ENGINES["ncnn-fp16"], bad, ref) <= 0.04


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "cortex-a72"}, "cortex-a76, cortex-a55, cortex-a53"),
        ({"engine_names": ["tvm", "tflite"]}, "unknown engine"),
        ({"k": 1}, "at least 2"),
    ],
)
def test_bad_requests_fail_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        count_engines("repnext_m1", **kwargs)


def test_table_says_what_the_figures_are_and_ranks_against_the_best_peer():
    def row(engine, insns, cycles):
        per = {
            "insns": insns,
            "simd_load": 1e6,
            "simd_store": 1e6,
            "fpsimd_dp": 2e6,
            "fma_v4s": 1e6,
            "fma_v8h": 0,
        }
        return {"engine": engine, "per_inference": per, "modeled_cycles": cycles, "max_abs_err": 1e-7}

    result = {
        "model": "repnext_m1",
        "target": "cortex-a76",
        "k": 3,
        "rows": [
            row("tvm", 400e6, 150e6),
            row("ncnn", 380e6, 200e6),
            row("ort", 500e6, 220e6),
            {"engine": "mnn", "error": "mnn: max |err| 1 vs fused PyTorch exceeds 1e-4: refused"},
        ],
    }
    text = format_counts(result)
    assert "proxies, not time" in text.splitlines()[0]
    tvm = next(line for line in text.splitlines() if line.startswith("| tvm"))
    assert "| 1.05 " in tvm and "| 0.75 " in tvm  # vs ncnn, the best peer by both measures
    assert "refused" in next(line for line in text.splitlines() if line.startswith("| mnn"))
    assert "tvm / best fp32 peer (ncnn): insns 1.05; cycles 0.75" in text
