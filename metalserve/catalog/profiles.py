"""The machine setups users ask about, by id. Inventories name one of these."""

from __future__ import annotations

from metalserve.catalog import gpus
from metalserve.catalog.guides import GLM52_GUIDE, MODAL_POST, NVFP4_POST
from metalserve.errors import SpecError
from metalserve.hardware import HardwareProfile, Interconnect, NetworkFabric

PROFILES: dict[str, HardwareProfile] = {
    p.id: p
    for p in (
        HardwareProfile(
            id="h200-sxm-8",
            description="8×H200 SXM on an NVSwitch (HGX) baseboard",
            gpu=gpus.H200_SXM,
            gpus_per_node=8,
            nodes=1,
            interconnect=Interconnect.NVSWITCH,
            host_ram_gb=2048,
            source=f"{MODAL_POST} (8x H200, 141 GB each); {GLM52_GUIDE}: '8×H200'",
        ),
        HardwareProfile(
            id="h100-sxm-8",
            description="8×H100 SXM on an NVSwitch (HGX) baseboard",
            gpu=gpus.H100_SXM,
            gpus_per_node=8,
            nodes=1,
            interconnect=Interconnect.NVSWITCH,
            host_ram_gb=2048,
            source=f"{GLM52_GUIDE}: 'real numbers from 8×H200 and 4×H100'",
        ),
        HardwareProfile(
            id="h100-sxm-4",
            description="4×H100 SXM, NVLink, no NVSwitch (HGX 4-GPU)",
            gpu=gpus.H100_SXM,
            gpus_per_node=4,
            nodes=1,
            interconnect=Interconnect.NVLINK,
            host_ram_gb=1024,
            source=f"{GLM52_GUIDE}: 'FP8 … Minimum GPUs 4×H100 (80GB each)'",
        ),
        HardwareProfile(
            id="rtxpro6000-8",
            description="8×RTX PRO 6000 Blackwell, PCIe Gen5 only",
            gpu=gpus.RTX_PRO_6000,
            gpus_per_node=8,
            nodes=1,
            interconnect=Interconnect.PCIE,
            host_ram_gb=1024,
            source=f"{NVFP4_POST} (validated NVFP4 configuration, 8x 96 GB)",
        ),
        HardwareProfile(
            id="rtxpro6000-4",
            description="4×RTX PRO 6000 Blackwell, PCIe Gen5 only",
            gpu=gpus.RTX_PRO_6000,
            gpus_per_node=4,
            nodes=1,
            interconnect=Interconnect.PCIE,
            host_ram_gb=512,
            source=f"{NVFP4_POST}: 'Variants running on 4x RTX PRO 6000 (SM120)'",
        ),
        HardwareProfile(
            id="rtx4090-4",
            description="4×RTX 4090 + 128 GB RAM, PCIe, no GPU P2P",
            gpu=gpus.RTX_4090,
            gpus_per_node=4,
            nodes=1,
            interconnect=Interconnect.PCIE,
            host_ram_gb=128,
            source=f"{GLM52_GUIDE}: '4×RTX 4090 (24GB each) + 128GB RAM'",
        ),
        HardwareProfile(
            id="dgx-spark-3",
            description="3× DGX Spark (GB10) over 200G RoCE",
            gpu=gpus.GB10,
            gpus_per_node=1,
            nodes=3,
            interconnect=Interconnect.UNIFIED,
            fabric=NetworkFabric.ROCE_V2,
            fabric_rate_gbps=200,
            nics_per_node=1,
            host_ram_gb=128,
            source=f"{NVFP4_POST}: '3x DGX Spark with pipeline parallelism'",
        ),
        HardwareProfile(
            id="h200-sxm-8x2-ib",
            description="2 nodes of 8×H200 over InfiniBand NDR (8×400G)",
            gpu=gpus.H200_SXM,
            gpus_per_node=8,
            nodes=2,
            interconnect=Interconnect.NVSWITCH,
            fabric=NetworkFabric.INFINIBAND,
            fabric_rate_gbps=400,
            nics_per_node=8,
            host_ram_gb=2048,
            source=(
                f"{GLM52_GUIDE}, multi-node NCCL block (ib0); 2×8 H100 over IB NDR 8×400G "
                "(https://github.com/NVIDIA/nccl-tests/issues/309)"
            ),
        ),
        HardwareProfile(
            id="h100-sxm-8x2-roce",
            description="2 nodes of 8×H100 over RoCE v2 (8×400G)",
            gpu=gpus.H100_SXM,
            gpus_per_node=8,
            nodes=2,
            interconnect=Interconnect.NVSWITCH,
            fabric=NetworkFabric.ROCE_V2,
            fabric_rate_gbps=400,
            nics_per_node=8,
            host_ram_gb=2048,
            source=(
                f"{GLM52_GUIDE}: 'RoCE v2 fabric config'; 2×8 H100 over RoCEv2 8×400G "
                "(https://github.com/NVIDIA/nccl/issues/2409); NCCL env.rst RoCE variables"
            ),
        ),
        HardwareProfile(
            id="sandbox-cpu",
            description="a sandbox host with no GPU (llama.cpp on the CPU)",
            gpu=None,
            gpus_per_node=0,
            nodes=1,
            interconnect=None,
            host_ram_gb=4,
            source="metalserve sandbox (systemd-nspawn host on the control machine)",
        ),
    )
}


def profile(profile_id: str) -> HardwareProfile:
    """The profile with this id, or a one-line error listing the known ids."""
    try:
        return PROFILES[profile_id]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise SpecError(f"unknown hardware profile {profile_id!r} (known: {known})") from None
