// Minimal .npy reader/writer for float32 tensors (the header is a Python dict literal; we parse only it).
#include "npy.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace repnext {
namespace {

const char kMagic[] = "\x93NUMPY";

bool HostIsLittleEndian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// The text after 'key': in the header dict, e.g. "'<f4', 'fortran_order': ...".
std::string ValueAfter(const std::string& header, const std::string& key, const std::string& path) {
  const size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error(path + ": .npy header has no '" + key + "'");
  const size_t colon = header.find(':', at);
  if (colon == std::string::npos) throw std::runtime_error(path + ": malformed .npy header");
  size_t start = header.find_first_not_of(" ", colon + 1);
  return header.substr(start == std::string::npos ? header.size() : start);
}

std::vector<int64_t> ParseShape(const std::string& text, const std::string& path) {
  if (text.empty() || text[0] != '(') throw std::runtime_error(path + ": malformed shape in .npy header");
  const size_t end = text.find(')');
  if (end == std::string::npos) throw std::runtime_error(path + ": malformed shape in .npy header");
  std::vector<int64_t> shape;
  std::stringstream items(text.substr(1, end - 1));
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw std::runtime_error(path + ": bad dimension '" + item + "' in .npy header");
    }
  }
  return shape;
}

}  // namespace

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

Float32Array ReadNpyFloat32(const std::string& path) {
  if (!HostIsLittleEndian()) throw std::runtime_error("big-endian hosts are not supported");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open input " + path);
  char magic[6];
  unsigned char version[2];
  in.read(magic, 6);
  in.read(reinterpret_cast<char*>(version), 2);
  if (!in || std::memcmp(magic, kMagic, 6) != 0) {
    throw std::runtime_error(path + " is not a .npy file (save it with numpy.save)");
  }
  uint32_t header_len = 0;
  unsigned char len[4] = {};
  if (version[0] == 1) {
    in.read(reinterpret_cast<char*>(len), 2);
    header_len = len[0] | (len[1] << 8);
  } else if (version[0] == 2 || version[0] == 3) {
    in.read(reinterpret_cast<char*>(len), 4);
    header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (uint32_t(len[3]) << 24);
  } else {
    throw std::runtime_error(path + ": unsupported .npy version " + std::to_string(version[0]));
  }
  if (!in || header_len > (1u << 20)) throw std::runtime_error(path + ": damaged .npy header");
  std::string header(header_len, '\0');
  in.read(&header[0], header_len);
  if (!in) throw std::runtime_error(path + ": truncated .npy header");

  const std::string descr = ValueAfter(header, "descr", path);
  if (descr.rfind("'<f4'", 0) != 0) {
    throw std::runtime_error(path + " holds dtype " + descr.substr(0, descr.find(',')) +
                             ", expected float32 ('<f4'): save it with x.astype(numpy.float32)");
  }
  if (ValueAfter(header, "fortran_order", path).rfind("False", 0) != 0) {
    throw std::runtime_error(path + " is in Fortran order: save numpy.ascontiguousarray(x)");
  }
  Float32Array out;
  out.shape = ParseShape(ValueAfter(header, "shape", path), path);
  const int64_t n = NumElements(out.shape);
  if (n < 0 || n > (int64_t(1) << 34)) throw std::runtime_error(path + ": implausible shape");
  out.data.resize(size_t(n));
  in.read(reinterpret_cast<char*>(out.data.data()), std::streamsize(n * sizeof(float)));
  if (in.gcount() != std::streamsize(n * sizeof(float))) {
    throw std::runtime_error(path + " is truncated: " + ShapeString(out.shape) + " needs " +
                             std::to_string(n * sizeof(float)) + " data bytes");
  }
  return out;
}

void WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  if (!HostIsLittleEndian()) throw std::runtime_error("big-endian hosts are not supported");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + ShapeString(shape) + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  // Written beside `path` and renamed over it, so a reader never sees half a file.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write output " + path);
    const unsigned char version[2] = {1, 0};
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(kMagic, 6);
    out.write(reinterpret_cast<const char*>(version), 2);
    out.write(reinterpret_cast<const char*>(len), 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(data), std::streamsize(NumElements(shape) * sizeof(float)));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw std::runtime_error("failed writing " + path + " (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write output " + path);
  }
}

}  // namespace repnext
