"""The systemd sandbox of every service unit metalserve renders, decided per node.

Each directive carries its value, why it is set and the public source saying what it does; the
tempting directives left out carry why not. What a node runs decides the set: the NVIDIA devices
only on a GPU node, the InfiniBand verbs devices only where NCCL runs over an RDMA fabric, no
device at all, no write+execute memory and no /proc system file for llama.cpp on the CPU (CUDA and
Triton compile code at run time; the CUDA driver reads /proc/driver/nvidia). An inventory relaxes
any directive with a reason (``metalserve.service.relax``); the unit then says what and why.

Example::

    node = Node(host="gpu01", gpu=True, rdma=False, engine="vllm")
    h = service_hardening(node, Layout.for_service("metalserve-vllm"), {})
    [f"{d.name}={d.value}" for d in h.engine.directives]
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from metalserve.errors import PlanError
from metalserve.hardware import Frozen
from metalserve.layout import Layout

EXEC = "https://www.freedesktop.org/software/systemd/man/systemd.exec.html"
RESOURCES = "https://www.freedesktop.org/software/systemd/man/systemd.resource-control.html"
DEVICE_GROUPS = "https://github.com/systemd/systemd/blob/v252/src/core/bpf-devices.c"
NVIDIA_CHARDEVS = (
    "https://github.com/NVIDIA/open-gpu-kernel-modules/blob/main/kernel-open/nvidia/nv.c"
)
NVIDIA_PROCFS = (
    "https://download.nvidia.com/XFree86/Linux-x86_64/580.105.08/README/procinterface.html"
)
UVERBS = "https://github.com/torvalds/linux/blob/master/drivers/infiniband/core/uverbs_main.c"
USERNS_FAILS = "https://github.com/systemd/systemd/issues/34983"
CLOCK_IMPLIES_RTC = "https://github.com/systemd/systemd/issues/18142"
CUDA_JIT = "https://docs.nvidia.com/cuda/cuda-c-programming-guide/#just-in-time-compilation"
PSUTIL_MEMINFO = "https://psutil.readthedocs.io/en/latest/#psutil.virtual_memory"
GGML_CPUINFO = "https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-cpu/ggml-cpu.cpp"

LLAMACPP = "llamacpp"
"""The engine without Python, NCCL or JIT: on a CPU node it takes the tightest sandbox."""


class Directive(Frozen):
    """One ``Name=value`` line of a unit's ``[Service]`` section."""

    name: str
    value: str
    reason: str
    source: str


class Omission(Frozen):
    """A hardening directive deliberately left out of a unit."""

    name: str
    reason: str
    source: str


class UnitHardening(Frozen):
    directives: tuple[Directive, ...]
    omitted: tuple[Omission, ...] = ()
    relaxed: tuple[tuple[str, str], ...] = ()
    """(directive, the inventory's reason): removed from this unit."""

    def values(self, name: str) -> list[str]:
        """Every value ``name`` is set to (DeviceAllow= and SystemCallFilter= repeat)."""
        return [d.value for d in self.directives if d.name == name]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.directives)


class ServiceHardening(Frozen):
    engine: UnitHardening
    keepwarm: UnitHardening | None = Field(description="None where no keep-warm unit is rendered")
    warnings: tuple[str, ...] = ()


class Node(Frozen):
    """What decides a node's sandbox."""

    host: str
    gpu: bool
    rdma: bool = False
    engine: str
    keepwarm: bool = Field(default=False, description="a keep-warm unit pings the engine")


GOVERNED_BY = {
    "DeviceAllow": "DevicePolicy",
    "ReadWritePaths": "ProtectSystem",
    "ReadOnlyPaths": "ProtectSystem",
    "SystemCallErrorNumber": "SystemCallFilter",
    "IPAddressAllow": "IPAddressDeny",
}
"""Directives that only mean something with another: relaxing the second removes both, and an
inventory names the second (an allow list without its closed policy relaxes nothing)."""


