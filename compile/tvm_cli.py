"""`repnext tune | build | run`: the TVM path from a variant name to a deployable artifact (tvm imported lazily)."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

TOY = "toy"  # hidden MODEL name: a seeded 4-block RepNeXt, small enough for tests


def register(subparsers) -> None:
    """Add the tune, build and run subcommands to the `repnext` parser."""
    from .targets import preset_names

    targets = ", ".join(preset_names())

    p = subparsers.add_parser(
        "tune",
        help="tune a variant's kernels for a target with MetaSchedule (resumable database)",
        description="Measures candidate schedules for every kernel of the fused model and records them in a "
        "JSON database per (variant, input size, target) under --db: first the register tiles of the "
        "hand-scheduled conv kernels (host only), then MetaSchedule trials for the other kernels. Running it "
        "again resumes: new trials extend the database. Ctrl-C keeps every trial measured so far. For an ARM board, start "
        "`python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY` on the board and pass --tracker/--key.",
    )
    _model_args(p, targets)
    p.add_argument("--trials", type=int, default=64, help="trials to add to the database (default 64)")
    _tracker_args(p, "measure candidates on the board behind this RPC tracker")
    p.add_argument(
        "--tile-candidates",
        type=int,
        default=12,
        help="register tiles timed per conv kernel not yet on record (default 12; 0 skips)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the search")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_tune)

    p = subparsers.add_parser(
        "build",
        help="compile a variant for a target into an artifact directory (model.so + meta.json)",
        description="Compiles the fused model with TVM, applying the tuning database for this variant, input "
        "size and target when there is one (see `repnext tune`), and writes OUT/model.so (OUT/objects/*.o for "
        "apple-arm64) and OUT/meta.json atomically.",
    )
    _model_args(p, targets)
    p.add_argument("--checkpoint", help="weights to build in (default: seeded random weights, for timing)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a checkpoint with pickled objects")
    p.add_argument("--no-db", action="store_true", help="ignore tuning databases (default schedules)")
    p.add_argument("--out", required=True, help="artifact directory to write (replaced atomically)")
    p.set_defaults(func=_build)

    p = subparsers.add_parser(
        "run",
        help="run a built artifact on an input (.npy) on this machine or over RPC",
        description="Runs OUT/model.so once on --input (default: a seeded random image) and prints the top "
        "classes. Artifacts for this machine run in-process; ARM artifacts run on a board via --tracker/--key.",
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
    _tracker_args(p, "run on the board behind this RPC tracker")
    p.set_defaults(func=_run)


def _model_args(p: argparse.ArgumentParser, targets: str) -> None:
    p.add_argument("model", metavar="MODEL", help="variant name, repnext_m0 ... repnext_m5")
    p.add_argument("--target", default="host", help=f"preset ({targets}) or a JSON target (default host)")
    p.add_argument("--input-size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--db", help="tuning database root (default $REPNEXT_TVM_DB or ~/.cache/repnext/tvm-db)")


def _tracker_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--tracker", metavar="HOST:PORT", help=what)
    p.add_argument("--key", default="", help="device key the board's rpc_server registered with")


def _friendly(command: str):
    """Turn the path's expected failures into one stderr line and exit code 2."""

    def wrap(fn):
        @functools.wraps(fn)
        def handler(args: argparse.Namespace) -> int:
            from .tvm_rpc import TrackerError

            try:
                return fn(args)
            except (ValueError, FileNotFoundError, TrackerError) as e:
                print(f"repnext {command}: error: {e}", file=sys.stderr)
                return 2

        return handler

    return wrap


def _load_model(name: str, checkpoint: str | None = None, trust: bool = False):
    """The fused eval-mode model for a variant name (or the hidden toy); seeded weights without a checkpoint."""
    import torch

    import repnext_core

    torch.manual_seed(0)  # tuning keys on kernel structure only, but builds should be reproducible

    if name == TOY:
        from repnext_core.testing import toy_model

        return repnext_core.reparameterize(toy_model())
    return repnext_core.create_model(name, fused=True, pretrained=checkpoint, trust_checkpoint=trust)


