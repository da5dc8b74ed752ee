// TCP helpers for the RPC server and the tracker client: listen, connect, exact reads/writes, timeouts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace repnext {

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(o.Release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();
  void Reset(int fd = -1);

 private:
  int fd_;
};

// Binds and listens on host:port (port 0: any free port); *bound_port receives the port in use.
Fd ListenTcp(const std::string& host, int port, int* bound_port);

// Connects within timeout_s seconds, or throws with the address and the reason.
Fd ConnectTcp(const std::string& host, int port, double timeout_s);

// Limits every later blocking recv/send on fd to `seconds` (0: no limit).
void SetIoTimeout(int fd, double seconds);

// True when fd has data (or a pending connection) within timeout_s seconds.
bool WaitReadable(int fd, double timeout_s);

void SendAll(int fd, const void* data, size_t n);
void RecvAll(int fd, void* data, size_t n);  // throws on EOF, error or timeout
void SendInt32(int fd, int32_t v);           // little endian, as TVM's RPC handshake
int32_t RecvInt32(int fd);

// "host:port" -> parts; throws on a malformed address.
void SplitHostPort(const std::string& address, std::string* host, int* port);

}  // namespace repnext
