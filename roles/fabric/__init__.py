"""InfiniBand / RoCE fabric for multi-node profiles: RDMA packages, GPUDirect RDMA, port checks.

install: rdma-core, ibverbs-utils, perftest, infiniband-diags. configure: GPUDirect RDMA as the plan
decided it, the decision and its reason printed: DMA-BUF (open kernel modules) needs no module, and a
``nvidia-peermem`` boot entry left by an earlier run is removed; ``nvidia-peermem`` (proprietary
modules) is loaded at boot only where MLNX_OFED/DOCA-OFED is installed — it cannot load against the
distribution's ``ib_core`` — else a one-line warning says GPUDirect RDMA is off. activate: loaded
now, then verified: the path decided works on this host (DMA-BUF: kernel and loaded module allow it;
nvidia-peermem: loaded), each data HCA port ACTIVE at the profile's rate and, on RoCE v2, the
inventory's GID index is the port's RoCE v2 IPv4 entry (NCCL_IB_GID_INDEX).
"""

from __future__ import annotations

import re
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.facts.server import KernelVersion
from pyinfra.operations import files, server

from metalserve.plan import HostPlan
from metalserve.stack import DMABUF_MIN_KERNEL, FabricPlan, GpuDirectRdma, KernelModuleFlavor
from roles.base import say_once
from roles.fabric.facts import OfedRelease, RdmaPorts
from roles.gpu_facts.facts import NvidiaKernelModules, NvidiaLoadedDriver, read_fact
from roles.gpu_facts.verify import check_rdma_ports
from roles.nvidia_driver.common import install_missing, verify, write_file

PEERMEM = "nvidia_peermem"
PEERMEM_LOAD_PATH = "/etc/modules-load.d/metalserve-nvidia-peermem.conf"
NO_GPUDIRECT_COST = (
    "NCCL then stages every inter-node transfer through host memory: lower bandwidth, higher "
    "latency and CPU load than the HCA reading GPU memory"
)


def ports_check(fabric: FabricPlan) -> Any:
    """Every data HCA port the plan selected ACTIVE at the plan's rate; on RoCE, the GID index NCCL
    will be given is the port's RoCE v2 IPv4 entry."""

    def check(on: Any) -> list[str]:
        if not fabric.devices:
            return []  # an exclude-only selection names no device to look for
        return check_rdma_ports(
            read_fact(RdmaPorts, on=on), fabric.devices, fabric.rate_gbps, fabric.gid_index
        )

    return check


def kernel_release_tuple(release: str) -> tuple[int, int] | None:
    """``6.8.0-51-generic`` → ``(6, 8)``; ``None`` for a release that does not start that way.

    Example::

        >>> kernel_release_tuple("5.15.0-126-generic"), kernel_release_tuple("weird")
        ((5, 15), None)
    """
    match = re.match(r"^(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def dmabuf_problems(kernel_release: str, loaded_flavor: KernelModuleFlavor | None) -> list[str]:
    """Why DMA-BUF cannot carry GPUDirect RDMA on this host (empty: it can): the kernel must import
    dma-buf into RDMA memory, and the loaded ``nvidia.ko`` (if any yet) must be the open one.

    Example::

        >>> dmabuf_problems("5.4.0-200-generic", None)[0].split(" — ")[0]
        'GPUDirect RDMA by DMA-BUF: expected Linux >= 5.12, found 5.4.0-200-generic'
    """
    wanted = ".".join(map(str, DMABUF_MIN_KERNEL))
    problems = []
    found = kernel_release_tuple(kernel_release)
    if found is None or found < DMABUF_MIN_KERNEL:
        problems.append(
            f"GPUDirect RDMA by DMA-BUF: expected Linux >= {wanted}, found {kernel_release} — "
            "fix: boot the distribution's current kernel"
        )
    if loaded_flavor is KernelModuleFlavor.PROPRIETARY:
        problems.append(
            "GPUDirect RDMA by DMA-BUF: expected the open nvidia.ko loaded, found the proprietary "
            "one — fix: run deploy/reprovision.py to load the open kernel modules"
        )
    return problems


def _peermem_loads(fabric: FabricPlan) -> bool:
    """nvidia-peermem is the decided path and this host has the OFED it needs; warns otherwise."""
    if fabric.gpudirect.path is not GpuDirectRdma.PEERMEM:
        return False
    if read_fact(OfedRelease) is not None:
        return True
    say_once(
        "GPUDirect RDMA off: nvidia-peermem needs MLNX_OFED/DOCA-OFED and none is installed "
        f"(no ofed_info); {NO_GPUDIRECT_COST} — fix: install DOCA-OFED, or use the open kernel "
        "modules (metalserve.nvidia.module_flavor: open) for DMA-BUF"
    )
    return False


def gpudirect_check(fabric: FabricPlan, peermem: bool) -> Any:
    """The decided GPUDirect RDMA path works here: DMA-BUF allowed by kernel and module, or
    nvidia-peermem loaded."""

    def check(on: Any) -> list[str]:
        path = fabric.gpudirect.path
        if path is GpuDirectRdma.DMABUF:
            loaded = read_fact(NvidiaLoadedDriver, on=on)
            release = str(read_fact(KernelVersion, on=on))
            return dmabuf_problems(release, loaded.flavor if loaded else None)
        if peermem and PEERMEM not in read_fact(NvidiaKernelModules, on=on).loaded:
            return [
                "GPUDirect RDMA by nvidia-peermem: expected nvidia_peermem loaded, found it "
                "missing — fix: rebuild the driver's DKMS module after installing OFED, then "
                "modprobe nvidia-peermem (dmesg names the symbol it could not resolve)"
            ]
        return []

    return check


@deploy("Fabric: RDMA packages")
def install(plan: HostPlan) -> None:
    if plan.fabric is not None:
        install_missing(plan.fabric.packages, "RDMA userspace and diagnostics", plan.fabric.apt)


@deploy("Fabric: GPUDirect RDMA at boot")
def configure(plan: HostPlan) -> None:
    fabric = plan.fabric
    if fabric is None:
        return
    say_once(f"GPUDirect RDMA: {fabric.gpudirect.path} — {fabric.gpudirect.reason}")
    if _peermem_loads(fabric):
        write_file(PEERMEM_LOAD_PATH, "nvidia-peermem\n", "nvidia-peermem at boot")
    elif host.get_fact(File, path=PEERMEM_LOAD_PATH):
        # an earlier run's entry: it would fail at every boot where the module cannot load
        files.file(
            name=f"Remove the nvidia-peermem boot entry ({PEERMEM_LOAD_PATH})",
            path=PEERMEM_LOAD_PATH,
            present=False,
        )


@deploy("Fabric: GPUDirect RDMA and ports")
def activate(plan: HostPlan) -> None:
    fabric = plan.fabric
    if fabric is None:
        return
    changes = any(name not in read_fact(DebPackages) for name in fabric.packages)
    peermem = _peermem_loads(fabric)
    if peermem and PEERMEM not in read_fact(NvidiaKernelModules).loaded:
        server.shell(
            name="Load nvidia-peermem (GPUDirect RDMA)", commands=["modprobe nvidia-peermem"]
        )
        changes = True
    ports = ports_check(fabric)
    gpudirect = gpudirect_check(fabric, peermem)
    verify(
        "fabric",
        f"{fabric.kind} ports and GPUDirect RDMA by {fabric.gpudirect.path}",
        lambda on: [*gpudirect(on), *ports(on)],
        after_changes=changes,
    )