def _tracker(args: argparse.Namespace):
    from .tvm_rpc import Tracker

    if not args.tracker:
        if args.key:
            raise ValueError("--key needs --tracker HOST:PORT")
        return None
    return Tracker.parse(args.tracker, args.key)


def _shape(args: argparse.Namespace) -> tuple[int, int, int, int]:
    if args.input_size < 32:
        raise ValueError(
            f"--input-size must be at least 32 (the network downsamples 32x), got {args.input_size}"
        )
    return (1, 3, args.input_size, args.input_size)


@_friendly("tune")
def _tune(args: argparse.Namespace) -> int:
    from . import tuning_db
    from .tune import tune

    tracker = _tracker(args)
    root = Path(args.db) if args.db else tuning_db.default_roots()[0]
    report = tune(
        _load_model(args.model),
        args.target,
        args.trials,
        root,
        input_shape=_shape(args),
        variant=args.model,
        runner=tracker or "local",
        seed=args.seed,
        progress=not args.quiet,
        tile_candidates=args.tile_candidates,
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


@_friendly("build")
def _build(args: argparse.Namespace) -> int:
    from . import tuning_db
    from .artifact import ArtifactMeta, export_artifact, file_sha256
    from .build import build_with_report
    from .relax_import import import_model, main_signature
    from .targets import resolve_target

    spec = resolve_target(args.target)
    model = _load_model(args.model, args.checkpoint, args.trust_checkpoint)
    if not args.checkpoint:
        print(
            f"no --checkpoint: building {args.model} with seeded random weights (for timing, not predictions)"
        )
    mod = import_model(model, _shape(args))
    shape, dtype, out_shape = main_signature(mod)
    db = None
    if not args.no_db:
        key = tuning_db.key_for(args.model, shape, dtype, spec)
        db = tuning_db.find_db(key, [args.db] if args.db else None)
        if db is None:
            print(
                f"no tuning database for {key.dirname()}: heuristic conv tiles, default schedules for the "
                "other kernels (see `repnext tune`)"
            )
    exe, report = build_with_report(mod, spec, db)
    meta = ArtifactMeta(
        spec,
        shape,
        dtype,
        out_shape,
        variant=args.model,
        checkpoint_sha256=file_sha256(args.checkpoint) if args.checkpoint else None,
        tuning_db=report.db,
        kernels=report.kernels,
        tuned_kernels=report.tuned_kernels,
    )
    out = export_artifact(exe, args.out, meta)
    print(f"wrote {out} for {spec.name} ({report.summary()}; built in {report.seconds:.1f} s)")
    return 0


@_friendly("run")
def _run(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from .artifact import load_artifact, read_meta

    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    meta = read_meta(args.artifact)
    if args.input:
        x = np.load(args.input, allow_pickle=False)
    else:
        x = np.random.default_rng(0).standard_normal(meta["input_shape"]).astype(meta["dtype"])
    tracker = _tracker(args)
    if tracker is not None:
        from .tvm_rpc import run_remote

        y = run_remote(args.artifact, tracker, x)
    elif args.qemu:
        y = _run_under_qemu(args.artifact, x)
    else:
        y = load_artifact(args.artifact).run(x)
    _report_output(y, args.output)
    return 0


def _run_under_qemu(artifact: str, x):
    """The native aarch64 runner under qemu-user (the on-device runner issue's compile/device.py)."""
    import importlib.util

    if importlib.util.find_spec(f"{__package__}.device") is None:
        raise ValueError("--qemu needs the native runner from the on-device runner issue (compile/device.py)")
    from .device import run_artifact_native

    return run_artifact_native(artifact, x, qemu=True)


def _report_output(y, output: str | None) -> None:
    import numpy as np

    from repnext_core.atomic import atomic_output

    if output:
        with atomic_output(output) as tmp, open(tmp, "wb") as f:
            np.save(f, y)
        print(f"wrote {output}")
    flat = y.reshape(y.shape[0], -1)[0]
    top = np.argsort(flat)[::-1][:5]
    print(
        f"output {list(y.shape)} {y.dtype}; top-5 classes: " + ", ".join(f"{i} ({flat[i]:.3f})" for i in top)
    )