def _d(name: str, value: str, reason: str, source: str = "") -> Directive:
    return Directive(name=name, value=value, reason=reason, source=source or f"{EXEC}#{name}=")


def _no(name: str, reason: str, source: str = "") -> Omission:
    return Omission(name=name, reason=reason, source=source or f"{EXEC}#{name}=")


def _common(umask: str) -> list[Directive]:
    """Every unit: an unprivileged process, a read-only system, no kernel knob within reach."""
    return [
        _d("NoNewPrivileges", "yes", "no setuid binary or file capability raises what it runs"),
        _d(
            "CapabilityBoundingSet",
            "",
            "none: it runs as an unprivileged user on a port above 1023; memory locking comes "
            "from LimitMEMLOCK=",
        ),
        _d("AmbientCapabilities", "", "no capability handed to the unprivileged user"),
        _d("ProtectSystem", "strict", "the whole file system read-only but the paths below"),
        _d("ProtectHome", "yes", "/home, /root and /run/user are not the service's"),
        _d("PrivateTmp", "yes", "a /tmp of its own, shared by the unit's processes only"),
        _d("PrivateMounts", "yes", "mounts made inside stay inside"),
        _d("ProtectKernelTunables", "yes", "/proc/sys and /sys read-only"),
        _d("ProtectKernelModules", "yes", "no module loading: the deploy loads the drivers"),
        _d("ProtectKernelLogs", "yes", "no kernel log ring buffer"),
        _d("ProtectControlGroups", "yes", "the cgroup tree read-only"),
        _d("ProtectClock", "yes", "no clock changes"),
        _d("ProtectHostname", "yes", "no host name changes"),
        _d("ProtectProc", "invisible", "other users' processes hidden; its own stay visible"),
        _d("RestrictNamespaces", "yes", "no new namespaces: none of the engines makes one"),
        _d("RestrictSUIDSGID", "yes", "no setuid/setgid files created"),
        _d("RestrictRealtime", "yes", "no realtime scheduling that could starve the host"),
        _d("LockPersonality", "yes", "no execution-domain switch"),
        _d(
            "RemoveIPC",
            "yes",
            "shared memory the unit's user leaves behind (a crashed run's /dev/shm segments) "
            "is removed when the unit stops",
        ),
        _d("KeyringMode", "private", "no kernel keyring shared with other services"),
        _d("UMask", umask, "files it creates are not world-readable"),
        _d("SystemCallArchitectures", "native", "no 32-bit system call entry points"),
        # pidfd_getfd is in @debug: UCX's CUDA IPC copies a peer's descriptor with it
        # (https://github.com/openucx/ucx/issues/11548); NCCL passes descriptors over a socket.
        _d(
            "SystemCallFilter",
            "@system-service",
            "the system calls of an ordinary service: @debug (ptrace, pidfd_getfd), @mount, "
            "@module, @reboot, @swap, @clock, @raw-io and @obsolete are refused; a library "
            "copying another process's descriptors with pidfd_getfd needs this relaxed",
        ),
        _d(
            "SystemCallErrorNumber",
            "EPERM",
            "a refused system call fails with EPERM instead of killing the process with SIGSYS, "
            "so a missed need shows up as an error message",
        ),
    ]


def _stricter_syscalls() -> Directive:
    return _d(
        "SystemCallFilter",
        "~@privileged @resources",
        "nor calls that need privileges or set priorities, affinities and limits: it sets none",
    )


def _no_user_namespace(ipc_note: str = "") -> Omission:
    return _no(
        "PrivateUsers",
        "not set: a unit with it fails to start where user namespaces are disabled "
        f"(user.max_user_namespaces=0, a common hardening){ipc_note}",
        USERNS_FAILS,
    )


