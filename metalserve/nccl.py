"""The NCCL environment for a host: one value per variable, each with the reason an operator reads.

Example::

    env = nccl_environment(PROFILES["h200-sxm-8"], fabric=None, expert_parallel=False)
    env.as_dict()  # {"NCCL_SOCKET_IFNAME": "lo", "NCCL_IB_DISABLE": "1", ...}
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from metalserve.catalog.guides import GLM52_GUIDE
from metalserve.catalog.nccl_vars import KNOWN_NCCL_VARIABLES
from metalserve.errors import SpecError
from metalserve.hardware import Frozen, HardwareProfile, Interconnect, NetworkFabric
from metalserve.ncclsyntax import (
    HcaField,
    HcaSelection,
    IfnameField,
    IfnameSelection,
    NcclSyntaxError,
)

GUIDE_NCCL = f"{GLM52_GUIDE}, 'NCCL Tuning for Multi-GPU'"
NCCL_ENV_DOC = "NCCL env.rst (docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html)"

MOE_MIN_CHANNELS = 16
"""Channel floor for cross-node expert all-to-all. The GLM 5.2 MoE guide claims a NCCL_MIN_NCHANNELS
fix for a 40 % MoE all-to-all loss without giving the value; 16 matches the per-NIC channel count of
an 8-NIC node. Verify with the diagnostic's alltoall run."""


class FabricSpec(Frozen):
    """The node's network names, from the inventory (they differ per site), in NCCL's own syntax
    or as lists of names (matched exactly)."""

    socket_ifname: IfnameField | None = Field(
        default=None, description="bootstrap/OOB interface, e.g. ib0, bond0, enp1s0f0"
    )
    ib_hca: HcaField | None = Field(
        default=None, description="data HCAs: [mlx5_0, …] or NCCL syntax (^mlx5_2, =mlx5_0:1)"
    )
    gid_index: int | None = Field(
        default=None, ge=0, le=255, description="RoCE v2 IPv4 GID (show_gids)"
    )
    traffic_class: int | None = Field(
        default=None, ge=0, le=255, description="NCCL_IB_TC: switch lossless class, DSCP<<2"
    )


LEFT_UNSET: dict[str, str] = {
    "NCCL_NET_GDR_LEVEL": (
        "NCCL decides GPUDirect RDMA per GPU/NIC pair from the PCI topology; forcing a level "
        "(e.g. 5 = SYS) makes GPU and NIC across CPU sockets use RDMA too, which is slower there — "
        "set it in metalserve.nccl only after measuring"
    ),
    "NCCL_ALGO": "NCCL picks the algorithm per size and topology; forcing one is a debug aid",
    "NCCL_PROTO": "NCCL's docs: changing it may cause performance loss or data corruption",
}
"""Variables the NCCL docs (env.html) advise leaving to NCCL: unset unless the site sets them."""

RDMA_ONLY = ("NCCL_IB_GID_INDEX", "NCCL_IB_TC", "NCCL_IB_HCA", "NCCL_NET_GDR_LEVEL")
ROCE_ONLY = ("NCCL_IB_GID_INDEX", "NCCL_IB_TC")


class NcclSetting(Frozen):
    name: str
    value: str
    reason: str
    source: str


class NcclEnvironment(Frozen):
    settings: tuple[NcclSetting, ...]
    warnings: tuple[str, ...] = ()
    unset: tuple[tuple[str, str], ...] = Field(
        default=(), description="(variable, why metalserve leaves it to NCCL)"
    )

    def as_dict(self) -> dict[str, str]:
        return {s.name: s.value for s in self.settings}

    def get(self, name: str) -> str | None:
        return self.as_dict().get(name)

    def socket_interface(self) -> str | None:
        """The one interface NCCL_SOCKET_IFNAME selects by name, as NCCL will be given it (an
        inventory override included); None for an exclusion or several names."""
        value = self.get("NCCL_SOCKET_IFNAME")
        if value is None:
            return None
        selection = IfnameSelection.parse(value)
        if selection.exclude or len(selection.names) != 1:
            return None
        return selection.names[0]

    def hca_devices(self) -> tuple[str, ...]:
        """The HCAs NCCL_IB_HCA names for use, as NCCL will be given it (an override included);
        none for an exclusion, which need not name a device that exists."""
        value = self.get("NCCL_IB_HCA")
        if value is None:
            return ()
        selection = HcaSelection.parse(value)
        return () if selection.exclude else selection.named_devices()


