"""``systemd-analyze security`` on the rendered units: every shipped unit scores at most 3.0, and
each directive metalserve sets is one the analyzer counts (relaxing it fails that check).

systemd 252's scale runs from 0 (sandboxed) to 10; a service unit with none of these directives
scores 8.5, "EXPOSED". The 3.0 target is issue 14's.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from metalserve.hardening import RELAXABLE
from metalserve.io.inventory import load_hosts
from metalserve.io.unitsecurity import (
    parse_scores,
    score_plan,
    score_units,
    service_units,
    unmet_checks,
)
from metalserve.plan import HostPlan, plan_alone
from metalserve.sandbox.demo import sandbox_metalserve_data
from metalserve.spec import host_spec
from tests.core.shipped import REPO, SANDBOX_APT, SANDBOX_CLIENTS, sandbox_inputs, shipped_plans
from tests.core.test_cli import metalserve

TARGET = 3.0
UNHARDENED = 8.5
"""What systemd 252 gave the units before this sandbox (User= set, NoNewPrivileges, PrivateTmp,
ProtectSystem=full, ProtectHome): the baseline the relaxation test returns to."""
REASON = "measuring what this directive is worth"

needs_analyzer = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze (systemd 252+) not installed"
)

GPU = load_hosts(REPO / "inventories" / "h200.py")["h200-01.example.internal"]
CPU = sandbox_metalserve_data(SANDBOX_APT, sandbox_inputs(), SANDBOX_CLIENTS)
GPU_ENGINE, GPU_KEEPWARM = "metalserve-vllm.service", "metalserve-vllm-keepwarm.service"
CPU_ENGINE = "metalserve-llamacpp.service"


def _unit(data: dict[str, Any], unit: str, relax: dict[str, str] | None = None) -> str:
    data = copy.deepcopy(data)
    data["service"] = {**data.get("service", {}), "relax": relax or {}}
    return service_units(plan_alone(host_spec("h", data)))[unit]


def _exposure(unit: str, content: str) -> float:
    (score,) = score_units({unit: content})
    return score.exposure


def test_the_overall_line_is_read_with_its_unit_and_verdict() -> None:
    output = (
        "✗ UMask=   Files created by service are world-readable by default   0.1\n\n"
        "→ Overall exposure level for metalserve-vllm.service: 8.5 EXPOSED 🙁\n"
    )
    (score,) = parse_scores(output)
    assert (score.unit, score.exposure, score.verdict) == (
        "metalserve-vllm.service",
        8.5,
        "EXPOSED",
    )


@needs_analyzer
@pytest.mark.parametrize("plan", shipped_plans(), ids=lambda p: p.host)
def test_every_shipped_service_unit_scores_at_most_the_target(plan: HostPlan) -> None:
    scores = score_plan(plan)
    assert {s.unit for s in scores} == set(service_units(plan))
    print(plan.host, " ".join(f"{s.unit}={s.exposure}" for s in scores))
    assert all(s.exposure <= TARGET for s in scores), scores


CHECKS = [
    # (host data, unit, directive relaxed, the analyzer's check that fails once it is)
    *(
        (GPU, GPU_ENGINE, d, f"{d}=")
        for d in (
            "NoNewPrivileges",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateMounts",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "RestrictSUIDSGID",
            "RestrictRealtime",
            "LockPersonality",
            "RemoveIPC",
            "SystemCallArchitectures",
        )
    ),
    (GPU, GPU_ENGINE, "CapabilityBoundingSet", "CapabilityBoundingSet=~CAP_SYS_ADMIN"),
    (GPU, GPU_ENGINE, "RestrictNamespaces", "RestrictNamespaces=~user"),
    (GPU, GPU_ENGINE, "SystemCallFilter", "SystemCallFilter=~@mount"),
    (GPU, GPU_ENGINE, "RestrictAddressFamilies", "RestrictAddressFamilies=~AF_PACKET"),
    (GPU, GPU_KEEPWARM, "UMask", "UMask="),
    (GPU, GPU_KEEPWARM, "PrivateDevices", "PrivateDevices="),
    (GPU, GPU_KEEPWARM, "MemoryDenyWriteExecute", "MemoryDenyWriteExecute="),
    (GPU, GPU_KEEPWARM, "ProcSubset", "ProcSubset="),
    (CPU, CPU_ENGINE, "PrivateDevices", "PrivateDevices="),
    (CPU, CPU_ENGINE, "MemoryDenyWriteExecute", "MemoryDenyWriteExecute="),
    (CPU, CPU_ENGINE, "ProcSubset", "ProcSubset="),
    (CPU, CPU_ENGINE, "SystemCallFilter", "SystemCallFilter=~@privileged"),
]


@needs_analyzer
@pytest.mark.parametrize(
    ("data", "unit", "directive", "check"), CHECKS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_directive_is_present_and_relaxing_it_fails_its_check(
    data: dict[str, Any], unit: str, directive: str, check: str
) -> None:
    hardened = _unit(data, unit)
    relaxed = _unit(data, unit, {directive: REASON})
    assert re.search(rf"^{directive}=", hardened, re.M), f"{unit} does not set {directive}"
    assert not re.search(rf"^{directive}=", relaxed, re.M)
    assert check not in unmet_checks(unit, hardened)
    assert check in unmet_checks(unit, relaxed)
    assert _exposure(unit, relaxed) >= _exposure(unit, hardened)


@needs_analyzer
def test_closing_the_devices_of_a_gpu_node_lowers_its_exposure() -> None:
    clock = {"ProtectClock": REASON}
    with_policy = _unit(GPU, GPU_ENGINE, clock)
    without = _unit(GPU, GPU_ENGINE, {**clock, "DevicePolicy": REASON})
    assert _exposure(GPU_ENGINE, without) > _exposure(GPU_ENGINE, with_policy)


@needs_analyzer
@pytest.mark.parametrize(
    ("data", "unit"), [(GPU, GPU_ENGINE), (CPU, CPU_ENGINE)], ids=["gpu", "cpu"]
)
def test_relaxing_every_directive_brings_the_unit_back_to_the_unhardened_score(
    data: dict[str, Any], unit: str
) -> None:
    relaxed = _unit(data, unit, dict.fromkeys(sorted(RELAXABLE), REASON))
    assert _exposure(unit, relaxed) >= UNHARDENED
    assert _exposure(unit, _unit(data, unit)) <= TARGET


@needs_analyzer
def test_plan_prints_one_security_line_per_service_unit() -> None:
    result = metalserve("plan", "inventories/h200.py")
    lines = re.findall(r"^security (\S+) (\d+\.\d) (\w+)", result.stdout, re.M)
    assert [unit for unit, _, _ in lines] == [GPU_ENGINE, GPU_KEEPWARM]
    assert all(float(exposure) <= TARGET and verdict == "OK" for _, exposure, verdict in lines)


def test_plan_says_in_one_line_when_it_cannot_score(tmp_path: Path) -> None:
    result = metalserve("plan", "inventories/h200.py", path=str(tmp_path))
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("security")]
    assert line.startswith("security not scored: systemd-analyze not found — fix: install")


def test_plan_shows_what_an_inventory_relaxed_and_why(tmp_path: Path) -> None:
    inventory = tmp_path / "relaxed.py"
    data = {**GPU, "service": {**GPU["service"], "relax": {"ProtectProc": REASON}}}
    inventory.write_text(f"hosts = [('gpu01', {{'metalserve': {data!r}}})]\n")
    result = metalserve("plan", str(inventory))
    assert f"security ProtectProc relaxed: {REASON}" in result.stdout.splitlines()
