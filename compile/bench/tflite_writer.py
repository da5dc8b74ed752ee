"""A fused RepNeXt as a float32 TFLite flatbuffer, for LiteRT (XNNPACK) as a benchmark peer.

LiteRT's own PyTorch converter (ai-edge-torch) pins its torch and pulls TensorFlow (gigabytes); ONNX -> TF ->
TFLite needs TensorFlow too. The fused graph is seven ATen operations (conv2d, gelu, add, split, cat, mean,
linear), so this module writes the flatbuffer itself with the schema module that ships in the ai-edge-litert
wheel: torch.export's ATen graph, one TFLite operator per node, activations NHWC (the input transposed once, as
the TVM build does).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# NCHW axis -> NHWC axis of the same dimension
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


class TFLiteConversionError(ValueError):
    """The graph holds something this writer has no TFLite operator for."""


class _Writer:
    """Tensors, constant buffers and operators of one TFLite subgraph, then the packed model."""

    def __init__(self):
        from ai_edge_litert import schema_py_generated as tfl

        self.tfl = tfl
        self.tensors: list = []
        self.buffers = [tfl.BufferT()]  # buffer 0: the empty sentinel every non-constant tensor points at
        self.operators: list = []
        self.codes: dict[int, int] = {}
        self.code_list: list = []

    def tensor(self, shape, name: str, data: np.ndarray | None = None, dtype: str = "float32") -> int:
        tfl = self.tfl
        t = tfl.TensorT()
        t.shape = [int(s) for s in shape]
        t.type = {"float32": tfl.TensorType.FLOAT32, "int32": tfl.TensorType.INT32}[dtype]
        t.name = name
        t.buffer = 0
        if data is not None:
            buf = tfl.BufferT()
            buf.data = np.ascontiguousarray(data, dtype=dtype).reshape(-1).view(np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const_int(self, values, name: str) -> int:
        values = np.asarray(values, np.int32)
        return self.tensor(values.shape, name, values, "int32")

    def op(self, builtin: str, inputs: list[int], outputs: list[int], options: str | None = None, **fields):
        tfl = self.tfl
        code = getattr(tfl.BuiltinOperator, builtin)
        if code not in self.codes:
            opcode = tfl.OperatorCodeT()
            opcode.builtinCode = code
            opcode.deprecatedBuiltinCode = min(code, tfl.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            opcode.version = 1
            self.codes[code] = len(self.code_list)
            self.code_list.append(opcode)
        op = tfl.OperatorT()
        op.opcodeIndex = self.codes[code]
        op.inputs, op.outputs = list(inputs), list(outputs)
        if options is not None:
            opts = getattr(tfl, f"{options}T")()
            for key, value in fields.items():
                setattr(opts, key, value)
            op.builtinOptionsType = getattr(tfl.BuiltinOptions, options)
            op.builtinOptions = opts
        self.operators.append(op)

    def pack(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        tfl = self.tfl
        graph = tfl.SubGraphT()
        graph.tensors, graph.operators = self.tensors, self.operators
        graph.inputs, graph.outputs, graph.name = inputs, outputs, "main"
        model = tfl.ModelT()
        model.version = 3
        model.operatorCodes, model.subgraphs, model.buffers = self.code_list, [graph], self.buffers
        model.description = "repnext fused model (repnext_core.compile.bench.tflite_writer)"
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _nhwc(shape: tuple) -> tuple:
    """A torch shape as the TFLite tensor holds it: 4-D activations NHWC, the rest as they are."""
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def _axis(dim: int, ndim: int) -> int:
    return _NHWC_AXIS[dim % 4] if ndim == 4 else dim % ndim


class _Converter:
    """Walks torch.export's ATen graph of the model, one TFLite operator (or none: clone, getitem) per node."""

    def __init__(self, exported, input_shape: tuple):
        sig = exported.graph_signature
        self.params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
        self.exported, self.input_shape = exported, tuple(input_shape)
        self.w = _Writer()
        self.env: dict[str, object] = {}  # node name -> tensor index (a list of them for a split)
        self.shapes: dict[str, tuple] = {}  # node name -> its torch (NCHW) shape
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.none = self.w.tfl.ActivationFunctionType.NONE
        self.handlers = {
            "aten.conv2d.default": self.conv2d,
            "aten.gelu.default": self.gelu,
            "aten.add.Tensor": self.add,
            "aten.split.Tensor": self.split,
            "<built-in function getitem>": self.getitem,
            "aten.cat.default": self.cat,
            "aten.mean.dim": self.mean,
            "aten.linear.default": self.linear,
            "aten.clone.default": self.alias,
            "aten.contiguous.default": self.alias,
            "aten.alias.default": self.alias,
        }

    def run(self) -> bytes:
        for node in self.exported.graph.nodes:
            if node.op == "placeholder":
                self.placeholder(node)
            elif node.op == "output":
                self.outputs = [self.env[result.name] for result in node.args[0]]
            else:
                handler = self.handlers.get(str(node.target))
                if handler is None:
                    raise TFLiteConversionError(f"{node.name}: no TFLite operator for {node.target}")
                handler(node, *node.args, **node.kwargs)
        return self.w.pack(self.inputs, self.outputs)

    def const(self, node) -> np.ndarray:
        name = node.name
        value = (
            self.exported.state_dict[self.params[name]]
            if name in self.params
            else self.exported.constants[name]
        )
        return value.detach().float().numpy()

    def result(self, node) -> int:
        """A new tensor for `node`'s output, recorded as its value."""
        self.shapes[node.name] = shape = tuple(node.meta["val"].shape)
        self.env[node.name] = self.w.tensor(_nhwc(shape), node.name)
        return self.env[node.name]

    def placeholder(self, node) -> None:
        if node.name in self.params or node.name in self.exported.constants:
            return
        if self.inputs:
            raise TFLiteConversionError("the model takes more than one input")
        self.inputs = [self.w.tensor(self.input_shape, "input")]
        self.shapes[node.name] = self.input_shape
        self.env[node.name] = nhwc = self.w.tensor(_nhwc(self.input_shape), "input_nhwc")
        perm = self.w.const_int([0, 2, 3, 1], "perm")
        self.w.op("TRANSPOSE", [self.inputs[0], perm], [nhwc], "TransposeOptions")

    def conv2d(self, node, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        w = self.w
        if list(dilation) != [1, 1]:
            raise TFLiteConversionError(f"{node.name}: dilated conv")
        weight = self.const(weight)
        out_ch, in_per_group, kh, kw = weight.shape
        bias = self.const(bias) if bias is not None else np.zeros(out_ch, np.float32)
        # TFLite's SAME pads at the end when the total is odd, torch on both sides: SAME only where they agree
        # (stride 1, odd kernel), else an explicit PAD and VALID
        same = all(s == 1 and 2 * p == k - 1 for k, s, p in zip((kh, kw), stride, padding))
        src = self.env[x.name]
        if not same and any(padding):
            n, c, h, wd = self.shapes[x.name]
            padded = w.tensor((n, h + 2 * padding[0], wd + 2 * padding[1], c), f"{node.name}_pad")
            pads = w.const_int([[0, 0], [padding[0]] * 2, [padding[1]] * 2, [0, 0]], "pads")
            w.op("PAD", [src, pads], [padded], "PadOptions")
            src = padded
        options = dict(
            padding=w.tfl.Padding.SAME if same else w.tfl.Padding.VALID, strideH=stride[0], strideW=stride[1],
            dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=self.none,
        )  # fmt: skip
        b = w.tensor((out_ch,), f"{node.name}_bias", bias)
        if groups == 1:
            f = w.tensor((out_ch, kh, kw, in_per_group), f"{node.name}_w", weight.transpose(0, 2, 3, 1))
            w.op("CONV_2D", [src, f, b], [self.result(node)], "Conv2DOptions", **options)
        elif in_per_group == 1 and groups == out_ch:
            f = w.tensor((1, kh, kw, out_ch), f"{node.name}_w", weight.transpose(1, 2, 3, 0))
            w.op(
                "DEPTHWISE_CONV_2D", [src, f, b], [self.result(node)], "DepthwiseConv2DOptions",
                depthMultiplier=1, **options,
            )  # fmt: skip
        else:
            raise TFLiteConversionError(f"{node.name}: grouped conv with {groups} groups")

    def gelu(self, node, x, approximate="none"):
        if approximate != "none":
            raise TFLiteConversionError(f"{node.name}: tanh-approximated GELU")
        self.w.op("GELU", [self.env[x.name]], [self.result(node)], "GeluOptions", approximate=False)

    def add(self, node, a, b):
        inputs = [self.env[a.name], self.env[b.name]]
        self.w.op("ADD", inputs, [self.result(node)], "AddOptions", fusedActivationFunction=self.none)

    def split(self, node, x, size, dim=0):
        shape = self.shapes[x.name]
        dim %= len(shape)
        sizes = [min(size, shape[dim] - start) for start in range(0, shape[dim], size)]
        outs = []
        for i, part in enumerate(sizes):
            piece = list(shape)
            piece[dim] = part
            outs.append(self.w.tensor(_nhwc(tuple(piece)), f"{node.name}_{i}"))
        axis = self.w.const_int(_axis(dim, len(shape)), "axis")
        inputs = [self.env[x.name], self.w.const_int(sizes, "sizes"), axis]
        self.w.op("SPLIT_V", inputs, outs, "SplitVOptions", numSplits=len(sizes))
        self.env[node.name] = outs

    def getitem(self, node, parts, index):
        self.env[node.name] = self.env[parts.name][index]
        self.shapes[node.name] = tuple(node.meta["val"].shape)

    def cat(self, node, parts, dim=0):
        axis = _axis(dim, len(self.shapes[parts[0].name]))
        inputs = [self.env[p.name] for p in parts]
        self.w.op(
            "CONCATENATION", inputs, [self.result(node)], "ConcatenationOptions", axis=axis,
            fusedActivationFunction=self.none,
        )  # fmt: skip

    def mean(self, node, x, dims, keepdim=False):
        if len(self.shapes[x.name]) != 4 or sorted(d % 4 for d in dims) != [2, 3]:
            raise TFLiteConversionError(f"{node.name}: mean over {dims} (only spatial means)")
        axes = self.w.const_int([1, 2], "axes")
        self.w.op(
            "MEAN", [self.env[x.name], axes], [self.result(node)], "ReducerOptions", keepDims=bool(keepdim)
        )

    def linear(self, node, x, weight, bias=None):
        if len(self.shapes[x.name]) != 2:
            raise TFLiteConversionError(f"{node.name}: linear on a {len(self.shapes[x.name])}-D input")
        weight = self.const(weight)
        bias = self.const(bias) if bias is not None else np.zeros(weight.shape[0], np.float32)
        wt = self.w.tensor(weight.shape, f"{node.name}_w", weight)
        b = self.w.tensor(bias.shape, f"{node.name}_bias", bias)
        self.w.op(
            "FULLY_CONNECTED", [self.env[x.name], wt, b], [self.result(node)], "FullyConnectedOptions",
            fusedActivationFunction=self.none,
        )  # fmt: skip

    def alias(self, node, x, *_):
        self.env[node.name], self.shapes[node.name] = self.env[x.name], self.shapes[x.name]


def tflite_bytes(model, input_shape=(1, 3, 224, 224)) -> bytes:
    """The fused eval-mode `model` as a float32 TFLite flatbuffer with an NCHW input of `input_shape`."""
    import torch

    exported = torch.export.export(model.eval(), (torch.zeros(input_shape),)).run_decompositions({})
    return _Converter(exported, input_shape).run()


def to_tflite(model, out: Path, input_shape=(1, 3, 224, 224)) -> Path:
    """`model` written to `out` as TFLite (see tflite_bytes), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(tflite_bytes(model, input_shape))
    os.replace(tmp, out)
    return out
