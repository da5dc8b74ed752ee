# Locate the TVM runtime libraries (libtvm_runtime.so, libtvm_ffi.so) and the tvm/ffi + dlpack headers.
#
# Inputs (cache variables, all optional for host builds):
#   TVM_RUNTIME_DIR   dirs holding the two libraries (a ;-list: the host wheel keeps them apart)
#   TVM_INCLUDE_DIRS  dirs holding tvm/ffi/function.h and dlpack/dlpack.h; default: <TVM_RUNTIME_DIR>/../include
#   Python3_EXECUTABLE  the Python whose apache-tvm / apache-tvm-ffi wheels supply both (host builds)
# Outputs: imported targets repnext::tvm_runtime and repnext::tvm_ffi; TVM_RUNTIME_LIBRARY, TVM_FFI_LIBRARY,
#   TVM_RUNTIME_LIBRARY_DIRS (build rpath), TVM_RUNTIME_INSTALL_FILES (what `install` copies to lib/).

set(TVM_RUNTIME_DIR "" CACHE STRING "Directories with libtvm_runtime.so and libtvm_ffi.so for the target")
set(TVM_INCLUDE_DIRS "" CACHE STRING "Directories with the tvm/ffi and dlpack headers")

# Ask the active Python's wheels where their libraries and headers are (without importing tvm: slow).
function(_repnext_tvm_from_python out_libdirs out_incdirs)
  if(NOT Python3_EXECUTABLE AND NOT DEFINED ENV{VIRTUAL_ENV} AND EXISTS "${CMAKE_SOURCE_DIR}/.venv/bin/python")
    set(Python3_EXECUTABLE "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "Python with apache-tvm")
  endif()
  set(Python3_FIND_VIRTUALENV FIRST)
  find_package(Python3 COMPONENTS Interpreter)
  if(NOT Python3_Interpreter_FOUND)
    message(FATAL_ERROR "No Python found to locate the TVM runtime: pass -DPython3_EXECUTABLE=<venv>/bin/python "
      "(with apache-tvm installed) or -DTVM_RUNTIME_DIR=... -DTVM_INCLUDE_DIRS=...")
  endif()
  set(_py [=[
import importlib.util, pathlib, sys
def top(name):
    spec = importlib.util.find_spec(name)
    return pathlib.Path(spec.origin).parent if spec and spec.origin else None
tvm, ffi = top("tvm"), top("tvm_ffi")
if tvm is None or ffi is None:
    sys.exit("apache-tvm and apache-tvm-ffi are not installed in " + sys.executable)
print(";".join(str(p) for p in (tvm / "lib", ffi / "lib")), end="|")
print(";".join(str(p) for p in (ffi / "include", ffi / "3rdparty" / "dlpack" / "include")), end="")
]=])
  execute_process(COMMAND "${Python3_EXECUTABLE}" -c "${_py}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "Cannot locate the TVM runtime through ${Python3_EXECUTABLE}: ${err}"
      "Install the wheels (pip install apache-tvm apache-tvm-ffi) or pass -DTVM_RUNTIME_DIR / -DTVM_INCLUDE_DIRS.")
  endif()
  string(REPLACE "|" ";" parts "${out}")
  list(GET parts 0 1 libdirs)
  list(GET parts 2 3 incdirs)
  set(${out_libdirs} "${libdirs}" PARENT_SCOPE)
  set(${out_incdirs} "${incdirs}" PARENT_SCOPE)
endfunction()

# ELF e_machine of a file as a name, to refuse libraries for another architecture early.
function(_repnext_elf_machine file out)
  file(READ "${file}" hdr OFFSET 18 LIMIT 2 HEX)
  set(names "b700=aarch64" "3e00=x86_64" "2800=arm" "f300=riscv" "0300=x86")
  set(result "unknown (e_machine ${hdr})")
  foreach(pair ${names})
    string(REPLACE "=" ";" kv "${pair}")
    list(GET kv 0 code)
    list(GET kv 1 name)
    if(hdr STREQUAL code)
      set(result "${name}")
    endif()
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

function(_repnext_target_arch out)
  string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" p)
  if(p MATCHES "^(aarch64|arm64)")
    set(p aarch64)
  elseif(p MATCHES "^(x86_64|amd64)")
    set(p x86_64)
  elseif(p MATCHES "^arm")
    set(p arm)
  elseif(p MATCHES "^riscv")
    set(p riscv)
  endif()
  set(${out} "${p}" PARENT_SCOPE)
endfunction()

set(_libdirs "${TVM_RUNTIME_DIR}")
set(_incdirs "${TVM_INCLUDE_DIRS}")
if(NOT _libdirs)
  if(CMAKE_CROSSCOMPILING)
    message(FATAL_ERROR "Cross-compiling for ${CMAKE_SYSTEM_PROCESSOR} needs that target's TVM runtime: pass "
      "-DTVM_RUNTIME_DIR=<dir with libtvm_runtime.so and libtvm_ffi.so from the ${CMAKE_SYSTEM_PROCESSOR} wheels>. "
      "`repnext build-runtime --target aarch64` downloads and caches them (pip download --only-binary=:all: "
      "--platform manylinux_2_28_aarch64 apache-tvm apache-tvm-ffi) and runs this build for you.")
  endif()
  _repnext_tvm_from_python(_libdirs _py_incdirs)
  if(NOT _incdirs)
    set(_incdirs "${_py_incdirs}")
  endif()
endif()
if(NOT _incdirs)
  foreach(d ${_libdirs})
    list(APPEND _incdirs "${d}/../include")
  endforeach()
endif()

# The two libraries, each found in the first directory that has it.
foreach(lib tvm_runtime tvm_ffi)
  string(TOUPPER "${lib}" LIB)
  unset(_found)
  foreach(d ${_libdirs})
    if(NOT _found AND EXISTS "${d}/lib${lib}.so")
      file(REAL_PATH "${d}/lib${lib}.so" _found)
    endif()
  endforeach()
  if(NOT _found)
    message(FATAL_ERROR "lib${lib}.so not found in TVM_RUNTIME_DIR=${_libdirs}")
  endif()
  set(${LIB}_LIBRARY "${_found}")
endforeach()

# Headers: tvm/ffi (from apache-tvm-ffi) and dlpack.
set(_incs "")
foreach(h tvm/ffi/function.h dlpack/dlpack.h)
  unset(_hit)
  foreach(d ${_incdirs})
    if(NOT _hit AND EXISTS "${d}/${h}")
      file(REAL_PATH "${d}" _hit)
    endif()
  endforeach()
  if(NOT _hit)
    message(FATAL_ERROR "${h} not found in TVM_INCLUDE_DIRS=${_incdirs} (the apache-tvm-ffi wheel has both "
      "tvm_ffi/include and tvm_ffi/3rdparty/dlpack/include)")
  endif()
  list(APPEND _incs "${_hit}")
endforeach()
list(REMOVE_DUPLICATES _incs)

_repnext_target_arch(_arch)
foreach(l "${TVM_RUNTIME_LIBRARY}" "${TVM_FFI_LIBRARY}")
  _repnext_elf_machine("${l}" _m)
  if(NOT _m STREQUAL _arch)
    message(FATAL_ERROR "${l} is built for ${_m}, but this build targets ${_arch}. Point TVM_RUNTIME_DIR at the "
      "${_arch} wheel's libraries (or use the toolchain file that matches them).")
  endif()
endforeach()

add_library(repnext::tvm_ffi SHARED IMPORTED)
set_target_properties(repnext::tvm_ffi PROPERTIES
  IMPORTED_LOCATION "${TVM_FFI_LIBRARY}" IMPORTED_NO_SONAME OFF
  INTERFACE_INCLUDE_DIRECTORIES "${_incs}")
add_library(repnext::tvm_runtime SHARED IMPORTED)
set_target_properties(repnext::tvm_runtime PROPERTIES
  IMPORTED_LOCATION "${TVM_RUNTIME_LIBRARY}"
  INTERFACE_LINK_LIBRARIES repnext::tvm_ffi)

set(TVM_RUNTIME_LIBRARY_DIRS "")
foreach(l "${TVM_RUNTIME_LIBRARY}" "${TVM_FFI_LIBRARY}")
  get_filename_component(_d "${l}" DIRECTORY)
  list(APPEND TVM_RUNTIME_LIBRARY_DIRS "${_d}")
endforeach()
list(REMOVE_DUPLICATES TVM_RUNTIME_LIBRARY_DIRS)
set(TVM_RUNTIME_INSTALL_FILES "${TVM_RUNTIME_LIBRARY}" "${TVM_FFI_LIBRARY}")
