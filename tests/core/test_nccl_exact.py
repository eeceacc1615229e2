"""Each NCCL variable for each kind of setup, and each refusal, exactly.

Sources (NCCL env.rst, docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html):
- NCCL_SOCKET_IFNAME: a leading ``=`` matches the interface name exactly, ``^`` excludes.
- NCCL_IB_HCA: the same prefixes; ``mlx5_1`` alone would also match ``mlx5_10``.
- NCCL_P2P_LEVEL=NVL: use P2P when GPUs are connected through NVLink.
- NCCL_IB_GID_INDEX / NCCL_IB_TC: RoCE only.
- The GLM 5.2 MoE guide: lo + IB disabled on one node; P2P on (=1 costs 40-60 %); NCCL_MIN_NCHANNELS for MoE.
- The RTX 4090 has no PCIe P2P (driver), so NCCL goes through SHM regardless.
"""

from __future__ import annotations

import pytest

from metalserve.catalog.guides import GLM52_GUIDE
from metalserve.catalog.profiles import PROFILES
from metalserve.errors import SpecError
from metalserve.hardware import HardwareProfile, Interconnect, NetworkFabric
from metalserve.nccl import (
    LEFT_UNSET,
    FabricSpec,
    NcclEnvironment,
    NcclSetting,
    distributed_environment,
    nccl_environment,
)

IB = FabricSpec(socket_ifname="ib0", ib_hca=("mlx5_0", "mlx5_3"))
ROCE = FabricSpec(socket_ifname="bond0", ib_hca=("mlx5_0",), gid_index=3, traffic_class=106)
ETH = FabricSpec(socket_ifname="enp1s0f0")
GUIDE = f"{GLM52_GUIDE}, 'NCCL Tuning for Multi-GPU'"  # the GLM 5.2 MoE deployment guide
UNSET = ["NCCL_NET_GDR_LEVEL", "NCCL_ALGO", "NCCL_PROTO"]


def ethernet_pair() -> HardwareProfile:
    return PROFILES["h100-sxm-8x2-roce"].model_copy(
        update={"id": "h100-eth", "fabric": NetworkFabric.ETHERNET}
    )


@pytest.mark.parametrize(
    ("profile_id", "expected"),
    [
        # NVSwitch baseboard: loopback bootstrap, no IB probing, P2P over NVLink
        (
            "h200-sxm-8",
            {
                "NCCL_SOCKET_IFNAME": "lo",
                "NCCL_IB_DISABLE": "1",
                "NCCL_P2P_DISABLE": "0",
                "NCCL_P2P_LEVEL": "NVL",
            },
        ),
        # 4-GPU HGX: NVLink without NVSwitch still gets the NVLink P2P level
        (
            "h100-sxm-4",
            {
                "NCCL_SOCKET_IFNAME": "lo",
                "NCCL_IB_DISABLE": "1",
                "NCCL_P2P_DISABLE": "0",
                "NCCL_P2P_LEVEL": "NVL",
            },
        ),
        # PCIe cards with P2P: keep it on, no NVLink level
        (
            "rtxpro6000-4",
            {"NCCL_SOCKET_IFNAME": "lo", "NCCL_IB_DISABLE": "1", "NCCL_P2P_DISABLE": "0"},
        ),
        # PCIe cards without P2P: declare it off
        (
            "rtx4090-4",
            {"NCCL_SOCKET_IFNAME": "lo", "NCCL_IB_DISABLE": "1", "NCCL_P2P_DISABLE": "1"},
        ),
        # no GPU, or one GPU in all: nothing for NCCL to do
        ("sandbox-cpu", {}),
    ],
)
def test_single_node_variables_per_interconnect(profile_id: str, expected: dict[str, str]) -> None:
    env = nccl_environment(PROFILES[profile_id])
    assert env.as_dict() == expected
    assert [n for n, _ in env.unset] == (UNSET if expected else [])
    assert env.warnings == ()


def test_a_single_gpu_host_gets_no_nccl_variables() -> None:
    one = PROFILES["h100-sxm-4"].model_copy(update={"gpus_per_node": 1})
    assert nccl_environment(one).as_dict() == {}
    two = PROFILES["h100-sxm-4"].model_copy(update={"gpus_per_node": 2})
    assert nccl_environment(two).get("NCCL_P2P_LEVEL") == "NVL"


