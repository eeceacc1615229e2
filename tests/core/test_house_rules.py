"""The rules of the house, checked: the core is pure, and a pin or flag is written in one place."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from metalserve.catalog import pins

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "metalserve"
EDGE_PACKAGES = {"cli", "io", "mirror", "sandbox", "artefacts", "bundle"}
"""The packages that do I/O, each as a whole; every other module of ``metalserve`` is the core."""
FORBIDDEN_MODULES = {
    "subprocess", "socket", "pyinfra", "pyinfra_cli", "http", "urllib", "requests", "shutil",
    "paramiko", "huggingface_hub", "runpy", "jinja2",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "exec", "eval", "system", "popen"}


def core_modules() -> list[Path]:
    modules = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).as_posix()
        if rel.split("/")[0] in EDGE_PACKAGES:
            continue
        modules.append(path)
    return modules


@pytest.mark.parametrize("module", core_modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_does_no_io(module: Path) -> None:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"imports {name}"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            assert name not in FORBIDDEN_CALLS, f"calls {name}() at line {node.lineno}"
            assert name not in {"read_text", "write_text", "read_bytes", "write_bytes"}, name


@pytest.mark.parametrize("module", core_modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_imports_no_edge(module: Path) -> None:
    """The core decides; the edges do I/O and call into it, never the other way round."""
    edges = {f"metalserve.{package}" for package in EDGE_PACKAGES}
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            assert not any(name == e or name.startswith(e + ".") for e in edges), name


def _python_files() -> list[Path]:
    """The project's own code: not tests, generated flag sets and lock index, scripts, mutmut's
    copy of the tree (mutants/), or anything in a dot directory (.venv, .git) of the checkout."""
    skipped = {"tests", "flagsets", "scripts", "engine_lock_index.py", "mutants"}
    return [
        p
        for p in REPO.rglob("*.py")
        if not skipped & set(p.relative_to(REPO).parts)
        and not any(part.startswith(".") for part in p.relative_to(REPO).parts)
    ]


@pytest.mark.parametrize(
    "pin",
    [pins.VLLM, pins.SGLANG, pins.LLAMA_CPP, pins.LLAMA_CPP_PYTHON, pins.HUGGINGFACE_HUB],
    ids=lambda p: p.name,
)
def test_each_engine_pin_is_written_once(pin: pins.Pin) -> None:
    pattern = re.compile(re.escape(f'"{pin.version}"') + "|" + re.escape(f"'{pin.version}'"))
    places = [str(p.relative_to(REPO)) for p in _python_files() if pattern.search(p.read_text())]
    assert places == ["metalserve/catalog/pins.py"]


def test_templates_and_roles_state_no_nccl_value_of_their_own() -> None:
    offenders = []
    for path in [*REPO.glob("templates/*"), *REPO.glob("roles/**/*.py"), *REPO.glob("deploy/*.py")]:
        for match in re.finditer(r"NCCL_[A-Z_]+=\w+", path.read_text()):
            offenders.append(f"{path.relative_to(REPO)}: {match.group()}")
    assert not offenders


def _nvidia_package_names_in_use() -> set[str]:
    """Every NVIDIA package name the catalogue hands a role or the sandbox, on every distribution,
    flavour and module source."""
    from metalserve.catalog import nvidia_stack as ns

    stack = ns.NvidiaStackPins()
    names = {*ns.fabricmanager_virtual_packages(stack), ns.KEYRING_PACKAGE}
    for distro in ns.Distro:
        for flavor in ns.KernelModuleFlavor:
            for precompiled in (False, True):
                names |= set(ns.driver_packages(stack, distro, flavor, precompiled))
    for pin in (ns.driver_lock_pin(stack), ns.fabricmanager_pin(stack)):
        names |= set(pin.packages)
    names |= {*ns.cuda_pin(stack).packages, *ns.nccl_pin(stack).packages}
    return names


def test_every_nvidia_package_name_has_a_source() -> None:
    from metalserve.catalog import nvidia_stack as ns

    stack = ns.NvidiaStackPins()
    declared = {package.name(stack): package.source for package in ns.PACKAGE_NAMES}
    undeclared = sorted(_nvidia_package_names_in_use() - set(declared))
    assert undeclared == [], "spelled outside catalog.nvidia_stack.PACKAGE_NAMES"
    for name, source in declared.items():
        assert ns.SOURCES.get(source, "").strip(), f"{name}: no SOURCES[{source!r}]"


# The private field notes the project was written from; users of the project do not have them, so
# committed files cite the public source each note gives instead. Spelled in pieces so that this
# file does not match itself.
_PRIVATE_NOTES = tuple(
    "".join(parts)
    for parts in (
        ("shared", "/notes"), ("shared", "/seeds"), ("engine", "-facts"), ("nccl", "-facts"),
        ("sandbox", "-facts"), ("security", "-facts"), ("operator-pain", "points"),
        ("pain", "point"), ("pain", " point"),
    )
)  # fmt: skip


def _tracked_files() -> list[Path]:
    """The files git tracks in this checkout, or every file outside dot directories without git."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
        ).stdout.decode()
        return [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [
            p
            for p in REPO.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(REPO).parts)
        ]


def test_no_committed_file_cites_the_private_notes() -> None:
    fixtures = REPO / "tests" / "fixtures"
    offenders = []
    for path in _tracked_files():
        if path.is_relative_to(fixtures) or not path.is_file():
            continue
        for n, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1):
            found = [note for note in _PRIVATE_NOTES if note in line.lower()]
            if found:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {found[0]}")
    assert offenders == [], "cite the public source (URL, upstream file at a tag, issue) instead"
