// repnext-run: load a TVM artifact (model.so + meta.json), run it on an input, time it, save the output.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "artifact.h"
#include "cli_util.h"
#include "npy.h"

namespace ffi = tvm::ffi;
using namespace repnext;

namespace {

const char kUsage[] =
    "usage: repnext-run ARTIFACT_DIR [--input X.npy] [--output Y.npy] [--warmup N] [--repeat M] "
    "[--threads T]\n"
    "  Runs model.so of a `repnext build` artifact on one input (float32 .npy, the shape in meta.json),\n"
    "  prints median/min/max latency over M runs after N warm-up runs, and writes the output .npy.\n"
    "  Without --input a deterministic input is used. --threads sets TVM's worker threads.\n";

struct Options {
  std::string artifact_dir, input, output;
  long warmup = 3, repeat = 10, threads = 0;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--input") {
      o.input = OptionValue(argc, argv, i);
    } else if (a == "--output") {
      o.output = OptionValue(argc, argv, i);
    } else if (a == "--warmup") {
      o.warmup = ParseInt(OptionValue(argc, argv, i), a, 0, 1000000);
    } else if (a == "--repeat") {
      o.repeat = ParseInt(OptionValue(argc, argv, i), a, 1, 1000000);
    } else if (a == "--threads") {
      o.threads = ParseInt(OptionValue(argc, argv, i), a, 1, 1024);
    } else if (!a.empty() && a[0] == '-') {
      throw UsageError("unknown option " + a);
    } else if (o.artifact_dir.empty()) {
      o.artifact_dir = a;
    } else {
      throw UsageError("one ARTIFACT_DIR only, got '" + o.artifact_dir + "' and '" + a + "'");
    }
  }
  if (o.artifact_dir.empty()) throw UsageError("ARTIFACT_DIR is required");
  return o;
}

// Host memory for the input tensor, 64-byte aligned as TVM kernels prefer.
struct HostAlloc {
  void AllocData(DLTensor* t) {
    size_t bytes = (t->dtype.bits * t->dtype.lanes + 7) / 8;
    for (int i = 0; i < t->ndim; ++i) bytes *= size_t(t->shape[i]);
    t->data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!t->data) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// Values in [-1, 1) that do not depend on any RNG, so every board and Python agree on them.
std::vector<float> DeterministicInput(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float((i * 7919) % 1000) / 500.0f - 1.0f;
  return x;
}

ffi::Function Require(const ffi::Module& mod, const char* name, const std::string& what) {
  auto f = mod->GetFunction(name);
  if (!f.has_value()) throw std::runtime_error(what + " has no function '" + name + "'");
  return *f;
}

ffi::Tensor FirstTensor(const ffi::Any& out) {
  if (auto t = out.try_cast<ffi::Tensor>()) return *t;
  if (auto arr = out.try_cast<ffi::Array<ffi::Any>>()) {
    if (!arr->empty()) return FirstTensor((*arr)[0]);
  }
  throw std::runtime_error("main returned " + out.GetTypeKey() + ", expected a tensor");
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int Run(const Options& o) {
  ArtifactMeta meta = ReadArtifactMeta(o.artifact_dir);
  CheckRunsHere(meta);

  std::vector<float> x;
  std::string input_from;
  const int64_t n_in = NumElements(meta.input_shape);
  if (o.input.empty()) {
    x = DeterministicInput(n_in);
    input_from = "no --input: using a deterministic input x[i] = ((i * 7919) % 1000) / 500 - 1";
  } else {
    Float32Array in = ReadNpyFloat32(o.input);
    if (in.shape != meta.input_shape) {
      throw std::runtime_error(o.input + " has shape " + ShapeString(in.shape) + " (" +
                               std::to_string(NumElements(in.shape)) + " values) but the artifact takes " +
                               ShapeString(meta.input_shape) + " (" + std::to_string(n_in) + " values)");
    }
    x = std::move(in.data);
    input_from = "input " + o.input;
  }
  if (o.threads > 0) setenv("TVM_NUM_THREADS", std::to_string(o.threads).c_str(), 1);

  ffi::Module lib = ffi::Module::LoadFromFile(meta.library);
  ffi::Module vm = Require(lib, "vm_load_executable", meta.library)().cast<ffi::Module>();
  constexpr int kPooledAllocator = 2;
  Require(vm, "vm_initialization", "the VM")(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  ffi::Function main_fn = Require(vm, "main", "the VM");

  ffi::Tensor input = ffi::Tensor::FromNDAlloc(HostAlloc(), ffi::Shape(meta.input_shape),
                                               DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
  std::memcpy(input.data_ptr(), x.data(), x.size() * sizeof(float));

  std::cout << "repnext-run: " << (meta.variant.empty() ? "model" : meta.variant) << " "
            << ShapeString(meta.input_shape) << " built for " << meta.target_name << " with TVM "
            << meta.tvm_version << "\n" << input_from << std::endl;

  using Clock = std::chrono::steady_clock;
  ffi::Tensor output;
  for (long i = 0; i < o.warmup; ++i) output = FirstTensor(main_fn(input));
  std::vector<double> ms;
  for (long i = 0; i < o.repeat; ++i) {
    const auto t0 = Clock::now();
    output = FirstTensor(main_fn(input));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  char line[256];
  std::snprintf(line, sizeof(line), "latency over %ld runs after %ld warm-up: median %.3f ms, min %.3f ms, max %.3f ms",
                o.repeat, o.warmup, Median(ms), *std::min_element(ms.begin(), ms.end()),
                *std::max_element(ms.begin(), ms.end()));
  std::cout << line << (o.threads > 0 ? " (" + std::to_string(o.threads) + " threads)" : std::string()) << std::endl;

  const DLDataType dt = output.dtype();
  if (dt.code != kDLFloat || dt.bits != 32 || dt.lanes != 1 || output.device().device_type != kDLCPU ||
      !output.IsContiguous()) {
    throw std::runtime_error("the model's output is not a contiguous float32 CPU tensor");
  }
  std::vector<int64_t> out_shape(output.shape().begin(), output.shape().end());
  if (!meta.output_shape.empty() && out_shape != meta.output_shape) {
    std::cerr << "warning: output shape " << ShapeString(out_shape) << " differs from meta.json's "
              << ShapeString(meta.output_shape) << std::endl;
  }
  if (!o.output.empty()) {
    WriteNpyFloat32(o.output, out_shape,
                    reinterpret_cast<const float*>(static_cast<const char*>(output.data_ptr()) +
                                                   output.GetDLTensorPtr()->byte_offset));
    std::cout << "wrote " << o.output << " " << ShapeString(out_shape) << std::endl;
  } else {
    std::cout << "output " << ShapeString(out_shape) << " (not saved: no --output)" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "repnext-run: error: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "repnext-run: error: " << ErrorText(e) << std::endl;
    return 1;
  }
}
