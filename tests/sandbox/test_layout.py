"""How sandbox hosts are named and addressed."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import IFNAME_MAX, MAX_HOSTS, SandboxLayout, default_layout


@pytest.fixture
def layout() -> SandboxLayout:
    return SandboxLayout(run_dir=Path("/srv/sbx"))


def test_hosts_are_numbered_from_one_with_addresses_after_the_controller(
    layout: SandboxLayout,
) -> None:
    hosts = layout.hosts(3)
    assert [(h.name, h.ip) for h in hosts] == [
        ("ms-host1", "10.77.0.11"),
        ("ms-host2", "10.77.0.12"),
        ("ms-host3", "10.77.0.13"),
    ]
    assert layout.controller_ip == "10.77.0.1"
    assert layout.http_base_url == "http://10.77.0.1:8080"


def test_each_host_has_its_own_namespace_and_veth(layout: SandboxLayout) -> None:
    host = layout.host(2)
    assert host.netns == "ms-host2"
    assert host.veth == "ms-ve2"
    assert host.prefixlen == 24


@given(
    count=st.integers(min_value=1, max_value=MAX_HOSTS),
    prefix=st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
)
def test_every_name_fits_a_linux_interface_name_and_no_two_collide(count: int, prefix: str) -> None:
    layout = SandboxLayout(prefix=prefix, run_dir=Path("/x"))
    hosts = layout.hosts(count)
    names = (
        [layout.controller_netns, layout.bridge]
        + [h.veth for h in hosts]
        + [h.netns for h in hosts]
    )
    assert all(len(n) <= IFNAME_MAX for n in names)
    assert len({h.ip for h in hosts} | {layout.controller_ip}) == count + 1
    assert len({h.veth for h in hosts}) == count
    assert all(ipaddress.ip_address(h.ip) in layout.network for h in hosts)
    assert ipaddress.ip_address(layout.controller_ip) not in {
        ipaddress.ip_address(h.ip) for h in hosts
    }


@pytest.mark.parametrize("count", [0, MAX_HOSTS + 1])
def test_a_host_count_out_of_range_is_one_operator_line(layout: SandboxLayout, count: int) -> None:
    with pytest.raises(
        SandboxError,
        match=rf"sandbox size must be 1-{MAX_HOSTS} hosts; found {count} — fix: pass -n",
    ):
        layout.hosts(count)


def test_down_only_claims_namespaces_this_layout_creates(layout: SandboxLayout) -> None:
    assert layout.owns_netns("ms-ctl")
    assert layout.owns_netns("ms-host12")
    assert not layout.owns_netns("ms-hostile")
    assert not layout.owns_netns("other-host1")
    assert not SandboxLayout(prefix="mt", run_dir=Path("/y")).owns_netns("ms-host1")


@pytest.mark.parametrize("subnet", ["8.8.8.0/24", "10.77.0.0/28", "fd00::/64"])
def test_the_subnet_must_be_private_ipv4_and_big_enough(subnet: str) -> None:
    with pytest.raises(ValueError, match="subnet"):
        SandboxLayout(subnet=subnet, run_dir=Path("/x"))


def test_default_run_dir_follows_the_environment() -> None:
    assert default_layout({"METALSERVE_SANDBOX_DIR": "/tmp/s"}).run_dir == Path("/tmp/s")
    assert default_layout({"HOME": "/home/op"}).run_dir == Path(
        "/home/op/.local/state/metalserve/sandbox"
    )
    assert default_layout({"HOME": "/home/op"}).state_file == Path(
        "/home/op/.local/state/metalserve/sandbox/state.json"
    )
