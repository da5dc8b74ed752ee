// meta.json reading (through tvm-ffi's JSON parser) and the can-it-run-here checks.
#include "artifact.h"

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/string.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "elf_arch.h"

namespace repnext {
namespace {

namespace json = tvm::ffi::json;
using tvm::ffi::Any;

constexpr const char* kFormat = "repnext-tvm-artifact/1";

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// obj[key] when obj is a JSON object that has it, else nullopt.
std::optional<Any> Get(const Any& obj, const char* key) {
  auto map = obj.as<json::Object>();
  if (!map.has_value()) return std::nullopt;
  return map->Get(Any(tvm::ffi::String(key)));
}

std::string GetString(const Any& obj, const char* key) {
  auto v = Get(obj, key);
  if (!v.has_value()) return {};
  auto s = v->try_cast<tvm::ffi::String>();
  return s.has_value() ? std::string(*s) : std::string();
}

std::vector<int64_t> GetShape(const Any& obj, const char* key, const std::string& path) {
  std::vector<int64_t> shape;
  auto v = Get(obj, key);
  if (!v.has_value() || v->type_index() == tvm::ffi::TypeIndex::kTVMFFINone) return shape;
  auto arr = v->as<json::Array>();
  if (!arr.has_value()) throw std::runtime_error(path + ": '" + key + "' is not a list of integers");
  for (const Any& d : *arr) {
    auto i = d.as<int64_t>();
    if (!i.has_value() || *i <= 0) throw std::runtime_error(path + ": '" + key + "' is not a list of sizes");
    shape.push_back(*i);
  }
  return shape;
}

}  // namespace

ArtifactMeta ReadArtifactMeta(const std::string& dir) {
  const std::string path = dir + "/meta.json";
  const std::string text = ReadText(path);
  if (text.empty()) {
    throw std::runtime_error(dir + " is not a TVM artifact (no meta.json); make one with `repnext build`");
  }
  tvm::ffi::String error;
  Any root = json::Parse(tvm::ffi::String(text), &error);
  if (!error.empty()) throw std::runtime_error(path + " is damaged: " + std::string(error));
  if (GetString(root, "format") != kFormat) {
    throw std::runtime_error(path + ": unknown artifact format '" + GetString(root, "format") + "' (expected " +
                             kFormat + ")");
  }
  ArtifactMeta meta;
  meta.dir = dir;
  meta.variant = GetString(root, "variant");
  meta.tvm_version = GetString(root, "tvm_version");
  meta.dtype = GetString(root, "dtype");
  meta.input_shape = GetShape(root, "input_shape", path);
  meta.output_shape = GetShape(root, "output_shape", path);
  if (meta.input_shape.empty()) throw std::runtime_error(path + " has no input_shape");
  if (auto target = Get(root, "target")) {
    meta.target_name = GetString(*target, "name");
    if (auto tvm_target = Get(*target, "target")) meta.mtriple = GetString(*tvm_target, "mtriple");
  }
  const std::string kind = GetString(root, "artifact_kind");
  std::string library;
  if (auto files = Get(root, "files")) library = GetString(*files, "library");
  if (kind == "objects" || library.empty()) {
    throw std::runtime_error(dir + " holds object files for " + meta.target_name +
                             " (to link into an app), not a model.so this runner can load");
  }
  if (library.find("..") != std::string::npos) throw std::runtime_error(path + ": bad library name " + library);
  meta.library = library[0] == '/' ? library : dir + "/" + library;
  if (meta.dtype != "float32") {
    throw std::runtime_error(dir + " takes dtype " + meta.dtype + "; this runner handles float32 models");
  }
  return meta;
}

void CheckRunsHere(const ArtifactMeta& meta) {
  const std::string here = ThisArch();
  const std::string lib_arch = ElfMachine(meta.library);  // throws on a missing or non-ELF file
  if (lib_arch != here) {
    throw std::runtime_error(meta.library + " is built for " + lib_arch + " (target " + meta.target_name +
                             ") but this runner is " + here + ": use the " + lib_arch +
                             " build of repnext-run, or rebuild the model with --target for " + here);
  }
  const std::string meta_arch = ArchOfTriple(meta.mtriple);
  if (!meta_arch.empty() && meta_arch != here) {
    throw std::runtime_error(meta.dir + "/meta.json says target " + meta.target_name + " (" + meta.mtriple +
                             ") but this runner is " + here);
  }
}

}  // namespace repnext
