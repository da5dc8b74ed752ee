"""A tiny static aarch64 program whose loop body is known exactly, to check the plugin's counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from repnext_core.compile.bench.arm.common import arm_dir, run_checked
from repnext_core.compile.device.tools import require_tool
from repnext_core.files import write_text_atomic

# The loop body, one instruction a line, with the plugin classes each one must add per iteration.
LOOP_BODY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ldr q1, [%[src]]", ("simd_load",)),
    ("ld1 {v3.4s}, [%[src]]", ("simd_load",)),
    ("ldp q6, q7, [%[src]]", ("simd_load",)),
    ("fmla v0.4s, v1.4s, v2.4s", ("fpsimd_dp", "fma_v4s")),
    ("fmla v4.4s, v3.4s, v2.s[1]", ("fpsimd_dp", "fma_v4s", "fma_byelem")),
    ("fmla v5.8h, v6.8h, v7.8h", ("fpsimd_dp", "fma_v8h")),
    ("fmadd s8, s9, s10, s8", ("fpsimd_dp", "fma_scalar")),
    ("fadd v9.4s, v9.4s, v0.4s", ("fpsimd_dp",)),
    ("str q0, [%[dst]]", ("simd_store",)),
    ("subs %[n], %[n], #1", ()),
    ("b.ne 1b", ("branch_sys",)),
)

C_TEMPLATE = """\
#include <stdlib.h>
static float src[64] __attribute__((aligned(16)));
static float dst[64] __attribute__((aligned(16)));
int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 0;
    if (n == 0) return 0;
    __asm__ volatile(
"1:\\n"
BODY
        : [n] "+r"(n)
        : [src] "r"(src), [dst] "r"(dst)
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10");
    return (int)dst[0];
}
"""


def per_iteration() -> Counter:
    """What one loop iteration adds to each plugin counter (and 'insns')."""
    added = Counter(insns=len(LOOP_BODY))
    for _, classes in LOOP_BODY:
        added.update(classes)
    return added


def build_probe(cache_root: Path) -> Path:
    """Cross-compile the probe statically for aarch64 (armv8.2-a+fp16 for the fmla .8h) into the cache."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    body = "\n".join(f'        "{line}\\n"' for line, _ in LOOP_BODY)
    folder = arm_dir(cache_root) / "probe"
    src = write_text_atomic(folder / "probe.c", C_TEMPLATE.replace("BODY", body))
    exe = folder / "probe"
    tmp = folder / ".probe.tmp"
    run_checked(
        [gcc, "-O1", "-static", "-march=armv8.2-a+fp16", str(src), "-o", str(tmp)], "building the probe", 300
    )
    tmp.replace(exe)
    return exe
