"""Properties: every fact's ``process()`` reads any output a host could print — binary noise,
a thousand-digit number, a stray quote or line break — as an answer or one ``ParseError`` line,
never a traceback and never a hang."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyinfra.api import FactBase

from metalserve.errors import ParseError
from tests.bounded import within

ROLES = Path(__file__).resolve().parents[2] / "roles"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def _facts() -> list[type[FactBase]]:
    found = []
    for module_path in sorted(ROLES.glob("*/facts.py")):
        module = importlib.import_module(f"roles.{module_path.parent.name}.facts")
        found += [
            cls
            for cls in vars(module).values()
            if inspect.isclass(cls)
            and issubclass(cls, FactBase)
            and cls.__module__ == module.__name__
        ]
    return found


REAL_LINES = sorted(
    {line for path in FIXTURES.rglob("*.json") for line in json.loads(path.read_text())["output"]}
)
"""Lines real hosts printed (the fact fixtures), to start the variations from."""
lines = st.one_of(
    st.sampled_from(REAL_LINES),
    st.text(max_size=60),
    st.sampled_from(["1" * 5000, "٣", "²", "", "a, b, c, d, e, f", '"', "x\ny", "\r", "=", "-1"]),
    st.builds(lambda a, b: a + b, st.sampled_from(REAL_LINES), st.text(max_size=8)),
)


def test_the_facts_are_found() -> None:
    names = {f.__name__ for f in _facts()}
    assert {"NvidiaGpus", "RdmaPorts", "HttpStatus", "NvidiaGpuCount"} <= names


@pytest.mark.parametrize("fact", _facts(), ids=lambda f: f.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(output=st.lists(lines, max_size=8))
def test_process_reads_any_output_or_says_why_in_one_line(
    fact: type[FactBase], output: list[str]
) -> None:
    with within(5):
        try:
            fact().process(output)
        except ParseError as error:
            assert "\n" not in str(error)
