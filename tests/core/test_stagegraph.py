"""The stage graph bench/stages.py judges a deploy by: it knows every stage the serve deploy has,
and its critical path is the longest chain of stages that need each other."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from metalserve.io.stagegraph import (
    CONNECT,
    DOWNLOAD,
    NEEDS,
    critical_path,
    path_seconds,
    unknown_stages,
)

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ("install", "configure", "activate", "check", "first")


def serve_roles() -> list[ModuleType]:
    """Every role module deploy/serve.py imports (the NVIDIA stack's tuple expanded)."""
    modules: list[ModuleType] = []
    for node in ast.walk(ast.parse((REPO / "deploy" / "serve.py").read_text())):
        if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("roles")):
            continue
        for alias in node.names:
            source = importlib.import_module(node.module or "")
            found = getattr(source, alias.name, None)
            if found is None:
                found = importlib.import_module(f"{node.module}.{alias.name}")
            modules.extend(found if isinstance(found, tuple) else [found])
    return [m for m in modules if isinstance(m, ModuleType) and m.__name__ != "roles.base"]


def stage_names() -> set[str]:
    names = set()
    for role in serve_roles():
        for entry in ENTRY_POINTS:
            name = getattr(getattr(role, entry, None), "deploy_name", None)
            if name:
                names.add(name)
    return names


def test_the_graph_knows_every_stage_of_the_serve_deploy() -> None:
    names = stage_names()
    assert {"Packages: install", "Weights: start", "GGUF: install", "Service: activate"} <= names
    assert sorted(names - set(NEEDS)) == []


def test_every_stage_needs_only_stages_of_the_graph() -> None:
    assert {need for needs in NEEDS.values() for need in needs} <= set(NEEDS)


# Seconds as the issue measured a warm serial run (packages 9.0, layout 2.6, llama.cpp 5.4,
# GGUF 20.2, service 2.5), with a download of `download` seconds started after the layout.
def run(download: float, wait: float) -> dict[str, float]:
    return {
        CONNECT: 1.5,
        "Packages: install": 9.0,
        "Layout: install": 2.6,
        "Weights: start": 1.0,
        DOWNLOAD: download,
        "llama.cpp: install": 5.4,
        "Weights: wait": wait,
        "GGUF: install": 20.2,
        "Service: configure": 1.0,
        "Service: activate": 1.5,
    }


def test_a_long_download_is_on_the_critical_path_and_its_wait_counts_nothing() -> None:
    durations = run(download=30.0, wait=24.6)
    path = critical_path(durations)
    assert path == (CONNECT, "Packages: install", "Weights: start", DOWNLOAD, "Weights: wait",
                    "GGUF: install", "Service: configure", "Service: activate")  # fmt: skip
    assert path_seconds(path, durations) == pytest.approx(1.5 + 9.0 + 1.0 + 30.0 + 20.2 + 1.0 + 1.5)


def test_a_short_download_leaves_the_build_on_the_critical_path() -> None:
    durations = run(download=0.5, wait=0.2)
    path = critical_path(durations)
    assert path == (CONNECT, "Packages: install", "llama.cpp: install", "GGUF: install",
                    "Service: configure", "Service: activate")  # fmt: skip
    assert path_seconds(path, durations) == pytest.approx(1.5 + 9.0 + 5.4 + 20.2 + 1.0 + 1.5)


def test_a_stage_the_graph_does_not_know_needs_all_before_it() -> None:
    durations = {CONNECT: 1.0, "Packages: install": 9.0, "Layout: install": 2.6, "Mystery": 4.0}
    assert unknown_stages(durations) == ["Mystery"]
    assert critical_path(durations) == (CONNECT, "Packages: install", "Mystery")
    assert path_seconds(critical_path(durations), durations) == pytest.approx(1.0 + 9.0 + 4.0)
