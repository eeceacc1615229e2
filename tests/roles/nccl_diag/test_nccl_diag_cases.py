"""The nccl_diag role's cases (run by tests/roles/test_role_cases.py) cover the setups the issue names."""

from __future__ import annotations

from pathlib import Path

from tests.opcases import case_files

CASES = case_files(Path(__file__).parent)


def test_the_cases_cover_the_inventories_the_issue_names() -> None:
    names = {p.stem for p in CASES}
    assert {
        "single_node_run",
        "ib_2node_node0_run",
        "roce_2node_node0_run",
        "no_gpu_skips",
    } <= names
