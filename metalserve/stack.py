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
    DMABUF_MIN_KERNEL,
    FABRIC_PACKAGES,
    KEYRING_DEB,
    KEYRING_PACKAGE,
    NVIDIA_MODULES,
    AptPin,
    Distro,
    GpuDirect,
    GpuDirectRdma,
    KernelModuleFlavor,
    NvidiaStack,
    NvidiaStackPins,
    cuda_pin,
    distro_of,
    dkms_packages_installed,
    driver_lock_pin,
    driver_pin,
    fabricmanager_pin,
    gpudirect_rdma,
    kernel_headers_packages,
    keyring_deb_url,
    module_blacklist_conf,
    module_flavor,
    nccl_pin,
    other_driver_pinning_packages,
    packages_off_pin,
    precompiled_module_packages,
    repository_line,
    repository_list_path,
)
from metalserve.hardware import Frozen, GpuModel, HardwareProfile, NetworkFabric
from metalserve.sources import AptSource

__all__ = [
    "BLACKLISTED_MODULES",
    "DMABUF_MIN_KERNEL",
    "KEYRING_DEB",
    "KEYRING_PACKAGE",
    "NVIDIA_MODULES",
    "AptPin",
    "Distro",
    "FabricPlan",
    "GpuDirect",
    "GpuDirectRdma",
    "KernelModuleFlavor",
    "NvidiaPlan",
    "distro_of",
    "fabric_plan",
    "kernel_headers_packages",
    "keyring_deb_url",
    "module_blacklist_conf",
    "packages_off_pin",
    "repository_line",
    "repository_list_path",
]


class ModulePackages(Frozen):
    """The installed packages that provide ``nvidia.ko``: precompiled (Ubuntu's signed
    ``linux-modules-nvidia-*``, as DGX OS ships them) or DKMS. A host uses one source only."""

    precompiled: tuple[str, ...]
    dkms: tuple[str, ...]

    @property
    def mixed(self) -> bool:
        return bool(self.precompiled and self.dkms)


class NvidiaPlan(Frozen):
    """What the NVIDIA roles install, pin, hold and verify on one GPU node."""

    gpu: GpuModel
    gpu_count: int = Field(description="GPUs the node must show")
    pins: NvidiaStackPins
    flavor: KernelModuleFlavor
    apt: AptSource
    fabric_manager: bool = Field(description="NVSwitch baseboard: nvidia-fabricmanager runs")
    driver_lock_pin: AptPin = Field(description="NVIDIA's pinning package, installed first")
    fabricmanager_pin: AptPin
    cuda_pin: AptPin
    nccl_pin: AptPin

    def driver_pin(self, distro: Distro, precompiled_modules: bool = False) -> AptPin:
        """The driver packages for the host's distribution (their names differ per release); no
        DKMS package where the host takes ``nvidia.ko`` from precompiled module packages."""
        return driver_pin(self.pins, distro, self.flavor, precompiled_modules)

    def stale_driver_locks(self, installed: dict[str, list[str]]) -> tuple[str, ...]:
        """NVIDIA pinning packages of other drivers still installed (removed before the new one)."""
        return other_driver_pinning_packages(self.pins, installed)

    def module_packages(self, installed: dict[str, list[str]]) -> ModulePackages:
        """Where this host's ``nvidia.ko`` comes from, given its installed packages."""
        return ModulePackages(
            precompiled=precompiled_module_packages(installed),
            dkms=dkms_packages_installed(self.pins, installed),
        )


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
        driver_lock_pin=driver_lock_pin(stack.pins),
        fabricmanager_pin=fabricmanager_pin(stack.pins),
        cuda_pin=cuda_pin(stack.pins),
        nccl_pin=nccl_pin(stack.pins),
    )


class FabricPlan(Frozen):
    """The RDMA fabric of a multi-node GPU node as NCCL will use it: the role installs the RDMA
    user space, sets GPUDirect RDMA up the way ``gpudirect`` decided, and verifies these values."""

    kind: NetworkFabric
    rate_gbps: float = Field(description="every data port ACTIVE at this rate")
    devices: tuple[str, ...] = Field(description="the HCAs NCCL_IB_HCA names, to verify")
    gid_index: int | None = Field(description="RoCE v2: the NCCL_IB_GID_INDEX NCCL will use")
    gpudirect: GpuDirect = Field(description="how the HCAs reach GPU memory, and why")
    packages: tuple[str, ...] = FABRIC_PACKAGES
    apt: AptSource


def fabric_plan(
    hardware: HardwareProfile,
    nvidia: NvidiaPlan,
    devices: tuple[str, ...],
    gid_index: int | None,
    apt: AptSource,
) -> FabricPlan | None:
    """The section for a node of a multi-node RDMA cluster; ``None`` elsewhere. GPUDirect RDMA is
    decided from the GPU and the kernel module flavour the driver section chose."""
    fabric = hardware.fabric
    if not hardware.multi_node or fabric is None or not fabric.rdma:
        return None
    return FabricPlan(
        kind=fabric,
        rate_gbps=float(hardware.fabric_rate_gbps or 0),
        devices=devices,
        gid_index=gid_index,
        gpudirect=gpudirect_rdma(nvidia.gpu, nvidia.flavor),
        apt=apt,
    )
