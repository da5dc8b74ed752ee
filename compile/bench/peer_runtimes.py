"""Runs inside the emulated aarch64 python: load one engine's model, run k inferences, save the last output.

Usage: python3.11 peer_run.py ENGINE MODEL_PATH X.npy K OUT.npy
Only numpy and the engine's own wheel are imported, and each engine is forced to one thread.
"""

import sys

import numpy as np


def ort_session(path: str):
    """An onnxruntime session on one thread, no spinning, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ncnn_net(path: str, fp16: bool):
    """An ncnn net on one thread, fp32 throughout (fp16=False) or ncnn's fp16 storage + arithmetic."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_fp16_packed = fp16
    net.opt.use_fp16_storage = fp16
    net.opt.use_fp16_arithmetic = fp16
    net.opt.use_bf16_storage = False
    net.opt.use_vulkan_compute = False
    if net.load_param(path + ".param") != 0 or net.load_model(path + ".bin") != 0:
        raise SystemExit(f"ncnn could not load {path}.param/.bin")

    def run(x: np.ndarray) -> np.ndarray:
        ex = net.create_extractor()
        ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
        ret, out = ex.extract("out0")
        if ret != 0:
            raise SystemExit(f"ncnn extract failed: {ret}")
        return np.array(out).reshape(1, -1)

    return run


def mnn_session(path: str, fp16: bool):
    """An MNN session on one CPU thread, precision normal (fp32) or low (fp16 where the core has it)."""
    import MNN

    interp = MNN.Interpreter(path)
    interp.setSessionMode(9)  # Session_Release: free the model buffer once the session is made
    sess = interp.createSession({"numThread": 1, "precision": "low" if fp16 else "normal", "backend": "CPU"})
    inp = interp.getSessionInput(sess)

    def run(x: np.ndarray) -> np.ndarray:
        tmp = MNN.Tensor(x.shape, MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe)
        inp.copyFrom(tmp)
        interp.runSession(sess)
        out = interp.getSessionOutput(sess)
        host = MNN.Tensor(
            out.getShape(),
            MNN.Halide_Type_Float,
            np.zeros(out.getShape(), np.float32),
            MNN.Tensor_DimensionType_Caffe,
        )
        out.copyToHostTensor(host)
        return np.array(host.getData(), dtype=np.float32).reshape(1, -1)

    return run


def main(argv: list[str]) -> None:
    """Parse argv, build the engine's run function, run it k times, save the last output."""
    engine, path, x_path, k, out_path = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    x = np.load(x_path).astype(np.float32)
    if engine == "ort":
        run = ort_session(path)
    elif engine in ("ncnn", "ncnn-fp16"):
        run = ncnn_net(path, engine == "ncnn-fp16")
    elif engine in ("mnn", "mnn-fp16"):
        run = mnn_session(path, engine == "mnn-fp16")
    else:
        raise SystemExit(f"unknown engine {engine}")
    y = None
    for _ in range(k):
        y = run(x)
    np.save(out_path, np.asarray(y, dtype=np.float32))


if __name__ == "__main__":
    main(sys.argv)
