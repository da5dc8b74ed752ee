"""Read a saved Core ML ML program on Linux (spec + MIL protobuf, no runtime) into a ModelReport."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from repnext_core.compile.export.coreml_export import import_coremltools
from repnext_core.compile.export.inspect.census import ModelReport, Node, TensorInfo, conv_label

_SHORT = {"FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64", "DOUBLE": "fp64", "INT32": "int32"}


def _short(dtype: str) -> str:
    return _SHORT.get(dtype, dtype.lower())


class _Program:
    """The main function of an ML program: its ops in order, const values and the dtype of every var."""

    def __init__(self, spec) -> None:
        from coremltools.proto import MIL_pb2

        self._dt = MIL_pb2.DataType.Name
        fn = spec.mlProgram.functions["main"]
        self.opset = fn.opset
        self.ops = list(self._walk(fn.block_specializations[fn.opset]))
        self.consts = {op.outputs[0].name: op for op in self.ops if op.type == "const"}
        self.dtypes = {v.name: self._dt(v.type.tensorType.dataType) for v in fn.inputs}
        for op in self.ops:
            for v in op.outputs:
                self.dtypes[v.name] = self._dt(v.type.tensorType.dataType)

    def _walk(self, block):
        for op in block.operations:
            yield op
            for inner in op.blocks:  # control flow nests blocks; RepNeXt has none, but count them anyway
                yield from self._walk(inner)

    @staticmethod
    def arg(op, key: str) -> str | None:
        """Name of the var bound to input `key` of `op`, if any."""
        if key not in op.inputs or not op.inputs[key].arguments:
            return None
        return op.inputs[key].arguments[0].name or None

    def const_shape(self, name: str) -> tuple[int, ...]:
        t = self.consts[name].outputs[0].type.tensorType
        return tuple(d.constant.size for d in t.dimensions)

    def immediate(self, name: str | None) -> np.ndarray | None:
        """Value of a const stored inline in the protobuf (small tensors and scalars), else None."""
        if name not in self.consts:
            return None
        val = self.consts[name].attributes["val"]
        if val.WhichOneof("value") != "immediateValue":
            return None
        t = val.immediateValue.tensor
        kind = t.WhichOneof("value")
        if kind == "bytes":  # fp16 and other narrow types are packed as raw bytes
            dtype = np.float16 if self.dtypes.get(name) == "FLOAT16" else np.uint8
            return np.frombuffer(t.bytes.values, dtype=dtype)
        if kind is None:
            return None
        return np.array(list(getattr(t, kind).values))


def _conv_node(prog: _Program, op) -> Node:
    weight = prog.arg(op, "weight")
    c_out, c_in_g, kh, kw = prog.const_shape(weight) if weight in prog.consts else (0, 0, 0, 0)
    strides = prog.immediate(prog.arg(op, "strides"))
    groups = prog.immediate(prog.arg(op, "groups"))
    label = conv_label(
        "conv",
        kh,
        kw,
        [int(s) for s in strides] if strides is not None else [1],
        int(groups[0]) if groups is not None and groups.size else 1,
        c_out,
        c_in_g,
    )
    return Node(op.type, _dataflow_inputs(prog, op), [v.name for v in op.outputs], label)


def _dataflow_inputs(prog: _Program, op) -> list[str]:
    """Non-const inputs, 'x' first: the tensors an op actually consumes."""
    keys = sorted(op.inputs, key=lambda k: (k != "x", k))
    names = [b.name for k in keys for b in op.inputs[k].arguments if b.name]
    return [n for n in names if n not in prog.consts]


def _io(spec) -> tuple[list[TensorInfo], list[TensorInfo]]:
    from coremltools.proto import FeatureTypes_pb2

    array_dt = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
    color = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name

    def one(f) -> TensorInfo:
        kind = f.type.WhichOneof("Type")
        if kind == "imageType":
            t = f.type.imageType
            return TensorInfo(f.name, color(t.colorSpace), (t.height, t.width), kind="image")
        if kind == "multiArrayType":
            t = f.type.multiArrayType
            return TensorInfo(f.name, _short(array_dt(t.dataType)), tuple(t.shape))
        return TensorInfo(f.name, kind or "unknown", ())

    return [one(f) for f in spec.description.input], [one(f) for f in spec.description.output]


def _casts(prog: _Program) -> str:
    casts = [op for op in prog.ops if op.type == "cast"]
    parts = [
        f"{_short(prog.dtypes.get(prog.arg(op, 'x') or '', '?'))}->{_short(prog.dtypes[op.outputs[0].name])}"
        for op in casts
    ]
    return f"{len(casts)}" + (f" ({', '.join(parts)})" if parts else "")


def _preprocessing(prog: _Program) -> str | None:
    """ImageType scale/bias, which coremltools emits as the first mul ('__scaled__') and add ('__biased__')."""
    scale = bias = None
    for op in prog.ops:
        name = op.outputs[0].name
        if op.type == "mul" and name.endswith("__scaled__"):
            scale = prog.immediate(prog.arg(op, "y"))
        elif op.type == "add" and name.endswith("__biased__"):
            bias = prog.immediate(prog.arg(op, "y"))
    if scale is None and bias is None:
        return None
    fmt = lambda a: "none" if a is None else np.array2string(a.ravel(), precision=6, separator=", ")  # noqa: E731
    return f"pixel * {fmt(scale)} + {fmt(bias)}"


def inspect_coreml(path: str | os.PathLike) -> ModelReport:
    """Census of an .mlpackage: ops by type, conv kernels, blocks, precision, I/O and metadata."""
    ct = import_coremltools()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no Core ML model at {str(p)!r}")
    spec = ct.utils.load_spec(str(p))
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{str(p)!r} is a Core ML {spec.WhichOneof('Type')} model, not an ML program")
    prog = _Program(spec)

    report = ModelReport("coreml", str(p))
    for op in prog.ops:
        if op.type == "const":
            continue
        node = (
            _conv_node(prog, op)
            if op.type == "conv"
            else Node(op.type, _dataflow_inputs(prog, op), [v.name for v in op.outputs])
        )
        report.nodes.append(node)
        report.ops[op.type] += 1
        if op.type == "conv":
            report.conv_kernels[node.label.removeprefix("conv ")] += 1
        if op.type in ("conv", "linear", "matmul"):
            w = prog.arg(op, "weight") or prog.arg(op, "y")
            if w in prog.consts:
                report.weight_dtypes[_short(prog.dtypes[w])] += 1
    kinds = set(report.weight_dtypes)
    report.precision = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "unknown")
    report.inputs, report.outputs = _io(spec)
    md = spec.description.metadata
    report.metadata = dict(md.userDefined)
    try:
        target = ct.target(spec.specificationVersion).name
    except ValueError:
        target = "?"
    report.details = {
        "spec version": f"{spec.specificationVersion} (minimum target {target}), MIL opset {prog.opset}",
        "author": md.author,
        "description": md.shortDescription,
        "const ops": str(len(prog.consts)),
        "cast ops": _casts(prog),
    }
    gelu_modes = Counter(
        str(m[0])
        for op in prog.ops
        if op.type == "gelu"
        for m in [prog.immediate(prog.arg(op, "mode"))]
        if m is not None
    )
    if gelu_modes:
        report.details["gelu mode"] = ", ".join(f"{k} x{v}" for k, v in gelu_modes.items())
    pre = _preprocessing(prog)
    if pre:
        report.details["image preprocessing"] = pre
    return report


def coreml_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every float const of the conv and linear ops, by var name, read from the package (fp16 or fp32).

    Lets tests compare the saved weights with the torch model on Linux, where Core ML cannot run.
    """
    ct = import_coremltools()
    from coremltools.libmilstoragepython import _BlobStorageReader  # coremltools' own blob reader

    p = Path(path)
    prog = _Program(ct.utils.load_spec(str(p)))
    model_dir = next(p.rglob("model.mlmodel")).parent  # what "@model_path" refers to in blob file names
    readers: dict[str, _BlobStorageReader] = {}
    out = {}
    for op in prog.ops:
        if op.type not in ("conv", "linear"):
            continue
        for key in ("weight", "bias"):
            name = prog.arg(op, key)
            if name not in prog.consts:
                continue
            val = prog.consts[name].attributes["val"]
            shape = prog.const_shape(name)
            if val.WhichOneof("value") == "blobFileValue":
                blob = val.blobFileValue
                file = str(model_dir / blob.fileName.replace("@model_path/", ""))
                reader = readers.setdefault(file, _BlobStorageReader(file))
                if prog.dtypes[name] == "FLOAT16":
                    data = np.asarray(reader.read_fp16_data(blob.offset)).view(np.float16)
                else:
                    data = np.asarray(reader.read_float_data(blob.offset), dtype=np.float32)
            else:
                data = prog.immediate(name)
            out[name] = data.reshape(shape)
    return out
