// RPC tracker client (see tracker.h for the protocol).
#include "tracker.h"

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/json.h>

#include <cstdio>
#include <random>
#include <stdexcept>

namespace repnext {
namespace {

constexpr int32_t kTrackerMagic = 0x2F271;
constexpr int kPut = 3, kUpdateInfo = 5, kGetPendingMatchKeys = 7;
constexpr int32_t kMaxReply = 1 << 20;
constexpr double kReplyTimeoutS = 30.0;

std::string AddrJson(const std::string& custom_addr) {
  return custom_addr.empty() ? "null" : JsonQuote(custom_addr);
}

}  // namespace

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string RandomMatchKey(const std::string& key) {
  static std::mt19937_64 rng{std::random_device{}()};
  return key + ":0." + std::to_string(rng() % 10000000000000000ULL);
}

void TrackerClient::Connect(double timeout_s) {
  fd_ = ConnectTcp(host_, port_, timeout_s);
  SetIoTimeout(fd_.get(), kReplyTimeoutS);
  SendInt32(fd_.get(), kTrackerMagic);
  if (RecvInt32(fd_.get()) != kTrackerMagic) {
    fd_.Reset();
    throw std::runtime_error(address() + " answers but is not a TVM RPC tracker");
  }
}

std::string TrackerClient::Call(const std::string& json) {
  if (!fd_.valid()) throw std::runtime_error("not connected to the tracker " + address());
  SendInt32(fd_.get(), static_cast<int32_t>(json.size()));
  SendAll(fd_.get(), json.data(), json.size());
  const int32_t n = RecvInt32(fd_.get());
  if (n <= 0 || n > kMaxReply) throw std::runtime_error("tracker " + address() + " sent a bad reply length");
  std::string reply(size_t(n), '\0');
  RecvAll(fd_.get(), &reply[0], reply.size());
  return reply;
}

void TrackerClient::ExpectSuccess(const std::string& what, const std::string& reply) {
  if (reply != "0") throw std::runtime_error("tracker " + address() + " refused " + what + ": " + reply);
}

void TrackerClient::UpdateInfo(const std::string& key, int port, const std::string& custom_addr) {
  const std::string msg = "[" + std::to_string(kUpdateInfo) + ", {\"key\": " + JsonQuote("server:" + key) +
                          ", \"addr\": [" + AddrJson(custom_addr) + ", " + std::to_string(port) + "]}]";
  ExpectSuccess("UPDATE_INFO", Call(msg));
}

void TrackerClient::Put(const std::string& key, int port, const std::string& matchkey,
                        const std::string& custom_addr) {
  const std::string msg = "[" + std::to_string(kPut) + ", " + JsonQuote(key) + ", [" + std::to_string(port) +
                          ", " + JsonQuote(matchkey) + "], " + AddrJson(custom_addr) + "]";
  ExpectSuccess("PUT", Call(msg));
}

std::vector<std::string> TrackerClient::PendingMatchKeys() {
  const std::string reply = Call("[" + std::to_string(kGetPendingMatchKeys) + "]");
  tvm::ffi::String error;
  tvm::ffi::Any value = tvm::ffi::json::Parse(tvm::ffi::String(reply), &error);
  auto arr = value.try_cast<tvm::ffi::Array<tvm::ffi::Any>>();
  if (!error.empty() || !arr.has_value()) throw std::runtime_error("tracker sent a bad match key list: " + reply);
  std::vector<std::string> keys;
  for (const tvm::ffi::Any& k : *arr) {
    if (auto s = k.try_cast<tvm::ffi::String>()) keys.emplace_back(*s);
  }
  return keys;
}

}  // namespace repnext
