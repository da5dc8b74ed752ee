// RPC session environment: tvm.rpc.server.workpath / load_module and a CPU random fill for measurement.
#include "rpc_env.h"

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <stdexcept>

namespace ffi = tvm::ffi;

namespace repnext {
namespace {

// Client paths are relative to the session directory; absolute paths and ".." would escape it.
std::string WorkPath(const std::string& workdir, const std::string& name) {
  if (!name.empty() && name[0] == '/') throw std::runtime_error("RPC path must be relative: " + name);
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = name.find('/', start);
    if (name.substr(start, end == std::string::npos ? std::string::npos : end - start) == "..") {
      throw std::runtime_error("RPC path leaves the session directory: " + name);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return workdir + "/" + name;
}

// float in [1, 10) -> IEEE half bits (normal numbers only, which is all this range needs).
uint16_t HalfBits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t exp = ((x >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>((exp << 10) | ((x >> 13) & 0x3ff));
}

uint16_t Bfloat16Bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return static_cast<uint16_t>(x >> 16);
}

// Fills a CPU tensor with values in [1, 10), integers included (so they are valid non-zero sizes).
void RandomFillForMeasure(DLTensor* t) {
  if (t->device.device_type != kDLCPU) throw std::runtime_error("random fill supports CPU tensors only");
  if (t->dtype.lanes != 1) throw std::runtime_error("random fill supports scalar dtypes only");
  static thread_local std::mt19937 rng{12345};
  std::uniform_real_distribution<float> dist(1.0f, 10.0f);
  int64_t n = 1;
  for (int i = 0; i < t->ndim; ++i) n *= t->shape[i];
  char* base = static_cast<char*>(t->data) + t->byte_offset;
  const int code = t->dtype.code, bits = t->dtype.bits;
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (code == kDLFloat && bits == 32) {
      reinterpret_cast<float*>(base)[i] = v;
    } else if (code == kDLFloat && bits == 64) {
      reinterpret_cast<double*>(base)[i] = v;
    } else if (code == kDLFloat && bits == 16) {
      reinterpret_cast<uint16_t*>(base)[i] = HalfBits(v);
    } else if (code == kDLBfloat && bits == 16) {
      reinterpret_cast<uint16_t*>(base)[i] = Bfloat16Bits(v);
    } else if ((code == kDLInt || code == kDLUInt) && (bits == 8 || bits == 16 || bits == 32 || bits == 64)) {
      const int64_t k = static_cast<int64_t>(v);
      std::memcpy(base + i * (bits / 8), &k, size_t(bits / 8));  // little endian: the low bytes
    } else if (code == kDLBool || (code == kDLUInt && bits == 1)) {
      base[i] = 1;
    } else {
      throw std::runtime_error("random fill: unsupported dtype code " + std::to_string(code) + " bits " +
                               std::to_string(bits));
    }
  }
}

}  // namespace

void InstallRpcServerEnv(const std::string& workdir) {
  ffi::Function::SetGlobal(
      "tvm.rpc.server.workpath",
      ffi::Function::FromTyped([workdir](ffi::String name) { return ffi::String(WorkPath(workdir, name)); }),
      /*override=*/true);
  ffi::Function::SetGlobal(
      "tvm.rpc.server.load_module", ffi::Function::FromTyped([workdir](ffi::String name) {
        const std::string path = WorkPath(workdir, name);
        std::cerr << "repnext-rpc-server: load_module " << path << std::endl;
        return ffi::Module::LoadFromFile(path);
      }),
      true);
  const char* fill = "tvm.contrib.random.random_fill_for_measure";
  if (!ffi::Function::GetGlobal(fill).has_value()) {  // libtvm_runtime_extra has one; we do not ship it
    ffi::Function::SetGlobal(fill, ffi::Function::FromTyped([](DLTensor* t) { RandomFillForMeasure(t); }), false);
  }
}

}  // namespace repnext
