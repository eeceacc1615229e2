"""Pure checks of a host's GPU facts against what the plan promises, and driver drift detection.

Each check returns the problems it found as one-line operator messages (expected, found, fix); an
empty list means the host is as promised. The roles run them at the end of each phase and fail the
host with :class:`VerificationError`; re-provisioning runs :func:`driver_drift` first.

Example::

    >>> from roles.gpu_facts.facts import GpuQuery
    >>> check_gpus(GpuQuery(), expected_count=8, expected_name="H200")
    ['GPUs: expected 8 × H200, found none (nvidia-smi answered nothing) — fix: install the driver with deploy/drivers.py']
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from metalserve.errors import MetalserveError
from metalserve.stack import KernelModuleFlavor
from roles.gpu_facts.facts import (
    FabricState,
    GpuKernelModules,
    GpuQuery,
    InstalledModule,
    LoadedDriver,
)

if TYPE_CHECKING:  # roles.fabric imports this module; only the type is needed here
    from roles.fabric.facts import RdmaPort

REPROVISION = "run deploy/reprovision.py"


class VerificationError(MetalserveError):
    """A host that does not match its plan after a role ran; the message lists every mismatch."""

    @classmethod
    def for_host(cls, host: str, problems: list[str]) -> VerificationError:
        return cls(f"host {host}: " + "; ".join(problems))


def check_gpus(query: GpuQuery, expected_count: int, expected_name: str | None) -> list[str]:
    """Every GPU the profile promises is visible to ``nvidia-smi`` and is the promised model."""
    wanted = f"{expected_count} × {expected_name}" if expected_name else f"{expected_count} GPUs"
    if query.error:
        return [
            f"GPUs: expected {wanted}, found nvidia-smi failing ({query.error}) — fix: {REPROVISION}"
        ]
    if not query.gpus:
        return [
            f"GPUs: expected {wanted}, found none (nvidia-smi answered nothing) — "
            "fix: install the driver with deploy/drivers.py"
        ]
    problems = []
    if len(query.gpus) != expected_count:
        problems.append(
            f"GPUs: expected {wanted}, found {len(query.gpus)} "
            f"({', '.join(g.pci_bus_id for g in query.gpus)}) — fix: reseat or replace the missing "
            "GPU, or correct the host's hardware profile"
        )
    if expected_name:
        strangers = sorted({g.name for g in query.gpus if expected_name not in g.name})
        if strangers:
            problems.append(
                f"GPUs: expected {expected_name}, found {', '.join(strangers)} — fix: correct the "
                "host's hardware profile"
            )
    return problems


def check_loaded_driver(
    loaded: LoadedDriver | None, pinned_version: str, flavor: KernelModuleFlavor
) -> list[str]:
    """The driver in the kernel now is exactly the pinned version and flavor."""
    if loaded is None:
        return [
            f"NVIDIA driver: expected {pinned_version} ({flavor.value}) loaded, found no module "
            f"loaded — fix: {REPROVISION} (it loads the module or reboots)"
        ]
    problems = []
    if loaded.version != pinned_version:
        problems.append(
            f"NVIDIA driver: expected {pinned_version} loaded, found {loaded.version} — "
            f"fix: {REPROVISION}"
        )
    if loaded.flavor is not flavor:
        problems.append(
            f"NVIDIA driver: expected the {flavor.value} kernel module, found "
            f"{loaded.flavor.value} — fix: {REPROVISION}"
        )
    return problems


def check_no_rival_modules(modules: GpuKernelModules) -> list[str]:
    """Neither nouveau nor nova holds the GPU."""
    if not modules.rivals:
        return []
    return [
        f"kernel modules: expected no {'/'.join(modules.rivals)}, found them loaded — fix: "
        "reboot so the blacklisted initramfs takes effect"
    ]


def check_fabric(states: dict[str, FabricState], fabricmanager_active: bool) -> list[str]:
    """On NVSwitch hosts: fabric manager runs and every GPU finished joining the fabric."""
    if not fabricmanager_active:
        return [
            "fabric manager: expected nvidia-fabricmanager active, found it stopped — fix: "
            "journalctl -u nvidia-fabricmanager; its version must equal the driver's"
        ]
    pending = sorted(bus for bus, state in states.items() if not state.completed)
    if not states or pending:
        found = (
            ", ".join(f"{bus} {states[bus].state}" for bus in pending)
            if pending
            else "no GPU reporting"
        )
        return [
            f"NVLink fabric: expected every GPU Completed/Success, found {found} — fix: wait for "
            "fabric manager, then check nvidia-smi -q -d FABRIC"
        ]
    return []


def check_rdma_ports(
    ports: tuple[RdmaPort, ...],
    devices: tuple[str, ...],
    rate_gbps: float,
    roce_gid_index: int | None = None,
) -> list[str]:
    """Each named HCA port is ACTIVE at the expected rate; on RoCE, the GID index NCCL is told to
    use is the port's RoCE v2 IPv4 entry."""
    by_device = {port.device: port for port in ports}
    problems = []
    for device in devices:
        port = by_device.get(device)
        if port is None:
            problems.append(
                f"RDMA {device}: expected a port, found no such device — fix: check the HCA "
                "names in the inventory against /sys/class/infiniband"
            )
            continue
        if not port.active or port.rate_gbps != rate_gbps:
            problems.append(
                f"RDMA {device}: expected ACTIVE at {rate_gbps:g} Gb/s, found {port.state} at "
                f"{port.rate_gbps:g} Gb/s — fix: check the cable, switch port and subnet manager"
            )
        if port.is_roce and roce_gid_index is not None:
            actual = port.roce_v2_ipv4_gid_index()
            if actual != roce_gid_index:
                problems.append(
                    f"RDMA {device}: expected RoCE v2 IPv4 GID at index {roce_gid_index}, found "
                    f"{actual if actual is not None else 'none'} — fix: set NCCL_IB_GID_INDEX to "
                    "the found index on every node, or give the interface its IPv4 address"
                )
    return problems


