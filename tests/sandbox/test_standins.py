"""The sandbox's stand-in NVIDIA packages come from the catalogue — names, versions, virtual names —
and the real apt treats them as it treats NVIDIA's R580 repository: the pre-580 fabric manager
names cannot be installed at a version, and with metalserve's pins a dist-upgrade that offers a
newer release and a newer branch moves nothing."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from metalserve.catalog.nvidia_stack import (
    Distro,
    NvidiaStackPins,
    fabricmanager_packages,
    fabricmanager_virtual_packages,
    packages_off_pin,
)
from metalserve.sandbox.standins import (
    NEWER_BRANCH_DRIVER,
    NEWER_DRIVER,
    StandIn,
    stack_pins,
    standins,
)
from tests.aptsim import AptRoot, installed, needs_apt, stanza

PINS = NvidiaStackPins()


def _stanza(standin: StandIn) -> str:
    return stanza(standin.name, standin.version, standin.provides)


def _at_pin(distro: Distro) -> dict[str, str]:
    """Each pinned package's stand-in version that its pin accepts: what a deployed host has."""
    offered = standins(PINS, distro)
    return {
        name: next(
            s.version
            for s in offered
            if s.name == name and fnmatch.fnmatchcase(s.version, pin.version)
        )
        for pin in stack_pins(PINS, distro)
        for name in pin.packages
    }


@pytest.mark.parametrize("distro", list(Distro))
def test_every_pinned_package_is_offered_at_its_pin(distro: Distro) -> None:
    offered: dict[str, list[str]] = {}
    for standin in standins(PINS, distro):
        offered.setdefault(standin.name, []).append(standin.version)
    for pin in stack_pins(PINS, distro):
        assert packages_off_pin(pin, offered) == (), pin


def test_the_driver_is_offered_at_a_newer_release_and_a_newer_branch() -> None:
    versions = {s.version for s in standins(PINS) if s.name == "nvidia-driver-cuda"}
    assert versions == {f"{PINS.driver_version}-1", f"{NEWER_DRIVER}-1", f"{NEWER_BRANCH_DRIVER}-1"}


def test_fabric_manager_stand_ins_provide_the_pre_580_names_as_virtual_packages() -> None:
    fm = [s for s in standins(PINS) if s.version == f"{PINS.driver_version}-1" and s.provides]
    assert {s.name for s in fm} == set(fabricmanager_packages(PINS))
    assert {p for s in fm for p in s.provides} == set(fabricmanager_virtual_packages(PINS))
    assert {"nvidia-fabricmanager-580", "libnvidia-nscq-580"} == set(
        fabricmanager_virtual_packages(PINS)
    )


@needs_apt
def test_the_pre_580_names_cannot_be_installed_at_the_driver_version(tmp_path: Path) -> None:
    apt = AptRoot(tmp_path, offered=[_stanza(s) for s in standins(PINS)])
    for old, new in zip(
        fabricmanager_virtual_packages(PINS), fabricmanager_packages(PINS), strict=True
    ):
        refused = apt.simulate("install", f"{old}={PINS.driver_version}-1")
        assert refused.returncode != 0, refused.stdout
        assert apt.candidate(old) == "(none)"  # a pin on it has nothing to hold
        taken = apt.simulate("install", f"{new}={PINS.driver_version}-1")
        assert taken.returncode == 0, taken.stderr
        assert f"Inst {new} ({PINS.driver_version}-1" in taken.stdout


@needs_apt
@pytest.mark.parametrize("distro", list(Distro))
def test_a_dist_upgrade_offered_a_newer_release_and_branch_moves_nothing(
    tmp_path: Path, distro: Distro
) -> None:
    offered = [_stanza(s) for s in standins(PINS, distro)]
    status = [installed(stanza(n, v)) for n, v in _at_pin(distro).items()]
    preferences = [pin.preferences() for pin in stack_pins(PINS, distro)]
    apt = AptRoot(tmp_path / "pinned", offered, status, preferences)
    upgrade = apt.simulate("dist-upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert [line for line in upgrade.stdout.splitlines() if line.startswith("Inst ")] == []
    # the same host without metalserve's pins would move: the test can tell the difference
    unpinned = AptRoot(tmp_path / "unpinned", offered, status).simulate("dist-upgrade")
    assert f"({NEWER_BRANCH_DRIVER}-1" in unpinned.stdout or f"({NEWER_DRIVER}-1" in unpinned.stdout
