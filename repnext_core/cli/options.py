"""Options shared by several commands, declared once, and the small conversions their handlers share."""

from __future__ import annotations

import argparse

TOY = "toy"  # hidden MODEL name of the TVM commands: a seeded 4-block RepNeXt, small enough for tests


def add_model(p: argparse.ArgumentParser, allow_toy: bool = False, optional: bool = False) -> None:
    """MODEL: one of the six variants (the TVM commands also take the hidden test model `toy`)."""
    from repnext_core.model import VARIANTS

    names = ", ".join(VARIANTS)
    if optional:
        p.add_argument(
            "model",
            nargs="?",
            default="repnext_m1",
            choices=list(VARIANTS),
            metavar="MODEL",
            help=f"one of: {names} (default repnext_m1)",
        )
    elif allow_toy:  # checked by create_model, whose error lists the variants
        p.add_argument("model", metavar="MODEL", help=f"variant name: {names}")
    else:
        p.add_argument("model", choices=list(VARIANTS), metavar="MODEL", help=f"one of: {names}")


def add_checkpoint(p: argparse.ArgumentParser, required: bool = False, what: str | None = None) -> None:
    """--checkpoint and --trust-checkpoint."""
    p.add_argument(
        "--checkpoint",
        required=required,
        help=what
        or "training or fused checkpoint (.pth / .pth.tar: {'model': sd}, {'state_dict': sd} or sd); "
        "default: seeded random weights",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow arbitrary pickled objects in the file (it can run code: only for files you trust)",
    )


def add_target(p: argparse.ArgumentParser) -> None:
    """--target (a preset or a JSON target), --input-size, --db."""
    from repnext_core.compile.tvm.targets import preset_names

    p.add_argument(
        "--target",
        default="host",
        help=f"preset ({', '.join(preset_names())}) or a JSON target (default host)",
    )
    p.add_argument("--input-size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--db", help="tuning database root (default $REPNEXT_TVM_DB or CACHE/tvm-db)")


def add_precision(p: argparse.ArgumentParser) -> None:
    """--precision fp32|fp16."""
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="fp16: weights, activations and arithmetic in half precision (ARMv8.2-A targets such as "
        "cortex-a55, cortex-a76, apple-arm64; outputs within 1e-2 x max|y| of fp32); default fp32",
    )


def input_shape(args: argparse.Namespace) -> tuple[int, int, int, int]:
    """(1, 3, S, S) from --input-size, refusing sizes the network cannot take."""
    if args.input_size < 32:
        raise ValueError(
            f"--input-size must be at least 32 (the network downsamples 32x), got {args.input_size}"
        )
    return (1, 3, args.input_size, args.input_size)


def add_tracker(p: argparse.ArgumentParser, what: str) -> None:
    """--tracker HOST:PORT and --key."""
    p.add_argument("--tracker", metavar="HOST:PORT", help=what)
    p.add_argument("--key", default="", help="device key the board's rpc_server registered with")


def tracker(args: argparse.Namespace):
    """The Tracker the options name, or None; --key without --tracker is an error."""
    from repnext_core.compile.device.tracker import Tracker

    if not args.tracker:
        if args.key:
            raise ValueError("--key needs --tracker HOST:PORT")
        return None
    return Tracker.parse(args.tracker, args.key)


def load_fused(name: str, checkpoint: str | None = None, trust: bool = False):
    """The fused eval-mode model for a variant name (or the toy); seeded weights without a checkpoint."""
    import torch

    import repnext_core

    torch.manual_seed(0)  # tuning keys on kernel structure only, but builds should be reproducible
    if name == TOY:
        from repnext_core.testing import toy_model

        return repnext_core.reparameterize(toy_model())
    return repnext_core.create_model(name, fused=True, pretrained=checkpoint, trust_checkpoint=trust)
