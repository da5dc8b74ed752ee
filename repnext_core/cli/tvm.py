"""`repnext tune | build | run | profile`: the TVM path from a variant name to a deployable artifact."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repnext_core.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the tune, build, run and profile subcommands."""
    p = subparsers.add_parser(
        "tune",
        help="tune a variant's kernels for a target with MetaSchedule (resumable database)",
        description="Measures candidate schedules for every kernel of the fused model and records them in a "
        "JSON database per (variant, input size, target) under --db: first the register tiles of the "
        "hand-scheduled conv kernels, then MetaSchedule trials for the other kernels, all timed here or, "
        "with --tracker/--key, on the board. Running it "
        "again resumes: new trials extend the database. Ctrl-C keeps every trial measured so far. For an ARM "
        "board, start `repnext-rpc-server --tracker HOST:PORT --key KEY` (see `repnext build-runtime`) on the "
        "board and pass --tracker/--key.",
    )
    options.add_model(p, allow_toy=True)
    options.add_target(p)
    options.add_precision(p)
    p.add_argument("--trials", type=int, default=64, help="trials to add to the database (default 64)")
    options.add_tracker(p, "measure candidates on the board behind this RPC tracker")
    p.add_argument(
        "--tile-candidates",
        type=int,
        default=12,
        help="register tiles timed per conv kernel not yet on record (default 12; 0 skips)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the search")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=tune)

    p = subparsers.add_parser(
        "build",
        help="compile a variant for a target into an artifact directory (model.so + meta.json)",
        description="Compiles the fused model with TVM, applying the tuning database for this variant, input "
        "size and target when there is one (see `repnext tune`), and writes OUT/model.so (OUT/objects/*.o for "
        "apple-arm64) and OUT/meta.json atomically.",
    )
    options.add_model(p, allow_toy=True)
    options.add_target(p)
    options.add_checkpoint(p)
    options.add_precision(p)
    p.add_argument("--no-db", action="store_true", help="ignore tuning databases (default schedules)")
    p.add_argument("--out", required=True, help="artifact directory to write (replaced atomically)")
    p.set_defaults(func=build)

    p = subparsers.add_parser(
        "run",
        help="run a built artifact on an input (.npy) on this machine, under qemu, or over RPC",
        description="Runs OUT/model.so once on --input (default: a seeded random image) and prints the top "
        "classes. Artifacts for this machine run in-process; ARM artifacts run on a board via --tracker/--key, "
        "or here under qemu-user with the native runner (--qemu).",
    )
    p.add_argument("artifact", metavar="DIR", help="artifact directory written by `repnext build`")
    p.add_argument("--input", help="input array (.npy) of the artifact's shape (default: seeded random)")
    p.add_argument("--output", help="write the output array here (.npy)")
    p.add_argument("--threads", type=int, help="TVM runtime threads (default: TVM's choice)")
    p.add_argument(
        "--qemu",
        action="store_true",
        help="run an aarch64 artifact here under qemu-aarch64 with the native runner (slow; no timings)",
    )
    options.add_tracker(p, "run on the board behind this RPC tracker")
    p.set_defaults(func=run)

    p = subparsers.add_parser(
        "profile",
        help="time each kernel of a built host artifact (where the time goes)",
        description="Runs OUT/model.so on a seeded random input with the Relax VM's instrument hook and prints "
        "each kernel's calls and median time per inference, slowest first, beside the whole run's time with "
        "and without the hook; convs and matmuls also with their GFLOP/s and its fraction of a torch sgemm "
        "timed in the same process at the same thread count. Host artifacts only (build one with "
        "`repnext build MODEL --target host`).",
    )
    p.add_argument("artifact", metavar="DIR", help="artifact directory written by `repnext build`")
    p.add_argument("--threads", type=int, help="TVM runtime threads (default: TVM's choice)")
    p.add_argument("--runs", type=int, default=20, help="profiled runs; times are medians (default 20)")
    p.add_argument(
        "--top", type=int, default=25, help="kernels listed; the rest summed in one row (default 25)"
    )
    p.set_defaults(func=profile)


