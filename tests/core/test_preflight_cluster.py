"""Preflight's newer checks: what a deploy brings to the plan is not judged before it, the network
of a cluster (interface, address, peers' ports, MTU, clocks), the next boot's module, ACS,
nvidia-peermem, and the inventory's opt-outs."""

from __future__ import annotations

import pytest

from metalserve.errors import MetalserveError
from metalserve.io.inventory import plan_inventory
from metalserve.preflight import (
    CHECKS,
    CLOCK_SPREAD_MAX_S,
    HostFacts,
    HostReport,
    NetInterface,
    NodeManifest,
    PreflightTarget,
    Purpose,
    Verdict,
    check_acs,
    check_cluster_address,
    check_gpudirect,
    check_newest_kernel,
    check_peer_ports,
    check_socket_ifname,
    cluster_checks,
    host_checks,
)
from metalserve.spec import HostSpec
from metalserve.stack import KernelModuleFlavor

PIN = "580.105.08"
OLD = "570.172.08"
TARGET = PreflightTarget(
    gpu=True, driver_version=PIN, flavor=KernelModuleFlavor.OPEN, nccl=True, must_hold=("libnccl2",)
)
ETH0 = NetInterface(name="eth0", mtu=9000, addresses=("10.0.0.2",))
ETH1 = NetInterface(name="eth1", mtu=1500, addresses=("192.168.1.2",))
LO = NetInterface(name="lo", mtu=65536, addresses=("127.0.0.1",))


def facts(**kw: object) -> HostFacts:
    base: dict[str, object] = {"kernel": "6.8.0-51-generic", "headers_present": True}
    return HostFacts(**{**base, **kw})


def by_check(results: tuple) -> dict:  # type: ignore[type-arg]
    return {r.check: r for r in results}


def test_before_serve_an_uninstalled_driver_is_shown_not_judged() -> None:
    bare = facts()  # a fresh host: no module, nothing held
    standalone = by_check(host_checks(TARGET, bare))
    serve = by_check(host_checks(TARGET, bare, Purpose.SERVE))
    for name in ("driver-loaded", "driver-installed", "packages-held", "driver-userspace"):
        assert standalone[name].verdict is Verdict.FAIL
        assert serve[name].verdict is Verdict.SKIP
        assert serve[name].found.endswith(
            "(deploy/serve.py installs it to the pins and verifies it)"
        )
    # what serve cannot fix is still judged before it
    tiny_shm = by_check(host_checks(TARGET, facts(rival_modules=("nouveau",)), Purpose.SERVE))
    assert tiny_shm["rival-modules"].verdict is Verdict.FAIL
    assert tiny_shm["shm-size"].verdict is Verdict.FAIL


def test_before_a_diagnostic_the_driver_must_already_be_the_pin() -> None:
    drifted = facts(loaded_driver=OLD, loaded_flavor=KernelModuleFlavor.OPEN)
    assert by_check(host_checks(TARGET, drifted, Purpose.DIAGNOSE))["driver-loaded"].verdict is (
        Verdict.FAIL
    )
    assert by_check(host_checks(TARGET, drifted, Purpose.REPROVISION))["driver-loaded"].verdict is (
        Verdict.SKIP
    )


def test_a_newer_kernel_without_a_module_warns_with_the_headers_to_install() -> None:
    same = check_newest_kernel(facts(newest_kernel="6.8.0-51-generic"))
    assert same.verdict is Verdict.PASS
    missing = check_newest_kernel(facts(newest_kernel="6.8.0-60-generic"))
    assert missing.verdict is Verdict.WARN
    assert missing.fix.startswith("apt-get install linux-headers-6.8.0-60-generic")
    built = check_newest_kernel(
        facts(newest_kernel="6.8.0-60-generic", newest_kernel_modules=("nvidia.ko.zst",))
    )
    assert built.verdict is Verdict.PASS


def test_acs_on_any_bridge_fails_and_unread_warns() -> None:
    assert check_acs(facts(acs_bridges=())).verdict is Verdict.PASS
    on = check_acs(facts(acs_bridges=("0000:00:01.1",)))
    assert on.verdict is Verdict.FAIL and on.found == "SrcValid+ on 0000:00:01.1"
    assert "troubleshooting.html#pci-access-control-services-acs" in on.fix
    assert check_acs(facts(acs_bridges=None)).verdict is Verdict.WARN


def test_acs_is_checked_only_where_gpus_talk_over_pcie() -> None:
    acs_on = facts(acs_bridges=("0000:00:01.1",))
    assert by_check(host_checks(TARGET, acs_on))["pcie-acs"].verdict is Verdict.SKIP
    pcie = TARGET.model_copy(update={"pcie_p2p": True})
    assert by_check(host_checks(pcie, acs_on))["pcie-acs"].verdict is Verdict.FAIL
    assert (
        by_check(host_checks(pcie, acs_on.model_copy(update={"container": "lxc"})))[
            "pcie-acs"
        ].verdict
        is Verdict.SKIP
    )


