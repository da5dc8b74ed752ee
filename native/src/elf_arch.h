// Architecture checks: which CPU an ELF file is for, and which CPU this program was built for.
#pragma once

#include <string>

namespace repnext {

// "aarch64", "x86_64", "arm", "riscv", "x86", or "unknown (e_machine N)"; throws if not an ELF file.
std::string ElfMachine(const std::string& path);

// The architecture this binary was compiled for, in ElfMachine's spelling.
const char* ThisArch();

// The architecture an LLVM target triple names ("aarch64-linux-gnu" -> "aarch64"), or "" if unknown.
std::string ArchOfTriple(const std::string& triple);

}  // namespace repnext
