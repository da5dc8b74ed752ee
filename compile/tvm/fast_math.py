"""Vectorizable lowerings for the elementwise ops whose TVM default is a scalar libm call.

TVM lowers `erf` to libm's erff, one call per element (about 9 ns each here): in RepNeXt's MLP every
hidden activation goes through GELU, which made the erf alone a fifth of the tuned model's time. The
rational approximation in `topi.fast_erf` (max abs error 3.7e-7 on float32, 30x faster when vectorized)
keeps the fused model within 1e-5 of PyTorch. On aarch64 (`neon_gelu_te`) the same rational function is
regrouped for NEON and its one division becomes a reciprocal estimate refined by two Newton steps (FRECPE +
2 FRECPS, pipelined): NEON's vector divide issues about one every 7 cycles on an A76-class core and dominated
the GELU epilogues of the MLP's expand convs. float16 builds (ARM only) keep GELU in half arithmetic with a
cheaper erf of float16's own precision (`half_gelu_te`).
"""

from __future__ import annotations

import math

# The bound on |fast_erf(x) - erf(x)| we hold it to (measured: 3.7e-7 against float64 erf); a test checks it.
ERF_MAX_ABS_ERROR = 1e-6


# Abramowitz & Stegun 7.1.27: erf(u) ~ 1 - 1 / (1 + a1 u + a2 u^2 + a3 u^3 + a4 u^4)^4 for u >= 0, within 5e-4.
AS_ERF_COEFFS = (0.278393, 0.230389, 0.000972, 0.078108)
# The bound on |half_gelu(x) - GELU(x)| / max(1, |x|) in float16 arithmetic (measured: 1.0e-3 on the host,
# 1.1e-3 under qemu; float16 rounding alone is up to 4.9e-4); tests check it on both.
HALF_GELU_MAX_ERROR = 2e-3


def fast_gelu_te(x):
    """GELU(x) = x * (0.5 + 0.5 * erf(x / sqrt 2)) with a rational erf; per target and dtype, the cheapest form:
    `half_gelu_te` for float16, `neon_gelu_te` on aarch64, topi's fast_erf elsewhere."""
    import tvm
    from tvm import tirx, topi

    dtype = x.dtype
    if dtype == "float16":
        return half_gelu_te(x)
    target = tvm.target.Target.current(allow_none=True)
    if target is not None and _is_aarch64(target):
        return neon_gelu_te(x)
    # as first written, so that the host kernels' structure (and the tuned databases' keys) stay as they are
    erf = topi.fast_erf(x * tirx.const(1.0 / math.sqrt(2.0), dtype))
    return x * (tirx.const(0.5, dtype) + erf * tirx.const(0.5, dtype))


# topi.fast_erf's rational erf (Eigen's): erf(u) = u * P(u^2) / Q(u^2) for |u| <= 4, highest power first.
ERF_NUMERATOR = (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
    -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02,
)  # fmt: skip
ERF_DENOMINATOR = (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
    -1.42647390514189e-02,
)  # fmt: skip


def _quadratic_factors(coeffs: tuple, scale: float) -> list[tuple[float, float]]:
    """(p, q) per factor t^2 + p t + q of the polynomial in t = scale * s (monic; its roots are all complex)."""
    import numpy as np

    roots = np.roots(coeffs) * scale
    return [(-2.0 * r.real, abs(r) ** 2) for r in roots if r.imag > 0]


