"""The NVIDIA stack's operation cases (run, like every case, by tests/roles/test_role_cases.py)
cover the three distributions and every GPU profile of the catalogue, and each whole-stack case
installs what its hardware needs and nothing it does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from metalserve.catalog.profiles import PROFILES

ROLES = Path(__file__).parent.parent
GPU_ROLES = ("nvidia_driver", "fabricmanager", "cuda", "nccl", "fabric", "reprovision")
NAMES = {f"{p.parent.name}/{p.stem}" for role in GPU_ROLES for p in (ROLES / role).glob("*.json")}
WHOLE_STACK = {
    path.stem: case
    for path in sorted((ROLES / "nvidia_driver").glob("*.json"))
    if (case := json.loads(path.read_text())).get("role") == "roles.nvidia_driver.stack"
}
GPU_PROFILES = sorted(pid for pid, p in PROFILES.items() if p.gpu is not None)


def _profile_of(case: dict[str, Any]) -> str:
    return str(case["host_data"]["metalserve"]["profile"])


def _runs(case: dict[str, Any], fragment: str) -> bool:
    return any(fragment in command for command in case.get("commands", []))


def test_each_distribution_has_a_driver_case() -> None:
    for distro in ("ubuntu2204", "ubuntu2404", "debian12"):
        assert any(distro in name for name in NAMES if name.startswith("nvidia_driver/")), distro


def test_nvswitch_pcie_and_roce_hosts_have_whole_stack_cases() -> None:
    assert {
        "nvidia_driver/drivers_h200_ubuntu2204",
        "nvidia_driver/drivers_rtx4090_ubuntu2404",
        "nvidia_driver/drivers_h100_roce_debian12",
        "fabricmanager/rtx4090_pcie_none",
    } <= NAMES


def test_reprovision_cases_cover_detection_reboot_and_failed_verification() -> None:
    assert {
        "reprovision/in_sync_nothing_to_do",
        "reprovision/loaded_driver_differs_from_installed",
        "reprovision/nouveau_holds_the_gpu_reboot",
        "reprovision/failed_verification_keeps_engine_stopped",
        "reprovision/toolkit_moved_rebuilds_what_links_it",
        "reprovision/gate_off_starts_after_verification",
    } <= NAMES


def test_a_reprovisioned_engine_starts_only_after_the_nccl_gate() -> None:
    gated = 0
    for path in sorted((ROLES / "reprovision").glob("*.json")):
        case = json.loads(path.read_text())
        commands = case.get("commands", [])
        starts = [i for i, c in enumerate(commands) if c.startswith("systemctl start metalserve-")]
        if not starts:
            continue
        cluster = case["host_data"]["metalserve"].get("cluster") or {}
        if cluster.get("node_rank", 0) > 0:
            # a worker's engine starts in the same run as the head's: the gate is judged on
            # rank 0, whose start comes after
            continue
        # the gate's judge: a FAIL, or a run that produced no result, stops the host here
        judged = [i for i, c in enumerate(commands) if c == "function judge_gate_on_control_host"]
        if "gate_off" in path.stem:
            assert judged == [], path.name
            continue
        assert judged and max(judged) < min(starts), path.name
        gated += 1
    assert gated >= 4


def test_a_cluster_node_in_sync_stops_and_restarts_when_another_node_drifts() -> None:
    case = json.loads(
        (ROLES / "reprovision" / "cluster_peer_drift_stops_and_gates_every_node.json").read_text()
    )
    commands = case["commands"]
    assert commands.index("systemctl stop metalserve-vllm.service") < commands.index(
        "systemctl start metalserve-vllm.service"
    )
    assert not any("apt-get install" in c for c in commands), "a node in sync installs nothing"


def test_every_gpu_profile_of_the_catalogue_has_a_whole_stack_case() -> None:
    covered = {_profile_of(case) for case in WHOLE_STACK.values()}
    assert GPU_PROFILES, "the catalogue lists no GPU profile"
    assert sorted(set(GPU_PROFILES) - covered) == []


def test_whole_stack_cases_spread_over_the_three_distributions_more_than_once() -> None:
    distros = [
        (
            c["facts"]["server.LinuxDistribution"]["name"],
            c["facts"]["server.LinuxDistribution"]["major"],
        )
        for c in WHOLE_STACK.values()
    ]
    for distro in (("Ubuntu", 22), ("Ubuntu", 24), ("Debian", 12)):
        assert distros.count(distro) >= 2, distro


@pytest.mark.parametrize("name", sorted(WHOLE_STACK))
def test_whole_stack_case_has_a_no_op_second_run(name: str) -> None:
    # check_case runs it; here it must exist, so every installed host is shown to converge.
    assert "second_run_facts" in WHOLE_STACK[name], name


R580_FABRIC_MANAGER = ("nvidia-fabricmanager", "libnvidia-nscq")
"""NVIDIA's R580 names (NVIDIA/gpu-driver-container#451); the -580 names are virtual there."""


def _installs(case: dict[str, Any]) -> list[list[str]]:
    """The package lists of the case's apt-get install commands, in order."""
    return [
        [word for word in command.split() if not word.startswith("-") and "=" not in word][2:]
        for command in case["commands"]
        if "apt-get install" in command
    ]


def _driver_version(case: dict[str, Any]) -> str:
    pins = case["host_data"]["metalserve"].get("nvidia", {}).get("pins", {})
    return str(pins.get("driver_version", "580.105.08"))


@pytest.mark.parametrize("name", sorted(WHOLE_STACK))
def test_whole_stack_case_installs_what_its_hardware_needs(name: str) -> None:
    case = WHOLE_STACK[name]
    profile = PROFILES[_profile_of(case)]
    assert profile.gpu is not None
    installs = _installs(case)
    fabric_manager = list(R580_FABRIC_MANAGER) in installs
    assert fabric_manager == profile.needs_fabric_manager, "fabric manager"
    if fabric_manager:
        assert _runs(case, f"apt-mark hold {' '.join(R580_FABRIC_MANAGER)}"), "held"
        assert _runs(case, "-> /etc/apt/preferences.d/metalserve-nvidia-fabricmanager"), "pinned"
    assert not _runs(case, "nvidia-fabricmanager-5") and not _runs(case, "libnvidia-nscq-5")
    assert _runs(case, "rdma-core") == profile.multi_node, "RDMA packages"
    ofed = case["facts"].get("roles.fabric.facts.OfedRelease")
    assert not _runs(case, "modprobe nvidia-peermem") or ofed, "nvidia-peermem without OFED"
    if profile.gpu.open_kernel_modules_required:
        assert _runs(case, "-open") or _runs(case, "nvidia-kernel-open-dkms"), "open kernel module"
    lock = f"nvidia-driver-pinning-{_driver_version(case)}"
    driver_install = next(i for i, names in enumerate(installs) if any("dkms" in n for n in names))
    assert installs.index([lock]) < driver_install, "NVIDIA's pinning package before the driver"
    arm64 = case["facts"]["deb.DebArch"] == "arm64"
    assert _runs(case, "/sbsa/") == arm64, "NVIDIA's arm64 server repository is sbsa"


def test_no_gpudirect_case_loads_nvidia_peermem_without_an_ofed_fact() -> None:
    cases = [json.loads(p.read_text()) for role in GPU_ROLES for p in (ROLES / role).glob("*.json")]
    loading = [c for c in cases if _runs(c, "modprobe nvidia-peermem")]
    assert loading, "a case shows where nvidia-peermem does load"
    for case in loading:
        assert case["facts"].get("roles.fabric.facts.OfedRelease"), case["description"]
