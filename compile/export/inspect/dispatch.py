"""One entry point that inspects an exported model of either format, chosen by its path."""

from __future__ import annotations

import os
from pathlib import Path

from repnext_core.compile.export.inspect.census import ModelReport

SUFFIXES = {".mlpackage": "coreml", ".onnx": "onnx"}


def detect_format(path: str | os.PathLike) -> str:
    """'coreml' or 'onnx' from the path's suffix, else a ValueError that lists what is understood."""
    fmt = SUFFIXES.get(Path(path).suffix)
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}; expected one of: "
            + ", ".join(f"{s} ({f})" for s, f in SUFFIXES.items())
        )
    return fmt


def inspect_model(path: str | os.PathLike) -> ModelReport:
    """Census of an exported .mlpackage or .onnx (see ModelReport.render for the text form)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no such file or package: {str(path)!r}")
    if detect_format(path) == "coreml":
        from repnext_core.compile.export.inspect.coreml_inspect import inspect_coreml

        return inspect_coreml(path)
    from repnext_core.compile.export.inspect.onnx_inspect import inspect_onnx

    return inspect_onnx(path)
