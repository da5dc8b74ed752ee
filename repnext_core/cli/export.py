"""`repnext export` and `repnext inspect`: Core ML / ONNX builds from the command line.

Only argparse is imported at registration; torch, coremltools and onnx load inside the handlers, so
`repnext --help` works without the `export` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repnext_core.cli import options

FORMAT_CHOICES = ("coreml", "onnx")


def _checkpoint_label(path: str | None) -> str:
    """File name plus a short sha256, so the package records exactly which weights it carries."""
    from repnext_core.files import file_sha256

    if not path:
        return "none (random weights)"
    return f"{Path(path).name} (sha256 {file_sha256(path)[:16]})"


def _option_errors(args: argparse.Namespace) -> list[str]:
    """Options that do not apply to the chosen format, caught before any model is built."""
    errors = []
    if args.format == "onnx":
        if args.precision == "fp16":
            errors.append(
                "--precision fp16 is Core ML only; the ONNX export is fp32 (the parity-checked form)"
            )
        if args.image_input:
            errors.append("--image-input is Core ML only (ONNX takes a normalized tensor)")
        if args.min_target is not None:
            errors.append("--min-target is Core ML only")
    else:
        if args.dynamic_batch:
            errors.append("--dynamic-batch is ONNX only (the Core ML package has a fixed input shape)")
        if args.opset is not None:
            errors.append("--opset is ONNX only")
    return errors


def export(args: argparse.Namespace) -> int:
    from repnext_core import create_model
    from repnext_core.compile.export.common import ExportError, check_output_path
    from repnext_core.compile.export.dispatch import export_model
    from repnext_core.compile.export.inspect.dispatch import inspect_model

    errors = _option_errors(args)
    if errors:
        for e in errors:
            print(f"repnext export: error: {e}", file=sys.stderr)
        return 2
    check_output_path(args.out, args.format)  # ValueError -> the CLI's "error:" line, exit 2
    h, w = args.input_size
    options: dict = {"input_shape": (1, 3, h, w)}
    if args.format == "coreml":
        from repnext_core.compile.export.coreml_export import check_min_target

        options.update(
            precision=args.precision or "fp16", min_target=check_min_target(args.min_target or "iOS16")
        )
        options["image_input"] = args.image_input
    else:
        options.update(opset=args.opset or 18, dynamic_batch=args.dynamic_batch)
    if not args.checkpoint:
        print(f"no --checkpoint: exporting {args.model} with random weights (structure and speed only)")
    model = create_model(
        args.model, fused=True, pretrained=args.checkpoint, trust_checkpoint=args.trust_checkpoint
    )
    options["metadata"] = {"variant": args.model, "checkpoint": _checkpoint_label(args.checkpoint)}
    try:
        result = export_model(model, args.out, args.format, **options)
    except ExportError as e:
        print(f"repnext export: error: {e}", file=sys.stderr)
        print(f"repnext export: nothing was written to {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {result.path} ({args.format}) in {result.seconds:.1f} s")
    if args.format == "onnx":
        print(
            f"onnxruntime vs PyTorch at batch {', '.join(map(str, result.batches))}: max |diff| = "
            f"{result.max_abs_diff:.2e} (bound {result.tolerance:.2e})"
        )
    print(inspect_model(result.path).render())
    return 0


def inspect(args: argparse.Namespace) -> int:
    from repnext_core.compile.export.inspect.dispatch import inspect_model

    report = inspect_model(args.path)  # FileNotFoundError / ValueError -> exit 2 in the CLI
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` and `inspect` subcommands to the `repnext` parser."""
    p = subparsers.add_parser(
        "export",
        help="export a fused variant to Core ML (.mlpackage) or ONNX (.onnx), atomically",
        description="Build the variant's fused inference form (from --checkpoint, else random weights) and "
        "write it as a Core ML ML program or a single-file ONNX model. The ONNX file is checked with "
        "onnx.checker and onnxruntime against PyTorch before it is written; an error leaves nothing behind.",
    )
    options.add_model(p)
    p.add_argument("--format", required=True, choices=FORMAT_CHOICES, help="coreml or onnx")
    p.add_argument("--out", required=True, help="output path: .mlpackage (coreml) or .onnx (onnx)")
    options.add_checkpoint(p)
    p.add_argument("--precision", choices=("fp16", "fp32"), help="Core ML compute precision (default fp16)")
    p.add_argument("--min-target", help="Core ML minimum deployment target (default iOS16)")
    p.add_argument(
        "--image-input",
        action="store_true",
        help="Core ML: take an RGB image and apply the ImageNet mean/std inside the model",
    )
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: symbolic batch dimension")
    p.add_argument("--opset", type=int, help="ONNX opset, >= 18 (default 18)")
    p.add_argument("--input-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.set_defaults(func=export)

    p = subparsers.add_parser(
        "inspect",
        help="op census of an exported .mlpackage or .onnx (ops, conv kernels, blocks, precision, I/O)",
    )
    p.add_argument("path", help="an .mlpackage or .onnx written by `repnext export`")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=inspect)
