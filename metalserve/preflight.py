"""Preflight: read-only checks of one host against its plan, and of a cluster's nodes against each
other, before a deploy, a re-provision or a diagnostic finds the problem the slow way.

Pure: the ``roles/preflight`` role reads the host's facts into :class:`HostFacts`, the plan's
promises into :class:`PreflightTarget`, and calls :func:`host_checks`; ``metalserve preflight
show`` diffs the nodes' :class:`NodeManifest` with :func:`cluster_checks`. Every result is PASS,
WARN, FAIL or SKIP with what was expected, what was found and the fix, one line each.

Example::

    >>> r = check_shm(DiskSpace(path="/dev/shm", avail_bytes=2**26, size_bytes=2**26))
    >>> r.verdict.value, r.found
    ('FAIL', '/dev/shm is 64 MiB')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

from pydantic import Field, field_validator

from metalserve.hardware import Frozen
from metalserve.ncclsyntax import IfnameSelection
from metalserve.stack import KernelModuleFlavor
from metalserve.types import FlagText

REPROVISION = "run deploy/reprovision.py"


class Purpose(StrEnum):
    """The deploy preflight runs before. A check that deploy itself brings to the plan (the
    driver stack's pins) is shown but not judged there: before a first serve nothing is installed
    yet, and before a re-provision the old driver is the reason to run it."""

    PREFLIGHT = "preflight"
    SERVE = "serve"
    REPROVISION = "reprovision"
    DIAGNOSE = "diagnose"


CONVERGED_CHECKS = frozenset(
    {
        "driver-loaded",
        "driver-userspace",
        "driver-installed",
        "kernel-headers",
        "packages-held",
        "persistence-mode",
        "fabric-manager",
        "gpudirect",
    }
)
CONVERGED_FIELDS = frozenset({"driver", "fabric_manager", "cuda", "nccl", "rdma"})
"""Manifest fields the same deploys bring to the pins on every node."""

_CONVERGED_BY = {
    Purpose.SERVE: "deploy/serve.py installs it to the pins and verifies it",
    Purpose.REPROVISION: "deploy/reprovision.py brings it to the pins and verifies it",
}


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


class CheckResult(Frozen):
    """One check's verdict: what was expected, what was found, and (unless it passed) the fix."""

    check: str
    verdict: Verdict
    expected: str
    found: str
    fix: str = ""


def _result(check: str, ok: bool, expected: str, found: str, fix: str, bad: Verdict) -> CheckResult:
    return CheckResult(
        check=check,
        verdict=Verdict.PASS if ok else bad,
        expected=expected,
        found=found,
        fix="" if ok else fix,
    )


def shown_not_judged(result: CheckResult, why: str) -> CheckResult:
    """A finding kept as it was read, its verdict SKIP and ``why`` after it, no fix."""
    return result.model_copy(
        update={"verdict": Verdict.SKIP, "found": f"{result.found} ({why})", "fix": ""}
    )


def skipped(check: str, expected: str, why: str) -> CheckResult:
    return CheckResult(check=check, verdict=Verdict.SKIP, expected=expected, found=why)


def warned(check: str, expected: str, found: str, fix: str) -> CheckResult:
    """A check that could not be judged as it stands: what was read instead, and how to read it."""
    return CheckResult(check=check, verdict=Verdict.WARN, expected=expected, found=found, fix=fix)


class DiskSpace(Frozen):
    """``df`` of a path (or of its nearest existing parent) and, where the path exists, ``du``."""

    path: str = Field(description="the path asked about")
    avail_bytes: int
    size_bytes: int
    used_bytes: int | None = Field(default=None, description="bytes already under the path")


class NetInterface(Frozen):
    """One network interface as ``ip -o addr`` and ``/sys/class/net/*/mtu`` show it."""

    name: str
    mtu: int | None = None
    addresses: tuple[str, ...] = Field(default=(), description="its IPv4/IPv6 addresses")


class RocePfc(Frozen):
    """One RoCE netdev's lossless setup, as ``dcb`` (iproute2) reads it from the NIC."""

    netdev: str
    pfc_on: tuple[int, ...] | None = Field(description="priorities with PFC on; None: not read")
    dscp_prio: dict[int, int] = Field(
        default_factory=dict, description="the NIC's DSCP -> priority entries (empty: default)"
    )


class HostFacts(Frozen):
    """What one host reports, as plain values (the role converts its facts into these)."""

    container: str | None = None
    kernel: str = Field(description="uname -r")
    headers_present: bool
    loaded_driver: str | None = None
    loaded_flavor: KernelModuleFlavor | None = None
    installed_driver: str | None = None
    installed_flavor: KernelModuleFlavor | None = None
    module_signer: str | None = None
    smi_driver_versions: tuple[str, ...] = Field(default=(), description="per GPU, nvidia-smi")
    smi_error: str | None = None
    held: frozenset[str] = frozenset()
    secure_boot: str = "unknown"
    rival_modules: tuple[str, ...] = ()
    persistence: Mapping[str, bool] = Field(default_factory=dict, description="bus id -> on")
    fabric_manager_active: bool | None = None
    fabric_pending: tuple[str, ...] = Field(default=(), description="GPUs not Completed/Success")
    fabric_gpus: int = Field(default=0, description="GPUs reporting a fabric state")
    shm: DiskSpace | None = None
    weights: DiskSpace | None = None
    roce_gid_indices: Mapping[str, int | None] = Field(
        default_factory=dict, description="HCA -> first RoCE v2 IPv4 GID index (None: none)"
    )
    newest_kernel: str | None = Field(default=None, description="the newest kernel installed")
    newest_kernel_modules: tuple[str, ...] = Field(
        default=(), description="nvidia*.ko files built for the newest kernel"
    )
    peermem_loaded: bool | None = None
    acs_bridges: tuple[str, ...] | None = Field(
        default=None, description="PCI bridges with ACS source validation on; None: not read"
    )
    interfaces: tuple[NetInterface, ...] = ()
    iommu: str | None = Field(
        default=None, description="off, passthrough or translated; None: not read"
    )
    roce_pfc: tuple[RocePfc, ...] = ()


class PreflightTarget(Frozen):
    """What the plan promises this node (the role fills it from the plan's sections)."""

    gpu: bool = Field(description="the plan has an NVIDIA section")
    driver_version: str | None = None
    flavor: KernelModuleFlavor | None = None
    must_hold: tuple[str, ...] = Field(default=(), description="pinned packages that are held")
    precompiled_modules: bool = Field(default=False, description="nvidia.ko not built by DKMS")
    fabric_manager: bool = False
    nccl: bool = Field(default=False, description="NCCL runs here (a GPU node)")
    weights_bytes: int | None = None
    roce_devices: tuple[str, ...] = ()
    gid_index: int | None = None
    traffic_class: int | None = Field(default=None, description="NCCL_IB_TC on RoCE")
    peermem: bool = Field(default=False, description="GPUDirect RDMA through nvidia-peermem")
    pcie_p2p: bool = Field(default=False, description="several GPUs talking over PCIe only")
    rdma: bool = Field(default=False, description="NICs reach GPU memory (GPUDirect RDMA)")
    socket_ifname: str | None = Field(default=None, description="NCCL_SOCKET_IFNAME as given")
    cluster_address: str | None = Field(
        default=None, description="this node's address on the cluster network (multi-node)"
    )
    skip: Mapping[str, str] = Field(default_factory=dict, description="check -> the reason")


NO_GPU = "no NVIDIA GPU in this node's plan"
IN_CONTAINER = "runs in a {kind} container: the kernel is the hardware host's"


def check_loaded_driver(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """The module in the kernel now is the pinned version and flavour."""
    name = "driver-loaded"
    expected = f"nvidia.ko {target.driver_version} ({target.flavor}) loaded"
    if facts.loaded_driver is None:
        found = "no NVIDIA module loaded"
    else:
        found = f"{facts.loaded_driver} ({facts.loaded_flavor}) loaded"
    ok = facts.loaded_driver == target.driver_version and facts.loaded_flavor == target.flavor
    return _result(name, ok, expected, found, REPROVISION, Verdict.FAIL)


def check_installed_module(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """The module the next load or boot takes is the pinned one (else a reboot changes drivers)."""
    expected = f"nvidia.ko {target.driver_version} ({target.flavor}) installed for the kernel"
    found = (
        f"{facts.installed_driver} ({facts.installed_flavor})"
        if facts.installed_driver
        else f"no nvidia.ko for {facts.kernel}"
    )
    ok = facts.installed_driver == target.driver_version and facts.installed_flavor == target.flavor
    return _result("driver-installed", ok, expected, found, REPROVISION, Verdict.FAIL)


def check_userspace(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """nvidia-smi (NVML, the user-space library) talks to the loaded module at the pinned version:
    a "Driver/library version mismatch" shows the library and the module apart."""
    expected = f"nvidia-smi answering with driver {target.driver_version} on every GPU"
    if facts.smi_error:
        return CheckResult(
            check="driver-userspace",
            verdict=Verdict.FAIL,
            expected=expected,
            found=f"nvidia-smi failing: {facts.smi_error}",
            fix=REPROVISION,
        )
    versions = sorted(set(facts.smi_driver_versions))
    found = f"driver {', '.join(versions)}" if versions else "no GPU answering"
    ok = versions == [target.driver_version]
    return _result("driver-userspace", ok, expected, found, REPROVISION, Verdict.FAIL)


def check_held(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """Every pinned NVIDIA/CUDA/NCCL package is ``apt-mark hold``-ed, so unattended-upgrades
    cannot move it under a running engine."""
    unheld = [name for name in target.must_hold if name not in facts.held]
    return _result(
        "packages-held",
        not unheld,
        f"held: {', '.join(target.must_hold)}",
        f"not held: {', '.join(unheld)}" if unheld else "all held",
        f"apt-mark hold {' '.join(unheld)} (or run deploy/drivers.py)",
        Verdict.FAIL,
    )


def check_secure_boot(facts: HostFacts) -> CheckResult:
    """Secure Boot enabled refuses an unsigned nvidia.ko at the next load."""
    expected = "Secure Boot off, or nvidia.ko signed by an enrolled key"
    if facts.secure_boot == "enabled":
        signed = facts.module_signer is not None
        found = (
            f"enabled, nvidia.ko signed by {facts.module_signer}"
            if signed
            else ("enabled, nvidia.ko unsigned")
        )
        return _result(
            "secure-boot",
            signed,
            expected,
            found,
            "disable Secure Boot in the firmware, or enroll the DKMS signing key (mokutil "
            "--import) at the console",
            Verdict.FAIL,
        )
    if facts.secure_boot == "unknown":
        return warned(
            "secure-boot",
            expected,
            "state unknown (no mokutil, no SecureBoot EFI variable)",
            "apt-get install mokutil, then run preflight again",
        )
    return _result("secure-boot", True, expected, facts.secure_boot, "", Verdict.FAIL)


def check_rivals(facts: HostFacts) -> CheckResult:
    """nouveau / nova_core bound to the GPU keep nvidia.ko off it."""
    return _result(
        "rival-modules",
        not facts.rival_modules,
        "no nouveau/nova loaded",
        f"{', '.join(facts.rival_modules)} loaded" if facts.rival_modules else "none loaded",
        "reboot so the blacklisted initramfs takes effect (deploy/drivers.py writes it)",
        Verdict.FAIL,
    )


def check_persistence(facts: HostFacts) -> CheckResult:
    """Persistence mode keeps the driver initialised between jobs; off, each CUDA start pays the
    GPU's initialisation again (https://docs.nvidia.com/deploy/driver-persistence/index.html)."""
    off = sorted(bus for bus, on in facts.persistence.items() if not on)
    if not facts.persistence:
        return skipped("persistence-mode", "persistence mode on", "no GPU answering nvidia-smi")
    return _result(
        "persistence-mode",
        not off,
        "persistence mode on for every GPU",
        f"off on {', '.join(off)}" if off else f"on for {len(facts.persistence)} GPUs",
        "systemctl enable --now nvidia-persistenced",
        Verdict.WARN,
    )


def check_fabric_manager(facts: HostFacts) -> CheckResult:
    """On NVSwitch systems: fabric manager runs and every GPU has joined the NVLink fabric;
    otherwise CUDA fails with "system not yet initialized"."""
    expected = "nvidia-fabricmanager active, every GPU's fabric state Completed/Success"
    if not facts.fabric_manager_active:
        found = "nvidia-fabricmanager not active"
    elif facts.fabric_pending or not facts.fabric_gpus:
        found = f"pending: {', '.join(facts.fabric_pending) or 'no GPU reporting'}"
    else:
        found = f"active, {facts.fabric_gpus} GPUs Completed"
    ok = bool(facts.fabric_manager_active) and facts.fabric_gpus > 0 and not facts.fabric_pending
    return _result(
        "fabric-manager",
        ok,
        expected,
        found,
        "journalctl -u nvidia-fabricmanager; its version must equal the driver's "
        "(deploy/drivers.py)",
        Verdict.FAIL,
    )


def check_headers(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """DKMS rebuilds nvidia.ko for a new kernel only where that kernel's headers are installed."""
    expected = f"headers for {facts.kernel}"
    if target.precompiled_modules:
        return skipped("kernel-headers", expected, "nvidia.ko comes precompiled, not from DKMS")
    return _result(
        "kernel-headers",
        facts.headers_present,
        expected,
        "present" if facts.headers_present else "missing",
        f"apt-get install linux-headers-{facts.kernel} (deploy/drivers.py does)",
        Verdict.FAIL,
    )


SHM_MIN_BYTES = 1 << 30
"""NCCL's troubleshooting guide raises Docker's 64 MiB ``/dev/shm`` with ``--shm-size=1g``: NCCL
and the engines' worker processes exchange buffers there
(https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html#docker)."""


def _human(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.3g} {unit}"
    return f"{size} B"


def check_shm(shm: DiskSpace | None) -> CheckResult:
    expected = f"/dev/shm of at least {_human(SHM_MIN_BYTES)}"
    if shm is None:
        return CheckResult(
            check="shm-size",
            verdict=Verdict.FAIL,
            expected=expected,
            found="no /dev/shm",
            fix="mount a tmpfs on /dev/shm",
        )
    return _result(
        "shm-size",
        shm.size_bytes >= SHM_MIN_BYTES,
        expected,
        f"/dev/shm is {_human(shm.size_bytes)}",
        "mount -o remount,size=50% /dev/shm (in a container: --shm-size or --ipc=host)",
        Verdict.FAIL,
    )


def check_weights_space(target: PreflightTarget, space: DiskSpace | None) -> CheckResult:
    """Room for what is still to download where the weights go (a full disk hours
    into a download)."""
    name = "weights-space"
    if target.weights_bytes is None or space is None:
        return skipped(name, "room for the weights", "the checkpoint's size is not known")
    present = space.used_bytes or 0
    needed = max(target.weights_bytes - present, 0)
    return _result(
        name,
        space.avail_bytes >= needed,
        f"{_human(needed)} free under {space.path} "
        f"({_human(target.weights_bytes)} checkpoint, {_human(present)} there)",
        f"{_human(space.avail_bytes)} free",
        f"free {_human(needed - space.avail_bytes)} under {space.path}, or move the weights to a "
        "larger volume",
        Verdict.FAIL,
    )


def check_gid_index(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """Every RoCE HCA NCCL uses has its first RoCE v2 IPv4 GID at the plan's
    ``NCCL_IB_GID_INDEX``; another index gives "completion with error 12"."""
    expected = f"RoCE v2 IPv4 GID at index {target.gid_index} on {', '.join(target.roce_devices)}"
    found_by_device = {d: facts.roce_gid_indices.get(d) for d in target.roce_devices}
    wrong = {d: i for d, i in found_by_device.items() if i != target.gid_index}
    found = ", ".join(
        f"{d}: {'none' if i is None else i}" for d, i in sorted(found_by_device.items())
    )
    return _result(
        "roce-gid-index",
        not wrong,
        expected,
        found,
        "give each HCA's netdev its IPv4 address, or set fabric.gid_index to the index found",
        Verdict.FAIL,
    )


def check_newest_kernel(facts: HostFacts) -> CheckResult:
    """The newest installed kernel, the one the next reboot takes, has an nvidia.ko: DKMS builds
    only where that kernel's headers are installed (a kernel update, a reboot, and no driver). A WARN: nothing breaks before that reboot."""
    name = "driver-next-boot"
    newest = facts.newest_kernel
    if newest is None or newest == facts.kernel:
        return _result(
            name,
            True,
            "an nvidia.ko for the kernel the next boot takes",
            "no newer kernel",
            "",
            Verdict.WARN,
        )
    found = (
        f"{newest} has {', '.join(facts.newest_kernel_modules)}"
        if facts.newest_kernel_modules
        else f"{newest} (newer than the running {facts.kernel}) has no nvidia.ko"
    )
    return _result(
        name,
        bool(facts.newest_kernel_modules),
        f"an nvidia.ko for {newest}, the kernel the next boot takes",
        found,
        f"apt-get install linux-headers-{newest} (DKMS then builds nvidia.ko for it), or remove "
        "that kernel before rebooting",
        Verdict.WARN,
    )


def check_gpudirect(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """Where the plan routes GPUDirect RDMA through nvidia-peermem, the module is loaded; without
    it NCCL falls back to staging every transfer through host memory."""
    return _result(
        "gpudirect",
        bool(facts.peermem_loaded),
        "nvidia_peermem loaded (the plan's GPUDirect RDMA path)",
        "loaded" if facts.peermem_loaded else "nvidia_peermem not loaded",
        "modprobe nvidia-peermem (it needs MLNX_OFED/DOCA-OFED; deploy/serve.py sets it up)",
        Verdict.FAIL,
    )


ACS_SOURCE = (
    "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html"
    "#pci-access-control-services-acs"
)


def check_acs(facts: HostFacts) -> CheckResult:
    """GPUs talking peer to peer over PCIe (RTX 4090, RTX PRO 6000, L40S boxes): ACS on a bridge
    redirects every peer transfer to the root complex, a large slowdown or a hang in NCCL
    (NCCL's troubleshooting guide, "PCI Access Control Services": ``lspci -vvv | grep ACSCtl``
    showing ``SrcValid+``)."""
    name = "pcie-acs"
    expected = "ACS source validation off on every PCI bridge (GPU peer-to-peer over PCIe)"
    if facts.acs_bridges is None:
        return warned(
            name,
            expected,
            "not read (lspci missing or not root)",
            "apt-get install pciutils, then run preflight again",
        )
    return _result(
        name,
        not facts.acs_bridges,
        expected,
        f"SrcValid+ on {', '.join(facts.acs_bridges)}" if facts.acs_bridges else "off everywhere",
        f"disable ACS in the BIOS (or setpci ECAP_ACS+0x6.w=0000 per bridge): {ACS_SOURCE}",
        Verdict.FAIL,
    )


def lossless_priority(traffic_class: int, dscp_prio: Mapping[int, int]) -> int:
    """The priority NCCL's RoCE traffic travels at: ``NCCL_IB_TC`` is the IP traffic class byte,
    its DSCP the upper six bits; the NIC maps DSCP to a priority by its ``dscp-prio`` table where
    one is set (dcb-app(8)), else by the default of eight DSCPs per priority (DSCP >> 3, the
    IEEE 802.1Q / mlx5 trust-dscp default): 106 -> DSCP 26 -> priority 3."""
    dscp = traffic_class >> 2
    return dscp_prio.get(dscp, dscp >> 3)


def check_roce_pfc(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """PFC on the priority NCCL's traffic class lands on, on every RoCE netdev: RoCE without a
    lossless class drops under congestion and NCCL crawls through retransmits."""
    tc = int(target.traffic_class or 0)
    expected = f"PFC on the priority NCCL_IB_TC={tc} maps to, on every RoCE netdev"
    if not facts.roce_pfc:
        return warned(
            "roce-pfc",
            expected,
            "no RoCE netdev read",
            "check the HCAs' netdevs (rdma link show), then run preflight again",
        )
    found, wrong, unread = [], [], []
    for nic in facts.roce_pfc:
        prio = lossless_priority(tc, nic.dscp_prio)
        if nic.pfc_on is None:
            unread.append(nic.netdev)
            found.append(f"{nic.netdev}: PFC not readable")
            continue
        on = ",".join(map(str, nic.pfc_on)) or "none"
        found.append(f"{nic.netdev}: priority {prio}, PFC on {on}")
        if prio not in nic.pfc_on:
            wrong.append(nic.netdev)
    fix = (
        f"dcb pfc set dev <netdev> prio-pfc {lossless_priority(tc, {})}:on (and the switch ports), "
        "or set nccl.NCCL_IB_TC to the traffic class of the fabric's lossless queue"
    )
    if wrong:
        return _result("roce-pfc", False, expected, "; ".join(found), fix, Verdict.FAIL)
    if unread:
        return warned(
            "roce-pfc",
            expected,
            "; ".join(found),
            "apt-get install iproute2 (dcb); a NIC driver without DCB netlink needs its "
            "vendor tool (mlnx_qos)",
        )
    return _result("roce-pfc", True, expected, "; ".join(found), fix, Verdict.FAIL)


def check_iommu(facts: HostFacts) -> CheckResult:
    """An IOMMU that translates DMA sends peer-to-peer traffic (GPU to GPU over PCIe, NIC to GPU
    for GPUDirect RDMA) through the root complex: "a significant performance reduction or even a
    hang" in NCCL's words; passthrough (``iommu=pt``) or off keeps it direct (NCCL's
    troubleshooting guide, the same section as ACS)."""
    expected = "IOMMU off or in passthrough (iommu=pt) where GPUs or NICs talk peer to peer"
    if facts.iommu is None:
        return warned(
            "iommu", expected, "not read", "read /proc/cmdline and /sys/class/iommu by hand"
        )
    return _result(
        "iommu",
        facts.iommu in ("off", "passthrough"),
        expected,
        facts.iommu,
        f"add iommu=pt to the kernel command line (GRUB_CMDLINE_LINUX), or turn VT-d/AMD-Vi off "
        f"in the BIOS: {ACS_SOURCE}",
        Verdict.WARN,
    )


def _with_address(interfaces: Iterable[NetInterface]) -> list[NetInterface]:
    return [i for i in interfaces if i.addresses]


def check_socket_ifname(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """NCCL_SOCKET_IFNAME selects exactly one interface with an address here: none and NCCL's
    bootstrap fails ("no socket interface found"); several and it may pick one the other nodes
    cannot reach."""
    value = str(target.socket_ifname)
    selection = IfnameSelection.parse(value)
    chosen = [i for i in _with_address(facts.interfaces) if selection.selects(i.name)]
    found = (
        ", ".join(f"{i.name} ({', '.join(i.addresses)})" for i in chosen)
        if chosen
        else "no interface with an address matches"
    )
    return _result(
        "socket-ifname",
        len(chosen) == 1,
        f"NCCL_SOCKET_IFNAME={value} matching exactly one interface",
        found,
        "set fabric.socket_ifname (or nccl.NCCL_SOCKET_IFNAME) to the cluster network's interface, "
        "e.g. ['eth1'] (matched exactly); `ip -o addr` lists them",
        Verdict.FAIL,
    )


def cluster_interface(target: PreflightTarget, facts: HostFacts) -> NetInterface | None:
    """The interface that holds this node's cluster address."""
    return next(
        (i for i in facts.interfaces if target.cluster_address in i.addresses),
        None,
    )


def check_cluster_address(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """This node holds the address the plan gives the other nodes for it: else they dial a
    stranger, or nobody."""
    address = str(target.cluster_address)
    interface = cluster_interface(target, facts)
    return _result(
        "cluster-address",
        interface is not None,
        f"{address} on one of this node's interfaces",
        f"on {interface.name}"
        if interface
        else "on none of "
        + (", ".join(i.name for i in _with_address(facts.interfaces)) or "its interfaces"),
        "set cluster.address to this node's own address on the cluster network",
        Verdict.FAIL,
    )


def opted_out(result: CheckResult, skip: Mapping[str, str]) -> CheckResult:
    """A check the inventory opted out of, with its reason; its finding is still shown."""
    reason = skip.get(result.check)
    if reason is None or result.verdict is Verdict.PASS:
        return result
    return shown_not_judged(result, f"opted out: {reason}")


def _gpu_checks(target: PreflightTarget, facts: HostFacts) -> list[CheckResult]:
    in_container = IN_CONTAINER.format(kind=facts.container) if facts.container else None
    kernel_checks = [
        ("driver-installed", check_installed_module),
        ("driver-next-boot", lambda t, f: check_newest_kernel(f)),
        ("kernel-headers", check_headers),
        ("secure-boot", lambda t, f: check_secure_boot(f)),
        ("rival-modules", lambda t, f: check_rivals(f)),
    ]
    results = [check_loaded_driver(target, facts), check_userspace(target, facts)]
    for name, check in kernel_checks:
        if in_container:
            results.append(skipped(name, GPU_CHECKS[name], in_container))
        else:
            results.append(check(target, facts))
    results.append(check_held(target, facts))
    results.append(check_persistence(facts))
    results.append(
        check_fabric_manager(facts)
        if target.fabric_manager
        else skipped("fabric-manager", GPU_CHECKS["fabric-manager"], "no NVSwitch in this node")
    )
    results.append(
        check_gpudirect(target, facts)
        if target.peermem
        else skipped("gpudirect", GPU_CHECKS["gpudirect"], "the plan uses no nvidia-peermem")
    )
    if not target.pcie_p2p:
        results.append(skipped("pcie-acs", GPU_CHECKS["pcie-acs"], "no GPU peer-to-peer over PCIe"))
    elif in_container:
        results.append(skipped("pcie-acs", GPU_CHECKS["pcie-acs"], in_container))
    else:
        results.append(check_acs(facts))
    if not (target.pcie_p2p or target.rdma):
        results.append(skipped("iommu", GPU_CHECKS["iommu"], "no peer-to-peer over PCIe here"))
    elif in_container:
        results.append(skipped("iommu", GPU_CHECKS["iommu"], in_container))
    else:
        results.append(check_iommu(facts))
    return results


GPU_CHECKS = {
    "driver-loaded": "the pinned nvidia.ko loaded",
    "driver-userspace": "nvidia-smi answering at the pinned driver",
    "driver-installed": "the pinned nvidia.ko installed",
    "driver-next-boot": "an nvidia.ko for the kernel the next boot takes",
    "kernel-headers": "headers for the running kernel",
    "secure-boot": "Secure Boot off or nvidia.ko signed",
    "rival-modules": "no nouveau/nova loaded",
    "packages-held": "the pinned packages held",
    "persistence-mode": "persistence mode on",
    "fabric-manager": "fabric manager and NVLink fabric up",
    "gpudirect": "nvidia_peermem loaded where the plan uses it",
    "pcie-acs": "ACS off for GPU peer-to-peer over PCIe",
    "iommu": "IOMMU off or passthrough for peer-to-peer",
}
NETWORK_CHECKS = {
    "shm-size": "/dev/shm for NCCL",
    "weights-space": "room for the weights",
    "roce-gid-index": "RoCE GID index",
    "roce-pfc": "PFC on NCCL_IB_TC's priority",
    "socket-ifname": "NCCL_SOCKET_IFNAME matching one interface",
    "cluster-address": "this node's cluster address on one of its interfaces",
}
PEER_CHECKS = {
    "cluster-ports": "the rendezvous port of every node this one dials reachable",
}
HOST_CHECKS = (*GPU_CHECKS, *NETWORK_CHECKS)
"""What :func:`host_checks` judges, in its order; the peer checks run at execution time."""
CHECKS = (*HOST_CHECKS, *PEER_CHECKS)
"""Every check's name, as ``metalserve.preflight.skip`` names them."""


def _network_checks(target: PreflightTarget, facts: HostFacts) -> list[CheckResult]:
    def unless(applies: bool, name: str, check: Callable[[], CheckResult], why: str) -> CheckResult:
        return check() if applies else skipped(name, NETWORK_CHECKS[name], why)

    return [
        unless(target.nccl, "shm-size", lambda: check_shm(facts.shm), "NCCL does not run here"),
        check_weights_space(target, facts.weights),
        unless(
            target.gid_index is not None and bool(target.roce_devices),
            "roce-gid-index",
            lambda: check_gid_index(target, facts),
            "no RoCE fabric in the plan",
        ),
        unless(
            target.traffic_class is not None and bool(target.roce_devices),
            "roce-pfc",
            lambda: check_roce_pfc(target, facts),
            "no RoCE fabric in the plan",
        ),
        unless(
            target.socket_ifname is not None,
            "socket-ifname",
            lambda: check_socket_ifname(target, facts),
            "NCCL_SOCKET_IFNAME left to NCCL",
        ),
        unless(
            target.cluster_address is not None,
            "cluster-address",
            lambda: check_cluster_address(target, facts),
            "a single node, or an address given as a name",
        ),
    ]


def _converged(result: CheckResult, purpose: Purpose) -> CheckResult:
    """Before a deploy that brings a check to the plan itself, its finding is shown, not judged."""
    why = _CONVERGED_BY.get(purpose)
    judged = result.verdict in (Verdict.FAIL, Verdict.WARN)
    if why is None or result.check not in CONVERGED_CHECKS or not judged:
        return result
    return shown_not_judged(result, why)


def host_checks(
    target: PreflightTarget, facts: HostFacts, purpose: Purpose = Purpose.PREFLIGHT
) -> tuple[CheckResult, ...]:
    """Every check on one host, in a fixed order; each names itself once."""
    if target.gpu:
        results = _gpu_checks(target, facts)
    else:
        results = [skipped(name, expected, NO_GPU) for name, expected in GPU_CHECKS.items()]
    results += _network_checks(target, facts)
    return tuple(opted_out(_converged(r, purpose), target.skip) for r in results)


class PreflightSpec(Frozen):
    """Inventory data (``metalserve.preflight``): checks this host opts out of, each with why.
    The check still runs and its finding is shown, as SKIP with the reason.

    Example (host data)::

        "preflight": {"skip": {"secure-boot": "signed by the site's own MOK, enrolled at rack-in"}}
    """

    skip: dict[str, FlagText] = Field(
        default_factory=dict, description="check -> why it is skipped"
    )

    @field_validator("skip")
    @classmethod
    def _known_with_reason(cls, skip: dict[str, str]) -> dict[str, str]:
        for name, reason in skip.items():
            if name not in CHECKS:
                raise ValueError(
                    f"{name!r} is not a preflight check (known: {', '.join(CHECKS)}) — fix: name "
                    "one of them"
                )
            if len(reason.strip()) < 3 or not reason.isprintable() or len(reason) > 200:
                raise ValueError(
                    f"{name}: the reason must be one line saying why this host may skip it — "
                    "fix: give the reason"
                )
        return skip


class PreflightPlan(Frozen):
    """What preflight checks on this node beyond the other sections: the opt-outs, the cluster
    network, and the peers whose rendezvous port must answer."""

    skip: tuple[tuple[str, str], ...] = Field(default=(), description="(check, reason) pairs")
    pcie_p2p: bool = Field(description="several GPUs in this node talk peer to peer over PCIe")
    socket_ifname: str | None = Field(description="NCCL_SOCKET_IFNAME as NCCL is given it")
    traffic_class: int | None = Field(default=None, description="NCCL_IB_TC, on RoCE")
    cluster_address: str | None = Field(description="this node's cluster address, if an IP")
    port: int | None = Field(description="the rendezvous port, on a cluster of several nodes")
    reach: tuple[tuple[str, str], ...] = Field(
        default=(), description="(host, address) of the nodes this one dials on that port"
    )
    dials: str = Field(default="", description="who dials whom, for the SKIP of the others")


def failed(results: Iterable[CheckResult]) -> tuple[CheckResult, ...]:
    return tuple(r for r in results if r.verdict is Verdict.FAIL)


class NodeManifest(Frozen):
    """The versions one node runs, to compare across a cluster's nodes (``None``: not there)."""

    kernel: str
    driver: str | None = None
    fabric_manager: str | None = None
    cuda: str | None = None
    nccl: str | None = None
    engine: str = Field(description="the engine and version the plan installs")
    gid_index: str | None = Field(default=None, description="HCA:index, as found, per RoCE HCA")
    rdma: str | None = Field(default=None, description="rdma-core / MLNX_OFED version")
    mtu: str | None = Field(default=None, description="interface:MTU of the cluster network")
    pfc: str | None = Field(default=None, description="netdev:priorities with PFC on, per RoCE NIC")


MANIFEST_FIELDS = (
    "kernel",
    "driver",
    "fabric_manager",
    "cuda",
    "nccl",
    "rdma",
    "engine",
    "gid_index",
    "pfc",
    "mtu",
)

_DRIFT_FIX = {
    "kernel": "boot every node into the same kernel (apt-mark hold linux-image-*)",
    "gid_index": "give every node's HCAs the same addressing, so NCCL_IB_GID_INDEX fits all",
    "pfc": "one PFC setup on every node's RoCE NICs (dcb pfc set dev <netdev> prio-pfc ...)",
    "mtu": "one MTU on every node's cluster interface and on the switch ports (ip link set mtu)",
}

CLOCK_SPREAD_MAX_S = 1.0
"""NTP (chrony, systemd-timesyncd) keeps hosts on one LAN within milliseconds of each other; a
second apart means a node is not synchronised, and its logs no longer line up with the others'
when a multi-node hang is reconstructed."""


class HostReport(Frozen):
    """One host's preflight, as written to the control host and read by ``preflight show``."""

    host: str
    cluster: str
    results: tuple[CheckResult, ...]
    manifest: NodeManifest
    purpose: Purpose = Purpose.PREFLIGHT
    run: str = Field(default="", description="the deploy run that wrote it")
    clock_offset_s: float | None = Field(
        default=None, description="this node's clock minus the control host's, measured"
    )


def _manifest_checks(name: str, members: list[HostReport]) -> list[CheckResult]:
    purpose = members[0].purpose
    results = []
    for field in MANIFEST_FIELDS:
        values = {r.host: getattr(r.manifest, field) for r in members}
        found = "; ".join(f"{h}: {v or 'none'}" for h, v in sorted(values.items()))
        result = _result(
            f"{name}: {field} equal",
            len(set(values.values())) == 1,
            f"one {field} on every node of {name}",
            found,
            _DRIFT_FIX.get(field, REPROVISION + " (it brings every node to the pins)"),
            Verdict.FAIL,
        )
        why = _CONVERGED_BY.get(purpose)
        if why and field in CONVERGED_FIELDS and result.verdict is Verdict.FAIL:
            result = shown_not_judged(result, why)
        results.append(result)
    return results


def check_clocks(name: str, members: list[HostReport]) -> CheckResult:
    """The nodes' clocks within :data:`CLOCK_SPREAD_MAX_S` of each other (each measured against
    the control host, whose own error cancels out)."""
    offsets = {r.host: r.clock_offset_s for r in members if r.clock_offset_s is not None}
    check = f"{name}: clocks in sync"
    expected = f"every node's clock within {CLOCK_SPREAD_MAX_S:g} s of the others"
    if len(offsets) < 2:
        return skipped(check, expected, "not measured: preflight measures them during a deploy")
    spread = max(offsets.values()) - min(offsets.values())
    found = (
        f"{spread:.3f} s apart ("
        + ", ".join(f"{h}: {o:+.3f} s" for h, o in sorted(offsets.items()))
        + " against the control host)"
    )
    return _result(
        check,
        spread <= CLOCK_SPREAD_MAX_S,
        expected,
        found,
        "timedatectl set-ntp true (chrony or systemd-timesyncd) on the nodes that are off",
        Verdict.FAIL,
    )


def cluster_checks(reports: Iterable[HostReport]) -> tuple[CheckResult, ...]:
    """Per cluster of several nodes: each manifest field equal on every node (a field that
    differs is one FAIL naming every node's value), and the clocks together."""
    clusters: dict[str, list[HostReport]] = {}
    for report in reports:
        clusters.setdefault(report.cluster, []).append(report)
    results: list[CheckResult] = []
    for name, members in sorted(clusters.items()):
        if len(members) >= 2:
            results += _manifest_checks(name, members)
            results.append(check_clocks(name, members))
    return tuple(results)


def check_peer_ports(port: int, outcomes: Mapping[str, str]) -> CheckResult:
    """From this node, each other node's rendezvous port answers a TCP connect (peer -> "ok" or
    the error): a firewall, a route or a wrong address shows here, not as an engine that hangs
    at start waiting for its workers."""
    bad = {peer: why for peer, why in outcomes.items() if why != "ok"}
    found = "; ".join(f"{peer}: {why}" for peer, why in sorted(outcomes.items()))
    return _result(
        "cluster-ports",
        not bad,
        f"tcp/{port} of every node this one dials reachable from here",
        found or "no other node",
        f"open tcp/{port} between the nodes (host firewall, switch ACL, security group) and check "
        f"the route to {', '.join(sorted(bad))}",
        Verdict.FAIL,
    )


def table_text(reports: Iterable[HostReport]) -> str:
    """Every host's checks, then the cross-node checks, one row each; what is not a PASS gets its
    expected value and fix on the next line, indented. Ends with the count per verdict."""
    reports = sorted(reports, key=lambda r: (r.cluster, r.host))
    rows = [(r.host, result) for r in reports for result in r.results]
    rows += [("(cluster)", result) for result in cluster_checks(reports)]
    width = max((len(host) for host, _ in rows), default=4)
    check_width = max((len(result.check) for _, result in rows), default=5)
    lines = []
    for host, result in rows:
        lines.append(
            f"{host:<{width}}  {result.check:<{check_width}}  {result.verdict.value:<4}  "
            f"{result.found}"
        )
        if result.verdict in (Verdict.FAIL, Verdict.WARN):
            lines.append(f"{'':<{width}}    expected {result.expected} — fix: {result.fix}")
    counts = {v: sum(1 for _, r in rows if r.verdict is v) for v in Verdict}
    lines.append(", ".join(f"{n} {v.value}" for v, n in counts.items()))
    return "\n".join(lines) + "\n"


def any_failed(reports: Iterable[HostReport]) -> bool:
    reports = list(reports)
    every = [r for report in reports for r in report.results] + list(cluster_checks(reports))
    return bool(failed(every))
