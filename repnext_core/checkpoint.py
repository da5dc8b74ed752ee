"""Reading the authors' checkpoints (and our fused ones) safely, with errors that say what is wrong."""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .files import atomic_output
from .model import VARIANTS

StateDict = Mapping[str, torch.Tensor]

# Objects that training scripts store beside the weights and that cannot run code when unpickled.
SAFE_EXTRAS = (argparse.Namespace,)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what to do."""


def read_checkpoint(path: str | os.PathLike, trust_checkpoint: bool = False) -> object:
    """torch.load with weights_only=True (plus harmless extras) unless the caller trusts the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if trust_checkpoint:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(list(SAFE_EXTRAS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise CheckpointError(
                f"cannot read checkpoint {str(path)!r}: the file is corrupt, truncated or not a PyTorch "
                f"checkpoint ({_unpickler_reason(e)}); get a fresh copy of it"
            ) from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} contains a pickled object {found.group(1)!r} that loading it would "
            "execute; refusing. If you trust where this file came from, pass trust_checkpoint=True "
            "(CLI: --trust-checkpoint)."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: the file is corrupt, truncated or not a PyTorch "
            f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def _unpickler_reason(e: Exception) -> str:
    """The unpickler's own complaint, without PyTorch's advice to load with weights_only=False (for a
    damaged file that advice is wrong, and it turns the safety off)."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(e), re.S)
    return " ".join(found.group(1).split()) if found else type(e).__name__


def extract_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The weights inside what a training script saved: {'model': sd}, {'state_dict': sd} or sd itself."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_ema", "state_dict_ema"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            "no state_dict found: expected a dict of tensors, or one under 'model' or 'state_dict', "
            f"got {type(obj).__name__}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"no tensors found in the checkpoint (keys: {_few(list(obj))})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def identify_variant(state_dict: StateDict) -> dict[str, object]:
    """What a state_dict looks like from its shapes: variant name (or None), dims, depths, fused or not."""
    fused = "stem.stem.0.norm.weight" not in state_dict
    stem_key = "stem.stem.2.weight" if fused else "stem.stem.2.conv.weight"
    if stem_key not in state_dict:
        return {"variant": None, "fused": fused}
    dim0 = state_dict[stem_key].shape[0]
    depth = []
    for i in range(8):
        blocks = {int(k.split(".")[3]) for k in state_dict if k.startswith(f"stages.{i}.blocks.")}
        if not blocks:
            break
        depth.append(max(blocks) + 1)
    dims = tuple(dim0 * 2**i for i in range(len(depth)))
    head = state_dict.get("head.weight" if fused else "head.head.linear.weight")
    name = next((n for n, v in VARIANTS.items() if v.embed_dim == dims and v.depth == tuple(depth)), None)
    return {
        "variant": name,
        "embed_dim": dims,
        "depth": tuple(depth),
        "fused": fused,
        "num_classes": None if head is None else head.shape[0],
        "distillation": "head.head_dist.linear.weight" in state_dict,
    }


def _few(keys: list[str], n: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def describe(info: Mapping[str, object]) -> str:
    """A short human description of identify_variant's result."""
    form = "fused" if info.get("fused") else "training-form"
    if info.get("variant"):
        return f"a {form} {info['variant']} checkpoint"
    if "embed_dim" in info:
        return f"a {form} checkpoint with embed_dim {info['embed_dim']} and depth {info['depth']}"
    return "not a RepNeXt checkpoint"


def check_fits(model: nn.Module, state_dict: StateDict, strict: bool = True) -> None:
    """Raise a CheckpointError naming missing/unexpected/mis-shaped keys and the variant the file is."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if not (shape or (strict and (missing or unexpected))):
        return
    theirs = identify_variant(state_dict)
    ours = identify_variant(own)
    lines = [
        f"checkpoint does not fit the model: the model is {describe(ours)[2:]}, the file is {describe(theirs)}."
    ]
    if ours.get("variant") and theirs.get("variant") and ours["variant"] != theirs["variant"]:
        lines.append(f"Build the model with create_model({theirs['variant']!r}) instead.")
    if theirs.get("fused") != ours.get("fused") and theirs.get("embed_dim"):
        lines.append(
            "A training-form checkpoint loads into the training model (create_model(name, fused=True, "
            "pretrained=...) loads it and then fuses); a fused one into a fused model."
        )
    if shape:
        lines.append(
            f"{len(shape)} shape mismatches, e.g. "
            + "; ".join(
                f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in shape[:3]
            )
        )
    if strict and missing:
        lines.append(f"{len(missing)} missing keys: {_few(missing)}")
    if strict and unexpected:
        lines.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
    raise CheckpointError("\n".join(lines))


def load_state_dict_from(
    path_or_state_dict: str | os.PathLike | StateDict, trust_checkpoint: bool = False
) -> dict[str, torch.Tensor]:
    """Read a file (or take a mapping) and return its bare state_dict."""
    if isinstance(path_or_state_dict, Mapping):
        return extract_state_dict(path_or_state_dict)
    return extract_state_dict(read_checkpoint(path_or_state_dict, trust_checkpoint))


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | StateDict,
    strict: bool = True,
    trust_checkpoint: bool = False,
) -> nn.Module:
    """Load the authors' checkpoint layouts (or a fused model's own state_dict) into `model`."""
    state_dict = load_state_dict_from(path_or_state_dict, trust_checkpoint)
    check_fits(model, state_dict, strict)
    model.load_state_dict(state_dict, strict=strict)
    return model


def save_atomic(obj: object, path: str | os.PathLike, writer=None) -> Path:
    """torch.save (or `writer(obj, tmp)`) to a temp file beside `path`, then rename: never a partial file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    with atomic_output(path) as tmp:
        (writer or torch.save)(obj, tmp)
    return path
