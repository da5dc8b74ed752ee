"""Core ML export: the fused RepNeXt as an ML program (.mlpackage), fp16 or fp32, tensor or image input."""

from __future__ import annotations

import copy
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repnext_core.compile.export.common import (
    TENSOR_NORMALIZATION,
    ExportError,
    build_metadata,
    check_output_path,
    prepare_model,
    quiet_third_party_warnings,
)
from repnext_core.files import atomic_output
from repnext_core.model import IMAGENET_MEAN, IMAGENET_STD
from repnext_core.verify import parity

PRECISIONS = ("fp16", "fp32")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
IMAGE_NORMALIZATION = (
    f"RGB image with 0-255 pixels; ImageNet normalization is inside the model: ImageType scale 1/255 and "
    f"bias -mean (mean={list(IMAGENET_MEAN)}), and 1/std (std={list(IMAGENET_STD)}) folded into the "
    f"first conv's weights"
)


def import_coremltools():
    """Import coremltools lazily, muting its import-time notices (no macOS runtime, untested torch)."""
    ct_log = logging.getLogger("coremltools")
    level = ct_log.level
    ct_log.setLevel(logging.ERROR)  # the notices are logged once, at import; later warnings still show
    try:
        import coremltools as ct
    except ImportError as e:
        raise ImportError("Core ML export needs coremltools: pip install 'repnext[export]'") from e
    finally:
        ct_log.setLevel(level)
    return ct


@dataclass
class CoreMLExport:
    """What export_coreml wrote and how."""

    path: Path
    precision: str
    min_target: str
    image_input: bool
    input_shape: tuple[int, ...]
    auto_fused: bool
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)


def first_conv(model: nn.Module, in_channels: int) -> nn.Conv2d:
    """The first dense Conv2d (in module order) that reads `in_channels` channels: RepNeXt's stem conv."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == in_channels and m.groups == 1:
            return m
    raise ExportError(f"image_input: no dense Conv2d with {in_channels} input channels to fold 1/std into")


@torch.no_grad()
def fold_input_std(model: nn.Module, std: Sequence[float] = IMAGENET_STD) -> nn.Module:
    """A copy of `model` that takes (x - mean) instead of (x - mean) / std, exactly.

    Core ML's ImageType applies one scale to all channels plus a per-channel bias, so a per-channel std
    cannot go there. Dividing the first conv's weights by std per input channel is exact, including at the
    border: that conv zero-pads, and zero stays zero under a pure scaling (a mean shift would not).
    """
    out = copy.deepcopy(model)
    conv = first_conv(out, len(std))
    conv.weight.div_(torch.tensor(std, dtype=conv.weight.dtype).view(1, -1, 1, 1))
    return out


@torch.no_grad()
def check_std_fold(model: nn.Module, folded: nn.Module, shape: Sequence[int]) -> float:
    """Max |folded(x/255 - mean) - model((x/255 - mean)/std)| on random pixels; raises if not exact."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(tuple(shape), generator=g) * 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, -1, 1, 1)
    ref = model((pixels / 255 - mean) / std)
    got = folded(pixels / 255 - mean)
    check = parity(ref, got)
    diff = check.max_abs_diff
    if not check.ok:
        raise ExportError(
            f"image_input: folding 1/std into the first conv changed the output by {diff:.3e}; "
            "that conv is not the first op applied to the input"
        )
    return diff


def _target(ct, name: str):
    """coremltools' deployment target for 'iOS16' etc.; ML programs need iOS15 / macOS12 or newer."""
    target = getattr(ct.target, name, None)
    valid = [t.name for t in ct.target if t >= ct.target.iOS15]
    if target is None or target < ct.target.iOS15:
        raise ValueError(f"min_target {name!r} is not an ML program target; valid: {', '.join(valid)}")
    return target


def check_min_target(name: str) -> str:
    """Return `name` if coremltools can target it with an ML program, else a ValueError listing targets."""
    _target(import_coremltools(), name)
    return name


def _conversion_error(stage: str, settings: str, e: BaseException) -> ExportError:
    """An ExportError that names the failing op when the converter's message has one."""
    op = re.search(r"\bop ['\"]?([\w.:]+)['\"]?", str(e))
    where = f" at op {op.group(1)!r}" if op else ""
    return ExportError(f"{stage} failed{where} ({settings}): {type(e).__name__}: {e}")


