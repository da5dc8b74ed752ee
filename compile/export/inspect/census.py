"""A format-neutral census of an exported model: ops, conv kernels, blocks, I/O, and its rendering."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# Residual adds, per format; the block boundary that segment_blocks looks for.
ADD_OPS = {"add", "Add"}
SPLIT_OPS = {"split", "Split"}


@dataclass
class Node:
    """One compute op of an exported graph, in topological order (constants left out)."""

    op: str
    inputs: list[str]
    outputs: list[str]
    label: str = ""  # op name plus the conv kernel, e.g. "conv dw 7x7 s1"; used for block signatures

    def __post_init__(self) -> None:
        self.label = self.label or self.op


@dataclass
class TensorInfo:
    """A model input or output as the file declares it."""

    name: str
    dtype: str
    shape: tuple  # ints, or names for symbolic dimensions
    kind: str = "tensor"  # or "image"

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {self.kind} {self.dtype} [{dims}]"


def conv_label(
    op: str, kh: int, kw: int, strides: Sequence[int], groups: int, c_out: int, c_in_g: int
) -> str:
    """Canonical conv description: 'dw' for depthwise, 'g<N>' for other grouped convs, then kernel, stride."""
    kind = "dw " if groups > 1 and groups == c_out and c_in_g == 1 else ("" if groups == 1 else f"g{groups} ")
    s = f"s{strides[0]}" if len(set(strides)) == 1 else "s" + "x".join(map(str, strides))
    return f"{op} {kind}{kh}x{kw} {s}"


def segment_blocks(nodes: Sequence[Node]) -> list[list[Node]]:
    """RepNeXt blocks: from each Split of a tensor x to the residual Add that consumes x again.

    Works on either format because both keep tensor names on every edge; a Split with no matching Add
    (not a RepNeXt block) is ignored.
    """
    blocks = []
    for i, node in enumerate(nodes):
        if node.op not in SPLIT_OPS or not node.inputs:
            continue
        x = node.inputs[0]
        for j in range(i + 1, len(nodes)):
            if nodes[j].op in ADD_OPS and x in nodes[j].inputs:
                blocks.append(list(nodes[i : j + 1]))
                break
    return blocks


def block_signature(block: Sequence[Node]) -> tuple[tuple[str, int], ...]:
    """The multiset of op labels in one block, sorted, so identical blocks compare equal."""
    return tuple(sorted(Counter(n.label for n in block).items()))


@dataclass
class ModelReport:
    """Census of one exported file, filled by inspect_coreml or inspect_onnx."""

    format: str  # "coreml" or "onnx"
    path: str
    ops: Counter = field(default_factory=Counter)  # compute ops by type (Core ML const ops excluded)
    conv_kernels: Counter = field(default_factory=Counter)  # by "conv dw 3x3 s1" style label
    precision: str = "unknown"  # fp16, fp32 or mixed, from the weight dtypes
    weight_dtypes: Counter = field(default_factory=Counter)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # format-specific lines (opset, casts, ...)
    nodes: list[Node] = field(default_factory=list, repr=False)

    @property
    def blocks(self) -> list[list[Node]]:
        return segment_blocks(self.nodes)

    @property
    def batchnorm_ops(self) -> int:
        return self.ops.get("batch_norm", 0) + self.ops.get("BatchNormalization", 0)

    @property
    def variant(self) -> str | None:
        return self.metadata.get("variant")

    def published_latency(self) -> str:
        """The paper's iPhone 12 figure for this variant, worded as a reference, never as a measurement."""
        from repnext_core import VARIANTS

        spec = VARIANTS.get(self.variant or "")
        if spec is None:
            return f"published reference: none for variant {self.variant or 'unknown'!r} (M0-M5 only)"
        return (
            f"published reference (paper, not measured here): {self.variant} {spec.iphone12_ms:.2f} ms "
            "on iPhone 12, iOS 16, Core ML"
        )

    def to_dict(self) -> dict:
        """JSON-ready form (`repnext inspect --json`), blocks as lists of op labels."""
        return {
            "format": self.format,
            "path": self.path,
            "ops": dict(self.ops),
            "batchnorm_ops": self.batchnorm_ops,
            "conv_kernels": dict(self.conv_kernels),
            "precision": self.precision,
            "weight_dtypes": dict(self.weight_dtypes),
            "inputs": [
                {"name": t.name, "kind": t.kind, "dtype": t.dtype, "shape": list(t.shape)}
                for t in self.inputs
            ],
            "outputs": [
                {"name": t.name, "kind": t.kind, "dtype": t.dtype, "shape": list(t.shape)}
                for t in self.outputs
            ],
            "metadata": dict(self.metadata),
            "details": dict(self.details),
            "blocks": [[n.label for n in b] for b in self.blocks],
            "published_reference": self.published_latency(),
        }

    def render(self) -> str:
        """Plain-text report for `repnext inspect`."""
        title = {"coreml": "Core ML ML program", "onnx": "ONNX model"}.get(self.format, self.format)
        lines = [f"{title}: {self.path}"]
        lines += [f"  {k}: {v}" for k, v in self.details.items()]
        wd = ", ".join(f"{k} {v}" for k, v in sorted(self.weight_dtypes.items()))
        lines.append(f"  precision: {self.precision} (weight tensors: {wd or 'none'})")
        lines += [f"  input  {t}" for t in self.inputs] + [f"  output {t}" for t in self.outputs]
        if self.metadata:
            lines.append("  metadata:")
            lines += [f"    {k} = {v}" for k, v in sorted(self.metadata.items())]
        lines.append(f"  ops ({sum(self.ops.values())}): " + _counts(self.ops))
        lines.append(f"  BatchNorm ops: {self.batchnorm_ops}")
        lines.append("  conv kernels: " + _counts(self.conv_kernels))
        blocks = self.blocks
        groups: dict[tuple, list[list[Node]]] = {}
        for b in blocks:
            groups.setdefault(block_signature(b), []).append(b)
        lines.append(f"  blocks (split .. residual add): {len(blocks)}")
        for members in sorted(groups.values(), key=len, reverse=True):
            in_order = Counter(n.label for n in members[0])  # first-seen order reads like the block
            ops = ", ".join(k + (f" x{c}" if c > 1 else "") for k, c in in_order.items())
            lines.append(f"    {len(members)} x [{ops}]")
        lines.append("  " + self.published_latency())
        return "\n".join(lines)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"