def test_a_single_gpu_without_p2p_has_nothing_to_disable() -> None:
    # one card per node is never paired: no P2P variable for a 1-GPU PCIe box in a set of 2 GPUs
    pcie_no_p2p = PROFILES["rtx4090-4"]
    assert pcie_no_p2p.p2p_available is False
    unified = PROFILES["rtx4090-4"].model_copy(
        update={"interconnect": Interconnect.UNIFIED, "gpus_per_node": 1, "nodes": 1}
    )
    assert nccl_environment(unified).as_dict() == {}


@pytest.mark.parametrize("expert_parallel", [False, True])
def test_infiniband_pair(expert_parallel: bool) -> None:
    env = nccl_environment(PROFILES["h200-sxm-8x2-ib"], IB, expert_parallel=expert_parallel)
    expected = {
        "NCCL_IB_DISABLE": "0",
        "NCCL_SOCKET_IFNAME": "=ib0",
        "NCCL_IB_HCA": "=mlx5_0,mlx5_3",
        "NCCL_P2P_LEVEL": "NVL",
    }
    if expert_parallel:
        expected["NCCL_MIN_NCHANNELS"] = "16"
    assert env.as_dict() == expected
    assert list(env.as_dict()) == list(expected)
    assert [n for n, _ in env.unset] == UNSET
    assert env.socket_interface() == "ib0"
    assert env.hca_devices() == ("mlx5_0", "mlx5_3")


def test_roce_pair_adds_the_gid_index_and_traffic_class() -> None:
    env = nccl_environment(PROFILES["h100-sxm-8x2-roce"], ROCE, expert_parallel=True)
    assert env.as_dict() == {
        "NCCL_IB_DISABLE": "0",
        "NCCL_SOCKET_IFNAME": "=bond0",
        "NCCL_IB_HCA": "=mlx5_0",
        "NCCL_P2P_LEVEL": "NVL",
        "NCCL_IB_GID_INDEX": "3",
        "NCCL_IB_TC": "106",
        "NCCL_MIN_NCHANNELS": "16",
    }


def test_dgx_sparks_over_roce_have_no_nvlink_level() -> None:
    fabric = FabricSpec(
        socket_ifname="enp1s0f0np0", ib_hca=("rocep1s0f0",), gid_index=3, traffic_class=106
    )
    env = nccl_environment(PROFILES["dgx-spark-3"], fabric)
    assert env.as_dict() == {
        "NCCL_IB_DISABLE": "0",
        "NCCL_SOCKET_IFNAME": "=enp1s0f0np0",
        "NCCL_IB_HCA": "=rocep1s0f0",
        "NCCL_IB_GID_INDEX": "3",
        "NCCL_IB_TC": "106",
    }


def test_plain_ethernet_between_nodes_uses_sockets_on_the_named_interface() -> None:
    env = nccl_environment(ethernet_pair(), ETH, expert_parallel=True)
    assert env.as_dict() == {
        "NCCL_IB_DISABLE": "1",
        "NCCL_SOCKET_IFNAME": "=enp1s0f0",
        "NCCL_P2P_LEVEL": "NVL",
        "NCCL_MIN_NCHANNELS": "16",
    }
    ib_disable = next(s for s in env.settings if s.name == "NCCL_IB_DISABLE")
    assert ib_disable.source.endswith("(NCCL_IB_DISABLE)")


def test_each_setting_names_its_source() -> None:
    single = {s.name: s.source for s in nccl_environment(PROFILES["h200-sxm-8"]).settings}
    assert set(single.values()) == {GUIDE}
    pair = {
        s.name: s.source
        for s in nccl_environment(
            PROFILES["h100-sxm-8x2-roce"], ROCE, expert_parallel=True
        ).settings
    }
    assert pair["NCCL_SOCKET_IFNAME"].endswith("env.html) (NCCL_SOCKET_IFNAME)")
    assert pair["NCCL_IB_HCA"].endswith("env.html) (NCCL_IB_HCA)")
    assert pair["NCCL_IB_GID_INDEX"].endswith("oci-hpc playbooks/roles/nccl-conf/templates pin 3")
    assert pair["NCCL_IB_TC"].endswith("106 = DSCP 26: https://github.com/openucx/ucx/issues/10325")
    assert pair["NCCL_MIN_NCHANNELS"].endswith("(NCCL_MIN_NCHANNELS tuning for MoE all-to-all)")
    assert pair["NCCL_IB_DISABLE"] == pair["NCCL_P2P_LEVEL"] == GUIDE
    pcie = {s.name: s.source for s in nccl_environment(PROFILES["rtxpro6000-8"]).settings}
    assert (
        pcie["NCCL_P2P_DISABLE"]
        == f"{GUIDE}; ACS/IOMMU: https://github.com/NVIDIA/nccl/issues/2079"
    )
    no_p2p = {s.name: s.source for s in nccl_environment(PROFILES["rtx4090-4"]).settings}
    assert no_p2p["NCCL_P2P_DISABLE"].startswith("blog.chlc.cc rtx4090-gpudirect-p2p-unlocked")


