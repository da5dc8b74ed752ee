"""The peer runtimes' loaders: each returns a function x -> y for one model file on `threads` threads.

The host bench imports them; the counted ARM bench runs this file as a script inside the emulated aarch64
Python (`python3.11 peer_runtimes.py ENGINE MODEL_PATH X.npy K OUT.npy`: k inferences, the last output
saved), so it imports nothing but numpy and the engine's own wheel.
"""

import sys

import numpy as np


def ort_session(path: str, threads: int = 1):
    """An onnxruntime session, no spinning, sequential execution."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # its DNS-querying telemetry threads
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ncnn_net(path: str, fp16: bool, threads: int = 1):
    """An ncnn net, fp32 throughout (fp16=False) or ncnn's default fp16 storage + arithmetic."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
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


def mnn_session(path: str, fp16: bool, threads: int = 1):
    """An MNN CPU session, precision normal (fp32) or low (fp16 where the core has it)."""
    import MNN

    interp = MNN.Interpreter(path)
    interp.setSessionMode(9)  # Session_Release: free the model buffer once the session is made
    sess = interp.createSession(
        {"numThread": threads, "precision": "low" if fp16 else "normal", "backend": "CPU"}
    )
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


def litert_interpreter(path: str, threads: int = 1):
    """A LiteRT interpreter on a float32 .tflite model, XNNPACK (its default CPU delegate) doing the work."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def openvino_model(path: str, precision: str = "f32", threads: int = 1):
    """An OpenVINO CPU model read from ONNX (read_model, no conversion tool), with its inference precision
    pinned: f32, or bf16 (its default on AVX512-BF16 / AMX CPUs)."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    # OpenVINO's fast path (as ours reads an aligned input in place): no copy of the input in, none of the
    # output out but the caller's own; the default copies cost it ~0.3 ms of M1's 18.5 at 1 thread.
    return lambda x: request.infer({0: x}, share_inputs=True, share_outputs=True)[output].copy()


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
