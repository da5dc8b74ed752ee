"""One entry point over the exporters: the format name picks Core ML or ONNX."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from repnext_core.compile.export.common import check_format
from repnext_core.compile.export.coreml_export import export_coreml
from repnext_core.compile.export.onnx_export import export_onnx


def export_model(model: nn.Module, path: str | os.PathLike, fmt: str, **options: Any):
    """Export to `fmt` ('coreml' or 'onnx') with that exporter's options; one entry point for callers."""
    exporters = {"coreml": export_coreml, "onnx": export_onnx}
    return exporters[check_format(fmt)](model, path, **options)
