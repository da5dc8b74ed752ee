"""Triton GPU kernels for the fused RepNeXt depthwise token mixers, each with a plain PyTorch reference.

Importing this package never needs Triton: the ops raise a clear error when it is missing, and the
`*_reference` functions always work. Each op is also a `torch.library` custom op, `torch.ops.repnext.*`
(kernels/ops.py), so that torch.compile and torch.export keep it as one node.
"""

from ._common import triton_available
from .chunk_conv import chunk_dwconv, chunk_dwconv_reference
from .copy_conv import copy_dwconv, copy_dwconv_reference
from .dwconv import dwconv2d, dwconv2d_reference
from .ops import op_overloads
from .separable import separable_dwconv2d, separable_dwconv2d_reference


def run_gpu_benchmark(out_md, quick: bool = False) -> int:
    """The GPU benchmark (`make bench-gpu`): see repnext_core.kernels.gpu_bench.run_gpu_benchmark."""
    from .gpu_bench import run_gpu_benchmark as run

    return run(out_md, quick)


__all__ = [
    "chunk_dwconv",
    "chunk_dwconv_reference",
    "copy_dwconv",
    "copy_dwconv_reference",
    "dwconv2d",
    "dwconv2d_reference",
    "op_overloads",
    "run_gpu_benchmark",
    "separable_dwconv2d",
    "separable_dwconv2d_reference",
    "triton_available",
]