def _single_node(profile: HardwareProfile) -> list[NcclSetting]:
    settings = [
        NcclSetting(
            name="NCCL_SOCKET_IFNAME",
            value="lo",
            reason="one node: NCCL's bootstrap stays on loopback, never a docker or VLAN interface",
            source=GUIDE_NCCL,
        ),
        NcclSetting(
            name="NCCL_IB_DISABLE",
            value="1",
            reason="one node: no inter-node network, so NCCL does not probe IB HCAs",
            source=GUIDE_NCCL,
        ),
    ]
    if profile.interconnect in (Interconnect.NVSWITCH, Interconnect.NVLINK):
        settings += [
            NcclSetting(
                name="NCCL_P2P_DISABLE",
                value="0",
                reason="keep GPU-direct P2P over NVLink; =1 is a crutch that costs 40-60 %",
                source=GUIDE_NCCL,
            ),
            NcclSetting(
                name="NCCL_P2P_LEVEL",
                value="NVL",
                reason="use P2P where GPUs are joined by NVLink",
                source=GUIDE_NCCL,
            ),
        ]
    elif profile.p2p_available:
        settings.append(
            NcclSetting(
                name="NCCL_P2P_DISABLE",
                value="0",
                reason=(
                    "PCIe cards with P2P: keep it on (=1 costs 40-60 %); if P2P is slow or hangs, "
                    "fix ACS/IOMMU (iommu=pt, ACS off) rather than disabling it"
                ),
                source=f"{GUIDE_NCCL}; ACS/IOMMU: https://github.com/NVIDIA/nccl/issues/2079",
            )
        )
    elif profile.gpus_per_node > 1 and profile.gpu is not None:
        settings.append(
            NcclSetting(
                name="NCCL_P2P_DISABLE",
                value="1",
                reason=(
                    f"{profile.gpu.name}: the driver has no PCIe P2P on this product, so NCCL goes "
                    "through host shared memory anyway; declaring it avoids the hangs of drivers "
                    "that advertised P2P and costs nothing here"
                ),
                source="blog.chlc.cc rtx4090-gpudirect-p2p-unlocked (~15 GB/s busbw without P2P)",
            )
        )
    return settings


def _socket_ifname(fabric: FabricSpec) -> NcclSetting:
    assert fabric.socket_ifname is not None
    return NcclSetting(
        name="NCCL_SOCKET_IFNAME",
        value=fabric.socket_ifname.as_exact().nccl_value(),
        reason=(
            "bootstrap interface, matched exactly ('=') so NCCL never picks docker0, lo or a "
            "VLAN sub-interface sharing the prefix"
        ),
        source=f"{NCCL_ENV_DOC} (NCCL_SOCKET_IFNAME)",
    )


def _between_nodes(profile: HardwareProfile, fabric: FabricSpec) -> list[NcclSetting]:
    if profile.fabric is NetworkFabric.ETHERNET:
        return [
            NcclSetting(
                name="NCCL_IB_DISABLE",
                value="1",
                reason="plain Ethernet between nodes: NCCL's socket transport, no RDMA probing",
                source=f"{NCCL_ENV_DOC} (NCCL_IB_DISABLE)",
            ),
            _socket_ifname(fabric),
        ]
    assert fabric.ib_hca is not None
    return [
        NcclSetting(
            name="NCCL_IB_DISABLE",
            value="0",
            reason="several nodes: use the RDMA fabric, not TCP sockets",
            source=GUIDE_NCCL,
        ),
        _socket_ifname(fabric),
        NcclSetting(
            name="NCCL_IB_HCA",
            value=fabric.ib_hca.nccl_value(),
            reason=(
                "the data HCAs as the inventory selects them; a list is matched exactly ('=': "
                "mlx5_1 alone would also match mlx5_10-19)"
            ),
            source=f"{NCCL_ENV_DOC} (NCCL_IB_HCA)",
        ),
    ]


