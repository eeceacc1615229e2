"""Expected NCCL all-reduce bus bandwidth per hardware profile, and the thresholds that judge it.

The one place these figures live; ``metalserve.diag.judge`` reads them, an inventory may override a
figure (``metalserve.diag.expected_busbw``), and nothing else restates them. Every figure is a large-
message (≥ 1 GiB) all_reduce ``busbw`` in GB/s as nccl-tests prints it, from a public measurement or
a maintainer's statement, each cited beside its figure.

Example::

    >>> expectation_for(PROFILES["h100-sxm-8"]).busbw_gbps
    473.6
    >>> expectation_for(PROFILES["h100-sxm-8"], override_gbps=460.0).source
    'inventory override (metalserve.diag.expected_busbw)'
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from metalserve.catalog.guides import GLM52_GUIDE
from metalserve.catalog.profiles import PROFILES
from metalserve.errors import SpecError
from metalserve.hardware import HardwareProfile


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusBwExpectation(_Frozen):
    """What a healthy profile reaches on all_reduce at large messages, and where that comes from."""

    profile_id: str
    busbw_gbps: float | None = Field(
        gt=0, description="None: no public figure for this setup; the judge says UNKNOWN"
    )
    basis: str = Field(description="what was measured, on what, at which size")
    source: str
    ring_busbw_gbps: float | None = Field(
        default=None,
        gt=0,
        description="NVSwitch profiles: the figure without NVLink SHARP (NVLS), i.e. ring only",
    )
    ring_source: str | None = None


class Thresholds(_Frozen):
    """How far below the expected figure a run may fall, and what counts as a large message."""

    pass_ratio: float = Field(gt=0, le=1)
    pass_source: str
    fail_ratio: float = Field(gt=0, le=1)
    fail_source: str
    large_message_bytes: int = Field(gt=0)
    large_message_source: str
    p2p_disabled_cost: str
    p2p_disabled_source: str


THRESHOLDS = Thresholds(
    pass_ratio=0.95,
    pass_source=(
        "Microsoft SuperBench data-diagnosis rule 'NCCL_BW suffers >5% downgrade' "
        "(microsoft/superbenchmark docs/user-tutorial/data-diagnosis.md)"
    ),
    fail_ratio=0.90,
    fail_source=(
        "nccl-tests NCCL_TESTS_MIN_BW: FAILED when bandwidth < 0.9 x the minimum "
        "(NVIDIA/nccl-tests src/util.cu writeResultFooter)"
    ),
    large_message_bytes=1 << 30,
    large_message_source=(
        "sjeaugey, NVIDIA/nccl-tests#212: peak needs large sizes, '256M is too small'; "
        "Azure/OCI health checks judge 1-16 GB"
    ),
    p2p_disabled_cost="40-60 %",
    p2p_disabled_source=f"{GLM52_GUIDE}: NCCL_P2P_DISABLE=1 'cuts throughput by 40-60%'",
)

_SOURCES_H100 = "NVIDIA/nccl-tests#290 (473.6-476.5 GB/s at 4 GB, 8×H100 SXM, NVLS)"
_RING_H100 = "sjeaugey, NVIDIA/nccl-tests#212: ~370 GB/s effective NVLink with NCCL_ALGO=Ring"

EXPECTED_ALLREDUCE_BUSBW: dict[str, BusBwExpectation] = {
    e.profile_id: e
    for e in (
        BusBwExpectation(
            profile_id="h200-sxm-8",
            busbw_gbps=473.0,
            basis="8×H200 SXM single node, NVLS, low end of 473-482 GB/s",
            source="stas00/ml-engineering network/README.md",
            ring_busbw_gbps=367.0,
            ring_source="stas00/ml-engineering network/README.md (NCCL_NVLS_ENABLE=0)",
        ),
        BusBwExpectation(
            profile_id="h100-sxm-8",
            busbw_gbps=473.6,
            basis="8×H100 SXM single node, NVLS, 4 GB messages",
            source=_SOURCES_H100,
            ring_busbw_gbps=370.0,
            ring_source=_RING_H100,
        ),
        BusBwExpectation(
            profile_id="h100-sxm-4",
            busbw_gbps=None,
            basis="4×H100 NVLink without NVSwitch: no public all_reduce figure found",
            source="none found (nccl-tests issues, Azure and OCI health checks publish no 4-GPU HGX row)",
        ),
        BusBwExpectation(
            profile_id="rtxpro6000-8",
            busbw_gbps=37.6,
            basis="8×RTX PRO 6000 Blackwell, PCIe Gen5, P2P on, tuned (37.6-41.7 GB/s)",
            source="voipmonitor/rtx6kpro hardware/pcie-bandwidth.md",
        ),
        BusBwExpectation(
            profile_id="rtxpro6000-4",
            busbw_gbps=None,
            basis="4×RTX PRO 6000: no public all_reduce figure found",
            source="none found (only the 8-GPU figure is published)",
        ),
        BusBwExpectation(
            profile_id="rtx4090-4",
            busbw_gbps=15.0,
            basis="RTX 4090 without P2P, measured on 8 cards (~15 GB/s); PCIe ring busbw is "
            "bound by host memory, not by the GPU count",
            source="blog.chlc.cc rtx4090-gpudirect-p2p-unlocked; NVIDIA/nccl#1639",
        ),
        BusBwExpectation(
            profile_id="dgx-spark-3",
            busbw_gbps=24.0,
            basis="one 200G RoCE NIC per node: 'peak performance per 200G NIC' is 24 GB/s",
            source="sjeaugey, NVIDIA/nccl-tests#119",
        ),
        BusBwExpectation(
            profile_id="h200-sxm-8x2-ib",
            busbw_gbps=469.0,
            basis="2×8 Hopper over 8×400G InfiniBand NDR, 16 GB, NVLSTree (measured on H100)",
            source="NVIDIA/nccl-tests#309",
            ring_busbw_gbps=392.0,
            ring_source="NVIDIA/nccl-tests#309 (NCCL_ALGO=Ring)",
        ),
        BusBwExpectation(
            profile_id="h100-sxm-8x2-roce",
            busbw_gbps=456.0,
            basis="2×8 H100 over 8×400G RoCE v2, 1 GiB, after the ACS/IOMMU fix",
            source="NVIDIA/nccl#2409",
        ),
    )
}


def _sourced_figure(hardware: HardwareProfile) -> BusBwExpectation:
    """The catalogue figure measured on this very composition (a preset's, whatever the setup is
    called in the inventory); "unknown" where none was measured, never another setup's figure."""
    for preset_id, expectation in EXPECTED_ALLREDUCE_BUSBW.items():
        preset = PROFILES.get(preset_id)
        if preset is not None and preset.composition == hardware.composition:
            return expectation
    return BusBwExpectation(
        profile_id=hardware.id,
        busbw_gbps=None,
        basis=f"{hardware.description}: no public all_reduce figure for this composition",
        source="none found; set metalserve.diag.expected_busbw from a healthy run",
    )


OVERRIDE_SOURCE = "inventory override (metalserve.diag.expected_busbw)"
"""The source of a figure the inventory (or ``diag parse --expected-busbw``) set."""


def expectation_for(
    hardware: HardwareProfile | str, override_gbps: float | None = None
) -> BusBwExpectation:
    """The expected figure for the hardware (or a preset's id); an inventory value replaces the
    catalogue's figure."""
    if isinstance(hardware, str):
        if hardware not in PROFILES:
            raise SpecError(
                f"metalserve.profile: expected one of {', '.join(sorted(PROFILES))}, found "
                f"{hardware!r} — fix: name a known hardware profile"
            )
        hardware = PROFILES[hardware]
    known = _sourced_figure(hardware)
    if override_gbps is None:
        return known
    if override_gbps <= 0:
        raise SpecError(
            f"metalserve.diag.expected_busbw: expected a bandwidth in GB/s > 0, found "
            f"{override_gbps} — fix: set the all_reduce busbw this host reaches when healthy"
        )
    return known.model_copy(
        update={
            "busbw_gbps": override_gbps,
            "basis": f"set in the inventory (catalogue: {known.busbw_gbps or 'none'})",
            "source": OVERRIDE_SOURCE,
        }
    )
