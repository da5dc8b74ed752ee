"""The custom ops torch.ops.repnext.*: registration, fake (meta) implementations, tracing, errors."""

from __future__ import annotations

import pytest
import torch
from kernel_helpers import F16, F32, chunk_params, copy_params, needs_kernels, rand, separable_params
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

import repnext_core.kernels as K
from repnext_core.kernels.ops import NAMESPACE, OPS, op_overloads


def op_cases(dtype: torch.dtype = F32, channels_last: bool = False) -> dict[str, tuple]:
    """One small argument tuple per op (name -> (public function, reference, args))."""

    def x_of(c: int) -> torch.Tensor:
        x = rand(1, c, 9, 7, dtype=dtype)
        return x.to(memory_format=torch.channels_last) if channels_last else x

    w, b = rand(4, 1, 5, 5, dtype=dtype), rand(4, dtype=dtype)
    return {
        "chunk_dwconv": (K.chunk_dwconv, K.chunk_dwconv_reference, (x_of(8), *chunk_params(2, dtype))),
        "copy_dwconv": (K.copy_dwconv, K.copy_dwconv_reference, (x_of(4), *copy_params(4, dtype))),
        "dwconv2d": (K.dwconv2d, K.dwconv2d_reference, (x_of(4), w, b, 2)),
        "separable_dwconv2d": (
            K.separable_dwconv2d,
            K.separable_dwconv2d_reference,
            (x_of(4), *separable_params(4, 11, dtype)),
        ),
    }


def test_ops_are_registered_in_one_namespace():
    overloads = op_overloads()
    assert set(overloads) == set(OPS) == {"chunk_dwconv", "copy_dwconv", "dwconv2d", "separable_dwconv2d"}
    for name, op in overloads.items():
        assert isinstance(op, torch._ops.OpOverload)
        assert op.name() == f"{NAMESPACE}::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "Meta")  # the fake
    assert "Tensor? bias, SymInt stride" in str(overloads["dwconv2d"]._schema)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", OPS)
def test_fake_propagates_shape_dtype_and_layout(name, dtype, channels_last):
    """Under FakeTensorMode only the fake runs: the reference's shape, the input's dtype, its layout."""
    _, reference, args = op_cases(dtype, channels_last)[name]
    expect = reference(*args)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        out = op_overloads()[name](*fake_args)
    assert out.shape == expect.shape and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:
        assert not out.is_contiguous()


@pytest.mark.parametrize("name", OPS)
def test_meta_tensors_run_the_fake(name):
    _, reference, args = op_cases()[name]
    meta = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in args]
    out = op_overloads()[name](*meta)
    assert out.device.type == "meta" and out.shape == reference(*args).shape


def test_fake_refuses_bad_arguments_with_the_eager_message():
    x = torch.empty(1, 6, 5, 5, device="meta")
    with pytest.raises(ValueError, match="divisible by 4"):
        torch.ops.repnext.chunk_dwconv(x, *(t.to("meta") for t in chunk_params(1, F32)))
    with pytest.raises(TypeError, match="dtype"):
        torch.ops.repnext.dwconv2d(x, torch.empty(6, 1, 3, 3, device="meta", dtype=F16), None, 1)
    with pytest.raises(ValueError, match="stride"):
        torch.ops.repnext.dwconv2d(x, torch.empty(6, 1, 3, 3, device="meta"), None, 3)


@needs_kernels
@pytest.mark.parametrize("name", OPS)
def test_public_functions_trace_to_one_op(name):
    """make_fx of the public function: exactly one call of its custom op and nothing else computes."""
    fn, reference, args = op_cases()[name]
    graph = make_fx(lambda *a: fn(*a))(*args).graph
    calls = [n.target for n in graph.nodes if n.op == "call_function"]
    assert calls == [op_overloads()[name]], calls
    out = fn(*args)
    torch.testing.assert_close(out, reference(*args), rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("name", OPS)
def test_opcheck(name):
    """torch.library.opcheck: schema, fake tensor and AOT dispatch agree with the real kernel."""
    _, _, args = op_cases()[name]
    torch.library.opcheck(
        op_overloads()[name], args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static")
    )
