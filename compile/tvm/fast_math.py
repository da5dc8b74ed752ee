"""Vectorizable lowerings for the elementwise ops whose TVM default is a scalar libm call.

TVM lowers `erf` to libm's erff, one call per element (about 9 ns each here): in RepNeXt's MLP every
hidden activation goes through GELU, which made the erf alone a fifth of the tuned model's time. float32
GELU takes a (5, 3) rational erf (a minimax fit, ERF53_*, max error 1.1e-6), which keeps the fused model
within 1e-5 of PyTorch, in the form each ISA runs cheapest: on x86 (`horner_gelu_te`) Horner's rule with the
constants folded in, 15 vector operations a GELU against 20 for `topi.fast_erf`'s (6, 4) form (the MLP's
expand convs pay it per output: M1 1.018x at 1 thread, Zen 4); on aarch64 (`neon_gelu_te`) regrouped into
quadratic factors, its one division a reciprocal estimate refined by two Newton steps (FRECPE + 2 FRECPS,
pipelined): NEON's vector divide issues about one every 7 cycles on an A76-class core and dominated the GELU
epilogues of the MLP's expand convs. float16 builds (ARM only) keep GELU in half arithmetic with a cheaper
erf of float16's own precision (`half_gelu_te`).
"""

from __future__ import annotations

import math

# The bound on the erf error we hold the float32 GELUs to (measured against float64: the (5, 3) fit 9.2e-7 in
# Horner form, 1.1e-6 factored for NEON, topi's fast_erf 4.2e-7; all far below the fused model's output
# tolerance); tests check it.
ERF_MAX_ABS_ERROR = 1.5e-6


# Abramowitz & Stegun 7.1.27: erf(u) ~ 1 - 1 / (1 + a1 u + a2 u^2 + a3 u^3 + a4 u^4)^4 for u >= 0, within 5e-4.
AS_ERF_COEFFS = (0.278393, 0.230389, 0.000972, 0.078108)
# The bound on |half_gelu(x) - GELU(x)| / max(1, |x|) in float16 arithmetic (measured: 1.0e-3 on the host,
# 1.1e-3 under qemu; float16 rounding alone is up to 4.9e-4); tests check it on both.
HALF_GELU_MAX_ERROR = 2e-3


def fast_gelu_te(x):
    """GELU(x) = x * (0.5 + 0.5 * erf(x / sqrt 2)) with a rational erf; per target and dtype, the cheapest form:
    `half_gelu_te` for float16, `neon_gelu_te` on aarch64, `horner_gelu_te` for float32 elsewhere, topi's
    fast_erf for other dtypes."""
    import tvm
    from tvm import tirx, topi

    dtype = x.dtype
    if dtype == "float16":
        return half_gelu_te(x)
    target = tvm.target.Target.current(allow_none=True)
    if target is not None and _is_aarch64(target):
        return neon_gelu_te(x)
    if dtype == "float32":
        return horner_gelu_te(x)
    erf = topi.fast_erf(x * tirx.const(1.0 / math.sqrt(2.0), dtype))
    return x * (tirx.const(0.5, dtype) + erf * tirx.const(0.5, dtype))


# The float32 GELUs' rational erf: erf(u) = u * P(u^2) / Q(u^2) for |u| <= 3.48, P of degree 5 and Q of
# degree 3 (topi's: 6 and 4; two vector operations less a GELU), a minimax fit with the clamp's tail counted:
# max abs error 6.2e-7 in float64, 1.1e-6 as the factored float32 GELU evaluates it (host, 4M points on
# [-12, 12]). A (5, 4) fit stays within 6.2e-7 in float32 at one operation more.
ERF53_LIMIT = 3.48
ERF53_NUMERATOR = (
    -3.6797499575534146e-07, 1.6033269047806122e-05, 0.00033851288814176593, 0.040671285751501494,
    0.13350706528885636, 1.1283841514571242,
)  # fmt: skip
ERF53_DENOMINATOR = (
    0.0079484735302231893, 0.086473862159985121, 0.45169668696635856, 0.99999999999999645,
)  # fmt: skip


def _monic_factors(coeffs: tuple, scale: float) -> tuple[list[tuple[float, float]], list[float]]:
    """The polynomial in t = scale * s as monic factors, its leading coefficient left out: (p, q) per quadratic
    t^2 + p t + q (a complex pair of roots, or two real ones) and c per linear t + c (an odd real root left)."""
    import numpy as np

    roots = np.roots(coeffs) * scale
    quadratics = [(-2.0 * r.real, abs(r) ** 2) for r in roots if r.imag > 0]
    real = sorted(r.real for r in roots if r.imag == 0)
    quadratics += [(-(a + b), a * b) for a, b in zip(real[0::2], real[1::2])]
    return quadratics, [-r for r in real[len(real) - len(real) % 2 :]]


