"""The fused model on the Triton kernels (CPU interpreter here) against the torch backend."""

import os

import pytest
import torch
from conftest import tol

from repnext_core import create_model, reparameterize, set_backend
from repnext_core.backend import use_triton
from repnext_core.kernels import triton_available
from repnext_core.testing import toy_model

needs_triton = pytest.mark.skipif(
    not triton_available() or (not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"),
    reason="needs Triton, on CUDA or in its interpreter (TRITON_INTERPRET=1, set by conftest without CUDA)",
)


@needs_triton
def test_fused_toy_model_on_triton_matches_torch():
    fused = reparameterize(toy_model(seed=3), backend="torch")
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        ref = fused(x)
        out = set_backend(fused, "triton")(x)
    assert (out - ref).abs().max().item() <= tol(ref)


@needs_triton
def test_create_model_triton_backend_runs_the_kernels(monkeypatch):
    import repnext_core.kernels as kernels

    calls = []
    real = kernels.chunk_dwconv
    monkeypatch.setattr(kernels, "chunk_dwconv", lambda *a: calls.append(1) or real(*a))
    model = create_model("repnext_m0", fused=True, backend="triton", num_classes=10)
    with torch.no_grad():
        model.stages[0].blocks(torch.randn(1, 40, 9, 9))
    assert len(calls) == 2  # two blocks in M0's first stage, each one launch


def test_auto_backend_uses_torch_on_cpu():
    assert not use_triton("auto", torch.zeros(1))
    assert use_triton("triton", torch.zeros(1)) and not use_triton("torch", torch.zeros(1))


# ---- the fused model through torch._dynamo / torch.export / torch.compile: one custom op per mixer ----


def tiny_fused(backend: str = "triton"):
    """A fused RepNeXt small enough for the interpreter: 5 blocks, 3 downsamples (4..32 channels)."""
    from repnext_core.testing import random_model

    model = random_model(None, 0, embed_dim=(4, 8, 16, 32), depth=(1, 1, 2, 1), num_classes=10)
    return reparameterize(model, backend=backend).eval()


def op_counts(graph) -> dict[str, int]:
    from repnext_core.kernels import op_overloads

    # dynamo's graphs call the op packet (torch.ops.repnext.x), exported ones its overload (.default)
    return {
        k: sum(1 for n in graph.nodes if n.target is v or n.target is v.overloadpacket)
        for k, v in op_overloads().items()
    }


MIXERS_TINY = {"chunk_dwconv": 5, "copy_dwconv": 3, "dwconv2d": 0, "separable_dwconv2d": 0}
MIXERS_M0 = {"chunk_dwconv": 14, "copy_dwconv": 3, "dwconv2d": 0, "separable_dwconv2d": 0}


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_dynamo_explain_no_graph_breaks_one_op_per_mixer(channels_last):
    model = tiny_fused()
    x = torch.randn(1, 3, 32, 32)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    torch._dynamo.reset()
    with torch.no_grad():
        ex = torch._dynamo.explain(model)(x)
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    assert op_counts(ex.graphs[0].graph) == MIXERS_TINY


@needs_triton
def test_compile_fullgraph_matches_eager_torch():
    """torch.compile(fullgraph=True) through AOTAutograd (the fakes) runs our ops, with the torch values."""
    model = tiny_fused()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = set_backend(tiny_fused(), "torch")(x)
        torch._dynamo.reset()
        out = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    assert out.shape == ref.shape and (out - ref).abs().max().item() <= tol(ref)


@needs_triton
@pytest.mark.slow
def test_compile_inductor_matches_eager_torch():
    model = tiny_fused()
    x = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = set_backend(tiny_fused(), "torch")(x)
        torch._dynamo.reset()
        out = torch.compile(model.to(memory_format=torch.channels_last), fullgraph=True)(x)
    assert (out - ref).abs().max().item() <= tol(ref)


def export_m0(channels_last: bool, dtype: torch.dtype = torch.float32):
    """M0 fused on the Triton backend, exported at 64x64 (fakes only: no kernel runs)."""
    model = create_model("repnext_m0", fused=True, backend="triton").eval().to(dtype)
    x = torch.randn(1, 3, 64, 64, dtype=dtype)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    return torch.export.export(model, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_export_m0_keeps_one_op_per_mixer(channels_last, dtype):
    """The exported graph holds every mixer as one repnext op, with the right shapes, dtype and layout;
    a channels_last model has no layout conversion anywhere (no clone / contiguous / copy node)."""
    from repnext_core.kernels import op_overloads

    ep = export_m0(channels_last, dtype)
    assert op_counts(ep.graph) == MIXERS_M0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ops = set(op_overloads().values())
    sizes = []
    for node in ep.graph.nodes:
        if node.target in ops:
            val = node.meta["val"]
            assert val.dtype == dtype and val.is_contiguous(memory_format=fmt), (node, val.stride())
            sizes.append(tuple(val.shape))
    assert sizes[0] == (1, 40, 16, 16) and (1, 160, 4, 4) in sizes and sizes[-1] == (1, 320, 2, 2)
    names = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    conversions = {n for n in names if any(w in n for w in ("clone", "contiguous", "_to_copy", "as_strided"))}
    assert not conversions, conversions
    out = ep.graph.find_nodes(op="output")[0].args[0][0].meta["val"]
    assert out.shape == (1, 1000) and out.dtype == dtype


@needs_triton
@pytest.mark.slow
def test_m0_eager_triton_matches_torch_nchw_and_channels_last():
    model = create_model("repnext_m0", fused=True, backend="torch").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = set_backend(model, "triton")(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert (out - ref).abs().max().item() <= tol(ref)
    assert (cl - ref).abs().max().item() <= tol(ref)


@needs_triton
def test_channels_last_model_on_triton_matches_torch():
    """A channels_last fused model runs the NHWC kernels end to end, with the NCHW torch model's values."""
    model = tiny_fused("torch")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        cl = set_backend(model, "triton").to(memory_format=torch.channels_last)
        out = cl(x.to(memory_format=torch.channels_last))
    assert (out - ref).abs().max().item() <= tol(ref)
