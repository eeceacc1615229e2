"""InfiniBand / RoCE fabric for multi-node profiles: RDMA packages, GPUDirect RDMA, port checks.

install: rdma-core, ibverbs-utils, perftest, infiniband-diags. configure: ``nvidia-peermem`` loaded
at boot where the GPU can use it (not GB10: its unified memory has no BAR1 for the NIC to map, and
the module refuses to load). activate: loaded now, then verified: each data HCA port ACTIVE at the profile's rate and,
on RoCE v2, the inventory's GID index is the port's RoCE v2 IPv4 entry (NCCL_IB_GID_INDEX).
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import server

from metalserve.plan import HostPlan
from metalserve.stack import FabricPlan
from roles.fabric.facts import RdmaPorts
from roles.gpu_facts.facts import NvidiaKernelModules, read_fact
from roles.gpu_facts.verify import check_rdma_ports
from roles.nvidia_driver.common import install_missing, verify, write_file

PEERMEM = "nvidia_peermem"
PEERMEM_LOAD_PATH = "/etc/modules-load.d/metalserve-nvidia-peermem.conf"


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


@deploy("Fabric: RDMA packages")
def install(plan: HostPlan) -> None:
    if plan.fabric is not None:
        install_missing(plan.fabric.packages, "RDMA userspace and diagnostics", plan.fabric.apt)


@deploy("Fabric: GPUDirect RDMA at boot")
def configure(plan: HostPlan) -> None:
    if plan.fabric is not None and plan.fabric.peermem:
        write_file(PEERMEM_LOAD_PATH, "nvidia-peermem\n", "nvidia-peermem at boot")


@deploy("Fabric: GPUDirect RDMA and ports")
def activate(plan: HostPlan) -> None:
    fabric = plan.fabric
    if fabric is None:
        return
    changes = any(name not in read_fact(DebPackages) for name in fabric.packages)
    if fabric.peermem and PEERMEM not in read_fact(NvidiaKernelModules).loaded:
        server.shell(
            name="Load nvidia-peermem (GPUDirect RDMA)", commands=["modprobe nvidia-peermem"]
        )
        changes = True
    verify("fabric", f"{fabric.kind} ports", ports_check(fabric), after_changes=changes)
