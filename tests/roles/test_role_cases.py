"""Every JSON operation case under tests/roles/<role>/: exact commands, and a no-op second run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.opcases import check_case

CASES = sorted(Path(__file__).parent.glob("*/*.json"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_role_case(case: Path) -> None:
    check_case(case)
