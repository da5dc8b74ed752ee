// repnext-rpc-server: a TVM RPC server with no Python, for boards where MetaSchedule measures candidates.
//
// Handshake (TVM's): the client sends int32 0xFF271, int32 n, n bytes "client:KEY [-timeout=S]"; we answer
// int32 0xFF271 (0xFF273 on a key mismatch), int32 n, "server:KEY". The session itself is libtvm_runtime's
// RPC endpoint ("rpc.ServerLoop" on the socket), run in a forked child so that a crashing candidate
// or a session timeout never takes the server down. With --tracker the server offers itself to a TVM RPC
// tracker under KEY and only accepts clients carrying the match key the tracker handed out.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli_util.h"
#include "rpc_env.h"
#include "socket_io.h"
#include "tracker.h"

namespace ffi = tvm::ffi;
namespace fs = std::filesystem;
using namespace repnext;

namespace {

constexpr int32_t kRpcMagic = 0xFF271;
constexpr int32_t kRpcCodeSuccess = kRpcMagic + 0;
constexpr int32_t kRpcCodeMismatch = kRpcMagic + 2;
constexpr double kHandshakeTimeoutS = 10.0;
constexpr double kTrackerPingS = 2.0;        // how often we ask the tracker whether our match key was taken
constexpr double kUnmatchedTimeoutS = 6.0;   // a taken key not used this long is replaced by a fresh one
constexpr double kTrackerRetryS = 5.0;

const char kUsage[] =
    "usage: repnext-rpc-server [--host H] [--port P] [--tracker H:P --key K] [--custom-addr A]\n"
    "                          [--workdir DIR] [--timeout S]\n"
    "  Serves TVM RPC sessions (upload, load_module, time evaluator) for MetaSchedule's RPCRunner.\n"
    "  --host 0.0.0.0 and --port 9090 by default; --port 0 picks a free port (printed on stdout).\n"
    "  --tracker registers with a TVM RPC tracker under --key; --custom-addr is the address the tracker\n"
    "  gives clients (default: the one it sees). Uploads go to a fresh directory under --workdir (default\n"
    "  $TMPDIR or /tmp), removed after each session. --timeout caps sessions whose client sets none.\n";

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::string host = "0.0.0.0", tracker, key, custom_addr, workdir;
  int port = 9090;
  double default_timeout = 0;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  const char* tmp = std::getenv("TMPDIR");
  o.workdir = tmp && *tmp ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--host") {
      o.host = OptionValue(argc, argv, i);
    } else if (a == "--port") {
      o.port = int(ParseInt(OptionValue(argc, argv, i), a, 0, 65535));
    } else if (a == "--tracker") {
      o.tracker = OptionValue(argc, argv, i);
    } else if (a == "--key") {
      o.key = OptionValue(argc, argv, i);
    } else if (a == "--custom-addr") {
      o.custom_addr = OptionValue(argc, argv, i);
    } else if (a == "--workdir") {
      o.workdir = OptionValue(argc, argv, i);
    } else if (a == "--timeout") {
      o.default_timeout = double(ParseInt(OptionValue(argc, argv, i), a, 0, 86400 * 7));
    } else {
      throw UsageError("unknown argument " + a);
    }
  }
  if (!o.tracker.empty() && o.key.empty()) throw UsageError("--tracker needs --key (the device key clients request)");
  if (!fs::is_directory(o.workdir)) throw UsageError("--workdir " + o.workdir + " is not a directory");
  return o;
}

void Log(const std::string& msg) { std::cerr << "repnext-rpc-server: " << msg << std::endl; }

// Sleeps up to `seconds`, waking early when asked to stop.
void SleepUnlessStopped(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!g_stop && std::chrono::steady_clock::now() < end) usleep(50 * 1000);
}