def tune(args: argparse.Namespace) -> int:
    from repnext_core.compile.tune import database
    from repnext_core.compile.tune.tuner import tune as tune_model

    tracker = options.tracker(args)
    root = Path(args.db) if args.db else database.default_roots()[0]
    report = tune_model(
        options.load_fused(args.model),
        args.target,
        args.trials,
        root,
        input_shape=options.input_shape(args),
        variant=args.model,
        runner=tracker or "local",
        seed=args.seed,
        progress=not args.quiet,
        tile_candidates=args.tile_candidates,
        precision=args.precision,
    )
    latency = f"; best kernels sum to {report.est_latency_ms:.3f} ms" if report.est_latency_ms else ""
    print(
        f"{report.conv_tiles_measured} conv kernel(s) had their tiles measured; "
        f"{report.trials_run} trial(s) measured in {report.seconds:.0f} s over {report.tasks} other kernels"
        f"{latency}; database {report.db_dir} now holds {report.records_after} records"
    )
    if report.interrupted:
        print(
            "interrupted: every trial measured so far is kept; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 0


def build(args: argparse.Namespace) -> int:
    from repnext_core.compile.tvm.build import build_artifact
    from repnext_core.compile.tvm.pipeline import FP16_BOUND

    model = options.load_fused(args.model, args.checkpoint, args.trust_checkpoint)
    if not args.checkpoint:
        print(
            f"no --checkpoint: building {args.model} with seeded random weights (for timing, not predictions)"
        )
    out, report = build_artifact(
        model,
        args.out,
        args.target,
        variant=args.model,
        input_size=args.input_size,
        checkpoint=args.checkpoint,
        db_roots=[args.db] if args.db else None,
        use_db=not args.no_db,
        precision=args.precision,
    )
    for note in report.notes:
        print(note)
    if args.precision == "fp16":
        print(
            f"fp16 build: outputs within {FP16_BOUND:g} x max|y| of the fp32 build (tested on M0-M5 under qemu)"
        )
    print(f"wrote {out} for {report.target.name} ({report.summary()}; built in {report.seconds:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from repnext_core.compile.tvm.artifact import load_artifact, read_meta

    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    meta = read_meta(args.artifact)
    if args.input:
        x = np.load(args.input, allow_pickle=False)
    else:
        x = _seeded_input(meta)
    tracker = options.tracker(args)
    if tracker is not None:
        from repnext_core.compile.device.tracker import run_remote

        y = run_remote(args.artifact, tracker, x)
    elif args.qemu:
        from repnext_core.compile.device.runner import run_artifact_native

        y = run_artifact_native(args.artifact, x, qemu=True)
    else:
        y = load_artifact(args.artifact).run(x)
    _report_output(y, args.output)
    return 0


def profile(args: argparse.Namespace) -> int:
    import os

    from repnext_core.compile.bench.harness import sgemm_peak_gflops
    from repnext_core.compile.tvm.artifact import load_artifact
    from repnext_core.compile.tvm.kernel_profile import format_profile, profile_vm

    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    import tvm

    loaded = load_artifact(args.artifact)
    threads = tvm.runtime.num_threads()
    macs = loaded.meta.get("kernel_macs")  # absent in artifacts built before it was recorded
    x = _seeded_input(loaded.meta)
    profile = profile_vm(loaded.runner.vm, x, runs=args.runs, threads=threads, macs=macs)
    print(format_profile(profile, top=args.top, sgemm_gflops=sgemm_peak_gflops(threads) if macs else None))
    return 0


def _seeded_input(meta: dict):
    """The default input of `run` and `profile`: a seeded random array of the artifact's shape and dtype."""
    import numpy as np

    return np.random.default_rng(0).standard_normal(meta["input_shape"]).astype(meta["dtype"])


def _report_output(y, output: str | None) -> None:
    import numpy as np

    from repnext_core.files import atomic_output

    if output:
        with atomic_output(output) as tmp, open(tmp, "wb") as f:
            np.save(f, y)
        print(f"wrote {output}")
    flat = y.reshape(y.shape[0], -1)[0]
    top = np.argsort(flat)[::-1][:5]
    print(
        f"output {list(y.shape)} {y.dtype}; top-5 classes: " + ", ".join(f"{i} ({flat[i]:.3f})" for i in top)
    )
