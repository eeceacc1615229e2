"""Stand-in NVIDIA packages, so the driver roles' apt work runs for real on sandbox hosts.

NVIDIA's repository cannot be reached from here, and the hosts have no GPU. What the roles do with
apt — a site repository, pins in ``/etc/apt/preferences.d``, an exact-version install, holds — only
needs packages with NVIDIA's names, versions and virtual names, all from the catalogue. Each
stand-in is an empty package (a README saying what it is) except where a verification reads a file:
``cuda-toolkit-<x>-<y>`` carries the toolkit's ``version.json`` and the ``/usr/local/cuda`` link,
``libnccl2`` a file named like the library. Every pinned package is offered at its pin and, to prove
the pin wins, at a newer release of the branch and, for the driver, fabric manager and NVIDIA's
pinning package, at a newer branch. Fabric manager and NSCQ provide their pre-R580 names as virtual
packages, as NVIDIA's R580 repository does: installing those names at a version, pinning or holding
them fails here too. NVIDIA's pinning package is a stand-in without its preferences file (its content was not read;
see the catalogue's SOURCES["driver_pinning"]): metalserve's own pins hold the sandbox.

The repository is the sandbox's own flat repository plus the stand-ins, cached under
``${METALSERVE_CACHE}/apt-nvidia-standins/<key>`` (key: the pins and the base repository).

Example::

    repo = standin_repo(base_repo=Path("/srv/apt"), suite="bookworm")
    fileserver.serve_dir(layout, "apt-nvidia", repo)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from metalserve.artefacts.cache import cached_build
from metalserve.catalog.nvidia_stack import (
    AptPin,
    Distro,
    KernelModuleFlavor,
    NvidiaStackPins,
    cuda_pin,
    driver_lock_pin,
    driver_pin,
    fabricmanager_pin,
    fabricmanager_virtual_packages,
    nccl_pin,
)
from metalserve.sandbox.aptrepo import index_flat_repo
from metalserve.sandbox.system import run

NEWER_DRIVER = "580.126.20"
"""A later release of the pinned branch, offered beside the pin (and refused by it)."""

NEWER_BRANCH_DRIVER = "590.48.01"
"""A release of the next branch (nvidia-driver-pinning-590.48.01 in NVIDIA's sbsa repository,
dsx-ai-factory/infra-controller#6049), offered under the same unversioned Debian names: the
drift the product exists to prevent."""

NEWER_NCCL = "2.29.2-1+cuda{cuda}"


class StandIn(BaseModel):
    """One .deb to build: name, version, and the files it carries (path → content)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    provides: tuple[str, ...] = ()
    files: dict[str, str] = {}
    links: dict[str, str] = {}


def stack_pins(pins: NvidiaStackPins, distro: Distro = Distro.DEBIAN_12) -> tuple[AptPin, ...]:
    """The pins the stand-ins serve: NVIDIA's pinning package, driver (open module), fabric manager,
    CUDA, NCCL."""
    return (
        driver_lock_pin(pins),
        driver_pin(pins, distro, KernelModuleFlavor.OPEN),
        fabricmanager_pin(pins),
        cuda_pin(pins),
        nccl_pin(pins),
    )


def _concrete(pin: AptPin) -> str:
    """A Debian version a pin pattern accepts (``580.105.08-*`` → ``580.105.08-1``)."""
    return pin.version.replace("*", "1")


def _driver_standins(pins: NvidiaStackPins, distro: Distro) -> list[StandIn]:
    """NVIDIA's pinning package, the driver and fabric manager for one driver release; fabric
    manager and NSCQ provide their pre-R580 names."""
    lock, driver, fabric = stack_pins(pins, distro)[:3]
    out = [
        StandIn(name=name, version=_concrete(pin))
        for pin in (lock, driver)
        for name in pin.packages
    ]
    virtual = fabricmanager_virtual_packages(pins)
    out += [
        StandIn(name=name, version=_concrete(fabric), provides=(old,))
        for name, old in zip(fabric.packages, virtual, strict=True)
    ]
    return out


def standins(pins: NvidiaStackPins, distro: Distro = Distro.DEBIAN_12) -> tuple[StandIn, ...]:
    """The stand-ins for ``pins`` on ``distro``: each pinned package at its pin, and the driver,
    fabric manager and NCCL packages at a newer release (the driver's also of a newer branch)."""
    toolkit, nccl = stack_pins(pins, distro)[3:]
    out: list[StandIn] = []
    for release in (pins.driver_version, NEWER_DRIVER, NEWER_BRANCH_DRIVER):
        out += _driver_standins(pins.model_copy(update={"driver_version": release}), distro)
    toolkit_dir = f"/usr/local/cuda-{pins.cuda_version}"
    release = f"{pins.cuda_version}.2"
    out.append(
        StandIn(
            name=toolkit.packages[0],
            version=f"{release}-1",
            files={
                f"{toolkit_dir}/version.json": json.dumps(
                    {"cuda": {"name": "CUDA SDK", "version": release}}, indent=3
                )
                + "\n"
            },
            links={"/usr/local/cuda": toolkit_dir},
        )
    )
    for version in (nccl.version, NEWER_NCCL.format(cuda=pins.cuda_version)):
        library = version.split("-", 1)[0]
        out.append(
            StandIn(
                name="libnccl2",
                version=version,
                files={f"/usr/lib/x86_64-linux-gnu/libnccl.so.{library}": ""},
            )
        )
        out.append(StandIn(name="libnccl-dev", version=version))
    return tuple(out)


def _control(standin: StandIn) -> str:
    provides = f"Provides: {', '.join(standin.provides)}\n" if standin.provides else ""
    return (
        f"Package: {standin.name}\nVersion: {standin.version}\nArchitecture: amd64\n{provides}"
        "Maintainer: metalserve sandbox <sandbox@metalserve.invalid>\nSection: metalserve-standin\n"
        "Priority: optional\n"
        f"Description: metalserve sandbox stand-in for NVIDIA's {standin.name}\n"
        " Empty but for what a metalserve verification reads; never install outside the sandbox.\n"
    )


def build_deb(standin: StandIn, out_dir: Path) -> Path:
    """``dpkg-deb --build`` one stand-in into ``out_dir``."""
    tree = out_dir / f".tree-{standin.name}-{standin.version}"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(_control(standin))
    readme = tree / "usr/share/doc" / standin.name / "README.metalserve-standin"
    readme.parent.mkdir(parents=True)
    readme.write_text("A metalserve sandbox stand-in: see metalserve/sandbox/standins.py\n")
    for path, content in standin.files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    for path, target_path in standin.links.items():
        link = tree / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target_path)
    deb = out_dir / f"{standin.name}_{standin.version.replace(':', '%3a')}_amd64.deb"
    run(
        ["dpkg-deb", "--root-owner-group", "--build", tree, deb],
        what=f"build the stand-in {standin.name} {standin.version}",
        fix="install dpkg (dpkg-deb), then retry",
        timeout=120,
    )
    shutil.rmtree(tree)
    return deb


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def standin_repo(base_repo: Path, suite: str, pins: NvidiaStackPins | None = None) -> Path:
    """The sandbox's flat repository plus the stand-ins for ``pins``, built once and cached."""
    pins = pins or NvidiaStackPins()
    wanted = standins(pins)
    inputs = {
        "pins": pins.model_dump(mode="json"),
        "standins": [s.model_dump(mode="json") for s in wanted],
        "base_release": hashlib.sha256((base_repo / "Release").read_bytes()).hexdigest(),
        "suite": suite,
    }

    def build(folder: Path) -> dict[str, object]:
        for deb in sorted(base_repo.glob("*.deb")):
            _link_or_copy(deb, folder / deb.name)
        for standin in wanted:
            build_deb(standin, folder)
        index_flat_repo(folder, suite)
        return {"standins": len(wanted)}

    return cached_build("apt-nvidia-standins", inputs, build).path
