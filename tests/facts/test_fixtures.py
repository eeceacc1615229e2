"""Every fact parses its recorded outputs (real where we could get them, constructed from the
documented format otherwise; each fixture names which and where from) into the recorded value."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
CASES = sorted(FIXTURES.glob("*/*.json"))


def _fact_class(directory: str) -> type:
    module, _, name = directory.partition(".")
    return getattr(importlib.import_module(f"roles.{module}.facts"), name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_fact_parses_its_recorded_output(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["source"] and case["provenance"], "every fixture says where it comes from"
    fact = _fact_class(path.parent.name)()
    assert _jsonable(fact.process(case["output"])) == case["fact"]


def test_there_is_a_fixture_for_every_fact() -> None:
    from pyinfra.api import FactBase

    covered = {path.parent.name for path in CASES}
    for module in ("gpu_facts", "fabric", "preflight"):
        facts = importlib.import_module(f"roles.{module}.facts")
        for name, obj in vars(facts).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, FactBase)
                and obj.__module__ == facts.__name__
            ):
                assert f"{module}.{name}" in covered, f"no fixture for {module}.{name}"
