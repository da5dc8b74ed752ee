"""Triton GPU kernels for the fused RepNeXt depthwise token mixers."""
