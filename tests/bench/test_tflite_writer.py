"""Our TFLite writer (LiteRT's peer model): the fused toy as a flatbuffer that LiteRT runs at fp32 parity."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("ai_edge_litert")

from repnext_core.compile.bench.peer_runtimes import litert_interpreter  # noqa: E402
from repnext_core.compile.bench.tflite_writer import (  # noqa: E402
    TFLiteConversionError,
    tflite_bytes,
    to_tflite,
)
from repnext_core.reparam import reparameterize  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402


@pytest.fixture(scope="module")
def fused():
    return reparameterize(toy_model(), backend="torch").eval()


def _operators(flatbuffer: bytes) -> collections.Counter:
    from ai_edge_litert import schema_py_generated as tfl

    model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(flatbuffer, 0))
    names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[c.builtinCode] for c in model.operatorCodes]
    return collections.Counter(codes[op.opcodeIndex] for op in model.subgraphs[0].operators)


@pytest.mark.parametrize("size", [32, 48])
def test_litert_runs_the_written_model_at_fp32_parity(fused, tmp_path, size):
    path = to_tflite(fused, tmp_path / "toy.tflite", (1, 3, size, size))
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        ref = fused(x).numpy()
    out = litert_interpreter(str(path), threads=1)(x.numpy())
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    assert [p.name for p in tmp_path.iterdir()] == ["toy.tflite"]  # no temp file left beside it


def test_one_operator_per_fused_op(fused):
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    depthwise = sum(1 for m in convs if m.groups > 1 and m.groups == m.out_channels == m.in_channels)
    strided = sum(1 for m in convs if m.stride != (1, 1))
    ops = _operators(tflite_bytes(fused, (1, 3, 32, 32)))
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == len(convs)
    assert ops["DEPTHWISE_CONV_2D"] == depthwise
    # torch pads strided convs on both sides, TFLite's SAME at the end: those get an explicit PAD
    assert ops["PAD"] == strided
    assert ops["GELU"] == sum(1 for m in fused.modules() if isinstance(m, nn.GELU))
    assert ops["TRANSPOSE"] == 1 and ops["MEAN"] == 1 and ops["FULLY_CONNECTED"] == 1


def test_an_op_without_a_tflite_operator_is_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    with pytest.raises(TFLiteConversionError, match="relu"):
        to_tflite(model, tmp_path / "bad.tflite", (1, 3, 8, 8))
    assert list(tmp_path.iterdir()) == []  # nothing half-written
