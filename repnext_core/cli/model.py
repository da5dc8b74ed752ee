"""`repnext info | fuse | verify`: the variants, and fusing a checkpoint exactly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from repnext_core.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the info, fuse and verify subcommands."""
    p = subparsers.add_parser(
        "info", help="variants: params (training / fused), MACs, the paper's latency and top-1"
    )
    p.add_argument("models", nargs="*", help="variants to list (default: all)")
    p.set_defaults(func=info)

    p = subparsers.add_parser(
        "fuse",
        help="fuse a training checkpoint into the inference form, verify it, write it atomically",
        description="Load the authors' checkpoint, reparameterize it (no BatchNorm left), check the fused "
        "model against the original on a random input, and save the fused state_dict. The output is written "
        "to a temp file and renamed, so an interrupted run leaves nothing behind.",
    )
    options.add_model(p)
    options.add_checkpoint(
        p,
        required=True,
        what="the authors' training checkpoint (.pth / .pth.tar: {'model': sd}, {'state_dict': sd} or sd)",
    )
    _add_check_options(p)
    p.add_argument("--out", required=True, help="where to write the fused checkpoint (.pth)")
    p.set_defaults(func=fuse)

    p = subparsers.add_parser(
        "verify", help="check fused vs training form (random weights without --checkpoint)"
    )
    options.add_model(p)
    options.add_checkpoint(p)
    _add_check_options(p)
    p.set_defaults(func=verify)


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint")


def info(args: argparse.Namespace) -> int:
    from repnext_core.model import VARIANTS
    from repnext_core.profile import count_macs, count_params
    from repnext_core.registry import create_model
    from repnext_core.table import format_table

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
    from repnext_core.registry import create_model
    from repnext_core.testing import random_model

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


def fuse(args: argparse.Namespace) -> int:
    from repnext_core.checkpoint import save_atomic
    from repnext_core.reparam import reparameterize
    from repnext_core.verify import verify_fusion

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


def verify(args: argparse.Namespace) -> int:
    from repnext_core.reparam import count_batchnorms, reparameterize
    from repnext_core.verify import verify_fusion

    model = _load_training(args)
    fused = reparameterize(model)
    print(f"BatchNorm modules: {count_batchnorms(model)} before fusing, {count_batchnorms(fused)} after")
    return _report(verify_fusion(model, fused, args.input_size), args.input_size)
