"""The systemd sandbox of the rendered units: which directives each node gets, and relaxing them.

Expected values come from the rule each directive follows (systemd.exec(5),
systemd.resource-control(5)) and from what the node runs, read from its plan's hardware.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from metalserve.errors import PlanError, SpecError
from metalserve.hardening import NVIDIA_DEVICE_GROUPS, RELAXABLE
from metalserve.io.inventory import load_hosts
from metalserve.io.templating import render
from metalserve.plan import HostPlan, plan_alone
from metalserve.spec import host_spec
from tests.core.shipped import REPO, shipped_plans

PLANS = shipped_plans()
H200 = load_hosts(REPO / "inventories" / "h200.py")["h200-01.example.internal"]
REASON = "site policy allows it; measured on this host"


def _units(plan: HostPlan) -> dict[str, list[str]]:
    """Each rendered .service unit's non-comment lines, by file name."""
    return {
        Path(f.path).name: [line for line in f.content.splitlines() if not line.startswith("#")]
        for f in render(plan)
        if f.path.endswith(".service")
    }


def _engine_lines(plan: HostPlan) -> list[str]:
    return _units(plan)[f"{plan.service.name}.service"]


def _rdma(plan: HostPlan) -> bool:
    fabric = plan.profile.fabric
    return plan.profile.multi_node and fabric is not None and fabric.rdma


def _h200(**service: Any) -> dict[str, Any]:
    data = copy.deepcopy(H200)
    data["service"] = {**data.get("service", {}), **service}
    return data


EVERY_UNIT = (
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictNamespaces=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "LockPersonality=yes",
    "KeyringMode=private",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "DevicePolicy=closed",
)
"""The brief's baseline, on the engine unit and the keep-warm unit alike."""


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_every_service_unit_carries_the_baseline(plan: HostPlan) -> None:
    units = _units(plan)
    assert units, "no service unit rendered"
    for name, lines in units.items():
        missing = [d for d in EVERY_UNIT if d not in lines]
        assert not missing, f"{name} lacks {missing}"
        assert not any(line.startswith("ProtectSystem=full") for line in lines)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_the_engine_may_write_its_home_only_and_reads_the_weights(plan: HostPlan) -> None:
    lines = _engine_lines(plan)
    layout = plan.layout
    assert f"ReadWritePaths={layout.data}" in lines
    assert f"ReadOnlyPaths=-{layout.models} -{layout.gguf} -{layout.state}" in lines
    assert "UMask=0027" in lines


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_nvidia_devices_are_allowed_exactly_on_gpu_nodes(plan: HostPlan) -> None:
    lines = _engine_lines(plan)
    nvidia = {f"DeviceAllow=char-{group} rw" for group in NVIDIA_DEVICE_GROUPS}
    allowed = {line for line in lines if line.startswith("DeviceAllow=")}
    if plan.profile.gpu is not None:
        assert nvidia <= allowed
        assert "PrivateDevices=yes" not in lines  # it would hide /dev/nvidia*
    else:
        assert allowed == set()
        assert "PrivateDevices=yes" in lines


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_infiniband_verbs_are_allowed_only_where_nccl_runs_over_rdma(plan: HostPlan) -> None:
    verbs = "DeviceAllow=char-infiniband_verbs rw" in _engine_lines(plan)
    assert verbs == (_rdma(plan) and plan.engine.name != "llamacpp")


def test_the_shipped_inventories_cover_rdma_and_plain_gpu_nodes() -> None:
    """The two tests above see both cases, so neither passes by having nothing to check."""
    with_verbs = [p for p in PLANS if "DeviceAllow=char-infiniband_verbs rw" in _engine_lines(p)]
    plain_gpu = [p for p in PLANS if p.profile.gpu is not None and not _rdma(p)]
    cpu = [p for p in PLANS if p.profile.gpu is None]
    assert with_verbs and plain_gpu and cpu


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_write_execute_memory_and_proc_files_are_denied_only_to_llamacpp_on_the_cpu(
    plan: HostPlan,
) -> None:
    lines = _engine_lines(plan)
    cpu_llamacpp = plan.engine.name == "llamacpp" and plan.profile.gpu is None
    assert ("MemoryDenyWriteExecute=yes" in lines) == cpu_llamacpp
    assert ("ProcSubset=pid" in lines) == cpu_llamacpp
    # NCCL, Gloo and torch find interfaces with getifaddrs(), which reads netlink
    netlink = plan.engine.name != "llamacpp"
    assert any("AF_NETLINK" in line for line in lines if "AddressFamilies" in line) == netlink


