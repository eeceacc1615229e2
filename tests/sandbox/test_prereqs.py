"""What an operator sees when the control host lacks a tool or root."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from metalserve.sandbox import prereqs
from metalserve.sandbox.cli import sandbox_group
from metalserve.sandbox.errors import PrerequisiteError
from metalserve.sandbox.prereqs import PREREQUISITES, check_prerequisites


def test_missing_tools_are_named_with_the_one_install_command() -> None:
    absent = {"debootstrap", "systemd-nspawn", "dpkg-scanpackages"}
    with pytest.raises(PrerequisiteError) as info:
        check_prerequisites(
            which=lambda c: None if c in absent else f"/usr/bin/{c}", geteuid=lambda: 0
        )
    assert info.value.message == (
        "sandbox needs debootstrap, systemd-nspawn, dpkg-scanpackages "
        "(Debian packages debootstrap, systemd-container, dpkg-dev); found them missing "
        "— fix: apt-get install -y debootstrap systemd-container dpkg-dev"
    )
    assert info.value.exit_code == 2


def test_a_package_is_named_once_even_when_it_provides_two_missing_tools() -> None:
    with pytest.raises(PrerequisiteError, match=r"fix: apt-get install -y openssh-client$"):
        check_prerequisites(
            which=lambda c: None if c.startswith("ssh") else "/bin/x", geteuid=lambda: 0
        )


def test_not_being_root_is_reported_before_tools() -> None:
    with pytest.raises(
        PrerequisiteError, match=r"^sandbox needs root .* found uid 1000 — fix: run it as root"
    ):
        check_prerequisites(which=lambda c: None, geteuid=lambda: 1000)


def test_every_prerequisite_names_a_package() -> None:
    assert all(p.package for p in PREREQUISITES)
    assert {p.package for p in PREREQUISITES} >= {
        "debootstrap",
        "systemd-container",
        "zstd",
        "dpkg-dev",
        "iproute2",
    }


@pytest.mark.parametrize("args", [["up", "-n", "1"], ["down"]])
def test_the_cli_prints_one_line_and_exits_2_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setattr(prereqs.shutil, "which", lambda c: None if c == "debootstrap" else "/bin/x")
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 0)
    result = CliRunner().invoke(sandbox_group, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: sandbox needs debootstrap (Debian package debootstrap); found it missing — fix: apt-get install -y debootstrap"
    ]


def test_the_cli_refuses_a_host_count_out_of_range() -> None:
    result = CliRunner().invoke(sandbox_group, ["up", "-n", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
