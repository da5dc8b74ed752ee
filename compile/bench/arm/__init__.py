"""The counted ARM bench without a board: aarch64 instructions per inference under qemu-user with our own TCG
plugin (insn_count.c), cycles modeled by llvm-mca, for our TVM build and the runtimes an ARM engineer would
ship instead (onnxruntime, ncnn, MNN from their aarch64 wheels, in an emulated Python). Proxies, not time."""
