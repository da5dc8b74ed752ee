// .npy files (NumPy format 1.0-3.0) holding little-endian float32 arrays in C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace repnext {

struct Float32Array {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Reads a C-order '<f4' array; other dtypes or Fortran order are refused with a message saying how to fix it.
Float32Array ReadNpyFloat32(const std::string& path);

// Writes `data` (product(shape) floats) as a version 1.0 .npy file.
void WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

// "(1, 3, 224, 224)"
std::string ShapeString(const std::vector<int64_t>& shape);

int64_t NumElements(const std::vector<int64_t>& shape);

}  // namespace repnext
