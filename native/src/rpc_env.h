// The global functions a TVM RPC client expects on the server side, in C++ (the Python server defines
// them in Python): the session's work directory, loading an uploaded module, and the random fill that
// MetaSchedule's RPCRunner uses for candidate inputs. upload/download/remove come with libtvm_runtime and
// resolve their paths through "tvm.rpc.server.workpath".
#pragma once

#include <string>

namespace repnext {

// Registers the functions for one session whose uploads live in `workdir` (an existing directory).
void InstallRpcServerEnv(const std::string& workdir);

}  // namespace repnext
