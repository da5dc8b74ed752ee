"""Channels-last (NHWC, HWIO weights) layout for every conv of an imported model.

With channels innermost, each conv's output channels are the vector lanes: the MLP 1x1 convs become
sgemm-shaped and depthwise taps are whole-vector FMAs. The layout changes once after the input and once
before the pooled head; FoldConstant then transposes the weights at build time.
"""

from __future__ import annotations


def to_channels_last_pass():
    """Module pass: every conv2d (and what lies between them) to NHWC activations and HWIO weights."""
    from tvm import relax

    return relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})
