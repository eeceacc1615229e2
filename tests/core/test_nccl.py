"""The NCCL matrix: one value per variable with a reason, per hardware setup."""

from __future__ import annotations

import pytest

from metalserve.catalog.profiles import PROFILES
from metalserve.errors import SpecError
from metalserve.nccl import FabricSpec, nccl_environment

IB = FabricSpec(socket_ifname="ib0", ib_hca=("mlx5_0", "mlx5_3"))
ROCE = FabricSpec(socket_ifname="bond0", ib_hca=("mlx5_0",), gid_index=3, traffic_class=106)


def test_single_node_nvswitch_uses_the_seed_values() -> None:
    env = nccl_environment(PROFILES["h200-sxm-8"]).as_dict()
    assert env == {
        "NCCL_SOCKET_IFNAME": "lo",
        "NCCL_IB_DISABLE": "1",
        "NCCL_P2P_DISABLE": "0",
        "NCCL_P2P_LEVEL": "NVL",
    }


def test_every_setting_carries_a_reason_and_a_source() -> None:
    for profile in PROFILES.values():
        fabric = ROCE if profile.fabric and profile.fabric.value == "roce_v2" else IB
        for s in nccl_environment(profile, fabric, expert_parallel=True).settings:
            assert s.reason and s.source, s.name


def test_pcie_cards_with_p2p_keep_it_on_and_say_why_not_to_disable_it() -> None:
    env = nccl_environment(PROFILES["rtxpro6000-8"])
    assert env.get("NCCL_P2P_DISABLE") == "0"
    assert "NCCL_P2P_LEVEL" not in env.as_dict(), "no NVLink on PCIe-only cards"
    reason = next(s.reason for s in env.settings if s.name == "NCCL_P2P_DISABLE")
    assert "40-60 %" in reason and "ACS" in reason


def test_rtx_4090_has_no_p2p_and_the_reason_says_so() -> None:
    env = nccl_environment(PROFILES["rtx4090-4"])
    assert env.get("NCCL_P2P_DISABLE") == "1"
    reason = next(s.reason for s in env.settings if s.name == "NCCL_P2P_DISABLE")
    assert "no PCIe P2P" in reason


def test_multi_node_infiniband_names_come_from_the_inventory() -> None:
    env = nccl_environment(PROFILES["h200-sxm-8x2-ib"], IB).as_dict()
    assert env["NCCL_IB_DISABLE"] == "0"
    assert env["NCCL_SOCKET_IFNAME"] == "=ib0"
    assert env["NCCL_IB_HCA"] == "=mlx5_0,mlx5_3"
    assert "NCCL_NET_GDR_LEVEL" not in env  # NCCL chooses per GPU/NIC pair; see LEFT_UNSET
    assert "NCCL_IB_GID_INDEX" not in env


def test_roce_v2_adds_gid_index_and_traffic_class() -> None:
    env = nccl_environment(PROFILES["h100-sxm-8x2-roce"], ROCE).as_dict()
    assert (env["NCCL_IB_GID_INDEX"], env["NCCL_IB_TC"]) == ("3", "106")


def test_roce_without_a_gid_index_is_a_one_line_error_naming_the_field() -> None:
    with pytest.raises(SpecError, match=r"fabric.gid_index: required .* show_gids"):
        nccl_environment(
            PROFILES["h100-sxm-8x2-roce"], FabricSpec(socket_ifname="b", ib_hca=("m",))
        )


def test_moe_expert_parallel_across_nodes_sets_a_channel_floor() -> None:
    env = nccl_environment(PROFILES["h200-sxm-8x2-ib"], IB, expert_parallel=True)
    assert env.get("NCCL_MIN_NCHANNELS") == "16"
    assert nccl_environment(PROFILES["h200-sxm-8x2-ib"], IB).get("NCCL_MIN_NCHANNELS") is None


def test_overrides_win_and_unknown_names_are_reported() -> None:
    env = nccl_environment(
        PROFILES["h200-sxm-8"], overrides={"NCCL_P2P_LEVEL": "SYS", "NCCL_IB_HCAS": "x"}
    )
    assert env.get("NCCL_P2P_LEVEL") == "SYS"
    assert any("NCCL_IB_HCAS" in w for w in env.warnings)


def test_disabling_p2p_where_it_works_is_warned_about() -> None:
    env = nccl_environment(PROFILES["h100-sxm-8"], overrides={"NCCL_P2P_DISABLE": "1"})
    assert any("40-60 %" in w for w in env.warnings)


def test_non_nccl_overrides_are_refused() -> None:
    with pytest.raises(SpecError, match="only NCCL_"):
        nccl_environment(PROFILES["h100-sxm-8"], overrides={"CUDA_VISIBLE_DEVICES": "0"})
