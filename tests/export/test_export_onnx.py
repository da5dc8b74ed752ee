"""ONNX export of the fused RepNeXt: structure, onnxruntime parity (fixed and dynamic batch), metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from repnext_core import reparameterize  # noqa: E402
from repnext_core.compile.export.common import ExportError  # noqa: E402
from repnext_core.compile.export.inspect.census import block_signature  # noqa: E402
from repnext_core.compile.export.inspect.onnx_inspect import inspect_onnx  # noqa: E402
from repnext_core.compile.export.onnx_export import export_onnx, graph_problems  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402
from repnext_core.verify import tolerance  # noqa: E402

SHAPE = (1, 3, 64, 64)
# One fused block at opset 18: GELU is spelled out as x * 0.5 * (1 + erf(x / sqrt 2)).
BLOCK_OPS = {
    "Split": 1,
    "Conv dw 3x3 s1": 1,
    "Conv dw 7x7 s1": 1,
    "Conv dw 1x11 s1": 1,
    "Conv dw 11x1 s1": 1,
    "Concat": 1,
    "Conv 1x1 s1": 2,
    "Div": 1,
    "Erf": 1,
    "Mul": 2,
    "Add": 2,  # GELU's 1 + erf, and the residual
}


@pytest.fixture(scope="module")
def fused_toy() -> nn.Module:
    return reparameterize(toy_model(seed=0))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, fused_toy):
    d = tmp_path_factory.mktemp("onnx")
    meta = {"variant": "toy", "checkpoint": "seed-0 random"}
    return {
        "static": export_onnx(fused_toy, d / "static.onnx", input_shape=SHAPE, metadata=meta),
        "dynamic": export_onnx(fused_toy, d / "dynamic.onnx", input_shape=SHAPE, dynamic_batch=True),
    }


def _ort_vs_torch(path, model: nn.Module, batch: int) -> tuple[float, float]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, *SHAPE[1:], generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = model(x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max()), tolerance(np.abs(ref).max())


def test_static_export_matches_torch(exports, fused_toy):
    result = exports["static"]
    assert result.parity_ok and result.batches == (1,)
    diff, tol = _ort_vs_torch(result.path, fused_toy, 1)  # again, from the file on disk
    assert diff <= tol


def test_dynamic_batch_runs_batch_3_and_matches_torch(exports, fused_toy):
    result = exports["dynamic"]
    assert result.batches == (1, 3) and result.parity_ok
    report = inspect_onnx(result.path)
    assert report.inputs[0].shape == ("batch", 3, 64, 64)
    for batch in (3, 2):
        diff, tol = _ort_vs_torch(result.path, fused_toy, batch)
        assert diff <= tol
    with pytest.raises(Exception, match="[Ii]nvalid dimensions"):  # the static file is fixed at batch 1
        _ort_vs_torch(exports["static"].path, fused_toy, 3)


@pytest.mark.parametrize("key", ["static", "dynamic"])
def test_graph_is_split_based_and_batchnorm_free(exports, key):
    path = exports[key].path
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    assert not {"Shape", "Gather", "Slice", "SplitToSequence", "SequenceAt"} & set(ops)
    splits = [n for n in model.graph.node if n.op_type == "Split"]
    assert len(splits) == 4  # one per block
    for n in splits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs == {"axis": 1, "num_outputs": 4} and len(n.output) == 4
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", 18)]


def test_census_blocks(exports):
    report = inspect_onnx(exports["static"].path)
    assert report.batchnorm_ops == 0 and report.precision == "fp32"
    assert len(report.blocks) == 4
    assert all(dict(block_signature(b)) == BLOCK_OPS for b in report.blocks)
    assert report.conv_kernels["dw 11x1 s1"] == 4 and report.conv_kernels["dw 7x7 s2"] == 3


def test_single_file_with_all_weights_inside(exports):
    path = exports["static"].path
    assert sorted(p.name for p in path.parent.iterdir()) == ["dynamic.onnx", "static.onnx"]
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.initializer
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_metadata_round_trip(exports):
    path = exports["static"].path
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["variant"] == "toy"
    assert meta.custom_metadata_map["checkpoint"] == "seed-0 random"
    assert meta.custom_metadata_map["opset"] == "18"
    assert "mean=[0.485, 0.456, 0.406]" in meta.custom_metadata_map["input_normalization"]
    assert "toy" in onnx.load(str(path)).doc_string
    assert inspect_onnx(exports["dynamic"].path).metadata["dynamic_batch"] == "True"


def test_opset_below_18_is_refused(tmp_path, fused_toy):
    with pytest.raises(ValueError, match="opset must be >= 18"):
        export_onnx(fused_toy, tmp_path / "m.onnx", opset=17)
    assert list(tmp_path.iterdir()) == []


def test_graph_problems_flags_batchnorm_and_gather_chains():
    h = onnx.helper
    nodes = [
        h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"]),
        h.make_node("Shape", ["y"], ["sh"]),
        h.make_node("Gather", ["sh", "i"], ["g"]),
    ]
    graph = h.make_graph(nodes, "g", [], [])
    problems = graph_problems(h.make_model(graph))
    text = "; ".join(problems)
    assert "1 BatchNormalization" in text and "1 Gather" in text and "1 Shape" in text
    assert "no Split node" in text


def test_parity_failure_writes_nothing(tmp_path, fused_toy, monkeypatch):
    import repnext_core.compile.export.onnx_export as mod

    monkeypatch.setattr(mod, "run_parity", lambda *a, **k: (1.0, 1e-5))
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(fused_toy, tmp_path / "m.onnx", input_shape=SHAPE)
    assert list(tmp_path.iterdir()) == []