def test_the_rtx_4090_reason_names_the_card() -> None:
    reason = next(
        s.reason
        for s in nccl_environment(PROFILES["rtx4090-4"]).settings
        if s.name == "NCCL_P2P_DISABLE"
    )
    assert reason.startswith("NVIDIA GeForce RTX 4090: the driver has no PCIe P2P on this product")


@pytest.mark.parametrize(
    ("profile_id", "fabric", "message"),
    [
        (
            "h200-sxm-8x2-ib",
            None,
            "fabric.socket_ifname: required for multi-node hardware h200-sxm-8x2-ib — fix: set it "
            "to the bootstrap interface, e.g. ib0 or bond0",
        ),
        (
            "h200-sxm-8x2-ib",
            FabricSpec(socket_ifname="ib0"),
            "fabric.ib_hca: required for multi-node hardware h200-sxm-8x2-ib — fix: set it to the "
            "data HCAs, e.g. [mlx5_0, mlx5_3]",
        ),
        (
            "h100-sxm-8x2-roce",
            FabricSpec(socket_ifname="b", ib_hca=("m",), traffic_class=106),
            "fabric.gid_index: required for multi-node hardware h100-sxm-8x2-roce — fix: set it to "
            "the RoCE v2 IPv4 GID index from show_gids, usually 3",
        ),
        (
            "h100-sxm-8x2-roce",
            FabricSpec(socket_ifname="b", ib_hca=("m",), gid_index=3),
            "fabric.traffic_class: required for multi-node hardware h100-sxm-8x2-roce — fix: set it "
            "to the lossless traffic class, e.g. 106",
        ),
        (
            "h200-sxm-8x2-ib",
            FabricSpec(socket_ifname="ib0", ib_hca=("m",), gid_index=3),
            "fabric.gid_index: applies to RoCE v2 only, and h200-sxm-8x2-ib's fabric is infiniband "
            "— fix: remove it, or compose the hardware with fabric roce_v2",
        ),
        (
            "h200-sxm-8x2-ib",
            FabricSpec(socket_ifname="ib0", ib_hca=("m",), traffic_class=106),
            "fabric.traffic_class: applies to RoCE v2 only, and h200-sxm-8x2-ib's fabric is "
            "infiniband — fix: remove it, or compose the hardware with fabric roce_v2",
        ),
    ],
)
def test_a_missing_or_inapplicable_fabric_value_is_one_line(
    profile_id: str, fabric: FabricSpec | None, message: str
) -> None:
    with pytest.raises(SpecError) as exc:
        nccl_environment(PROFILES[profile_id], fabric)
    assert str(exc.value) == message


def test_hcas_on_an_ethernet_pair_are_refused() -> None:
    with pytest.raises(SpecError) as exc:
        nccl_environment(ethernet_pair(), FabricSpec(socket_ifname="e", ib_hca=("mlx5_0",)))
    assert str(exc.value) == (
        "fabric.ib_hca: applies to an RDMA fabric, and h100-eth's fabric is ethernet — fix: remove "
        "it, or compose the hardware with infiniband or roce_v2"
    )


