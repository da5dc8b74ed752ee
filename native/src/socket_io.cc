// POSIX socket plumbing with explicit timeouts, so no read can hang the server forever.
#include "socket_io.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace repnext {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

struct AddrInfo {
  addrinfo* list = nullptr;
  AddrInfo(const std::string& host, int port, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const std::string service = std::to_string(port);
    const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
    if (rc != 0) throw std::runtime_error("cannot resolve " + host + ": " + gai_strerror(rc));
  }
  ~AddrInfo() { freeaddrinfo(list); }
};

int PortOf(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw std::runtime_error(Errno("getsockname"));
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) Reset(o.Release());
  return *this;
}

int Fd::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Fd ListenTcp(const std::string& host, int port, int* bound_port) {
  AddrInfo ai(host, port, true);
  std::string last = "no address";
  for (addrinfo* p = ai.list; p; p = p->ai_next) {
    Fd fd(::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
    if (!fd.valid()) continue;
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), p->ai_addr, p->ai_addrlen) != 0 || ::listen(fd.get(), 4) != 0) {
      last = std::strerror(errno);
      continue;
    }
    if (bound_port) *bound_port = PortOf(fd.get());
    return fd;
  }
  throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + last);
}

Fd ConnectTcp(const std::string& host, int port, double timeout_s) {
  AddrInfo ai(host, port, false);
  std::string last = "no address";
  for (addrinfo* p = ai.list; p; p = p->ai_next) {
    Fd fd(::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
    if (!fd.valid()) continue;
    SetIoTimeout(fd.get(), timeout_s);  // Linux applies SO_SNDTIMEO to connect() as well
    if (::connect(fd.get(), p->ai_addr, p->ai_addrlen) == 0) {
      const int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    last = std::strerror(errno);
  }
  throw std::runtime_error("cannot connect to " + host + ":" + std::to_string(port) + ": " + last);
}

void SetIoTimeout(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - double(tv.tv_sec)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool WaitReadable(int fd, double timeout_s) {
  pollfd p{fd, POLLIN, 0};
  const int rc = ::poll(&p, 1, static_cast<int>(timeout_s * 1000));
  if (rc < 0 && errno != EINTR) throw std::runtime_error(Errno("poll"));
  return rc > 0;
}

void SendAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error(Errno("send"));
    p += k;
    n -= size_t(k);
  }
}

void RecvAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) throw std::runtime_error("connection closed by peer");
    if (k < 0) {
      throw std::runtime_error(errno == EAGAIN || errno == EWOULDBLOCK ? "timed out waiting for the peer"
                                                                       : Errno("recv"));
    }
    p += k;
    n -= size_t(k);
  }
}

void SendInt32(int fd, int32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                              static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
  SendAll(fd, b, 4);
}

int32_t RecvInt32(int fd) {
  unsigned char b[4];
  RecvAll(fd, b, 4);
  return static_cast<int32_t>(uint32_t(b[0]) | (uint32_t(b[1]) << 8) | (uint32_t(b[2]) << 16) |
                              (uint32_t(b[3]) << 24));
}

void SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    throw std::runtime_error("address must be HOST:PORT, got '" + address + "'");
  }
  *host = address.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  char* end = nullptr;
  const long p = std::strtol(address.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p <= 0 || p > 65535) throw std::runtime_error("bad port in '" + address + "'");
  *port = int(p);
}

}  // namespace repnext
