"""The op census of exported .mlpackage and .onnx files: ops, conv kernels, blocks, precision, I/O."""
