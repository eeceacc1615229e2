"""Deploying from a bundle: every input comes from it, and a bundle that lacks something stops the
deploy before any host is touched, naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalserve.catalog import pins
from metalserve.errors import MetalserveError, SpecError
from metalserve.io.inventory import plan_host_data
from metalserve.sources import SourceKind
from metalserve.spec import host_spec
from roles.packages import BUNDLE_DIR, BUNDLE_KEY, source_line
from tests.bundle.conftest import CPU_HOST, fake_bundle, needs_of
from tests.opcases import run_case

DEBIAN_12 = {"name": "Debian", "major": 12, "minor": None}


def _data(root: Path) -> dict:
    return {**CPU_HOST, "sources": {"bundle": str(root)}}


def test_every_input_is_taken_from_the_bundle(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    fake_bundle(root, needs_of({"node-1": CPU_HOST}))
    (plan,) = plan_host_data({"node-1": _data(root)})
    assert plan.packages.apt.kind is SourceKind.BUNDLE
    assert plan.engine.python.wheelhouse == f"{root}/wheels"
    assert plan.llamacpp is not None
    assert plan.llamacpp.source.path == f"{root}/sources/llama.cpp-{pins.LLAMA_CPP.version}.tar.gz"
    assert (
        plan.weights is not None
        and plan.weights.source.path == f"{root}/models/metalserve--tiny-moe"
    )


def test_a_gpu_host_builds_nccl_tests_from_the_bundle(tmp_path: Path) -> None:
    data = {"profile": "h200-sxm-8", "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
            "engine": {"name": "vllm", "tensor_parallel_size": 8},
            "sources": {"bundle": str(tmp_path)}}  # fmt: skip
    from metalserve.io.inventory import plan_specs

    (plan,) = plan_specs([host_spec("gpu01", data)])
    assert plan.diag is not None
    assert plan.diag.source.kind == "local"
    assert (
        plan.diag.source.path == f"{tmp_path}/sources/nccl-tests-{pins.NCCL_TESTS.version}.tar.gz"
    )


def test_a_bundle_and_another_apt_source_is_refused_in_one_line(tmp_path: Path) -> None:
    data = {**CPU_HOST, "sources": {"bundle": str(tmp_path), "apt": {"kind": "online"}}}
    with pytest.raises(SpecError, match=r"sources: .*apt is set too — fix: remove it"):
        host_spec("node-1", data)


def test_the_bundle_repository_is_checked_against_the_bundle_key() -> None:
    from metalserve.sources import AptSource

    line = source_line(AptSource(kind=SourceKind.BUNDLE, path="/srv/bundle"))
    assert line == f"deb [signed-by={BUNDLE_KEY}] file:{BUNDLE_DIR} ./\n"
    assert "trusted=yes" not in line


def test_a_missing_input_stops_the_deploy_before_any_host_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    needs = needs_of({"node-1": CPU_HOST})
    fake_bundle(root, needs)
    (root / "sources" / f"llama.cpp-{pins.LLAMA_CPP.version}.tar.gz").write_bytes(b"cut")
    manifest = (root / "bundle.json").read_text()
    (root / "bundle.json").write_text(
        manifest.replace('"id": "weights/metalserve/tiny-moe"', '"id": "weights/other/model"')
    )
    with pytest.raises(MetalserveError) as raised:
        plan_host_data({"node-1": _data(root)})
    message = str(raised.value)
    assert "\n" not in message
    assert "weights/metalserve/tiny-moe: not in the bundle" in message
    assert f"sources/llama.cpp-{pins.LLAMA_CPP.version}.tar.gz: truncated" in message


def _packages_case(root: Path, distribution: dict) -> list[str]:
    return run_case(
        {
            "role": "roles.packages",
            "phases": ["install"],
            "host_data": {"metalserve": _data(root)},
            "facts": {
                "server.LinuxDistribution": distribution,
                "deb.DebArch": "amd64",
                "server.TmpDir": "/tmp",
                "files.File": {"*": None},
                "files.Directory": {"*": None},
                "files.Link": {"*": None},
                "files.FindInFile": {"*": []},
                "files.Sha1File": {"*": None},
                "files.FindFiles": {"*": []},
                "files.FindLinks": {"*": []},
                "files.FindDirectories": {"*": []},
                "deb.DebPackages": {},
                "server.Which": {"command=rsync": None},  # a fresh host: files.sync, see roles.push
            },
        }
    )


def test_the_packages_role_pushes_the_key_and_the_repository_of_the_hosts_release(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bundle"
    fake_bundle(root, needs_of({"node-1": CPU_HOST}))
    commands = _packages_case(root, DEBIAN_12)
    assert f"upload {root}/keys/metalserve-bundle.gpg -> {BUNDLE_KEY}" in commands
    assert f"upload {root}/apt/debian12-amd64/InRelease -> {BUNDLE_DIR}/InRelease" in commands


def test_a_host_of_a_release_the_bundle_lacks_is_refused_before_any_change(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    fake_bundle(root, needs_of({"node-1": CPU_HOST}))
    with pytest.raises(
        MetalserveError, match="expected a signed package repository for ubuntu2204-amd64"
    ):
        _packages_case(root, {"name": "Ubuntu", "major": 22, "minor": 4})


def test_a_host_deploying_from_a_bundle_gets_rsync_from_it(tmp_path: Path) -> None:
    """The bundle is carried onto the hosts with rsync (roles.push): a bundle holds it even when
    built from an inventory that does not name the bundle yet, and a host deploying from the
    bundle installs it; an online host is not given it."""
    root = tmp_path / "bundle"
    needs = needs_of({"node-1": CPU_HOST})
    fake_bundle(root, needs)
    (distro,) = [i for i in needs.inputs if i.id == "apt/debian12-amd64/distro"]
    assert "rsync" in distro.items
    (plan,) = plan_host_data({"node-1": _data(root)})
    assert "rsync" in plan.packages.names
    (online,) = plan_host_data({"node-1": CPU_HOST})
    assert "rsync" not in online.packages.names
