"""`repnext` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from .checkpoint import CheckpointError

# Subcommands that live beside their implementation; each module exposes register(subparsers).
PLUGINS = (
    "repnext_core.kernels.cli",
    "repnext_core.compile.tvm_cli",
    "repnext_core.compile.export_cli",
    "repnext_core.compile.device_cli",
)


def _info(args: argparse.Namespace) -> int:
    from .model import VARIANTS
    from .profile import count_macs, count_params
    from .registry import create_model
    from .table import format_table

    rows = []
    for name in args.models or VARIANTS:
        spec = VARIANTS[name]
        train, fused = create_model(name), create_model(name, fused=True)
        rows.append(
            [
                name,
                f"{count_params(train):,}",
                f"{count_params(fused):,} ({spec.params_fused_m}M)",
                f"{count_macs(fused) / 1e9:.3f}G ({spec.macs_g}G)",
                f"{spec.iphone12_ms:.2f}",
                f"{spec.top1_distill} / {spec.top1_plain}",
            ]
        )
    headers = [
        "model",
        "params train",
        "params fused (paper)",
        "MACs fused (paper)",
        "iPhone 12 ms (paper)",
        "top-1 distill / plain (paper)",
    ]
    print(format_table(headers, rows))
    print("Params and MACs are counted on our modules at 224x224; latency and top-1 are the paper's figures.")
    return 0


def _load_training(args: argparse.Namespace):
    from .registry import create_model
    from .testing import random_model

    if args.checkpoint:
        return create_model(
            args.model, pretrained=args.checkpoint, trust_checkpoint=args.trust_checkpoint
        ).eval()
    print(
        f"no --checkpoint: using seeded random weights and randomized BatchNorm statistics for {args.model}"
    )
    return random_model(args.model, seed=args.seed)


def _report(check, size: Sequence[int]) -> int:
    status = "OK" if check.ok else "FAILED"
    print(
        f"max |fused - train| = {check.max_abs_diff:.3e} (max |train| = {check.max_abs_ref:.3f}, "
        f"tolerance {check.tolerance:.3e}) at {size[0]}x{size[1]}: {status}"
    )
    return 0 if check.ok else 1


def _fuse(args: argparse.Namespace) -> int:
    from .checkpoint import save_atomic
    from .reparam import reparameterize
    from .verify import verify_fusion

    model = _load_training(args)
    fused = reparameterize(model)
    rc = _report(verify_fusion(model, fused, args.input_size), args.input_size)
    if rc:
        print("not writing a fused model that does not match its training form", file=sys.stderr)
        return rc
    save_atomic({"model": fused.state_dict(), "variant": args.model, "fused": True}, args.out)
    print(
        f"wrote {args.out} (load it with create_model({args.model!r}, fused=True, pretrained={str(args.out)!r}))"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .reparam import count_batchnorms, reparameterize
    from .verify import verify_fusion

    model = _load_training(args)
    fused = reparameterize(model)
    print(f"BatchNorm modules: {count_batchnorms(model)} before fusing, {count_batchnorms(fused)} after")
    return _report(verify_fusion(model, fused, args.input_size), args.input_size)


def _demo(args: argparse.Namespace) -> int:
    from .demo import fusion_report, run_demo

    if args.quick:
        print(fusion_report(args.model, args.input_size, threads=args.threads))
    else:
        run_demo(args.model, args.input_size, args.threads, args.out)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from .checkpoint import write_text_atomic
    from .compile.host_bench import compare_engines, format_comparison

    engines = args.engines.split(",") if args.engines else None
    kwargs = {"engines": engines} if engines else {}
    result = compare_engines(
        args.model, threads=args.threads, input_size=args.input_size, repeat=args.repeat, **kwargs
    )
    print(format_comparison(result))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def _model_arg(p: argparse.ArgumentParser) -> None:
    from .model import VARIANTS

    p.add_argument("model", choices=list(VARIANTS), metavar="MODEL", help=f"one of: {', '.join(VARIANTS)}")


def _checkpoint_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--checkpoint",
        required=required,
        help="the authors' training checkpoint (.pth / .pth.tar: {'model': sd}, {'state_dict': sd} or sd)",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow arbitrary pickled objects in the file (it can run code: only for files you trust)",
    )
    p.add_argument("--input-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand whose module is present."""
    parser = argparse.ArgumentParser(
        prog="repnext",
        description="RepNeXt: fuse training checkpoints exactly, check them, and build them for GPUs, "
        "ARM CPUs and iPhones. Every command works offline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "info", help="variants: params (training / fused), MACs, the paper's latency and top-1"
    )
    p.add_argument("models", nargs="*", help="variants to list (default: all)")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "fuse",
        help="fuse a training checkpoint into the inference form, verify it, write it atomically",
        description="Load the authors' checkpoint, reparameterize it (no BatchNorm left), check the fused "
        "model against the original on a random input, and save the fused state_dict. The output is written "
        "to a temp file and renamed, so an interrupted run leaves nothing behind.",
    )
    _model_arg(p)
    _checkpoint_args(p, required=True)
    p.add_argument("--out", required=True, help="where to write the fused checkpoint (.pth)")
    p.set_defaults(func=_fuse)

    p = sub.add_parser("verify", help="check fused vs training form (random weights without --checkpoint)")
    _model_arg(p)
    _checkpoint_args(p, required=False)
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "demo",
        help="the main job on built-in defaults (what `make demo` runs)",
        description="Fuse and verify RepNeXt-M1 (seeded random weights), build it with TVM for this CPU "
        "(tuned from the shipped database) and time it beside torch and onnxruntime, cross-build it for "
        "cortex-a76, and export it to Core ML and ONNX. Offline, a few minutes.",
    )
    p.add_argument("--model", default="repnext_m1")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument(
        "--threads", type=int, default=None, help="threads for every engine (default: torch's, TVM 1)"
    )
    p.add_argument("--out", default="out/demo", help="where the built and exported artifacts go")
    p.add_argument("--quick", action="store_true", help="only the fusion table (no TVM build, no export)")
    p.set_defaults(func=_demo)

    from .compile.engines import DEFAULT_ENGINES, ENGINES

    p = sub.add_parser(
        "bench",
        help="time every engine (torch, onnxruntime, TVM) on one variant, side by side on this CPU",
        description="Builds each engine for the same seeded model and input, checks its output against eager "
        "fused PyTorch, then times all of them in interleaved rounds and prints ms, speedup, GFLOP/s and the "
        "fraction of this machine's sgemm peak measured in the same run.",
    )
    _model_arg(p)
    p.add_argument(
        "--engines",
        help=f"comma-separated, from {','.join(ENGINES)} (default: {','.join(DEFAULT_ENGINES)})",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--repeat", type=int, default=20, help="timed rounds per engine")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_bench)

    for name in PLUGINS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `repnext` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CheckpointError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"repnext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"repnext {args.command}: interrupted; nothing partial was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