def _paths(layout: Layout) -> list[Directive]:
    return [
        _d(
            "ReadWritePaths",
            layout.data,
            "the service user's home: HF_HOME and the caches engines fill at run time (Triton "
            "~/.triton, torch.compile and FlashInfer ~/.cache, CUDA's JIT cache ~/.nv)",
        ),
        _d(
            "ReadOnlyPaths",
            f"-{layout.models} -{layout.gguf} -{layout.state}",
            "the weights the deploy verified and its stamps: read, never written, by the engine "
            "('-': a host may lack one)",
        ),
    ]


NVIDIA_DEVICE_GROUPS = ("nvidia-frontend", "nvidia", "nvidiactl", "nvidia-uvm", "nvidia-caps")
"""/proc/devices names of the NVIDIA character devices: /dev/nvidia[0-9]* and /dev/nvidiactl
(major 195, "nvidia" and "nvidiactl" in current drivers, "nvidia-frontend" in older ones),
/dev/nvidia-uvm*, /dev/nvidia-caps/*."""


def _closed(what: str) -> Directive:
    return _d("DevicePolicy", "closed", what, f"{RESOURCES}#DevicePolicy=auto%7Cclosed%7Cstrict")


def _devices(node: Node) -> tuple[list[Directive], list[Omission]]:
    if not node.gpu:
        return [
            _d("PrivateDevices", "yes", "no GPU here: a /dev of pseudo devices only"),
            _closed("no device but the pseudo ones"),
        ], []
    allow = [
        _d(
            "DeviceAllow",
            f"char-{group} rw",
            "the NVIDIA devices by /proc/devices group, so every minor is covered (each GPU, "
            "nvidiactl, nvidia-uvm-tools, each MIG capability); groups are looked up when the "
            "unit starts: nvidia and nvidia_uvm must be loaded by then",
            f"{DEVICE_GROUPS} {NVIDIA_CHARDEVS}",
        )
        for group in NVIDIA_DEVICE_GROUPS
    ]
    if node.rdma and node.engine != LLAMACPP:  # llama.cpp's RPC is built TCP-only (plan.py)
        allow.append(
            _d(
                "DeviceAllow",
                "char-infiniband_verbs rw",
                "the RDMA fabric's verbs devices (/dev/infiniband/uverbs*) NCCL's IB transport "
                "opens",
                UVERBS,
            )
        )
    hidden = _no("PrivateDevices", "not set: its /dev of pseudo devices would hide /dev/nvidia*")
    return [_closed("no device but the pseudo ones and those allowed below"), *allow], [hidden]


def _address_families(node: Node) -> Directive:
    if node.engine == LLAMACPP:
        return _d("RestrictAddressFamilies", "AF_INET AF_INET6", "TCP only: HTTP and ggml RPC")
    return _d(
        "RestrictAddressFamilies",
        "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "local sockets between the engine's processes (ZMQ ipc://, NCCL's descriptor passing), "
        "TCP, and netlink, which getifaddrs() uses when NCCL, Gloo or torch pick an interface "
        "and rdma-core uses to find the HCAs",
    )


def _engine_unit(node: Node, layout: Layout) -> UnitHardening:
    devices, no_devices = _devices(node)
    directives = [*_common("0027"), *_paths(layout), _address_families(node), *devices]
    omitted = [
        _no_user_namespace(
            "; CUDA IPC and NCCL's shared memory are not the obstacle: all the engine's "
            "processes share the unit's namespaces"
        ),
        _no("PrivateNetwork", "not set: it serves clients"),
        *no_devices,
    ]
    if node.engine == LLAMACPP and not node.gpu:
        directives += [
            _stricter_syscalls(),
            _d("MemoryDenyWriteExecute", "yes", "ggml's CPU backend is compiled ahead of time"),
            _d(
                "ProcSubset",
                "pid",
                "ggml reads /proc/self and /proc/cpuinfo (the CPU's name for its log, 'CPU' "
                "when hidden) only",
                GGML_CPUINFO,
            ),
        ]
    else:
        omitted += [
            _no(
                "MemoryDenyWriteExecute",
                "not set: CUDA's PTX JIT, Triton and torch.compile write executable code at run "
                "time",
                CUDA_JIT,
            ),
            _no(
                "ProcSubset",
                "not set: the CUDA driver reads /proc/driver/nvidia, torch (psutil) /proc/meminfo",
                NVIDIA_PROCFS if node.gpu else PSUTIL_MEMINFO,
            ),
        ]
    return UnitHardening(directives=tuple(directives), omitted=tuple(omitted))