@pytest.mark.parametrize(
    ("profile_id", "name", "value", "warnings"),
    [
        ("h200-sxm-8", "NCCL_P2P_LEVEL", "SYS", []),
        (
            "h200-sxm-8",
            "NCCL_IB_HCAS",
            "x",
            ["unknown NCCL variable NCCL_IB_HCAS (not in NCCL's documented list) — typo?"],
        ),
        (
            "h200-sxm-8",
            "NCCL_IB_GID_INDEX",
            "3",
            [
                "nccl.NCCL_IB_GID_INDEX has no effect on h200-sxm-8 (no RDMA fabric between nodes) — remove it"
            ],
        ),
        (
            "h200-sxm-8",
            "NCCL_NET_GDR_LEVEL",
            "5",
            [
                "nccl.NCCL_NET_GDR_LEVEL has no effect on h200-sxm-8 (no RDMA fabric between nodes) — remove it"
            ],
        ),
        (
            "h200-sxm-8x2-ib",
            "NCCL_IB_TC",
            "106",
            [
                "nccl.NCCL_IB_TC applies to RoCE v2 and h200-sxm-8x2-ib's fabric is infiniband — remove it"
            ],
        ),
        ("h200-sxm-8x2-ib", "NCCL_NET_GDR_LEVEL", "5", []),
        ("h100-sxm-8x2-roce", "NCCL_IB_TC", "104", []),
        (
            "h100-sxm-8",
            "NCCL_P2P_DISABLE",
            "1",
            [
                "NCCL_P2P_DISABLE=1 on GPUs that support P2P costs 40-60 % of bus bandwidth; fix "
                "ACS/IOMMU instead (https://github.com/NVIDIA/nccl/issues/2079)"
            ],
        ),
        ("h100-sxm-8", "NCCL_P2P_DISABLE", "0", []),
        ("rtx4090-4", "NCCL_P2P_DISABLE", "1", []),
    ],
)
def test_each_override_wins_and_warns_when_it_cannot_help(
    profile_id: str, name: str, value: str, warnings: list[str]
) -> None:
    profile = PROFILES[profile_id]
    fabric = ROCE if profile.fabric is NetworkFabric.ROCE_V2 else IB
    env = nccl_environment(profile, fabric if profile.multi_node else None, overrides={name: value})
    assert env.get(name) == value
    assert list(env.warnings) == warnings
    setting = next(s for s in env.settings if s.name == name)
    assert (setting.reason, setting.source) == ("inventory override", "inventory")


def test_an_override_of_a_left_unset_variable_takes_it_off_the_unset_list() -> None:
    env = nccl_environment(PROFILES["h200-sxm-8x2-ib"], IB, overrides={"NCCL_ALGO": "Ring"})
    assert [n for n, _ in env.unset] == ["NCCL_NET_GDR_LEVEL", "NCCL_PROTO"]
    assert dict(env.unset)["NCCL_PROTO"] == LEFT_UNSET["NCCL_PROTO"]
    cpu = nccl_environment(PROFILES["sandbox-cpu"], overrides={"NCCL_DEBUG": "INFO"})
    assert cpu.as_dict() == {"NCCL_DEBUG": "INFO"} and cpu.unset == ()


def test_device_selecting_overrides_are_normalised_to_nccl_syntax() -> None:
    env = nccl_environment(
        PROFILES["h200-sxm-8x2-ib"],
        IB,
        overrides={"NCCL_SOCKET_IFNAME": "=bond0", "NCCL_IB_HCA": "^mlx5_2"},
    )
    assert env.get("NCCL_SOCKET_IFNAME") == "=bond0"
    assert env.socket_interface() == "bond0"
    assert env.get("NCCL_IB_HCA") == "^mlx5_2"
    assert env.hca_devices() == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"CUDA_VISIBLE_DEVICES": "0"},
            "nccl.CUDA_VISIBLE_DEVICES: only NCCL_* variables belong here — fix: rename or move it",
        ),
        (
            {"NCCL_DEBUG": "INFO\nX=1"},
            "nccl.NCCL_DEBUG: a value is one line — fix: remove the line break",
        ),
        (
            {"NCCL_DEBUG": "INFO\rX"},
            "nccl.NCCL_DEBUG: a value is one line — fix: remove the line break",
        ),
        (
            {"NCCL_DEBUG": "INFO\0"},
            "nccl.NCCL_DEBUG: a value is one line — fix: remove the line break",
        ),
    ],
)
def test_bad_overrides_are_one_line(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError) as exc:
        nccl_environment(PROFILES["h200-sxm-8"], overrides=overrides)
    assert str(exc.value) == message


def test_a_malformed_device_selection_names_the_variable() -> None:
    for name in ("NCCL_IB_HCA", "NCCL_SOCKET_IFNAME"):
        with pytest.raises(SpecError) as exc:
            nccl_environment(PROFILES["h200-sxm-8"], overrides={name: "=a,,b"})
        assert str(exc.value).startswith(f"nccl.{name}: ")


