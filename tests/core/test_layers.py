"""The layers stay apart: roles and deploys act on a plan's sections, never on the inventory spec
or the catalogues (what is chosen from those is chosen once, in the plan)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("metalserve.spec", "metalserve.catalog")


def _outside_layers(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def forbidden_imports(source: str) -> list[str]:
    """Every import of ``source`` that reaches the spec or a catalogue, as ``line: module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from metalserve import spec`` names the module in the imported names
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [f"{node.lineno}: {m}" for m in modules if _outside_layers(m)]
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize(
    "source",
    [
        "import metalserve.spec",
        "import metalserve.catalog.gpus as g",
        "from metalserve.spec import HostSpec",
        "from metalserve.catalog import pins",
        "from metalserve.catalog.profiles import PROFILES",
        "from metalserve import spec",
        "from metalserve import catalog",
        "def f():\n    from metalserve.catalog.busbw import expectation_for\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from metalserve.spec import HostSpec\n",
    ],
)
def test_the_check_catches_every_way_of_importing_them(source: str) -> None:
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "from metalserve.plan import HostPlan",
        "from metalserve.stack import NvidiaPlan",
        "from metalserve import plan",
        "import metalserve.specification_notes",
        "from metalserve.catalogue_view import x",
        "from . import spec",
    ],
)
def test_the_check_lets_the_plan_and_lookalike_names_through(source: str) -> None:
    assert not forbidden_imports(source)


@pytest.mark.parametrize("module", _sources("roles", "deploy"), ids=_rel)
def test_roles_and_deploys_import_neither_the_spec_nor_a_catalogue(module: Path) -> None:
    assert not forbidden_imports(module.read_text()), _rel(module)


@pytest.mark.parametrize("module", _sources("roles"), ids=_rel)
def test_no_role_reaches_into_a_spec(module: Path) -> None:
    lines = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(module.read_text().splitlines(), start=1)
        if ".spec." in line
    ]
    assert not lines, f"{_rel(module)} mentions .spec.: {lines}"


def test_there_are_roles_and_deploys_to_check() -> None:
    assert len(_sources("roles")) > 5 and len(_sources("deploy")) > 1