KEEPWARM = [p for p in PLANS if p.service.keep_warm_minutes and p.service.health_url]


@pytest.mark.parametrize("plan", KEEPWARM, ids=lambda p: p.host)
def test_the_keepwarm_unit_is_sandboxed_to_the_loopback(plan: HostPlan) -> None:
    lines = _units(plan)[f"{plan.layout.keepwarm_service}.service"]
    assert urlparse(str(plan.service.health_url)).hostname == "127.0.0.1"
    for directive in (
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
        "PrivateDevices=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6",
        "UMask=0077",
    ):
        assert directive in lines


def test_relaxing_with_a_reason_removes_the_directive_and_the_unit_says_why() -> None:
    plan = plan_alone(host_spec("gpu01", _h200(relax={"ProtectProc": REASON})))
    engine = next(f for f in render(plan) if f.path == plan.service.unit_path).content
    assert "ProtectProc=invisible" not in engine.splitlines()
    assert f"# ProtectProc relaxed by the inventory (metalserve.service.relax): {REASON}" in engine
    assert "ProtectClock=yes" in engine.splitlines()


def test_relaxing_a_policy_removes_what_only_means_something_with_it() -> None:
    plan = plan_alone(host_spec("gpu01", _h200(relax={"SystemCallFilter": REASON})))
    lines = _engine_lines(plan)
    assert not [line for line in lines if line.startswith("SystemCallErrorNumber=")]
    assert not [line for line in lines if line.startswith("SystemCallFilter=")]


@pytest.mark.parametrize(
    ("relax", "says"),
    [
        ({"ProtectEverything": REASON}, "'ProtectEverything' is not a directive metalserve sets"),
        ({"ProtectClock": ""}, "relax.ProtectClock: expected one line of text"),
        ({"ProtectClock": "   "}, "ProtectClock: the reason must be one line of text"),
        ({"ProtectClock": "ok\nExecStartPre=/bin/sh"}, "relax.ProtectClock: expected one line"),
        ({"DeviceAllow": REASON}, "DeviceAllow goes with DevicePolicy — fix: relax DevicePolicy"),
    ],
)
def test_a_bad_relaxation_is_refused_in_one_line_naming_the_field(
    relax: dict[str, str], says: str
) -> None:
    with pytest.raises(SpecError) as err:
        host_spec("gpu01", _h200(relax=relax))
    message = str(err.value)
    assert message.startswith("host gpu01: metalserve.service.relax")
    assert says in message and " — fix: " in message and "\n" not in message


def test_every_relaxable_name_is_a_directive_some_unit_sets() -> None:
    rendered = {
        line.split("=", 1)[0]
        for plan in PLANS
        for lines in _units(plan).values()
        for line in lines
        if "=" in line
    }
    assert set(RELAXABLE) <= rendered


def test_opening_the_device_policy_of_a_gpu_node_needs_protect_clock_relaxed_too() -> None:
    """systemd < 253 turns ProtectClock=yes into DeviceAllow=char-rtc r under the auto policy,
    an allow list without the GPUs (systemd issue 18142)."""
    with pytest.raises(PlanError, match=r"relax\.DevicePolicy: .* fix: relax ProtectClock too"):
        plan_alone(host_spec("gpu01", _h200(relax={"DevicePolicy": REASON})))
    both = {"DevicePolicy": REASON, "ProtectClock": REASON}
    lines = _engine_lines(plan_alone(host_spec("gpu01", _h200(relax=both))))
    assert not [line for line in lines if line.startswith(("DeviceAllow=", "DevicePolicy="))]
    assert "ProtectClock=yes" not in lines


def test_relaxing_what_a_node_does_not_set_is_a_warning() -> None:
    data = _h200(relax={"MemoryDenyWriteExecute": REASON}, keep_warm_minutes=None)
    plan = plan_alone(host_spec("gpu01", data))
    assert any("relax.MemoryDenyWriteExecute: not set" in w for w in plan.warnings)