def neon_gelu_te(x):
    """float32 GELU for NEON: topi's rational erf regrouped into monic quadratic factors of t = x^2.

    In Horner form every step adds a constant to a product, and NEON's FMLA overwrites its addend, so each
    step costs a register copy of the constant too (a third of the epilogue). A factor t^2 + p t + q is one
    FADD and one FMLA whose accumulator is a temporary, and 1/sqrt 2, 1/2 and the leading coefficients fold
    into one constant: ~28 instructions a vector against ~50. The factors' roots lie off the real axis, so
    no factor cancels on [0, 32]; the bound is ERF_MAX_ABS_ERROR's, tested under qemu.
    """
    import tvm
    from tvm import te, tirx

    def c(value):
        return tirx.const(value, "float32")

    limit = 4.0 * math.sqrt(2.0)  # u = x / sqrt 2 clamped to [-4, 4], as fast_erf does
    numerator = _quadratic_factors(ERF_NUMERATOR, 2.0)  # roots in t = x^2 = 2 u^2
    denominator = _quadratic_factors(ERF_DENOMINATOR, 2.0)
    # 0.5 * erf(x / sqrt 2) = 0.5 / sqrt 2 * x * P / Q; each monic factor in t is 4x its factor in u^2
    leading = ERF_NUMERATOR[0] / ERF_DENOMINATOR[0] / 4.0 ** (len(numerator) - len(denominator))
    scale = 0.5 / math.sqrt(2.0) * leading

    target = tvm.target.Target.current(allow_none=True)
    neon = target is not None and _is_aarch64(target)

    def gelu(v):
        clamped = tirx.max(tirx.min(v, c(limit)), c(-limit))
        t = clamped * clamped
        # FMULX (a multiply LLVM does not fuse into the factors' adds, which would make q the FMLA addend)
        t2 = tirx.call_llvm_pure_intrin("float32", "llvm.aarch64.neon.fmulx", t, t) if neon else t * t

        def product(factors):
            out = None
            for p, q in factors:
                factor = (t2 + c(q)) + t * c(p)
                out = factor if out is None else out * factor
            return out

        odd = v * clamped * product(numerator)  # x * xc * P: even, like x * erf(x / sqrt 2)
        return v * c(0.5) + odd * reciprocal(product(denominator), "float32") * c(scale)

    return te.compute(x.shape, lambda *i: gelu(x(*i)), name="neon_gelu")


def half_gelu_te(x):
    """GELU in float16 arithmetic, 8 lanes a NEON register: erf by A&S 7.1.27 (one reciprocal, no exp).

    float32's rational erf costs a float16 build more than the 1x1 conv it follows: twice the vectors, the
    casts, and a division (LLVM cannot split an 8-lane float32 FRECPE). A&S's 5e-4 is float16's own
    precision; with u clamped to 3 the quartic stays far below float16's maximum (65504).
    """
    from tvm import te, tirx

    def c(value):
        return tirx.const(value, "float16")

    def gelu(v):
        u = tirx.min(tirx.abs(v) * c(1.0 / math.sqrt(2.0)), c(3.0))
        d = c(AS_ERF_COEFFS[3])
        for a in reversed(AS_ERF_COEFFS[:3]):
            d = d * u + c(a)
        r = reciprocal(d * u + c(1.0), "float16")
        r = r * r
        half_r = r * r * c(0.5)  # (1 - erf(|v| / sqrt 2)) / 2
        return tirx.Select(v < c(0.0), v * half_r, v - v * half_r)

    return te.compute(x.shape, lambda *i: gelu(x(*i)), name="half_gelu")


def reciprocal(value, dtype: str):
    """1 / value (of `dtype`): `neon_reciprocal` under an aarch64 target, a division elsewhere."""
    import tvm
    from tvm import tirx

    target = tvm.target.Target.current(allow_none=True)
    if target is not None and _is_aarch64(target):
        return neon_reciprocal(value, dtype)
    return tirx.const(1.0, dtype) / value


def neon_reciprocal(value, dtype: str = "float32"):
    """1 / value as FRECPE's 8-bit estimate refined by FRECPS Newton steps: two for float32 (within 2 ulp),
    one for float16 (16 correct bits, more than its 11)."""
    from tvm import tirx

    def intrin(name, *args):
        return tirx.call_llvm_pure_intrin(dtype, f"llvm.aarch64.neon.{name}", *args)

    estimate = intrin("frecpe", value)
    for _ in range(2 if dtype == "float32" else 1):  # each step doubles the correct bits
        estimate = estimate * intrin("frecps", value, estimate)
    return estimate


def _is_aarch64(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith("aarch64")


def _legalize_gelu(bb, call):
    return bb.call_te(fast_gelu_te, call.args[0], primfunc_name_hint="gelu")


def legalize_map() -> dict:
    """Overrides for relax.transform.LegalizeOps: Relax op name -> legalization function."""
    return {"relax.nn.gelu": _legalize_gelu}