def _multi_node(
    profile: HardwareProfile, fabric: FabricSpec, expert_parallel: bool
) -> list[NcclSetting]:
    settings = _between_nodes(profile, fabric)
    if profile.interconnect in (Interconnect.NVSWITCH, Interconnect.NVLINK):
        settings.append(
            NcclSetting(
                name="NCCL_P2P_LEVEL",
                value="NVL",
                reason="inside each node, P2P over NVLink",
                source=GUIDE_NCCL,
            )
        )
    if profile.fabric is NetworkFabric.ROCE_V2:
        settings += [
            NcclSetting(
                name="NCCL_IB_GID_INDEX",
                value=str(fabric.gid_index),
                reason=(
                    "RoCE v2 with a routable IPv4 GID (show_gids); a link-local or RoCE v1 GID gives "
                    "'completion with error 12' and timeouts"
                ),
                source=(
                    f"{NCCL_ENV_DOC}; wrong GID: https://github.com/NVIDIA/nccl/issues/769; "
                    "oracle-quickstart/oci-hpc playbooks/roles/nccl-conf/templates pin 3"
                ),
            ),
            NcclSetting(
                name="NCCL_IB_TC",
                value=str(fabric.traffic_class),
                reason="traffic class of the switches' lossless (PFC/ECN) queue: DSCP << 2",
                source=(
                    f"{NCCL_ENV_DOC}; lossless class: https://github.com/NVIDIA/nccl/issues/378; "
                    "106 = DSCP 26: https://github.com/openucx/ucx/issues/10325"
                ),
            ),
        ]
    if expert_parallel:
        settings.append(
            NcclSetting(
                name="NCCL_MIN_NCHANNELS",
                value=str(MOE_MIN_CHANNELS),
                reason=(
                    "expert parallelism across nodes is all-to-all heavy; a channel floor keeps "
                    "every NIC busy (check with the diagnostic's alltoall)"
                ),
                source=f"{GUIDE_NCCL} (NCCL_MIN_NCHANNELS tuning for MoE all-to-all)",
            )
        )
    return settings


def _require_fabric(profile: HardwareProfile, fabric: FabricSpec | None) -> FabricSpec:
    """The fabric values this setup needs, and none it would silently drop."""
    fabric = fabric or FabricSpec()
    kind = profile.fabric
    missing = []
    if not fabric.socket_ifname:
        missing.append(("socket_ifname", "the bootstrap interface, e.g. ib0 or bond0"))
    if kind is not None and kind.rdma and not fabric.ib_hca:
        missing.append(("ib_hca", "the data HCAs, e.g. [mlx5_0, mlx5_3]"))
    if kind is NetworkFabric.ROCE_V2:
        if fabric.gid_index is None:
            missing.append(("gid_index", "the RoCE v2 IPv4 GID index from show_gids, usually 3"))
        if fabric.traffic_class is None:
            missing.append(("traffic_class", "the lossless traffic class, e.g. 106"))
    if missing:
        field, fix = missing[0]
        raise SpecError(
            f"fabric.{field}: required for multi-node hardware {profile.id} — fix: set it to {fix}"
        )
    _refuse_inapplicable(profile, fabric)
    return fabric


