"""The plugin counts a known loop exactly: runs with N=2000 and N=1000 differ by 1000 loop bodies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from repnext_core.compile.bench.arm import count, mca, plugin, probe, userland
from repnext_core.files import cache_root

# `make setup` installs these (Debian); a missing one fails the tests with the package to install.
_TOOLS = {
    "qemu-aarch64": "qemu-user",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "gcc": "gcc",
    "pkg-config": "pkg-config",
    "llvm-mca-19": "llvm-19",
}


@pytest.fixture(scope="module")
def built() -> tuple[Path, Path]:
    """The plugin and the probe, built into the cache (the header is fetched once, then reused)."""
    missing = [f"{t} (apt-get install -y {p})" for t, p in _TOOLS.items() if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing for the ARM bench: {', '.join(missing)}; `make setup` installs them")
    root = cache_root()
    return plugin.build_plugin(root), probe.build_probe(root)


def test_loop_adds_exactly_its_body(built, tmp_path):
    """Every counter grows by exactly 1000 x what one loop iteration holds, and nothing else moves."""
    so, exe = built
    runs = {n: count.run_counted([exe, n], "cortex-a76", so, tmp_path, f"n{n}") for n in (1000, 2000)}
    diff = {key: runs[2000].values[key] - runs[1000].values[key] for key in runs[1000].values}
    expected = probe.per_iteration()
    for key, value in diff.items():
        if key in count.RUN_FIELDS:
            continue
        assert value == 1000 * expected.get(key, 0), (key, value, dict(expected))


def test_per_inference_divides_the_difference(built, tmp_path):
    """per_inference() on k=3 vs 1 'inferences' of 1000 iterations gives one 1000-iteration loop.

    Both N have four digits, so parsing argv costs the same in both runs.
    """
    so, exe = built
    one = count.run_counted([exe, "1000"], "cortex-a76", so, tmp_path, "k1")
    three = count.run_counted([exe, "3000"], "cortex-a76", so, tmp_path, "k3")
    per = count.per_inference(three, one, 3)
    assert per["insns"] == 1000 * len(probe.LOOP_BODY)
    assert per["fma_v4s"] == 2000 and per["fma_v8h"] == 1000


def test_tb_dump_lists_the_loop(built, tmp_path):
    """The TB dump holds the loop block with its raw bytes, run N-1 times (pass 1 is fused with the code before)."""
    so, exe = built
    counted = count.run_counted([exe, 777], "cortex-a76", so, tmp_path, "dump", tbdump=True)
    lines = [line.split() for line in counted.tbdump.read_text().splitlines()]
    loop = [fields for fields in lines if int(fields[2]) == 776]
    assert loop and len(loop[0][1]) == 8 * len(probe.LOOP_BODY)


def test_modeled_cycles_scale_with_the_loop(built, tmp_path):
    """Modeled cycles per 'inference' of 1000 iterations = 1000 x the loop block's modeled cycles per pass."""
    so, exe = built
    one = count.run_counted([exe, "1000"], "cortex-a76", so, tmp_path, "m1", tbdump=True)
    three = count.run_counted([exe, "3000"], "cortex-a76", so, tmp_path, "m3", tbdump=True)
    modeled = mca.modeled_per_inference(cache_root(), three.tbdump, one.tbdump, 3)
    assert modeled.blocks == 1 and modeled.unmodeled_insns == 0
    loop = next(h for (_, h), n in mca.read_tbdump(three.tbdump).items() if n == 2999)
    per_pass = mca.block_cycles(cache_root(), [loop], "neoverse-n1")[0][loop]
    assert per_pass >= 4  # the fmla into v0 is a loop-carried chain: at least its latency per pass
    assert modeled.cycles == pytest.approx(1000 * per_pass)


def test_cpuinfo_names_the_core():
    """The fake /proc/cpuinfo carries one processor and the right part id and fp16 flags per core."""
    a76, a53 = userland.cpuinfo_text("cortex-a76"), userland.cpuinfo_text("cortex-a53")
    assert a76.count("processor") == 1 and "0xd0b" in a76 and "asimdhp" in a76
    assert "0xd03" in a53 and "asimdhp" not in a53
    assert "0xd05" in userland.cpuinfo_text("cortex-a55")
