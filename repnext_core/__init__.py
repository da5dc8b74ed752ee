"""RepNeXt: multi-branch training form, exact fused inference form, and the tools around them."""

from .backend import BACKENDS, set_backend
from .checkpoint import CheckpointError, identify_variant, load_checkpoint, save_atomic
from .fused import FusedBlock, FusedChunkConv, FusedCopyConv, FusedDownsample
from .layers import (
    ChunkConv,
    Classifier,
    ConvNorm,
    CopyConv,
    Downsample,
    NormLinear,
    RepDWConvM,
    RepDWConvS,
    RepNeXtBlock,
)
from .model import VARIANTS, RepNeXt, VariantSpec
from .profile import count_macs, count_params
from .registry import _register_with_timm, create_model, list_models
from .reparam import count_batchnorms, is_fused, reparameterize
from .verify import Parity, parity, verify_fusion

__version__ = "0.1.0"

_register_with_timm()

__all__ = [
    "BACKENDS",
    "VARIANTS",
    "CheckpointError",
    "ChunkConv",
    "Classifier",
    "ConvNorm",
    "CopyConv",
    "Downsample",
    "FusedBlock",
    "FusedChunkConv",
    "FusedCopyConv",
    "FusedDownsample",
    "NormLinear",
    "Parity",
    "RepDWConvM",
    "RepDWConvS",
    "RepNeXt",
    "RepNeXtBlock",
    "VariantSpec",
    "count_batchnorms",
    "count_macs",
    "count_params",
    "create_model",
    "identify_variant",
    "is_fused",
    "list_models",
    "load_checkpoint",
    "parity",
    "reparameterize",
    "save_atomic",
    "set_backend",
    "verify_fusion",
]