def _refuse_inapplicable(profile: HardwareProfile, fabric: FabricSpec) -> None:
    """A value the fabric would never use is refused, so no site setting disappears silently."""
    kind = profile.fabric
    for field in ("gid_index", "traffic_class"):
        if getattr(fabric, field) is not None and kind is not NetworkFabric.ROCE_V2:
            raise SpecError(
                f"fabric.{field}: applies to RoCE v2 only, and {profile.id}'s fabric is {kind} — "
                "fix: remove it, or compose the hardware with fabric roce_v2"
            )
    if fabric.ib_hca is not None and (kind is None or not kind.rdma):
        raise SpecError(
            f"fabric.ib_hca: applies to an RDMA fabric, and {profile.id}'s fabric is {kind} — "
            "fix: remove it, or compose the hardware with infiniband or roce_v2"
        )


def _override_warnings(profile: HardwareProfile, name: str, value: str) -> list[str]:
    """One line per inventory override that does not apply to this hardware or is known to hurt."""
    warnings = []
    if name not in KNOWN_NCCL_VARIABLES:
        warnings.append(f"unknown NCCL variable {name} (not in NCCL's documented list) — typo?")
    rdma = profile.multi_node and profile.fabric is not None and profile.fabric.rdma
    if name in RDMA_ONLY and not rdma:
        warnings.append(
            f"nccl.{name} has no effect on {profile.id} (no RDMA fabric between nodes) — remove it"
        )
    elif name in ROCE_ONLY and profile.fabric is not NetworkFabric.ROCE_V2:
        warnings.append(
            f"nccl.{name} applies to RoCE v2 and {profile.id}'s fabric is {profile.fabric} — "
            "remove it"
        )
    if name == "NCCL_P2P_DISABLE" and value == "1" and profile.p2p_available:
        warnings.append(
            "NCCL_P2P_DISABLE=1 on GPUs that support P2P costs 40-60 % of bus bandwidth; "
            "fix ACS/IOMMU instead (https://github.com/NVIDIA/nccl/issues/2079)"
        )
    return warnings


def _override_value(name: str, value: str) -> str:
    """Values that select devices are checked against NCCL's syntax (one line on error)."""
    try:
        if name == "NCCL_IB_HCA":
            return HcaSelection.parse(value).nccl_value()
        if name == "NCCL_SOCKET_IFNAME":
            return IfnameSelection.parse(value).nccl_value()
    except NcclSyntaxError as exc:
        raise SpecError(f"nccl.{name}: {exc}") from None
    if "\n" in value or "\r" in value or "\0" in value:
        raise SpecError(f"nccl.{name}: a value is one line — fix: remove the line break")
    return value


def nccl_environment(
    profile: HardwareProfile,
    fabric: FabricSpec | None = None,
    *,
    expert_parallel: bool = False,
    overrides: Mapping[str, str] | None = None,
) -> NcclEnvironment:
    """The NCCL variables for ``profile``; inventory ``overrides`` win over the matrix."""
    if profile.gpu is None or profile.total_gpus < 2:
        base: list[NcclSetting] = []
    elif profile.multi_node:
        base = _multi_node(profile, _require_fabric(profile, fabric), expert_parallel)
    else:
        base = _single_node(profile)
    by_name = {s.name: s for s in base}
    warnings = []
    for name, raw in (overrides or {}).items():
        if not name.startswith("NCCL_"):
            raise SpecError(
                f"nccl.{name}: only NCCL_* variables belong here — fix: rename or move it"
            )
        value = _override_value(name, str(raw))
        warnings += _override_warnings(profile, name, value)
        by_name[name] = NcclSetting(
            name=name, value=value, reason="inventory override", source="inventory"
        )
    unset = tuple((n, why) for n, why in LEFT_UNSET.items() if base and n not in by_name)
    return NcclEnvironment(settings=tuple(by_name.values()), warnings=tuple(warnings), unset=unset)


def distributed_environment(nccl: NcclEnvironment, multi_node: bool) -> dict[str, str]:
    """torch/Gloo needs the same interface as NCCL across nodes: the one NCCL is given, an
    inventory override included (PyTorch docs, 'Distributed communication package': Choosing the
    network interface to use)."""
    interface = nccl.socket_interface()
    if not multi_node or interface is None:
        return {}
    return {"GLOO_SOCKET_IFNAME": interface}