def env_of(**values: str) -> NcclEnvironment:
    return NcclEnvironment(
        settings=tuple(
            NcclSetting(name=k, value=v, reason="r", source="s") for k, v in values.items()
        )
    )


@pytest.mark.parametrize(
    ("ifname", "interface"),
    [("=ib0", "ib0"), ("ib0", "ib0"), ("^docker,lo", None), ("=ib0,ib1", None), (None, None)],
)
def test_socket_interface_is_the_one_exact_name(ifname: str | None, interface: str | None) -> None:
    env = env_of(**({"NCCL_SOCKET_IFNAME": ifname} if ifname else {}))
    assert env.socket_interface() == interface
    gloo = {"GLOO_SOCKET_IFNAME": interface} if interface else {}
    assert distributed_environment(env, multi_node=True) == gloo
    assert distributed_environment(env, multi_node=False) == {}


@pytest.mark.parametrize(
    ("hca", "devices"),
    [
        ("=mlx5_0,mlx5_3", ("mlx5_0", "mlx5_3")),
        ("mlx5_0:1", ("mlx5_0",)),
        ("^mlx5_2", ()),
        (None, ()),
    ],
)
def test_hca_devices_are_the_named_ones(hca: str | None, devices: tuple[str, ...]) -> None:
    env = env_of(**({"NCCL_IB_HCA": hca} if hca else {}))
    assert env.hca_devices() == devices
    assert env.get("NCCL_IB_HCA") == hca


SEED = GUIDE
DOC = "NCCL env.rst (docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html)"
# The reason each variable carries into the engine's environment file, as an operator reads it.
REASONS = {
    ("one node", "NCCL_SOCKET_IFNAME"): (
        "one node: NCCL's bootstrap stays on loopback, never a docker or VLAN interface"
    ),
    ("one node", "NCCL_IB_DISABLE"): (
        "one node: no inter-node network, so NCCL does not probe IB HCAs"
    ),
    ("nvlink", "NCCL_P2P_DISABLE"): (
        "keep GPU-direct P2P over NVLink; =1 is a crutch that costs 40-60 %"
    ),
    ("nvlink", "NCCL_P2P_LEVEL"): "use P2P where GPUs are joined by NVLink",
    ("pcie", "NCCL_P2P_DISABLE"): (
        "PCIe cards with P2P: keep it on (=1 costs 40-60 %); if P2P is slow or hangs, fix "
        "ACS/IOMMU (iommu=pt, ACS off) rather than disabling it"
    ),
    ("no p2p", "NCCL_P2P_DISABLE"): (
        "NVIDIA GeForce RTX 4090: the driver has no PCIe P2P on this product, so NCCL goes "
        "through host shared memory anyway; declaring it avoids the hangs of drivers that "
        "advertised P2P and costs nothing here"
    ),
    ("pair", "NCCL_SOCKET_IFNAME"): (
        "bootstrap interface, matched exactly ('=') so NCCL never picks docker0, lo or a VLAN "
        "sub-interface sharing the prefix"
    ),
    ("pair", "NCCL_IB_DISABLE"): "several nodes: use the RDMA fabric, not TCP sockets",
    ("pair", "NCCL_IB_HCA"): (
        "the data HCAs as the inventory selects them; a list is matched exactly ('=': mlx5_1 "
        "alone would also match mlx5_10-19)"
    ),
    ("pair", "NCCL_P2P_LEVEL"): "inside each node, P2P over NVLink",
    ("pair", "NCCL_IB_GID_INDEX"): (
        "RoCE v2 with a routable IPv4 GID (show_gids); a link-local or RoCE v1 GID gives "
        "'completion with error 12' and timeouts"
    ),
    ("pair", "NCCL_IB_TC"): "traffic class of the switches' lossless (PFC/ECN) queue: DSCP << 2",
    ("pair", "NCCL_MIN_NCHANNELS"): (
        "expert parallelism across nodes is all-to-all heavy; a channel floor keeps every NIC "
        "busy (check with the diagnostic's alltoall)"
    ),
    ("ethernet", "NCCL_IB_DISABLE"): (
        "plain Ethernet between nodes: NCCL's socket transport, no RDMA probing"
    ),
}


