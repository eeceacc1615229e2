"""The NVIDIA stack's operation cases (run, like every case, by tests/roles/test_role_cases.py)
cover the three distributions and the profiles the issue names."""

from __future__ import annotations

from pathlib import Path

ROLES = Path(__file__).parent.parent
GPU_ROLES = ("nvidia_driver", "fabricmanager", "cuda", "nccl", "fabric", "reprovision")
NAMES = {f"{p.parent.name}/{p.stem}" for role in GPU_ROLES for p in (ROLES / role).glob("*.json")}


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
    } <= NAMES