def test_peermem_is_required_only_where_the_plan_uses_it() -> None:
    peermem = TARGET.model_copy(update={"peermem": True})
    assert check_gpudirect(peermem, facts(peermem_loaded=False)).verdict is Verdict.FAIL
    assert check_gpudirect(peermem, facts(peermem_loaded=True)).verdict is Verdict.PASS
    assert by_check(host_checks(TARGET, facts()))["gpudirect"].verdict is Verdict.SKIP


@pytest.mark.parametrize(
    ("value", "interfaces", "verdict"),
    [
        ("=eth0", (LO, ETH0, ETH1), Verdict.PASS),
        ("eth", (LO, ETH0, ETH1), Verdict.FAIL),  # a prefix: two interfaces
        ("^lo", (LO, ETH0), Verdict.PASS),
        ("=ib0", (LO, ETH0), Verdict.FAIL),  # none
        ("eth1", (LO, ETH0, NetInterface(name="eth1", mtu=1500)), Verdict.FAIL),  # no address
    ],
)
def test_socket_ifname_must_select_exactly_one_interface(value, interfaces, verdict) -> None:  # noqa: ANN001
    target = TARGET.model_copy(update={"socket_ifname": value})
    result = check_socket_ifname(target, facts(interfaces=interfaces))
    assert result.verdict is verdict, result.found


def test_the_cluster_address_must_be_on_the_node() -> None:
    target = TARGET.model_copy(update={"cluster_address": "10.0.0.2"})
    assert check_cluster_address(target, facts(interfaces=(LO, ETH0))).found == "on eth0"
    elsewhere = check_cluster_address(target, facts(interfaces=(LO, ETH1)))
    assert elsewhere.verdict is Verdict.FAIL and elsewhere.found == "on none of lo, eth1"


def test_an_unreachable_peer_is_named_with_why_and_the_port_to_open() -> None:
    result = check_peer_ports(29500, {"n1": "ok", "n2": "timed out after 3 s"})
    assert result.verdict is Verdict.FAIL
    assert result.found == "n1: ok; n2: timed out after 3 s"
    assert result.fix.startswith("open tcp/29500 between the nodes")
    assert result.fix.endswith("check the route to n2")
    assert check_peer_ports(29500, {"n1": "ok"}).verdict is Verdict.PASS


def _node(host: str, offset: float | None, mtu: str = "eth0:9000", **kw: object) -> HostReport:
    manifest = NodeManifest(kernel="6.8.0-51-generic", engine="vllm 0.33.0", mtu=mtu, **kw)
    return HostReport(
        host=host, cluster="c", results=(), manifest=manifest, clock_offset_s=offset, **{}
    )


def test_clocks_fail_only_beyond_the_spread_whatever_the_control_hosts_own_error() -> None:
    # every node 40 s off the control host, together: in sync with each other
    together = cluster_checks([_node("a", 40.0), _node("b", 40.0 + CLOCK_SPREAD_MAX_S)])
    assert by_check(together)["c: clocks in sync"].verdict is Verdict.PASS
    apart = cluster_checks([_node("a", 0.0), _node("b", CLOCK_SPREAD_MAX_S + 0.001)])
    clock = by_check(apart)["c: clocks in sync"]
    assert clock.verdict is Verdict.FAIL
    assert clock.found.startswith("1.001 s apart (a: +0.000 s, b: +1.001 s")


def test_an_mtu_off_on_one_node_fails_with_both_values() -> None:
    results = by_check(cluster_checks([_node("a", 0.0), _node("b", 0.0, mtu="eth0:1500")]))
    assert results["c: mtu equal"].verdict is Verdict.FAIL
    assert results["c: mtu equal"].found == "a: eth0:9000; b: eth0:1500"


def test_before_serve_driver_drift_across_nodes_is_not_judged_but_kernel_drift_is() -> None:
    a = _node("a", 0.0, driver=PIN).model_copy(update={"purpose": Purpose.SERVE})
    b = _node("b", 0.0, driver=OLD).model_copy(update={"purpose": Purpose.SERVE})
    results = by_check(cluster_checks([a, b]))
    assert results["c: driver equal"].verdict is Verdict.SKIP
    other_kernel = b.model_copy(
        update={"manifest": b.manifest.model_copy(update={"kernel": "6.8.0-60-generic"})}
    )
    assert by_check(cluster_checks([a, other_kernel]))["c: kernel equal"].verdict is Verdict.FAIL


def _spec(skip: dict[str, str]) -> dict[str, object]:
    return {
        "host": "n0",
        "profile": "h200-sxm-8",
        "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
        "engine": {"name": "vllm", "tensor_parallel_size": 8},
        "preflight": {"skip": skip},
    }


