// ELF header reading: e_machine tells which CPU a shared library was compiled for.
#include "elf_arch.h"

#include <cstdint>
#include <fstream>
#include <stdexcept>

namespace repnext {

std::string ElfMachine(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  unsigned char h[20] = {};
  in.read(reinterpret_cast<char*>(h), sizeof(h));
  if (in.gcount() < 20 || h[0] != 0x7f || h[1] != 'E' || h[2] != 'L' || h[3] != 'F') {
    throw std::runtime_error(path + " is not an ELF shared library (was it built for Apple or damaged?)");
  }
  const bool little = h[5] == 1;
  const uint16_t machine = little ? uint16_t(h[18] | (h[19] << 8)) : uint16_t((h[18] << 8) | h[19]);
  switch (machine) {
    case 183: return "aarch64";
    case 62: return "x86_64";
    case 40: return "arm";
    case 243: return "riscv";
    case 3: return "x86";
    default: return "unknown (e_machine " + std::to_string(machine) + ")";
  }
}

const char* ThisArch() {
#if defined(__aarch64__)
  return "aarch64";
#elif defined(__x86_64__)
  return "x86_64";
#elif defined(__arm__)
  return "arm";
#elif defined(__riscv)
  return "riscv";
#elif defined(__i386__)
  return "x86";
#else
  return "unknown";
#endif
}

std::string ArchOfTriple(const std::string& triple) {
  const std::string cpu = triple.substr(0, triple.find('-'));
  if (cpu == "aarch64" || cpu == "arm64") return "aarch64";
  if (cpu == "x86_64" || cpu == "amd64") return "x86_64";
  if (cpu.rfind("arm", 0) == 0 || cpu.rfind("thumb", 0) == 0) return "arm";
  if (cpu.rfind("riscv", 0) == 0) return "riscv";
  if (cpu == "i386" || cpu == "i686") return "x86";
  return "";
}

}  // namespace repnext
