"""The kernels as `torch.library` custom ops in the `repnext` namespace, each with a fake implementation.

    torch.ops.repnext.chunk_dwconv(x, w3, b3, w7, b7, w1x11, b1x11, w11x1, b11x1)
    torch.ops.repnext.copy_dwconv(x, w3, b3, w7, b7)
    torch.ops.repnext.dwconv2d(x, weight, bias, stride)
    torch.ops.repnext.separable_dwconv2d(x, w_row, b_row, w_col, b_col)

Registered with `torch.library.custom_op` (the kernel launched from Python) plus `register_fake`: that is the
form torch._dynamo, torch.export and torch.compile (Inductor and aot_eager) all take without a graph break,
and the one all of them can be tested with on CPU under TRITON_INTERPRET=1 (a `triton_op` cannot be compiled
there; see the README's GPU section). To Inductor each op is one opaque call, with its autotuned launch.

The fake implementations run the same argument checks and allocate the output through the same
`new_output` as the real launch, so shapes, dtypes and strides (channels_last in -> channels_last out)
propagate exactly, and a bad argument fails at trace time with the eager error message. Tensor arguments
that the eager API requires are still typed `Tensor?` here so that a missing one reaches the planner's
clear message instead of the dispatcher's type error.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.library import custom_op, register_fake

from . import _common as common
from .chunk_conv import plan_chunk
from .copy_conv import plan_copy
from .dwconv import plan_dwconv
from .separable import plan_separable

NAMESPACE = "repnext"
OPS = ("chunk_dwconv", "copy_dwconv", "dwconv2d", "separable_dwconv2d")


@custom_op(f"{NAMESPACE}::chunk_dwconv", mutates_args=())
def chunk_dwconv_op(
    x: Tensor,
    w3: Optional[Tensor],  # noqa: UP045 - torch.library parses the annotations, and wants Optional
    b3: Optional[Tensor],  # noqa: UP045
    w7: Optional[Tensor],  # noqa: UP045
    b7: Optional[Tensor],  # noqa: UP045
    w1x11: Optional[Tensor],  # noqa: UP045
    b1x11: Optional[Tensor],  # noqa: UP045
    w11x1: Optional[Tensor],  # noqa: UP045
    b11x1: Optional[Tensor],  # noqa: UP045
) -> Tensor:
    return common.launch(plan_chunk(x, w3, b3, w7, b7, w1x11, b1x11, w11x1, b11x1))


@register_fake(f"{NAMESPACE}::chunk_dwconv")
def _chunk_dwconv_fake(x, w3, b3, w7, b7, w1x11, b1x11, w11x1, b11x1):
    return plan_chunk(x, w3, b3, w7, b7, w1x11, b1x11, w11x1, b11x1).out


@custom_op(f"{NAMESPACE}::copy_dwconv", mutates_args=())
def copy_dwconv_op(
    x: Tensor,
    w3: Optional[Tensor],  # noqa: UP045
    b3: Optional[Tensor],  # noqa: UP045
    w7: Optional[Tensor],  # noqa: UP045
    b7: Optional[Tensor],  # noqa: UP045
) -> Tensor:
    return common.launch(plan_copy(x, w3, b3, w7, b7))


@register_fake(f"{NAMESPACE}::copy_dwconv")
def _copy_dwconv_fake(x, w3, b3, w7, b7):
    return plan_copy(x, w3, b3, w7, b7).out


@custom_op(f"{NAMESPACE}::dwconv2d", mutates_args=())
def dwconv2d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int) -> Tensor:  # noqa: UP045
    return common.launch(plan_dwconv(x, weight, bias, stride))


@register_fake(f"{NAMESPACE}::dwconv2d")
def _dwconv2d_fake(x, weight, bias, stride):
    return plan_dwconv(x, weight, bias, stride).out


@custom_op(f"{NAMESPACE}::separable_dwconv2d", mutates_args=())
def separable_dwconv2d_op(
    x: Tensor,
    w_row: Optional[Tensor],  # noqa: UP045
    b_row: Optional[Tensor],  # noqa: UP045
    w_col: Optional[Tensor],  # noqa: UP045
    b_col: Optional[Tensor],  # noqa: UP045
) -> Tensor:
    return common.launch(plan_separable(x, w_row, b_row, w_col, b_col))


@register_fake(f"{NAMESPACE}::separable_dwconv2d")
def _separable_dwconv2d_fake(x, w_row, b_row, w_col, b_col):
    return plan_separable(x, w_row, b_row, w_col, b_col).out


def op_overloads() -> dict[str, torch._ops.OpOverload]:
    """name -> the `.default` overload, as it appears in traced and exported graphs."""
    return {name: getattr(getattr(torch.ops, NAMESPACE), name).default for name in OPS}
