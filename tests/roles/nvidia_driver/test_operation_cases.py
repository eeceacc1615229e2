"""Operation cases of the NVIDIA stack roles: host data and facts in, the exact commands out, and a
second run on the post-install facts that yields nothing (see tests/opcases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.opcases import case_files, check_case

ROLES = Path(__file__).parent.parent
CASES = [
    path
    for role in ("nvidia_driver", "fabricmanager", "cuda", "nccl", "fabric", "reprovision")
    for path in case_files(ROLES / role)
]


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_operation_case(path: Path) -> None:
    check_case(path)


def test_every_gpu_role_has_cases_for_the_three_distributions_and_profiles() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in CASES}
    for distro in ("ubuntu2204", "ubuntu2404", "debian12"):
        assert any(distro in name for name in names if name.startswith("nvidia_driver/")), distro
    for expected in (
        "fabricmanager/h200_ubuntu2204_nvswitch",
        "fabricmanager/rtx4090_pcie_none",
        "fabric/h100_roce_ubuntu2204",
    ):
        assert expected in names