def test_an_opt_out_names_a_known_check_and_says_why() -> None:
    assert HostSpec.model_validate(_spec({"secure-boot": "MOK enrolled at rack-in"}))
    with pytest.raises(ValueError, match="'secureboot' is not a preflight check"):
        HostSpec.model_validate(_spec({"secureboot": "typo"}))
    with pytest.raises(ValueError, match="the reason must be one line"):
        HostSpec.model_validate(_spec({"secure-boot": "  "}))
    assert "cluster-ports" in CHECKS


def test_vllm_workers_dial_the_heads_port_and_the_head_dials_none() -> None:
    plans = {p.host: p for p in plan_inventory("inventories/h200-roce.py")}
    head, worker = sorted(plans, key=lambda h: plans[h].node.rank)
    assert plans[worker].preflight.reach == ((head, plans[head].node.address),)
    assert plans[head].preflight.reach == ()
    decided = plans[head].preflight
    assert decided.port == plans[head].cluster.port
    assert decided.cluster_address == plans[head].node.address
    assert decided.socket_ifname == plans[head].nccl.get("NCCL_SOCKET_IFNAME")
    assert not decided.pcie_p2p


def test_the_llamacpp_head_dials_every_workers_rpc_server() -> None:
    from metalserve.plan import plan_hosts

    nodes = []
    for rank in range(3):
        nodes.append(
            HostSpec.model_validate(
                {
                    "host": f"n{rank}",
                    "hardware": {"gpu": None, "gpus_per_node": 0, "nodes": 3,
                                 "fabric": "ethernet", "host_ram_gb": 4},
                    "model": {"repo_id": "metalserve/tiny-moe"},
                    "engine": {"name": "llamacpp", "quant": "Q4_K_M"},
                    "cluster": {"name": "rpc", "node_rank": rank, "address": f"10.0.0.{rank + 1}"},
                }
            )
        )  # fmt: skip
    plans = {p.host: p.preflight for p in plan_hosts(nodes)}
    assert plans["n0"].reach == (("n1", "10.0.0.2"), ("n2", "10.0.0.3"))
    assert plans["n1"].reach == plans["n2"].reach == ()


def test_a_pcie_box_with_several_gpus_is_checked_for_acs() -> None:
    (l40s,) = plan_inventory("inventories/l40s.py")
    assert l40s.preflight.pcie_p2p and l40s.preflight.port is None and not l40s.preflight.reach


def test_a_bad_opt_out_is_one_line_from_the_cli(tmp_path) -> None:  # noqa: ANN001
    inventory = tmp_path / "inv.py"
    data = {k: v for k, v in _spec({"nope": "x y z"}).items() if k != "host"}
    inventory.write_text(f"hosts = [('n0', {{'metalserve': {data!r}}})]\n")
    with pytest.raises(MetalserveError, match=r"^host n0: metalserve\.preflight\.skip.*'nope'"):
        plan_inventory(str(inventory))


def test_nccl_ib_tc_106_is_dscp_26_on_priority_3_unless_the_nic_maps_it() -> None:
    from metalserve.preflight import lossless_priority

    assert lossless_priority(106, {}) == 3  # 106 >> 2 = DSCP 26, 26 >> 3 = priority 3
    assert lossless_priority(106, {26: 5}) == 5
    assert lossless_priority(0, {}) == 0


def test_pfc_must_be_on_the_priority_the_traffic_class_lands_on() -> None:
    from metalserve.preflight import RocePfc, check_roce_pfc

    target = TARGET.model_copy(update={"traffic_class": 106, "roce_devices": ("mlx5_0",)})
    good = RocePfc(netdev="ens1f0np0", pfc_on=(3,))
    assert check_roce_pfc(target, facts(roce_pfc=(good,))).verdict is Verdict.PASS
    other = RocePfc(netdev="ens1f1np1", pfc_on=(4,))
    bad = check_roce_pfc(target, facts(roce_pfc=(good, other)))
    assert bad.verdict is Verdict.FAIL
    assert bad.found == "ens1f0np0: priority 3, PFC on 3; ens1f1np1: priority 3, PFC on 4"
    assert bad.fix.startswith("dcb pfc set dev <netdev> prio-pfc 3:on")
    unread = check_roce_pfc(target, facts(roce_pfc=(RocePfc(netdev="eth0", pfc_on=None),)))
    assert unread.verdict is Verdict.WARN


def test_a_pfc_setup_differing_across_nodes_is_a_cluster_fail() -> None:
    results = by_check(
        cluster_checks([_node("a", 0.0, pfc="ens1f0np0:3"), _node("b", 0.0, pfc="ens1f0np0:none")])
    )
    assert results["c: pfc equal"].verdict is Verdict.FAIL


def test_the_roce_plan_carries_nccl_ib_tc_to_preflight() -> None:
    plans = plan_inventory("inventories/h200-roce.py")
    assert {p.preflight.traffic_class for p in plans} == {int(plans[0].nccl.get("NCCL_IB_TC"))}
