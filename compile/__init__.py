"""Compilation and export of fused RepNeXt models: TVM (host and ARM, tuned), Core ML, ONNX.

Nothing here imports tvm, coremltools or onnx until a function that needs it is called.
"""

from .artifact import ArtifactError, ArtifactMeta, VMRunner, export_artifact, load_artifact, run_artifact
from .build import BuildReport, build, build_with_report
from .coreml import CoreMLExport, export_coreml
from .engines import ENGINES, make_engine
from .export_common import ExportError, export_model
from .export_report import ExportDemo, export_report
from .host_bench import compare_engines, format_comparison
from .inspect_coreml import inspect_coreml
from .inspect_model import inspect_model
from .inspect_onnx import inspect_onnx
from .model_report import ModelReport
from .onnx_export import OnnxExport, export_onnx
from .relax_import import import_model
from .targets import TargetError, TargetSpec, preset_names, resolve_target
from .tune import TuneReport, tune
from .tuning_db import DatabaseMismatch
from .tvm_bench import host_comparison
from .tvm_rpc import Tracker, TrackerError, run_remote

__all__ = [
    "ENGINES",
    "ArtifactError",
    "ArtifactMeta",
    "BuildReport",
    "CoreMLExport",
    "DatabaseMismatch",
    "ExportDemo",
    "ExportError",
    "ModelReport",
    "OnnxExport",
    "TargetError",
    "TargetSpec",
    "Tracker",
    "TrackerError",
    "TuneReport",
    "VMRunner",
    "build",
    "build_with_report",
    "compare_engines",
    "export_artifact",
    "export_coreml",
    "export_model",
    "export_onnx",
    "export_report",
    "format_comparison",
    "host_comparison",
    "import_model",
    "inspect_coreml",
    "inspect_model",
    "inspect_onnx",
    "load_artifact",
    "make_engine",
    "preset_names",
    "resolve_target",
    "run_artifact",
    "run_remote",
    "tune",
]