def reasons_of(env: NcclEnvironment) -> dict[str, tuple[str, str]]:
    return {s.name: (s.reason, s.source) for s in env.settings}


def test_each_variable_carries_its_reason_and_source() -> None:
    single = reasons_of(nccl_environment(PROFILES["h200-sxm-8"]))
    for name in ("NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE"):
        assert single[name] == (REASONS[("one node", name)], SEED)
    for name in ("NCCL_P2P_DISABLE", "NCCL_P2P_LEVEL"):
        assert single[name] == (REASONS[("nvlink", name)], SEED)
    pcie = reasons_of(nccl_environment(PROFILES["rtxpro6000-4"]))
    assert pcie["NCCL_P2P_DISABLE"] == (
        REASONS[("pcie", "NCCL_P2P_DISABLE")],
        f"{SEED}; ACS/IOMMU: https://github.com/NVIDIA/nccl/issues/2079",
    )
    no_p2p = reasons_of(nccl_environment(PROFILES["rtx4090-4"]))
    assert no_p2p["NCCL_P2P_DISABLE"] == (
        REASONS[("no p2p", "NCCL_P2P_DISABLE")],
        "blog.chlc.cc rtx4090-gpudirect-p2p-unlocked (~15 GB/s busbw without P2P)",
    )
    pair = reasons_of(nccl_environment(PROFILES["h100-sxm-8x2-roce"], ROCE, expert_parallel=True))
    assert pair == {
        "NCCL_IB_DISABLE": (REASONS[("pair", "NCCL_IB_DISABLE")], SEED),
        "NCCL_SOCKET_IFNAME": (
            REASONS[("pair", "NCCL_SOCKET_IFNAME")],
            f"{DOC} (NCCL_SOCKET_IFNAME)",
        ),
        "NCCL_IB_HCA": (REASONS[("pair", "NCCL_IB_HCA")], f"{DOC} (NCCL_IB_HCA)"),
        "NCCL_P2P_LEVEL": (REASONS[("pair", "NCCL_P2P_LEVEL")], SEED),
        "NCCL_IB_GID_INDEX": (
            REASONS[("pair", "NCCL_IB_GID_INDEX")],
            f"{DOC}; wrong GID: https://github.com/NVIDIA/nccl/issues/769; "
            "oracle-quickstart/oci-hpc playbooks/roles/nccl-conf/templates pin 3",
        ),
        "NCCL_IB_TC": (
            REASONS[("pair", "NCCL_IB_TC")],
            f"{DOC}; lossless class: https://github.com/NVIDIA/nccl/issues/378; "
            "106 = DSCP 26: https://github.com/openucx/ucx/issues/10325",
        ),
        "NCCL_MIN_NCHANNELS": (
            REASONS[("pair", "NCCL_MIN_NCHANNELS")],
            f"{SEED} (NCCL_MIN_NCHANNELS tuning for MoE all-to-all)",
        ),
    }
    eth = reasons_of(nccl_environment(ethernet_pair(), ETH))
    assert eth["NCCL_IB_DISABLE"] == (
        REASONS[("ethernet", "NCCL_IB_DISABLE")],
        f"{DOC} (NCCL_IB_DISABLE)",
    )


def test_two_cards_without_p2p_are_declared_too() -> None:
    two = PROFILES["rtx4090-4"].model_copy(update={"gpus_per_node": 2})
    assert nccl_environment(two).get("NCCL_P2P_DISABLE") == "1"


def test_rdma_only_overrides_on_an_ethernet_pair_are_warned_about() -> None:
    env = nccl_environment(ethernet_pair(), ETH, overrides={"NCCL_IB_HCA": "mlx5_0"})
    assert env.warnings == (
        "nccl.NCCL_IB_HCA has no effect on h100-eth (no RDMA fabric between nodes) — remove it",
    )


def test_every_override_s_warning_is_kept() -> None:
    env = nccl_environment(
        PROFILES["h200-sxm-8"], overrides={"NCCL_IB_HCAS": "x", "NCCL_IB_TC": "106"}
    )
    assert env.warnings == (
        "unknown NCCL variable NCCL_IB_HCAS (not in NCCL's documented list) — typo?",
        "nccl.NCCL_IB_TC has no effect on h200-sxm-8 (no RDMA fabric between nodes) — remove it",
    )
