"""`repnext bench` and `repnext demo`: engines side by side on this CPU, and the main job on defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from repnext_core.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the bench and demo subcommands."""
    from repnext_core.compile.bench.engines import DEFAULT_ENGINES, ENGINES

    p = subparsers.add_parser(
        "bench",
        help="time every engine (torch, onnxruntime, TVM) on one variant side by side on this CPU, or the "
        "Triton kernels and fused models on a GPU (--device cuda)",
        description="CPU: builds each engine for the same seeded model and input, checks its output against "
        "eager fused PyTorch, then times all of them in interleaved rounds and prints ms, speedup, GFLOP/s and "
        "the fraction of this machine's sgemm peak measured in the same run. --device cuda: every token mixer "
        "of M0-M5 (ours vs PyTorch multi-branch vs one conv; fp16/fp32, NCHW/channels_last, batch 1/64) and "
        "fused M0/M1/M4 (eager, CUDA graphs, torch.compile with and without our ops), outputs checked, in "
        "under 5 minutes, written to --out; without CUDA it checks its own plumbing and exits 0. "
        "--target cortex-a76|cortex-a55|cortex-a53: aarch64 instructions (and, for cortex-a76, llvm-mca "
        "cycles) per inference of each engine counted under qemu-user, outputs checked first: proxies for "
        "an ARM board, not time (`make bench-arm` prepares everything once).",
    )
    options.add_model(p, optional=True)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda")
    p.add_argument("--quick", action="store_true", help="cuda: M0 shapes and model only (about 90 s)")
    p.add_argument("--out", default="bench/GPU_RESULTS.md", help="cuda: the report to write")
    p.add_argument(
        "--engines",
        help=f"comma-separated; host: {','.join(ENGINES)} (default: {','.join(DEFAULT_ENGINES)}); ARM "
        "--target: tvm,tvm-fp16,ncnn,ncnn-fp16,ort,mnn,mnn-fp16 (default: all the core can run)",
    )
    p.add_argument(
        "--target",
        default="host",
        help="host (default: timed on this CPU) or an ARM core to count under emulation: cortex-a76 "
        "(counts + modeled cycles), cortex-a55, cortex-a53 (counts only)",
    )
    p.add_argument("--k", type=int, default=3, help="ARM: inferences in the long counted run (default 3)")
    p.add_argument("--no-mca", action="store_true", help="ARM: skip the llvm-mca cycle model")
    p.add_argument(
        "--hotspots",
        type=int,
        default=0,
        metavar="N",
        help="ARM, cortex-a76: also print the N kernels of our build with the most modeled cycles "
        "(the JSON keeps the top 40 either way)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--repeat", type=int, default=20, help="timed rounds per engine")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=bench)

    p = subparsers.add_parser(
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
    p.set_defaults(func=demo)


def bench(args: argparse.Namespace) -> int:
    import json

    if args.device == "cuda":
        from repnext_core.kernels.gpu_bench import run_gpu_benchmark

        return run_gpu_benchmark(Path(args.out), quick=args.quick)
    if args.target != "host":
        return _count_on_arm(args)
    from repnext_core.compile.bench.harness import compare_engines, format_comparison
    from repnext_core.files import write_text_atomic

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


def _count_on_arm(args: argparse.Namespace) -> int:
    import sys

    from repnext_core.compile.bench.arm.bench import count_engines, format_counts
    from repnext_core.compile.bench.arm.hotspots import format_hotspots

    if args.threads != 1:
        raise ValueError("the counted ARM bench runs 1 thread (the plugin's counts are exact for one thread)")
    result = count_engines(
        args.model,
        args.target,
        args.engines.split(",") if args.engines else None,
        k=args.k,
        model_cycles=not args.no_mca,
        json_out=args.json,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_counts(result))
    for row in result["rows"] if args.hotspots else ():
        if row.get("hotspots"):
            print(format_hotspots(row["engine"], row["hotspots"], row["modeled_cycles"], args.hotspots))
    if args.json:
        print(f"wrote {args.json}")
    return 0 if all("per_inference" in r for r in result["rows"]) else 1


def demo(args: argparse.Namespace) -> int:
    from repnext_core.demo import fusion_report, run_demo

    if args.quick:
        print(fusion_report(args.model, args.input_size, threads=args.threads))
    else:
        run_demo(args.model, args.input_size, args.threads, args.out)
    return 0