def convert_to_mlprogram(
    model: nn.Module,
    example: torch.Tensor,
    precision: str,
    target_name: str,
    image_input: bool,
):
    """torch.export the fused model and convert it with coremltools into an in-memory ML program."""
    import numpy as np

    ct = import_coremltools()
    target = _target(ct, target_name)
    settings = f"precision={precision}, min_target={target_name}, image_input={image_input}"
    try:
        # run_decompositions({}) gives the ATen dialect that coremltools' torch.export frontend accepts.
        with quiet_third_party_warnings():
            exported = torch.export.export(model, (example,)).run_decompositions({})
    except Exception as e:  # noqa: BLE001 - any tracing failure becomes one clear message
        raise _conversion_error("torch.export", settings, e) from e

    # fp16 tensors at the boundary need iOS16; there the model then has no cast ops at all.
    io_dtype = np.float16 if precision == "fp16" and target >= ct.target.iOS16 else np.float32
    shape = tuple(example.shape)
    if image_input:
        inp = ct.ImageType(
            name=INPUT_NAME,
            shape=shape,
            scale=1 / 255.0,
            bias=[-m for m in IMAGENET_MEAN],
            color_layout=ct.colorlayout.RGB,
        )
    else:
        inp = ct.TensorType(name=INPUT_NAME, shape=shape, dtype=io_dtype)
    try:
        with quiet_third_party_warnings():
            return ct.convert(
                exported,
                inputs=[inp],
                outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=io_dtype)],
                convert_to="mlprogram",
                minimum_deployment_target=target,
                compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            )
    except Exception as e:  # noqa: BLE001
        raise _conversion_error(f"coremltools {ct.__version__} conversion", settings, e) from e


def _describe(mlmodel, meta: dict[str, str], image_input: bool) -> None:
    """Author, description and user-defined metadata, which Xcode and MLModel.description show."""
    mlmodel.author = "repnext_core: RepNeXt (arXiv 2406.16004), fused inference form"
    variant, precision = meta["variant"], meta["precision"]
    mlmodel.short_description = (
        f"RepNeXt {variant} image classifier ({precision}); input: {meta['input_normalization']}"
    )
    mlmodel.version = meta["producer"].rsplit(" ", 1)[-1]
    mlmodel.user_defined_metadata.update(meta)
    mlmodel.input_description[INPUT_NAME] = (
        "RGB image, 0-255 pixels" if image_input else "ImageNet-normalized RGB tensor, NCHW"
    )
    mlmodel.output_description[OUTPUT_NAME] = "class logits (softmax not applied)"


def export_coreml(
    model: nn.Module,
    path: str | os.PathLike,
    precision: str = "fp16",
    min_target: str = "iOS16",
    image_input: bool = False,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    metadata: dict[str, Any] | None = None,
) -> CoreMLExport:
    """Write the fused model as a Core ML ML program at `path` (.mlpackage), atomically.

    An unfused model is fused first (with a warning). With `image_input`, the package takes an RGB image
    and applies the ImageNet normalization itself. Raises ValueError on bad arguments before any work,
    ExportError when tracing or conversion fails; in both cases nothing is left at `path`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be NCHW (4 numbers), got {shape}")
    if image_input and (shape[0] != 1 or shape[1] != 3):
        raise ValueError(f"image_input needs input_shape (1, 3, H, W), got {shape}")
    out = check_output_path(path, "coreml")
    check_min_target(min_target)  # refuse a bad target before tracing
    start = time.perf_counter()

    prepared = prepare_model(model)
    net = prepared.model
    if image_input:
        folded = fold_input_std(net)
        check_std_fold(net, folded, shape)
        net = folded
    meta = build_metadata(
        prepared.model,
        "coreml",
        IMAGE_NORMALIZATION if image_input else TENSOR_NORMALIZATION,
        metadata,
        precision=precision,
        min_target=min_target,
        input_shape="x".join(map(str, shape)),
        input_kind="image" if image_input else "tensor",
    )
    example = torch.zeros(shape) if image_input else torch.randn(shape)
    mlmodel = convert_to_mlprogram(net, example, precision, min_target, image_input)
    _describe(mlmodel, meta, image_input)
    with atomic_output(out) as tmp:
        mlmodel.save(str(tmp))
    return CoreMLExport(
        out, precision, min_target, image_input, shape, prepared.auto_fused, time.perf_counter() - start, meta
    )
