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

from metalserve.catalog.nvidia_stack import FABRIC_PACKAGES
from metalserve.hardware import NetworkFabric
from metalserve.plan import HostPlan
from roles.fabric.facts import RdmaPorts
from roles.gpu_facts.facts import NvidiaKernelModules, read_fact
from roles.gpu_facts.verify import check_rdma_ports
from roles.nvidia_driver.common import install_missing, verify, write_file

PEERMEM = "nvidia_peermem"
PEERMEM_LOAD_PATH = "/etc/modules-load.d/metalserve-nvidia-peermem.conf"


def _fabric(plan: HostPlan) -> NetworkFabric | None:
    return plan.profile.fabric if plan.profile.gpu is not None else None


def _peermem(plan: HostPlan) -> bool:
    return (
        _fabric(plan) is not None
        and plan.profile.gpu is not None
        and plan.profile.gpu.nvidia_peermem
    )


def ports_check(plan: HostPlan) -> Any:
    """Every data HCA port ACTIVE at the profile's rate; on RoCE, the inventory's GID index is the
    port's RoCE v2 IPv4 entry."""
    fabric = plan.spec.fabric
    devices = fabric.ib_hca if fabric else ()
    rate = float(plan.profile.fabric_rate_gbps or 0)
    gid_index = (
        fabric.gid_index if fabric and plan.profile.fabric is NetworkFabric.ROCE_V2 else None
    )

    def check(on: Any) -> list[str]:
        if not devices:
            return [
                "RDMA: expected the data HCAs named in the inventory, found none — fix: set "
                "metalserve.fabric.ib_hca (e.g. mlx5_0 … mlx5_7)"
            ]
        return check_rdma_ports(read_fact(RdmaPorts, on=on), devices, rate, gid_index)

    return check


@deploy("Fabric: RDMA packages")
def install(plan: HostPlan) -> None:
    if _fabric(plan) is not None:
        install_missing(FABRIC_PACKAGES, "RDMA userspace and diagnostics", plan.spec.sources.apt)


@deploy("Fabric: GPUDirect RDMA at boot")
def configure(plan: HostPlan) -> None:
    if _peermem(plan):
        write_file(PEERMEM_LOAD_PATH, "nvidia-peermem\n", "nvidia-peermem at boot")


@deploy("Fabric: GPUDirect RDMA and ports")
def activate(plan: HostPlan) -> None:
    if _fabric(plan) is None:
        return
    changes = any(name not in read_fact(DebPackages) for name in FABRIC_PACKAGES)
    if _peermem(plan) and PEERMEM not in read_fact(NvidiaKernelModules).loaded:
        server.shell(
            name="Load nvidia-peermem (GPUDirect RDMA)", commands=["modprobe nvidia-peermem"]
        )
        changes = True
    verify("fabric", f"{plan.profile.fabric} ports", ports_check(plan), after_changes=changes)
