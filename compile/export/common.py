"""What every exporter shares: format and output-path checks, the fused-model guard, default metadata."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from repnext_core.model import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("repnext_core.compile.export")

FORMATS: dict[str, str] = {"coreml": ".mlpackage", "onnx": ".onnx"}  # format -> required output suffix
TENSOR_NORMALIZATION = (
    f"float RGB NCHW input, normalized before the call: (pixel / 255 - mean) / std, "
    f"mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}"
)


# Deprecation notices raised inside torch.export and coremltools themselves, hundreds per conversion; there
# is nothing a user of this package can change about them.
_THIRD_PARTY_NOISE = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (DeprecationWarning, r"Function _TORCH_OPS_REGISTRY"),
)


@contextmanager
def quiet_third_party_warnings() -> Iterator[None]:
    """Silence the converters' internal deprecation notices (only those) while exporting."""
    with warnings.catch_warnings():
        for category, message in _THIRD_PARTY_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


class ExportError(RuntimeError):
    """An export that was attempted and failed (conversion, verification); nothing was written."""


def check_format(fmt: str) -> str:
    """Return `fmt` if it is a supported export format, else a ValueError that lists the valid ones."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return fmt


def check_output_path(path: str | os.PathLike, fmt: str) -> Path:
    """Validate an output path before any work: right suffix, existing writable parent, no clash."""
    suffix = FORMATS[check_format(fmt)]
    out = Path(path)
    if out.suffix != suffix:
        raise ValueError(f"{fmt} output must end with {suffix!r}, got {str(out)!r}")
    parent = out.parent
    if not parent.is_dir():
        raise ValueError(f"output directory {str(parent)!r} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output directory {str(parent)!r} is not writable")
    if out.is_dir() and fmt != "coreml":
        raise ValueError(f"{str(out)!r} is a directory; {fmt} writes a single file")
    return out


@dataclass
class PreparedModel:
    """The module that is actually exported, and whether it had to be fused first."""

    model: nn.Module
    auto_fused: bool
    batchnorms_before: int


def prepare_model(model: nn.Module) -> PreparedModel:
    """Copy `model` into eval mode, fusing it (with a warning) if it is still in its training form.

    Works on a copy so that the caller's model keeps its mode and weights. The token mixers are pinned to
    the plain PyTorch path so that tracing never records a Triton kernel call.
    """
    from repnext_core import count_batchnorms, is_fused, reparameterize, set_backend

    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    n_bn = count_batchnorms(model)
    auto_fused = not is_fused(model)
    if auto_fused:
        log.warning(
            "model is not fused (%d BatchNorm modules): exporting its exact inference form from "
            "repnext_core.reparameterize (the input model is left as it was)",
            n_bn,
        )
        out = reparameterize(model)
    else:
        out = copy.deepcopy(model).eval()
    left = count_batchnorms(out)
    if left:
        raise ExportError(f"{left} BatchNorm modules are left after reparameterize; only fused models export")
    set_backend(out, "torch")
    return PreparedModel(out.eval(), auto_fused, n_bn)


def build_metadata(
    model: nn.Module, fmt: str, normalization: str, extra: dict[str, Any] | None, **fields: Any
) -> dict[str, str]:
    """String key/value metadata for the exported file; caller keys override the defaults."""
    from repnext_core import __version__

    meta: dict[str, str] = {
        "variant": getattr(model, "variant", None) or "custom",
        "checkpoint": "none (random weights)",
        "input_normalization": normalization,
        "format": fmt,
        "producer": f"repnext_core {__version__}",
    }
    meta.update({k: str(v) for k, v in fields.items()})
    meta.update({str(k): str(v) for k, v in (extra or {}).items() if v is not None})
    return meta
