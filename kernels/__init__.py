"""Triton GPU kernels for the fused RepNeXt depthwise token mixers, each with a plain PyTorch reference.

Importing this package never needs Triton: the ops raise a clear error when it is missing, and the
`*_reference` functions always work.
"""

from ._common import triton_available
from .chunk_conv import chunk_dwconv, chunk_dwconv_reference
from .copy_conv import copy_dwconv, copy_dwconv_reference
from .dwconv import dwconv2d, dwconv2d_reference
from .separable import separable_dwconv2d, separable_dwconv2d_reference

__all__ = [
    "chunk_dwconv",
    "chunk_dwconv_reference",
    "copy_dwconv",
    "copy_dwconv_reference",
    "dwconv2d",
    "dwconv2d_reference",
    "separable_dwconv2d",
    "separable_dwconv2d_reference",
    "triton_available",
]
