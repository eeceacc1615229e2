"""GPU products. Memory is the marketed decimal-GB figure the published guides size against."""

from __future__ import annotations

from metalserve.catalog.guides import GLM52_GUIDE, MODAL_POST, NVFP4_POST
from metalserve.hardware import GpuModel

_SPECS = "NVIDIA product datasheet"

H200_SXM = GpuModel(
    id="h200-sxm",
    name="NVIDIA H200",
    memory_gb=141,
    compute_capability=(9, 0),
    nvlink=True,
    nvswitch_baseboard=True,
    fp8=True,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=True,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=f"{_SPECS} (H200 SXM 141 GB HBM3e); {MODAL_POST}: '141GB of HBM3e'",
)
H100_SXM = GpuModel(
    id="h100-sxm",
    name="NVIDIA H100 80GB HBM3",
    memory_gb=80,
    compute_capability=(9, 0),
    nvlink=True,
    nvswitch_baseboard=True,
    fp8=True,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=True,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=f"{_SPECS} (H100 SXM5 80 GB); {GLM52_GUIDE}: '4×H100 (80GB each)'",
)
H100_PCIE = GpuModel(
    id="h100-pcie",
    name="NVIDIA H100 PCIe",
    memory_gb=80,
    compute_capability=(9, 0),
    nvlink=False,
    nvswitch_baseboard=False,
    fp8=True,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=False,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=f"{_SPECS} (H100 PCIe 80 GB; NVLink only through 2-GPU bridges)",
)
A100_SXM = GpuModel(
    id="a100-sxm",
    name="NVIDIA A100-SXM4-80GB",
    memory_gb=80,
    compute_capability=(8, 0),
    nvlink=True,
    nvswitch_baseboard=True,
    fp8=False,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=True,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=f"{_SPECS} (A100 SXM4 80 GB, NVLink3)",
)
L40S = GpuModel(
    id="l40s",
    name="NVIDIA L40S",
    memory_gb=48,
    compute_capability=(8, 9),
    nvlink=False,
    nvswitch_baseboard=False,
    fp8=True,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=False,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=f"{_SPECS} (L40S 48 GB GDDR6, PCIe Gen4, no NVLink)",
)
RTX_4090 = GpuModel(
    id="rtx-4090",
    name="NVIDIA GeForce RTX 4090",
    memory_gb=24,
    compute_capability=(8, 9),
    nvlink=False,
    nvswitch_baseboard=False,
    fp8=True,
    nvfp4=False,
    open_kernel_modules_required=False,
    fabric_manager_with_nvswitch=False,
    pcie_p2p=False,
    nvidia_peermem=False,
    source=(
        f"{_SPECS} (24 GB GDDR6X); GeForce Ada has no PCIe P2P in NVIDIA's driver "
        "(blog.chlc.cc rtx4090-gpudirect-p2p-unlocked: ~15 GB/s busbw without P2P); nor GPUDirect "
        "RDMA on GeForce (tinygrad/open-gpu-kernel-modules#46)"
    ),
)
RTX_PRO_6000 = GpuModel(
    id="rtx-pro-6000",
    name="NVIDIA RTX PRO 6000 Blackwell Server Edition",
    memory_gb=96,
    compute_capability=(12, 0),
    nvlink=False,
    nvswitch_baseboard=False,
    fp8=True,
    nvfp4=True,
    open_kernel_modules_required=True,
    fabric_manager_with_nvswitch=False,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=(
        f"{_SPECS} (96 GB GDDR7, PCIe Gen5); "
        f"{NVFP4_POST}: '8x RTX PRO 6000 Blackwell GPUs (96 GB each)'; Blackwell needs the open "
        "kernel module ('RmInitAdapter failed' with the proprietary one: "
        "https://github.com/runs-on/runner-images-for-aws/issues/55)"
    ),
)
B200 = GpuModel(
    id="b200",
    name="NVIDIA B200",
    memory_gb=180,
    compute_capability=(10, 0),
    nvlink=True,
    nvswitch_baseboard=True,
    fp8=True,
    nvfp4=True,
    open_kernel_modules_required=True,
    fabric_manager_with_nvswitch=True,
    pcie_p2p=True,
    nvidia_peermem=True,
    source=(
        f"{_SPECS} (HGX B200 180 GB HBM3e); Fabric Manager also needs NVLSM and the mlx5_ib and "
        "ib_umad modules (https://github.com/NVIDIA/gpu-operator/issues/2781)"
    ),
)
GB10 = GpuModel(
    id="gb10",
    name="NVIDIA GB10",
    memory_gb=128,
    compute_capability=(12, 1),
    nvlink=False,
    nvswitch_baseboard=False,
    fp8=True,
    nvfp4=True,
    open_kernel_modules_required=True,
    fabric_manager_with_nvswitch=False,
    pcie_p2p=False,
    nvidia_peermem=False,
    cpu_arch="aarch64",  # GB10 pairs the Blackwell GPU with a 20-core Arm CPU (DGX Spark datasheet)
    source=(
        f"{_SPECS} (DGX Spark: GB10, 128 GB unified LPDDR5x shared with the CPU, ConnectX-7 200G); "
        "no nvidia-peermem: 'modprobe nvidia_peermem returns Invalid argument on GB10 … unified "
        "memory has no separate BAR1' (NVIDIA/daqiri docs/tutorials/system_configuration.md)"
    ),
)

GPUS: dict[str, GpuModel] = {
    g.id: g
    for g in (H200_SXM, H100_SXM, H100_PCIE, A100_SXM, L40S, RTX_4090, RTX_PRO_6000, B200, GB10)
}

_VENDOR_PREFIX = "NVIDIA "
"""Older drivers name a GPU without it: ``A100-SXM4-40GB`` in the nccl-tests output kept by
microsoft/superbenchmark (tests/data/nccl_allreduce.log), ``NVIDIA A100-SXM4-40GB`` in later ones."""


def gpu_named(name: str) -> GpuModel | None:
    """The catalogue GPU the driver calls ``name``: nvidia-smi's ``name``, which is also the CUDA
    device name nccl-tests prints after each rank (``prop.name``, NVIDIA/nccl-tests src/common.cu).
    Exact, so ``NVIDIA H200 NVL`` is not the H200 SXM; ``None`` for a GPU the catalogue lacks.

    >>> gpu_named("NVIDIA H100 80GB HBM3").id, gpu_named("NVIDIA H200 NVL")
    ('h100-sxm', None)
    """
    wanted = name.strip().removeprefix(_VENDOR_PREFIX)
    return next((g for g in GPUS.values() if g.name.removeprefix(_VENDOR_PREFIX) == wanted), None)
