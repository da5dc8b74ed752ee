// An artifact directory as `repnext build` writes it: model.so plus meta.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace repnext {

struct ArtifactMeta {
  std::string dir;
  std::string library;       // absolute or dir-relative path of model.so
  std::string variant;
  std::string target_name;   // "host", "cortex-a72", ...
  std::string mtriple;       // "" for host builds
  std::string tvm_version;
  std::string dtype;
  std::vector<int64_t> input_shape;
  std::vector<int64_t> output_shape;  // empty when meta.json does not say
};

// Parses DIR/meta.json (format repnext-tvm-artifact/1); throws with a message naming what is wrong.
ArtifactMeta ReadArtifactMeta(const std::string& dir);

// Refuses, before dlopen, a library for another CPU than this program's (or one meta.json says is).
void CheckRunsHere(const ArtifactMeta& meta);

}  // namespace repnext