std::vector<std::string> SplitWords(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

class Server {
 public:
  Server(Options o, Fd listener, int port) : o_(std::move(o)), listener_(std::move(listener)), port_(port) {
    if (!o_.tracker.empty()) {
      std::string host;
      int tport = 0;
      SplitHostPort(o_.tracker, &host, &tport);
      tracker_ = std::make_unique<TrackerClient>(host, tport);
    } else {
      matchkey_ = o_.key;
    }
  }

  void Run() {
    while (!g_stop) {
      if (tracker_ && !tracker_->connected() && !Register()) continue;
      if (!WaitReadable(listener_.get(), tracker_ ? kTrackerPingS : 0.5)) {
        if (tracker_) PingTracker();
        continue;
      }
      Fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) continue;
      double timeout = 0;
      try {
        if (!Handshake(conn.get(), &timeout)) continue;
      } catch (const std::exception& e) {
        Log(std::string("handshake failed: ") + e.what());
        continue;
      }
      Serve(std::move(conn), timeout);
      if (tracker_ && tracker_->connected()) Offer();
    }
    Log("stopped");
  }

 private:
  // Connects to the tracker and offers a session; false (after a pause) when it is unreachable.
  bool Register() {
    try {
      tracker_->Connect(kTrackerRetryS);
      tracker_->UpdateInfo(o_.key, port_, o_.custom_addr);
      Offer();
      Log("registered with tracker " + tracker_->address() + " under key '" + o_.key + "'");
      return true;
    } catch (const std::exception& e) {
      tracker_->Close();
      Log("tracker " + tracker_->address() + " unreachable (" + ErrorText(e) + "); retrying in 5 s");
      SleepUnlessStopped(kTrackerRetryS);
      return false;
    }
  }

  void Offer() {
    try {
      matchkey_ = RandomMatchKey(o_.key);
      tracker_->Put(o_.key, port_, matchkey_, o_.custom_addr);
      unmatched_s_ = 0;
    } catch (const std::exception& e) {
      Log("lost the tracker (" + ErrorText(e) + "); reconnecting");
      tracker_->Close();
    }
  }

  // A client took our match key but has not connected: after a while, offer a fresh one.
  void PingTracker() {
    try {
      const auto pending = tracker_->PendingMatchKeys();
      const bool ours = std::find(pending.begin(), pending.end(), matchkey_) != pending.end();
      unmatched_s_ = ours ? 0 : unmatched_s_ + kTrackerPingS;
      if (unmatched_s_ > kUnmatchedTimeoutS) {
        Log("match key taken but unused; offering a new one");
        Offer();
      }
    } catch (const std::exception& e) {
      Log("lost the tracker (" + ErrorText(e) + "); reconnecting");
      tracker_->Close();
    }
  }

  bool Handshake(int fd, double* timeout) {
    SetIoTimeout(fd, kHandshakeTimeoutS);
    if (RecvInt32(fd) != kRpcMagic) return false;  // not a TVM RPC client: drop it silently
    const int32_t n = RecvInt32(fd);
    if (n <= 0 || n > 4096) throw std::runtime_error("bad key length " + std::to_string(n));
    std::string key(size_t(n), '\0');
    RecvAll(fd, &key[0], key.size());
    const auto words = SplitWords(key);
    if (words.empty() || words[0] != "client:" + matchkey_) {
      SendInt32(fd, kRpcCodeMismatch);
      Log("refused a client with key '" + (words.empty() ? std::string() : words[0]) + "'");
      return false;
    }
    const std::string server_key = "server:" + o_.key;
    SendInt32(fd, kRpcCodeSuccess);
    SendInt32(fd, int32_t(server_key.size()));
    SendAll(fd, server_key.data(), server_key.size());
    *timeout = o_.default_timeout;
    for (size_t i = 1; i < words.size(); ++i) {
      if (words[i].rfind("-timeout=", 0) == 0) *timeout = std::atof(words[i].c_str() + 9);
    }
    return true;
  }

  // One session in a child process, killed when it overruns its timeout or we are stopped.
  void Serve(Fd conn, double timeout) {
    std::string dir = (fs::path(o_.workdir) / "repnext-rpc-XXXXXX").string();
    if (!mkdtemp(&dir[0])) {
      Log("cannot create a session directory under " + o_.workdir + ": " + std::strerror(errno));
      return;
    }
    Log("session started in " + dir + (timeout > 0 ? " (timeout " + std::to_string(int(timeout)) + " s)" : ""));
    const pid_t pid = fork();
    if (pid == 0) RunSessionChild(conn.get(), dir);
    if (pid < 0) Log(std::string("fork failed: ") + std::strerror(errno));
    const auto start = std::chrono::steady_clock::now();
    int status = 0;
    while (pid > 0) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Log("session ended abnormally (status " + std::to_string(status) + ")");
        break;
      }
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (g_stop || (timeout > 0 && elapsed > timeout)) {
        if (!g_stop) {
          Log("session timed out after " + std::to_string(int(timeout)) + " s; ending it");
          TellClientTimeout(conn.get(), timeout);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      usleep(20 * 1000);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    Log("session finished");
  }

  static void TellClientTimeout(int fd, double timeout) {
    try {
      SetIoTimeout(fd, 2.0);
      ffi::Function::GetGlobalRequired("rpc.ReturnException")(
          fd, ffi::String("RPCSessionTimeoutError: the " + std::to_string(int(timeout)) +
                          " s session has expired; raise the session timeout"));
    } catch (const std::exception&) {
    }
  }

  [[noreturn]] void RunSessionChild(int fd, const std::string& dir) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    ::close(listener_.get());
    if (tracker_ && tracker_->connected()) ::close(tracker_->fd());
    SetIoTimeout(fd, 0);  // between calls the client may think for as long as it likes
    int rc = 0;
    try {
      if (chdir(dir.c_str()) != 0) throw std::runtime_error("cannot enter " + dir);
      InstallRpcServerEnv(dir);
      ffi::Function::GetGlobalRequired("rpc.ServerLoop")(fd);
    } catch (const std::exception& e) {
      Log("session error: " + ErrorText(e));
      rc = 1;
    }
    std::cerr.flush();
    std::cout.flush();
    _exit(rc);
  }

  Options o_;
  Fd listener_;
  int port_;
  std::unique_ptr<TrackerClient> tracker_;
  std::string matchkey_;
  double unmatched_s_ = 0;
};

int Main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  int port = 0;
  Fd listener = ListenTcp(o.host, o.port, &port);
  std::cout << "repnext-rpc-server: listening on " << o.host << ":" << port << std::endl;
  Server(o, std::move(listener), port).Run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "repnext-rpc-server: error: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "repnext-rpc-server: error: " << ErrorText(e) << std::endl;
    return 1;
  }
}
