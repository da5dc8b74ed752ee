# Toolchain file: cross-compile for 64-bit ARM Linux (Raspberry Pi 3/4/5, RK35xx boards, Android-free
# ARM Linux) with Debian's cross compiler (apt-get install g++-aarch64-linux-gnu).
# Run the result here with: qemu-aarch64 -L /usr/aarch64-linux-gnu build/.../repnext-run ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(_triple aarch64-linux-gnu)
find_program(REPNEXT_AARCH64_CXX ${_triple}-g++)
if(NOT REPNEXT_AARCH64_CXX)
  message(FATAL_ERROR "${_triple}-g++ not found: install the cross compiler with "
    "`apt-get install g++-${_triple}` (Debian/Ubuntu package g++-${_triple})")
endif()
set(CMAKE_CXX_COMPILER "${REPNEXT_AARCH64_CXX}")
find_program(REPNEXT_AARCH64_CC ${_triple}-gcc)
if(REPNEXT_AARCH64_CC)
  set(CMAKE_C_COMPILER "${REPNEXT_AARCH64_CC}")
endif()

# Target libraries and headers come from the sysroot of the cross toolchain; programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
