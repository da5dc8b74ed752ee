// Client side of TVM's RPC tracker protocol, as an RPC server uses it to offer itself under a key.
//
// Wire format: both sides first exchange the int32 magic 0x2F271; then every message is an int32 length
// followed by that many bytes of JSON. A server sends
//   [5 UPDATE_INFO, {"key": "server:KEY", "addr": [ADDR|null, PORT]}]   -> 0
//   [3 PUT, KEY, [PORT, MATCHKEY], ADDR|null]                          -> 0
//   [7 GET_PENDING_MATCHKEYS]                                          -> ["KEY:0.123", ...]
// A client that REQUESTs KEY is handed (addr, port, MATCHKEY) and must present "client:MATCHKEY".
#pragma once

#include <string>
#include <vector>

#include "socket_io.h"

namespace repnext {

class TrackerClient {
 public:
  TrackerClient(std::string host, int port) : host_(std::move(host)), port_(port) {}

  // Connects and checks the magic; throws if the peer is not a TVM RPC tracker.
  void Connect(double timeout_s);
  bool connected() const { return fd_.valid(); }
  void Close() { fd_.Reset(); }
  int fd() const { return fd_.get(); }

  // Describes this server in the tracker's summary (custom_addr "" lets the tracker use our peer address).
  void UpdateInfo(const std::string& key, int port, const std::string& custom_addr);
  // Offers one session: a client that requests `key` gets our address and `matchkey`.
  void Put(const std::string& key, int port, const std::string& matchkey, const std::string& custom_addr);
  // Match keys handed out but not used yet (ours missing from it: a client took it).
  std::vector<std::string> PendingMatchKeys();

  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  std::string Call(const std::string& json);  // one request, one reply (JSON text)
  void ExpectSuccess(const std::string& what, const std::string& reply);

  std::string host_;
  int port_;
  Fd fd_;
};

// "KEY:0.<random digits>", the tracker's match key form.
std::string RandomMatchKey(const std::string& key);

// A JSON string literal for `s`.
std::string JsonQuote(const std::string& s);

}  // namespace repnext
