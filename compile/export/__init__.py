"""Exports to Core ML and ONNX (each checked before it is written), and inspect/ for their op census."""
