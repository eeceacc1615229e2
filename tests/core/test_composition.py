"""Hardware composed in the inventory (``metalserve.hardware``) and the NCCL values it leads to.

Expected values are derived from the catalogue's public figures (a GPU's marketed memory, a
preset's sourced bus bandwidth) and from NCCL's "Environment Variables" page
(docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html): a list of names is a prefix match
unless it starts with ``=`` (exact), ``^`` makes it an exclude list, ``:port`` picks an HCA port,
and RoCE-only knobs (GID index, traffic class) do not apply to InfiniBand or Ethernet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from metalserve.catalog.busbw import EXPECTED_ALLREDUCE_BUSBW, expectation_for
from metalserve.catalog.gpus import GPUS
from metalserve.catalog.profiles import PROFILES
from metalserve.cli import main
from metalserve.composition import HardwareSpec, compose
from metalserve.errors import MetalserveError
from metalserve.io.inventory import load_hosts, plan_inventory
from metalserve.plan import HostPlan, plan_hosts
from metalserve.spec import host_spec

REPO = Path(__file__).resolve().parents[2]
DECIMAL_GB = 10**9  # GPU memory is marketed, and catalogued, in decimal GB

Hosts = list[tuple[str, dict[str, Any]]]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def composition_of(preset_id: str) -> dict[str, Any]:
    """The ``metalserve.hardware`` an inventory would write for the same parts as a preset."""
    p = PROFILES[preset_id]
    assert p.gpu is not None
    return {
        "gpu": p.gpu.id,
        "gpus_per_node": p.gpus_per_node,
        "nodes": p.nodes,
        "interconnect": str(p.interconnect),
        "fabric": str(p.fabric) if p.fabric else None,
        "fabric_rate_gbps": p.fabric_rate_gbps,
        "nics_per_node": p.nics_per_node,
        "host_ram_gb": p.host_ram_gb,
    }


H200_IB = composition_of("h200-sxm-8x2-ib")
H200_ROCE = {**H200_IB, "fabric": "roce_v2"}
H100_ETHERNET = {
    "gpu": "h100-sxm",
    "gpus_per_node": 8,
    "nodes": 2,
    "interconnect": "nvswitch",
    "fabric": "ethernet",
    "host_ram_gb": 2048,
}
MODEL_AND_ENGINE: dict[str, Any] = {
    "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
}
IB_FABRIC = {"socket_ifname": "ib0", "ib_hca": ["mlx5_0", "mlx5_1"]}
ROCE_FABRIC = {**IB_FABRIC, "socket_ifname": "bond0", "gid_index": 3, "traffic_class": 106}


def cluster(hardware: dict[str, Any], fabric: dict[str, Any] | None, **extra: Any) -> Hosts:
    data = {**MODEL_AND_ENGINE, "hardware": hardware, **extra}
    if fabric is not None:
        data["fabric"] = fabric
    return [
        (f"node{rank}", {**data, "cluster": {"node_rank": rank, "address": f"10.0.0.{rank + 1}"}})
        for rank in range(hardware.get("nodes", 1))
    ]


def plans(hosts: Hosts) -> list[HostPlan]:
    return plan_hosts([host_spec(name, data) for name, data in hosts])


def refusal(hosts: Hosts) -> str:
    with pytest.raises(MetalserveError) as refused:
        plans(hosts)
    message = str(refused.value)
    assert "\n" not in message, message
    return message


# --- the composed inventories ---------------------------------------------------------------------

COMPOSED = ["h200-roce.py", "h100-ib.py", "l40s.py"]


@pytest.mark.parametrize("inventory", COMPOSED)
def test_a_composed_inventory_is_planned_on_its_own_gpu_and_memory(inventory: str) -> None:
    path = REPO / "inventories" / inventory
    data = load_hosts(path)
    planned = plan_inventory(path)
    assert planned
    for p in planned:
        hardware = data[p.host]["hardware"]  # type: ignore[index]
        gpu = GPUS[hardware["gpu"]]
        gpus = hardware["gpus_per_node"] * hardware.get("nodes", 1)
        assert p.profile.gpu is not None and p.profile.gpu.id == gpu.id
        assert p.sizing is not None
        assert p.sizing.gpus_used == gpus, "the inventory's engine uses every GPU of its setup"
        assert p.sizing.gpu_memory_bytes == gpu.memory_gb * DECIMAL_GB
        assert p.sizing.total_gpu_bytes == gpus * gpu.memory_gb * DECIMAL_GB


@pytest.mark.parametrize("inventory", COMPOSED)
def test_check_accepts_a_composed_inventory(inventory: str) -> None:
    result = cli("check", str(REPO / "inventories" / inventory))
    assert result.exit_code == 0, result.output


# --- bus bandwidth expectation --------------------------------------------------------------------

SOURCED = [pid for pid, e in EXPECTED_ALLREDUCE_BUSBW.items() if e.busbw_gbps is not None]


@pytest.mark.parametrize("preset", SOURCED)
def test_a_composition_identical_to_a_preset_gets_the_presets_sourced_busbw(preset: str) -> None:
    composed = compose(HardwareSpec(**composition_of(preset)))
    expected = EXPECTED_ALLREDUCE_BUSBW[preset]
    got = expectation_for(composed)
    assert (got.busbw_gbps, got.source) == (expected.busbw_gbps, expected.source)


def test_a_composed_cluster_identical_to_a_preset_is_judged_against_the_presets_figure() -> None:
    for p in plans(cluster(H200_IB, IB_FABRIC)):
        assert p.diag is not None
        assert (
            p.diag.expectation.busbw_gbps == EXPECTED_ALLREDUCE_BUSBW["h200-sxm-8x2-ib"].busbw_gbps
        )


UNSOURCED = {
    "2x8 H200 on RoCE": H200_ROCE,
    "2x8 H200 on IB with 4 NICs": {**H200_IB, "nics_per_node": 4},
    "2x8 H100 on IB": {**H200_IB, "gpu": "h100-sxm"},
    "4x8 H200 on IB": {**H200_IB, "nodes": 4},
}


@pytest.mark.parametrize("hardware", UNSOURCED.values(), ids=UNSOURCED.keys())
def test_a_composition_without_a_sourced_figure_is_unknown_never_another_setups(
    hardware: dict[str, Any],
) -> None:
    composed = compose(HardwareSpec(**hardware))
    assert all(p.composition != composed.composition for p in PROFILES.values())
    assert expectation_for(composed).busbw_gbps is None


def test_the_composed_h200_roce_inventory_has_an_unknown_busbw() -> None:
    for p in plan_inventory(REPO / "inventories" / "h200-roce.py"):
        assert p.diag is not None and p.diag.expectation.busbw_gbps is None


# --- refused compositions -------------------------------------------------------------------------

L40S = {"gpu": "l40s", "gpus_per_node": 8, "interconnect": "pcie", "host_ram_gb": 512}
L40S_MODEL = {
    "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
}

REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "unknown GPU id": ({"hardware": {**L40S, "gpu": "x9000"}}, ("metalserve.hardware", "x9000")),
    "nvswitch on a GPU not sold on NVSwitch baseboards": (
        {"hardware": {**L40S, "interconnect": "nvswitch"}},
        ("metalserve.hardware", GPUS["l40s"].name, "NVSwitch"),
    ),
    "nodes > 1 without fabric": (
        {"hardware": {**L40S, "nodes": 2}},
        ("metalserve.hardware", "fabric"),
    ),
    "RoCE without nics_per_node": (
        {"hardware": {k: v for k, v in H200_ROCE.items() if k != "nics_per_node"}},
        ("metalserve.hardware", "nics_per_node"),
    ),
    "InfiniBand without fabric_rate_gbps": (
        {"hardware": {k: v for k, v in H200_IB.items() if k != "fabric_rate_gbps"}},
        ("metalserve.hardware", "fabric_rate_gbps"),
    ),
    "both profile and hardware": (
        {"hardware": L40S, "profile": "h200-sxm-8"},
        ("profile", "hardware"),
    ),
    "neither profile nor hardware": ({}, ("profile", "hardware")),
}


@pytest.mark.parametrize(("hardware", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_a_composition_that_cannot_exist_is_refused_in_one_line(
    hardware: dict[str, Any], words: tuple[str, ...]
) -> None:
    with pytest.raises(MetalserveError) as refused:
        host_spec("gpu9", {**L40S_MODEL, **hardware})
    message = str(refused.value)
    assert "\n" not in message
    for word in ("gpu9", *words):
        assert word in message, f"{word!r} not in: {message}"


@pytest.mark.parametrize(("hardware", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_check_refuses_such_a_composition_with_exit_2(
    tmp_path: Path, hardware: dict[str, Any], words: tuple[str, ...]
) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {[('gpu9', {'metalserve': {**L40S_MODEL, **hardware}})]!r}\n")
    result = cli("check", str(inventory))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "gpu9" in line
    for word in words:
        assert word in line


# --- Ethernet between nodes -----------------------------------------------------------------------


def test_ethernet_between_nodes_uses_nccl_sockets_on_the_named_interface() -> None:
    for p in plans(cluster(H100_ETHERNET, {"socket_ifname": "eth0"})):
        env = p.environment_dict()
        assert env["NCCL_IB_DISABLE"] == "1"
        assert env["NCCL_SOCKET_IFNAME"] in ("eth0", "=eth0")
        assert "NCCL_IB_HCA" not in env


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"ib_hca": ["mlx5_0"]}, "ib_hca"), ({"gid_index": 3}, "gid_index")],
    ids=["ib_hca", "gid_index"],
)
def test_an_rdma_value_on_an_ethernet_fabric_is_refused(extra: dict, field: str) -> None:
    message = refusal(cluster(H100_ETHERNET, {"socket_ifname": "eth0", **extra}))
    assert field in message


# --- NCCL values ----------------------------------------------------------------------------------

HCA_SELECTIONS = {
    "exclude keeps NCCL's ^": ("^mlx5_2", "^mlx5_2"),
    "exact exclude": ("^=mlx5_8", "^=mlx5_8"),
    "a list is matched exactly": (["mlx5_0", "mlx5_1"], "=mlx5_0,mlx5_1"),
    "an exact name keeps its port": ("=mlx5_0:1", "=mlx5_0:1"),
}


@pytest.mark.parametrize(("ib_hca", "rendered"), HCA_SELECTIONS.values(), ids=HCA_SELECTIONS.keys())
def test_ib_hca_is_rendered_in_nccl_syntax(ib_hca: Any, rendered: str) -> None:
    for p in plans(cluster(H200_IB, {**IB_FABRIC, "ib_hca": ib_hca})):
        assert p.environment_dict()["NCCL_IB_HCA"] == rendered
        assert p.nccl.get("NCCL_IB_HCA") == rendered


@pytest.mark.parametrize(
    "ib_hca",
    ["mlx5_0;rm", "=^mlx5_2", "mlx5_0,,mlx5_1", "mlx5_0 mlx5_1"],
    ids=["shell-character", "marks-in-the-wrong-order", "empty-element", "space"],
)
def test_an_ib_hca_nccl_would_read_differently_is_refused_in_one_line(ib_hca: str) -> None:
    message = refusal(cluster(H200_IB, {**IB_FABRIC, "ib_hca": ib_hca}))
    assert "node0" in message and "ib_hca" in message


@pytest.mark.parametrize(("field", "given"), [("gid_index", 3), ("traffic_class", 106)])
def test_a_roce_only_value_on_infiniband_is_refused_naming_the_field(
    field: str, given: int
) -> None:
    message = refusal(cluster(H200_IB, {**IB_FABRIC, field: given}))
    assert field in message


def test_net_gdr_level_is_left_to_nccl_with_a_reason() -> None:
    for p in plans(cluster(H200_IB, IB_FABRIC)):
        assert "NCCL_NET_GDR_LEVEL" not in p.environment_dict()
        reasons = dict(p.nccl.unset)
        assert reasons.get("NCCL_NET_GDR_LEVEL"), p.nccl.unset


def test_net_gdr_level_set_under_nccl_is_rendered() -> None:
    for p in plans(cluster(H200_IB, IB_FABRIC, nccl={"NCCL_NET_GDR_LEVEL": "PHB"})):
        assert p.environment_dict()["NCCL_NET_GDR_LEVEL"] == "PHB"
        assert "NCCL_NET_GDR_LEVEL" not in dict(p.nccl.unset)


def test_plan_says_net_gdr_level_is_left_unset() -> None:
    result = cli("plan", str(REPO / "inventories" / "h200-ib.py"))
    assert result.exit_code == 0, result.output
    assert any(
        line.startswith("nccl") and "NCCL_NET_GDR_LEVEL" in line and "unset" in line
        for line in result.stdout.splitlines()
    )


def test_a_gid_index_override_reaches_the_engine_and_the_fabric_check() -> None:
    """Regression: the fabric role verified the inventory's gid_index while the unit got the
    override, so a wrong GID passed the check and failed at NCCL init."""
    planned = plans(cluster(H200_ROCE, ROCE_FABRIC, nccl={"NCCL_IB_GID_INDEX": "5"}))
    for p in planned:
        assert p.environment_dict()["NCCL_IB_GID_INDEX"] == "5"
        assert p.fabric is not None and p.fabric.gid_index == 5


def test_an_ib_hca_override_reaches_the_engine_and_the_fabric_check() -> None:
    hosts = cluster(H200_ROCE, ROCE_FABRIC, nccl={"NCCL_IB_HCA": "=mlx5_4,mlx5_5"})
    try:
        planned = plans(hosts)
    except MetalserveError:
        return  # refusing the contradiction is as good as following it
    for p in planned:
        assert p.environment_dict()["NCCL_IB_HCA"] == "=mlx5_4,mlx5_5"
        assert p.fabric is not None and p.fabric.devices == ("mlx5_4", "mlx5_5")


def test_a_socket_ifname_override_moves_gloo_with_nccl() -> None:
    hosts = cluster(H200_ROCE, ROCE_FABRIC, nccl={"NCCL_SOCKET_IFNAME": "=eth7"})
    try:
        planned = plans(hosts)
    except MetalserveError:
        return  # refusing the contradiction is as good as following it
    for p in planned:
        env = p.environment_dict()
        assert env["NCCL_SOCKET_IFNAME"] == "=eth7"
        assert env.get("GLOO_SOCKET_IFNAME") == "eth7"