def neon_gelu_te(x):
    """float32 GELU for NEON: a rational erf (ERF53_*) evaluated as monic factors of t = x^2.

    In Horner form every step adds a constant to a product, and NEON's FMLA overwrites its addend, so each
    step costs a register copy of the constant too (a third of the epilogue). A factor t^2 + p t + q is one
    FADD and one FMLA whose accumulator is a temporary, and 1/sqrt 2, 1/2 and the leading coefficients fold
    into one constant: ~27 instructions a vector against ~50. No factor has a root on [0, 2 L^2] (the
    clamped range), so none cancels; the bound is ERF_MAX_ABS_ERROR's, tested under qemu.
    """
    import tvm
    from tvm import te, tirx

    def c(value):
        return tirx.const(value, "float32")

    limit = ERF53_LIMIT * math.sqrt(2.0)  # u = x / sqrt 2 clamped to [-L, L]
    numerator = _monic_factors(ERF53_NUMERATOR, 2.0)  # roots in t = x^2 = 2 u^2
    denominator = _monic_factors(ERF53_DENOMINATOR, 2.0)

    def weight(factors):  # a monic quadratic in t is 4x its factor in u^2, a linear one 2x
        return 4.0 ** len(factors[0]) * 2.0 ** len(factors[1])

    # 0.5 * erf(x / sqrt 2) = 0.5 / sqrt 2 * x * P / Q
    leading = ERF53_NUMERATOR[0] / ERF53_DENOMINATOR[0] * weight(denominator) / weight(numerator)
    scale = 0.5 / math.sqrt(2.0) * leading

    target = tvm.target.Target.current(allow_none=True)
    neon = target is not None and _is_aarch64(target)

    def gelu(v):
        clamped = tirx.max(tirx.min(v, c(limit)), c(-limit))

        # FMULX: a multiply LLVM does not fuse into the factors' adds (which would make q or c the addend of
        # an FMLA, and cost a register copy of it)
        def square(a):
            return tirx.call_llvm_pure_intrin("float32", "llvm.aarch64.neon.fmulx", a, a) if neon else a * a

        t = square(clamped)
        t2 = square(t)

        def product(factors):
            quadratics, linears = factors
            terms = [(t2 + c(q)) + t * c(p) for p, q in quadratics] + [t + c(k) for k in linears]
            out = terms[0]
            for term in terms[1:]:
                out = out * term
            return out

        odd = v * clamped * product(numerator)  # x * xc * P: even, like x * erf(x / sqrt 2)
        return v * c(0.5) + odd * reciprocal(product(denominator), "float32") * c(scale)

    return te.compute(x.shape, lambda *i: gelu(x(*i)), name="neon_gelu")


def horner_gelu_te(x):
    """float32 GELU for x86 vectors: the same rational erf as NEON's (ERF53_*), in Horner form of t = x^2
    with 1/sqrt 2 and 1/2 folded into the coefficients: x * (1/2 + xc * P(t) / Q(t)), Q monic.

    x86 FMAs take a constant straight from memory, so Horner costs one operation a degree; against topi's
    fast_erf (a (6, 4) rational of x / sqrt 2, then x * (0.5 + 0.5 erf)) that is 15 vector operations a GELU
    instead of 20, 11 of them on the FMA ports instead of 18, which the MLP's expand convs pay per output.
    """
    from tvm import te, tirx

    def c(value):
        return tirx.const(value, "float32")

    limit = ERF53_LIMIT * math.sqrt(2.0)
    # erf(u) = u N(u^2) / D(u^2) with u^2 = t / 2; 1/2 erf(x / sqrt 2) = x (1 / (2 sqrt 2)) N(t/2) / D(t/2)
    n_t = [a / 2.0**i for i, a in enumerate(reversed(ERF53_NUMERATOR))]  # lowest degree first
    d_t = [b / 2.0**i for i, b in enumerate(reversed(ERF53_DENOMINATOR))]
    lead = d_t[-1]
    numerator = [a / lead * 0.5 / math.sqrt(2.0) for a in n_t]
    denominator = [b / lead for b in d_t[:-1]]

    def gelu(v):
        clamped = tirx.max(tirx.min(v, c(limit)), c(-limit))
        t = clamped * clamped
        p = c(numerator[-1])
        for a in reversed(numerator[:-1]):
            p = p * t + c(a)
        q = t + c(denominator[-1])
        for b in reversed(denominator[:-1]):
            q = q * t + c(b)
        return (clamped * p / q + c(0.5)) * v

    return te.compute(x.shape, lambda *i: gelu(x(*i)), name="horner_gelu")


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
