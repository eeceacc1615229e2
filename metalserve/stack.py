"""The NVIDIA stack and the RDMA fabric as decided for one node: the sections the driver, fabric
manager, CUDA, NCCL and fabric roles carry out.

Everything chosen from the catalogues (pins, the kernel module flavour, the packages, the HCAs and
GID index) is chosen here, once; what depends on the host's own facts (its distribution and
architecture, read by the roles) is a pure method of the section. The roles import this module,
never the catalogues.

Example::

    nvidia = nvidia_plan(hardware, NvidiaStack(), AptSource())
    nvidia.driver_pin(Distro.UBUNTU_2204).packages
"""

from __future__ import annotations

from pydantic import Field

from metalserve.catalog.nvidia_stack import (
    BLACKLISTED_MODULES,
    FABRIC_PACKAGES,
    KEYRING_DEB,
    NVIDIA_MODULES,
    AptPin,
    Distro,
    KernelModuleFlavor,
    NvidiaStack,
    NvidiaStackPins,
    cuda_pin,
    distro_of,
    driver_pin,
    fabricmanager_pin,
    kernel_headers_packages,
    keyring_deb_url,
    module_blacklist_conf,
    module_flavor,
    nccl_pin,
    packages_off_pin,
    repository_line,
    repository_list_path,
)
from metalserve.hardware import Frozen, GpuModel, HardwareProfile, NetworkFabric
from metalserve.sources import AptSource

__all__ = [
    "BLACKLISTED_MODULES",
    "KEYRING_DEB",
    "NVIDIA_MODULES",
    "AptPin",
    "Distro",
    "FabricPlan",
    "KernelModuleFlavor",
    "NvidiaPlan",
    "distro_of",
    "kernel_headers_packages",
    "keyring_deb_url",
    "module_blacklist_conf",
    "packages_off_pin",
    "repository_line",
    "repository_list_path",
]


class NvidiaPlan(Frozen):
    """What the NVIDIA roles install, pin, hold and verify on one GPU node."""

    gpu: GpuModel
    gpu_count: int = Field(description="GPUs the node must show")
    pins: NvidiaStackPins
    flavor: KernelModuleFlavor
    apt: AptSource
    fabric_manager: bool = Field(description="NVSwitch baseboard: nvidia-fabricmanager runs")
    fabricmanager_pin: AptPin
    cuda_pin: AptPin
    nccl_pin: AptPin

    def driver_pin(self, distro: Distro) -> AptPin:
        """The driver packages for the host's distribution (their names differ per release)."""
        return driver_pin(self.pins, distro, self.flavor)


def nvidia_plan(hardware: HardwareProfile, stack: NvidiaStack, apt: AptSource) -> NvidiaPlan | None:
    """The section for a GPU node; ``None`` where the hardware has no GPU."""
    if hardware.gpu is None:
        return None
    return NvidiaPlan(
        gpu=hardware.gpu,
        gpu_count=hardware.gpus_per_node,
        pins=stack.pins,
        flavor=module_flavor(hardware.gpu, stack.module_flavor),
        apt=apt,
        fabric_manager=hardware.needs_fabric_manager,
        fabricmanager_pin=fabricmanager_pin(stack.pins),
        cuda_pin=cuda_pin(stack.pins),
        nccl_pin=nccl_pin(stack.pins),
    )


class FabricPlan(Frozen):
    """The RDMA fabric of a multi-node GPU node as NCCL will use it: the role installs the RDMA
    user space, loads GPUDirect RDMA where the GPU can use it, and verifies exactly these values."""

    kind: NetworkFabric
    rate_gbps: float = Field(description="every data port ACTIVE at this rate")
    devices: tuple[str, ...] = Field(description="the HCAs NCCL_IB_HCA names, to verify")
    gid_index: int | None = Field(description="RoCE v2: the NCCL_IB_GID_INDEX NCCL will use")
    peermem: bool = Field(description="nvidia-peermem loaded at boot (GPUDirect RDMA)")
    packages: tuple[str, ...] = FABRIC_PACKAGES
    apt: AptSource
