"""Typed descriptions of GPUs and of the machines (profiles) built from them."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GB = 1_000_000_000
"""Decimal gigabyte: vendors and the guides size GPU memory and checkpoints in GB, not GiB."""
GIB = 1 << 30


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interconnect(StrEnum):
    """How the GPUs inside one node talk to each other."""

    NVSWITCH = "nvswitch"  # NVLink through NVSwitch chips: all-to-all, needs fabric manager
    NVLINK = "nvlink"  # direct NVLink between GPUs, no switch
    PCIE = "pcie"  # PCIe only
    UNIFIED = "unified"  # one GPU sharing memory with the CPU (GB10)


class NetworkFabric(StrEnum):
    """How the nodes of a multi-node setup talk to each other."""

    INFINIBAND = "infiniband"
    ROCE_V2 = "roce_v2"
    ETHERNET = "ethernet"  # plain TCP sockets: no RDMA, NCCL's socket transport

    @property
    def rdma(self) -> bool:
        return self is not NetworkFabric.ETHERNET


class GpuModel(Frozen):
    """One GPU product, with the facts sizing, drivers and NCCL depend on.

    Example::

        GpuModel(id="h100-sxm", name="NVIDIA H100 80GB HBM3", memory_gb=80, ...)
    """

    id: str
    name: str = Field(description="as nvidia-smi prints it")
    memory_gb: float = Field(gt=0, description="marketed memory per GPU, decimal GB")
    compute_capability: tuple[int, int]
    nvlink: bool
    nvswitch_baseboard: bool = Field(description="sold on NVSwitch baseboards (HGX/DGX)")
    fp8: bool
    nvfp4: bool
    open_kernel_modules_required: bool
    fabric_manager_with_nvswitch: bool = Field(
        description="needs nvidia-fabricmanager when on an NVSwitch baseboard"
    )
    pcie_p2p: bool = Field(description="the driver supports GPU peer-to-peer over PCIe")
    nvidia_peermem: bool = Field(
        description="a NIC can reach this GPU's memory through nvidia-peermem (GPUDirect RDMA)"
    )
    cpu_arch: Literal["x86_64", "aarch64"] | None = Field(
        default=None,
        description="the CPU this GPU comes with (a superchip or SoC); None: a card in any host",
    )
    source: str

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * GB)

    @property
    def cuda_arch(self) -> str:
        """The CMAKE_CUDA_ARCHITECTURES / sm number, e.g. ``90`` for Hopper."""
        major, minor = self.compute_capability
        return f"{major}{minor}"


class HardwareProfile(Frozen):
    """A machine setup: GPU model × GPUs per node × nodes × intra-node interconnect × inter-node
    fabric (with its rate and NICs), plus host RAM. Named presets live in the catalogue; an
    inventory may compose any other (``metalserve.hardware``)."""

    id: str
    description: str
    gpu: GpuModel | None
    gpus_per_node: int = Field(ge=0)
    nodes: int = Field(ge=1)
    interconnect: Interconnect | None
    fabric: NetworkFabric | None = None
    fabric_rate_gbps: int | None = Field(default=None, description="per data NIC")
    nics_per_node: int = 0
    host_ram_gb: float = Field(gt=0)
    source: str

    @property
    def composition(self) -> tuple[object, ...]:
        """What the setup is made of, without its name: two setups with the same composition are
        the same hardware (a preset and an inventory's own composition of it)."""
        return (
            self.gpu.id if self.gpu else None,
            self.gpus_per_node,
            self.nodes,
            self.interconnect,
            self.fabric if self.nodes > 1 else None,
            self.fabric_rate_gbps if self.nodes > 1 else None,
            self.nics_per_node if self.nodes > 1 else None,
        )

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def gpu_memory_bytes(self) -> int:
        return self.gpu.memory_bytes if self.gpu else 0

    @property
    def total_gpu_memory_bytes(self) -> int:
        return self.gpu_memory_bytes * self.total_gpus

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    @property
    def needs_fabric_manager(self) -> bool:
        return (
            self.gpu is not None
            and self.interconnect is Interconnect.NVSWITCH
            and self.gpu.fabric_manager_with_nvswitch
        )

    @property
    def p2p_available(self) -> bool:
        """GPU peer-to-peer works inside a node (NVLink, or PCIe where the driver allows it)."""
        if self.gpu is None or self.gpus_per_node < 2:
            return False
        if self.interconnect in (Interconnect.NVSWITCH, Interconnect.NVLINK):
            return True
        return self.gpu.pcie_p2p
