"""Operation cases of the nccl_diag role: single node, 2-node InfiniBand, 2-node RoCE, offline, no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.opcases import case_files, check_case

CASES = case_files(Path(__file__).parent)


def test_the_cases_cover_the_inventories_the_issue_names() -> None:
    names = {p.stem for p in CASES}
    assert {
        "single_node_run",
        "ib_2node_node0_run",
        "roce_2node_node0_run",
        "no_gpu_skips",
    } <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    check_case(path)
