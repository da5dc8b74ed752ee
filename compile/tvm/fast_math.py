"""Vectorizable lowerings for the elementwise ops whose TVM default is a scalar libm call.

TVM lowers `erf` to libm's erff, one call per element (about 9 ns each here): in RepNeXt's MLP every
hidden activation goes through GELU, which made the erf alone a fifth of the tuned model's time. The
rational approximation in `topi.fast_erf` (max abs error 3.7e-7 on float32, 30x faster when vectorized)
keeps the fused model within 1e-5 of PyTorch.
"""

from __future__ import annotations

import math

# The bound on |fast_erf(x) - erf(x)| we hold it to (measured: 3.7e-7 against float64 erf); a test checks it.
ERF_MAX_ABS_ERROR = 1e-6


def fast_gelu_te(x):
    """GELU(x) = x * (0.5 + 0.5 * erf(x / sqrt 2)) with the polynomial erf (float32 math for half types)."""
    from tvm import tirx, topi

    dtype = x.dtype
    arg = x * tirx.const(1.0 / math.sqrt(2.0), dtype)
    if dtype == "float32":
        erf = topi.fast_erf(arg)
    else:
        erf = topi.cast(topi.fast_erf(topi.cast(arg, "float32")), dtype)
    return x * (tirx.const(0.5, dtype) + erf * tirx.const(0.5, dtype))


def _legalize_gelu(bb, call):
    return bb.call_te(fast_gelu_te, call.args[0], primfunc_name_hint="gelu")


def legalize_map() -> dict:
    """Overrides for relax.transform.LegalizeOps: Relax op name -> legalization function."""
    return {"relax.nn.gelu": _legalize_gelu}
