"""The Python side of native/: building repnext-run and repnext-rpc-server (host or aarch64, with the
aarch64 TVM runtime from its wheels), running artifacts with them (natively or under qemu-user), and the
RPC tracker client and servers used to tune and run on a board."""

from repnext_core.compile.device.runner import (
    QEMU_TIMING_NOTE,
    NativeRun,
    check_artifact_arch,
    run_artifact_native,
    run_native,
)
from repnext_core.compile.device.runtime_build import (
    NativeBuild,
    build_runtime,
    default_build_dir,
    ensure_runtime,
    source_root,
)
from repnext_core.compile.device.servers import (
    RpcServer,
    emulated_board,
    start_rpc_server,
    start_rpc_tracker,
    stop_process,
)
from repnext_core.compile.device.tools import (
    ARCHES,
    DeviceError,
    arch_name,
    elf_arch,
    host_arch,
    qemu_prefix,
    require_tool,
)
from repnext_core.compile.device.tracker import (
    Tracker,
    TrackerError,
    run_remote,
    tracker_free_sessions,
    tracker_summary,
)
from repnext_core.compile.device.wheels import fetch_runtime

__all__ = [
    "ARCHES",
    "QEMU_TIMING_NOTE",
    "DeviceError",
    "NativeBuild",
    "NativeRun",
    "RpcServer",
    "Tracker",
    "TrackerError",
    "arch_name",
    "build_runtime",
    "check_artifact_arch",
    "default_build_dir",
    "elf_arch",
    "emulated_board",
    "ensure_runtime",
    "fetch_runtime",
    "host_arch",
    "qemu_prefix",
    "require_tool",
    "run_artifact_native",
    "run_native",
    "run_remote",
    "source_root",
    "start_rpc_server",
    "start_rpc_tracker",
    "stop_process",
    "tracker_free_sessions",
    "tracker_summary",
]
