"""Hardware composed from its parts, so a new setup is an inventory, not a code change.

An inventory names a catalogue preset (``metalserve.profile: h200-sxm-8``) or composes its own
(``metalserve.hardware``): GPU model × GPUs per node × nodes × intra-node interconnect × inter-node
fabric with its rate and NICs. Both become one :class:`HardwareProfile`; sizing, the NCCL matrix,
the driver roles and the diagnostic read nothing else.

Example (host data)::

    "hardware": {"gpu": "h200-sxm", "gpus_per_node": 8, "nodes": 2, "interconnect": "nvswitch",
                 "fabric": "roce_v2", "fabric_rate_gbps": 400, "nics_per_node": 8,
                 "host_ram_gb": 2048}
"""

from __future__ import annotations

from pydantic import Field, model_validator

from metalserve.catalog.gpus import GPUS
from metalserve.hardware import Frozen, HardwareProfile, Interconnect, NetworkFabric

COMPOSED_SOURCE = "composed in the inventory (metalserve.hardware)"


class HardwareSpec(Frozen):
    """The inventory's own composition of a node and of the cluster it belongs to."""

    gpu: str | None = Field(description="a catalogue GPU id, e.g. h200-sxm; none for a CPU host")
    gpus_per_node: int = Field(ge=0, le=64)
    nodes: int = Field(default=1, ge=1, le=1024)
    interconnect: Interconnect | None = None
    fabric: NetworkFabric | None = None
    fabric_rate_gbps: int | None = Field(default=None, ge=1, le=3200, description="per data NIC")
    nics_per_node: int = Field(default=0, ge=0, le=64)
    host_ram_gb: float = Field(gt=0, le=1_000_000)

    @model_validator(mode="after")
    def _parts_fit(self) -> HardwareSpec:
        problem = _first_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def _first_problem(spec: HardwareSpec) -> str | None:
    if spec.gpu is None:
        if spec.gpus_per_node:
            return "gpus_per_node is set but gpu is not — fix: name the GPU (e.g. h200-sxm)"
        return None
    gpu = GPUS.get(spec.gpu)
    if gpu is None:
        return f"unknown GPU {spec.gpu!r} (known: {', '.join(sorted(GPUS))}) — fix: use one of them"
    if spec.gpus_per_node < 1:
        return "gpus_per_node must be at least 1 with a GPU — fix: set the GPUs per node"
    if spec.interconnect is None:
        return "interconnect is required with a GPU — fix: set nvswitch, nvlink, pcie or unified"
    if spec.interconnect is Interconnect.NVSWITCH and not gpu.nvswitch_baseboard:
        return f"{gpu.name} is not sold on NVSwitch baseboards — fix: interconnect pcie or nvlink"
    if spec.interconnect is Interconnect.NVLINK and not gpu.nvlink:
        return f"{gpu.name} has no NVLink — fix: interconnect pcie"
    if spec.nodes > 1 and spec.fabric is None:
        return (
            f"{spec.nodes} nodes need an inter-node fabric — fix: set fabric to infiniband, "
            "roce_v2 or ethernet"
        )
    if spec.fabric is not None and spec.fabric.rdma and spec.nodes > 1:
        if spec.nics_per_node < 1:
            return f"fabric {spec.fabric} needs nics_per_node (data NICs per node) — fix: set it"
        if spec.fabric_rate_gbps is None:
            return f"fabric {spec.fabric} needs fabric_rate_gbps (per NIC, e.g. 400) — fix: set it"
    return None


def composed_id(spec: HardwareSpec) -> str:
    """A readable id: ``h200-sxm-8``, ``h200-sxm-8x2-roce_v2``, ``cpu``."""
    base = f"{spec.gpu}-{spec.gpus_per_node}" if spec.gpu else "cpu"
    return f"{base}x{spec.nodes}-{spec.fabric}" if spec.nodes > 1 else base


def _description(spec: HardwareSpec) -> str:
    gpu = GPUS[spec.gpu].name if spec.gpu else None
    node = f"{spec.gpus_per_node}×{gpu} ({spec.interconnect})" if gpu else "a CPU host"
    if spec.nodes == 1:
        return node
    link = f"{spec.fabric}"
    if spec.fabric is not None and spec.fabric.rdma:
        link += f" ({spec.nics_per_node}×{spec.fabric_rate_gbps}G)"
    return f"{spec.nodes} nodes of {node} over {link}"


def compose(spec: HardwareSpec) -> HardwareProfile:
    """The hardware an inventory composed."""
    return HardwareProfile(
        id=composed_id(spec),
        description=_description(spec),
        gpu=GPUS[spec.gpu] if spec.gpu else None,
        gpus_per_node=spec.gpus_per_node,
        nodes=spec.nodes,
        interconnect=spec.interconnect if spec.gpu else None,
        fabric=spec.fabric,
        fabric_rate_gbps=spec.fabric_rate_gbps,
        nics_per_node=spec.nics_per_node,
        host_ram_gb=spec.host_ram_gb,
        source=COMPOSED_SOURCE,
    )
