"""RepNeXt: multi-branch training form, exact fused inference form, and the tools around them."""
