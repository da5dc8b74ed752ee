"""Compilation and export of fused RepNeXt models: TVM, Core ML, ONNX."""