class DriftKind(StrEnum):
    """How the driver on a host differs from its pin, from least to most work."""

    NONE = "none"
    NOT_INSTALLED = "not-installed"
    INSTALL = "install"  # the installed packages are not the pinned ones
    RELOAD = "reload"  # installed is the pin, the kernel still runs another (or none)


class Drift(BaseModel):
    """What re-provisioning must do about the driver, and the one line that says why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: DriftKind
    reason: str

    @property
    def needs_install(self) -> bool:
        return self.kind in (DriftKind.NOT_INSTALLED, DriftKind.INSTALL)

    @property
    def needs_reload(self) -> bool:
        return self.kind is not DriftKind.NONE


def driver_drift(
    pinned_version: str,
    flavor: KernelModuleFlavor,
    installed: InstalledModule | None,
    loaded: LoadedDriver | None,
) -> Drift:
    """Compare the pin, the module on disk (what the next load takes) and the module in the kernel.

    Example::

        >>> driver_drift("580.105.08", KernelModuleFlavor.OPEN,
        ...              InstalledModule(version="580.105.08", flavor=KernelModuleFlavor.OPEN),
        ...              LoadedDriver(version="570.195.03", flavor=KernelModuleFlavor.OPEN)).kind.value
        'reload'
    """
    pin = f"{pinned_version} ({flavor.value})"
    if installed is None:
        return Drift(
            kind=DriftKind.NOT_INSTALLED,
            reason=f"expected {pin} installed, found no nvidia.ko for the running kernel",
        )
    on_disk = f"{installed.version} ({installed.flavor.value})"
    if installed.version != pinned_version or installed.flavor is not flavor:
        return Drift(kind=DriftKind.INSTALL, reason=f"expected {pin} installed, found {on_disk}")
    if loaded is None:
        return Drift(kind=DriftKind.RELOAD, reason=f"expected {pin} loaded, found none loaded")
    running = f"{loaded.version} ({loaded.flavor.value})"
    if loaded.version != pinned_version or loaded.flavor is not flavor:
        return Drift(
            kind=DriftKind.RELOAD, reason=f"expected {pin} loaded, found {running} still running"
        )
    return Drift(kind=DriftKind.NONE, reason=f"{pin} installed and loaded")
