"""Compilation, export and measurement of fused RepNeXt models (see compile/README.md for the map):

- tvm/     Relax import and the one pass pipeline (prepare -> layout -> fast-math -> conv schedules ->
           weight packing), targets, build, artifacts.
- tune/    MetaSchedule tuning and conv tile search into per-(variant, shape, target) databases;
           databases/ holds the shipped ones.
- device/  the Python side of native/: runtime builds, the aarch64 TVM runtime, running artifacts
           natively or under qemu, the RPC tracker client and servers.
- export/  Core ML and ONNX exports, and inspect/ for their op census.
- bench/   the benchmark harness and its engines.

Imports go one way: bench -> {tvm, tune, export, device} -> repnext_core's model and utilities.
Nothing here imports tvm, coremltools or onnx until a function that needs it is called.
"""

from repnext_core.compile.bench.engines import ENGINES, make_engine
from repnext_core.compile.bench.harness import compare_engines, format_comparison
from repnext_core.compile.device.tracker import Tracker, TrackerError, run_remote
from repnext_core.compile.export.common import ExportError
from repnext_core.compile.export.coreml_export import CoreMLExport, export_coreml
from repnext_core.compile.export.dispatch import export_model
from repnext_core.compile.export.inspect.census import ModelReport
from repnext_core.compile.export.inspect.coreml_inspect import inspect_coreml
from repnext_core.compile.export.inspect.dispatch import inspect_model
from repnext_core.compile.export.inspect.onnx_inspect import inspect_onnx
from repnext_core.compile.export.onnx_export import OnnxExport, export_onnx
from repnext_core.compile.export.report import ExportReport, export_report
from repnext_core.compile.tune.database import DatabaseMismatch
from repnext_core.compile.tune.tuner import TuneReport, tune
from repnext_core.compile.tvm.artifact import (
    ArtifactError,
    ArtifactMeta,
    VMRunner,
    export_artifact,
    load_artifact,
    run_artifact,
)
from repnext_core.compile.tvm.build import BuildReport, build, build_artifact, build_with_report
from repnext_core.compile.tvm.importer import import_model
from repnext_core.compile.tvm.targets import TargetError, TargetSpec, preset_names, resolve_target

__all__ = [
    "ENGINES",
    "ArtifactError",
    "ArtifactMeta",
    "BuildReport",
    "CoreMLExport",
    "DatabaseMismatch",
    "ExportError",
    "ExportReport",
    "ModelReport",
    "OnnxExport",
    "TargetError",
    "TargetSpec",
    "Tracker",
    "TrackerError",
    "TuneReport",
    "VMRunner",
    "build",
    "build_artifact",
    "build_with_report",
    "compare_engines",
    "export_artifact",
    "export_coreml",
    "export_model",
    "export_onnx",
    "export_report",
    "format_comparison",
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
