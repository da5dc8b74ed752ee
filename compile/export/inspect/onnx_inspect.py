"""Read a saved .onnx file into a ModelReport: ops, conv kernels, blocks, opset, I/O, metadata."""

from __future__ import annotations

import os
from pathlib import Path

from repnext_core.compile.export.inspect.census import ModelReport, Node, TensorInfo, conv_label


def _dims(value_info) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)


def inspect_onnx(path: str | os.PathLike) -> ModelReport:
    """Census of an .onnx file (loaded without running it)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no ONNX file at {str(p)!r}")
    model = onnx.load(str(p), load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    dtype_name = onnx.helper.tensor_dtype_to_np_dtype

    report = ModelReport("onnx", str(p))
    for node in graph.node:
        report.ops[node.op_type] += 1
        label = node.op_type
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = inits.get(node.input[1])
            c_out, c_in_g, kh, kw = (
                tuple(w.dims) if w is not None else (0, 0, *attrs.get("kernel_shape", (0, 0)))
            )
            label = conv_label(
                "Conv", kh, kw, attrs.get("strides", [1]), attrs.get("group", 1), c_out, c_in_g
            )
            report.conv_kernels[label.removeprefix("Conv ")] += 1
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            report.weight_dtypes[str(dtype_name(inits[node.input[1]].data_type))] += 1
        report.nodes.append(Node(node.op_type, list(node.input), list(node.output), label))
    kinds = {"float16": "fp16", "float32": "fp32"}
    found = {kinds.get(k, k) for k in report.weight_dtypes}
    report.weight_dtypes = type(report.weight_dtypes)(
        {kinds.get(k, k): v for k, v in report.weight_dtypes.items()}
    )
    report.precision = found.pop() if len(found) == 1 else ("mixed" if found else "unknown")

    elem = lambda vi: str(dtype_name(vi.type.tensor_type.elem_type))  # noqa: E731
    report.inputs = [TensorInfo(i.name, elem(i), _dims(i)) for i in graph.input if i.name not in inits]
    report.outputs = [TensorInfo(o.name, elem(o), _dims(o)) for o in graph.output]
    report.metadata = {m.key: m.value for m in model.metadata_props}
    external = sum(t.data_location == onnx.TensorProto.EXTERNAL for t in inits.values())
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    report.details = {
        "opset": opsets,
        "ir version": str(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "doc": model.doc_string,
        "initializers": f"{len(inits)} ({sum(t.ByteSize() for t in inits.values()) / 2**20:.1f} MiB), "
        + (f"{external} stored as external data" if external else "all inside the file"),
    }
    if report.ops.get("Erf"):
        report.details["gelu"] = "erf form (Div, Erf, Add, Mul, Mul); opset >= 20 has a Gelu op"
    return report