def _keepwarm_unit() -> UnitHardening:
    """curl asking the engine's /health on the host's loopback: TCP to 127.0.0.1, nothing else."""
    allow_list = f"{RESOURCES}#IPAddressAllow=ADDRESS%5B/PREFIXLENGTH%5D%E2%80%A6"
    directives = [
        *_common("0077"),
        _stricter_syscalls(),
        _d("PrivateDevices", "yes", "curl needs no device"),
        _closed("no device but the pseudo ones"),
        _d("MemoryDenyWriteExecute", "yes", "curl compiles nothing at run time"),
        _d("ProcSubset", "pid", "curl reads no /proc system file"),
        _d("RestrictAddressFamilies", "AF_INET AF_INET6", "TCP to the engine only"),
        _d("IPAddressDeny", "any", "no address but those allowed below", allow_list),
        _d("IPAddressAllow", "localhost", "the health URL is on the loopback", allow_list),
    ]
    omitted = [
        _no_user_namespace(),
        _no("PrivateNetwork", "not set: the engine listens on the host's loopback"),
    ]
    return UnitHardening(directives=tuple(directives), omitted=tuple(omitted))


def _relax(unit: UnitHardening, relax: Mapping[str, str]) -> UnitHardening:
    removed = set(relax) | {name for name, governor in GOVERNED_BY.items() if governor in relax}
    return unit.model_copy(
        update={
            "directives": tuple(d for d in unit.directives if d.name not in removed),
            "relaxed": tuple((name, why) for name, why in relax.items() if name in unit.names),
        }
    )


def _check_relax(node: Node, relax: Mapping[str, str]) -> None:
    if node.gpu and "DevicePolicy" in relax and "ProtectClock" not in relax:
        raise PlanError(
            f"host {node.host}: metalserve.service.relax.DevicePolicy: before systemd 253, "
            "ProtectClock=yes without a device policy becomes an allow list of the RTC alone "
            f"({CLOCK_IMPLIES_RTC}), which hides the GPUs — fix: relax ProtectClock too"
        )


def service_hardening(node: Node, layout: Layout, relax: Mapping[str, str]) -> ServiceHardening:
    """The engine unit's and the keep-warm unit's directives, less what the inventory relaxes."""
    _check_relax(node, relax)
    engine = _engine_unit(node, layout)
    keepwarm = _keepwarm_unit() if node.keepwarm else None
    unused = [n for n in relax if n not in engine.names | (keepwarm.names if keepwarm else set())]
    return ServiceHardening(
        engine=_relax(engine, relax),
        keepwarm=_relax(keepwarm, relax) if keepwarm else None,
        warnings=tuple(
            f"metalserve.service.relax.{name}: not set on this node's units, nothing relaxed"
            for name in unused
        ),
    )


def _every_directive() -> frozenset[str]:
    layout = Layout.for_service("any")
    nodes = [
        Node(host="any", gpu=gpu, rdma=gpu, engine=engine)
        for gpu in (True, False)
        for engine in ("vllm", LLAMACPP)
    ]
    units = [_keepwarm_unit(), *(_engine_unit(n, layout) for n in nodes)]
    return frozenset(d.name for unit in units for d in unit.directives)


DIRECTIVES = _every_directive()
"""Every directive a unit can get, on any kind of node."""
RELAXABLE = DIRECTIVES - set(GOVERNED_BY)
"""What an inventory may relax: every directive metalserve sets but those governed by another."""
