// Small helpers shared by the two programs: argument values and readable error text.
#pragma once

#include <tvm/ffi/error.h>

#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

namespace repnext {

// Usage errors exit with 2 and print the usage line; runtime errors exit with 1.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// argv[i + 1] for option argv[i], or a UsageError naming the option.
inline std::string OptionValue(int argc, char** argv, int& i) {
  if (i + 1 >= argc) throw UsageError(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

inline long ParseInt(const std::string& text, const std::string& option, long min, long max) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < min || v > max) {
    throw UsageError(option + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                     "], got '" + text + "'");
  }
  return v;
}

// TVM errors carry a kind ("ValueError") and a message; others just what().
inline std::string ErrorText(const std::exception& e) {
  if (const auto* ffi_error = dynamic_cast<const tvm::ffi::Error*>(&e)) {
    return ffi_error->kind() + ": " + ffi_error->message();
  }
  return e.what();
}

}  // namespace repnext
