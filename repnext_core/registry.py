"""create_model / list_models: the drop-in entry points, optionally registered with timm."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

import torch

from .checkpoint import CheckpointError, check_fits, identify_variant, load_state_dict_from
from .model import VARIANTS, RepNeXt
from .reparam import reparameterize


def list_models() -> list[str]:
    """Names of the published variants, M0 to M5."""
    return list(VARIANTS)


def variant_spec(name: str):
    """The VariantSpec for `name`, or a ValueError that lists the valid names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(VARIANTS)}") from None


def create_model(
    name: str,
    pretrained: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    fused: bool = False,
    backend: str = "auto",
    trust_checkpoint: bool = False,
    **kwargs,
) -> RepNeXt:
    """Build a RepNeXt variant, optionally from a checkpoint, in training or fused form.

    `fused=True` with a training-form checkpoint loads it and then reparameterizes; with a fused
    checkpoint (saved from a fused model) it builds the fused tree directly. Fused models come back in eval.
    """
    spec = variant_spec(name)
    state_dict = None
    if pretrained is not None:
        state_dict = load_state_dict_from(pretrained, trust_checkpoint)
        info = identify_variant(state_dict)
        if info.get("num_classes") is not None:
            kwargs.setdefault("num_classes", info["num_classes"])
            kwargs.setdefault("distillation", info["distillation"])
        if kwargs.get("features_only"):
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        if info.get("fused") and not fused and info.get("embed_dim"):
            raise CheckpointError(
                f"{pretrained!s:.80} is a fused checkpoint; load it with create_model({name!r}, fused=True, ...)"
            )
        build_fused = fused and bool(info.get("fused"))
    else:
        build_fused = fused
    model = RepNeXt(spec.embed_dim, spec.depth, fused=build_fused, backend=backend, **kwargs)
    if state_dict is not None:
        check_fits(model, state_dict)
        model.load_state_dict(state_dict)
    if fused and not build_fused:
        model = reparameterize(model.eval(), inplace=True, backend=backend)
    return model.eval() if fused else model


def _register_with_timm() -> None:
    """Expose the variants as timm models when timm happens to be installed (never required)."""
    if importlib.util.find_spec("timm") is None:
        return
    try:
        from timm.models import register_model
    except ImportError:
        return
    for variant in VARIANTS:

        def entry(pretrained: bool = False, _name: str = variant, **kwargs):
            kwargs.pop("pretrained_cfg", None)
            kwargs.pop("pretrained_cfg_overlay", None)
            return create_model(_name, **kwargs)

        entry.__name__ = variant
        entry.__module__ = __name__
        try:
            register_model(entry)
        except Exception:  # noqa: BLE001 - a name clash with another timm plugin must not break import
            pass
