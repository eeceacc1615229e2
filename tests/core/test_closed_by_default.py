"""Closed by default: engines bind loopback unless told otherwise, every interface only with an
allow-list, every engine behind an API key kept out of argv, the HF token never sent in clear, and a
firewall table that opens exactly the decided ports to exactly the decided peers."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from metalserve.errors import MetalserveError
from metalserve.io.inventory import plan_inventory
from metalserve.plan import API_KEY_CREDENTIAL, GENERATED_KEYS_DIR, HostPlan, plan_alone, plan_hosts
from metalserve.spec import host_spec

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "inventories").glob("*.py") if not p.name.startswith("sandbox"))

VLLM_8 = {
    "profile": "h200-sxm-8",
    "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
}


def plan(**data: Any) -> HostPlan:
    return plan_alone(host_spec("h1", data))


def test_an_engine_with_no_address_binds_loopback_only() -> None:
    p = plan(**VLLM_8)
    argv = p.service.exec_argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert p.service.health_url == "http://127.0.0.1:8000/health"


@pytest.mark.parametrize("everywhere", ["0.0.0.0", "::"])
def test_binding_every_interface_without_client_networks_is_refused(everywhere: str) -> None:
    with pytest.raises(MetalserveError) as refused:
        plan(**{**VLLM_8, "engine": {**VLLM_8["engine"], "host": everywhere}})
    message = str(refused.value)
    assert "\n" not in message
    assert "metalserve.engine.host" in message and "metalserve.access.clients" in message


def test_a_named_address_is_bound_and_health_checked_there() -> None:
    p = plan(**{**VLLM_8, "engine": {**VLLM_8["engine"], "host": "10.3.0.5"}})
    assert p.service.health_url == "http://10.3.0.5:8000/health"


@pytest.mark.parametrize("inventory", SHIPPED, ids=lambda p: p.name)
def test_no_shipped_inventory_renders_an_engine_without_a_key(inventory: Path) -> None:
    for p in plan_inventory(inventory):
        if not p.engine.head:
            continue
        argv = list(p.service.exec_argv)
        loaded = {name for name, _ in p.service.credentials}
        if p.engine.name == "vllm":
            assert ("VLLM_API_KEY", API_KEY_CREDENTIAL) in p.service.secret_env
            assert API_KEY_CREDENTIAL in loaded
        elif p.engine.name == "llamacpp":
            assert argv[argv.index("--api-key-file") + 1] == f"%d/{API_KEY_CREDENTIAL}"
        else:
            assert argv[argv.index("--config") + 1].startswith("%d/")
        assert "--api-key" not in argv


def test_without_a_key_file_one_is_generated_per_cluster_on_the_control_host() -> None:
    p = plan(**VLLM_8)
    key = next(c for c in p.credentials if c.name == API_KEY_CREDENTIAL)
    assert key.generate and key.local_path == f"{GENERATED_KEYS_DIR}/h1.api_key"
    assert key.host_path.endswith("/credentials/api_key")


def test_a_key_file_named_in_the_inventory_is_used_not_generated() -> None:
    p = plan(**VLLM_8, secrets={"api_key_file": "/srv/keys/site.key"})
    assert {c.local_path for c in p.credentials if "api_key" in c.name} == {"/srv/keys/site.key"}
    assert not any(c.generate for c in p.credentials)


def _mirror(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        **VLLM_8,
        "secrets": {"hf_token_file": "/root/hf_token"},
        "sources": {"weights": {"kind": "mirror", "endpoint": endpoint, **extra}},
    }


def test_the_hf_token_is_not_sent_to_a_plain_http_mirror() -> None:
    p = plan(**_mirror("http://10.0.0.1:8390"))
    assert p.weights is not None and p.weights.token_file is None
    assert not any(c.name == "hf_token" for c in p.credentials)
    assert any("sent in clear" in w or "in clear" in w for w in p.warnings)


@pytest.mark.parametrize(
    "endpoint, extra",
    [
        ("https://hub.site.internal", {}),
        ("http://10.0.0.1:8390", {"trust_plain_http": "host-only link"}),
    ],
)
def test_the_hf_token_goes_over_https_or_to_a_mirror_the_inventory_trusts(
    endpoint: str, extra: dict
) -> None:
    p = plan(**_mirror(endpoint, **extra))
    assert p.weights is not None and p.weights.token_file is not None
    assert not any("in clear" in w for w in p.warnings)


def _cluster(n: int = 2) -> list[HostPlan]:
    data = {
        "profile": "h200-sxm-8x2-ib",
        "model": {"checkpoint": "zai-org/GLM-5.2"},
        "engine": {
            "name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2,
            "host": "0.0.0.0", "port": 8000,
        },
        "fabric": {"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]},
        "access": {"clients": ["198.51.100.0/24", "2001:db8::/32"]},
    }  # fmt: skip
    specs = [
        host_spec(f"n{r}", {**data, "cluster": {"node_rank": r, "address": f"10.9.0.{r + 1}"}})
        for r in range(n)
    ]
    return plan_hosts(specs)


def _rules(text: str) -> list[str]:
    return [
        line.strip() for line in text.splitlines() if line.strip().startswith(("tcp", "ct", "iif"))
    ]


def test_the_serving_port_is_open_to_the_client_networks_only_and_only_on_the_head() -> None:
    head, worker = _cluster()
    assert head.firewall is not None and worker.firewall is not None
    head_rules = _rules(head.firewall.nft_text())
    assert head_rules.index("tcp dport 8000 ip saddr @clients_v4 accept") < head_rules.index(
        "tcp dport 8000 drop"
    )
    assert "198.51.100.0/24" in head.firewall.nft_text()
    assert "2001:db8::/32" in head.firewall.nft_text()
    assert not any("dport 8000" in r for r in _rules(worker.firewall.nft_text()))


def test_the_rendezvous_port_is_open_to_the_other_nodes_only() -> None:
    head, worker = _cluster()
    assert head.firewall is not None and worker.firewall is not None
    assert head.firewall.peers_v4 == ("10.9.0.2/32",) and worker.firewall.peers_v4 == (
        "10.9.0.1/32",
    )
    for fw in (head.firewall, worker.firewall):
        rules = _rules(fw.nft_text())
        assert rules.index("tcp dport { 29500 } ip saddr @peers_v4 accept") < rules.index(
            "tcp dport { 29500 } drop"
        )


def test_ssh_and_established_traffic_are_accepted_before_any_drop() -> None:
    head, _ = _cluster()
    assert head.firewall is not None
    rules = _rules(head.firewall.nft_text())
    first_drop = min(i for i, r in enumerate(rules) if r.endswith("drop"))
    assert rules.index("tcp dport 22 accept") < first_drop
    assert rules.index("ct state established,related accept") < first_drop


def test_the_table_is_replaced_in_one_transaction_and_nothing_else_is_flushed() -> None:
    head, _ = _cluster()
    assert head.firewall is not None
    text = head.firewall.nft_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[:3] == [
        "table inet metalserve",
        "delete table inet metalserve",
        "table inet metalserve {",
    ]
    assert "flush ruleset" not in text
    assert re.search(r"policy accept", text)


def test_turning_the_firewall_off_needs_a_reason() -> None:
    with pytest.raises(MetalserveError, match="firewall_off_reason"):
        plan(**VLLM_8, access={"firewall": False})
    off = plan(**VLLM_8, access={"firewall": False, "firewall_off_reason": "site firewall"})
    assert off.firewall is None and "nftables" not in off.packages.names


def test_a_cluster_node_named_by_host_name_is_refused_for_the_firewall() -> None:
    data = {**VLLM_8, "profile": "h200-sxm-8x2-ib", "fabric": {"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]},
            "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2}}  # fmt: skip
    specs = [
        host_spec("n0", {**data, "cluster": {"node_rank": 0, "address": "10.9.0.1"}}),
        host_spec("n1", {**data, "cluster": {"node_rank": 1}}),
    ]
    with pytest.raises(MetalserveError, match="IP address"):
        plan_hosts(specs)


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed here")
@pytest.mark.parametrize("inventory", SHIPPED, ids=lambda p: p.name)
def test_nft_accepts_every_shipped_inventorys_table(inventory: Path, tmp_path: Path) -> None:
    for p in plan_inventory(inventory):
        assert p.firewall is not None
        rules = tmp_path / f"{p.host}.nft"
        rules.write_text(p.firewall.nft_text())
        check = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
        if "Operation not permitted" in check.stderr:
            pytest.skip("nft -c needs CAP_NET_ADMIN here")
        assert check.returncode == 0, check.stderr


def test_client_networks_are_networks() -> None:
    with pytest.raises(MetalserveError, match="access.clients"):
        plan(**VLLM_8, access={"clients": ["10.0.0.0/33"]})
    ok = plan(**VLLM_8, access={"clients": ["10.0.0.7"]})
    assert ok.firewall is not None
    assert ipaddress.ip_network(ok.firewall.clients_v4[0]) == ipaddress.ip_network("10.0.0.7/32")
