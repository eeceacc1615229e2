"""Stand-in NVIDIA packages, so the driver roles' apt work runs for real on sandbox hosts.

NVIDIA's repository cannot be reached from here, and the hosts have no GPU. What the roles do with
apt — a site repository, pins in ``/etc/apt/preferences.d``, an exact-version install, holds — only
needs packages with NVIDIA's names and versions. Each stand-in is an empty package (a README saying
what it is) except where a verification reads a file: ``cuda-toolkit-<x>-<y>`` carries the
toolkit's ``version.json`` and the ``/usr/local/cuda`` link, ``libnccl2`` a file named like the
library. Every pinned package is offered at its pin and, to prove the pin wins, at a newer version.

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
    driver_pin,
    fabricmanager_pin,
    nccl_pin,
)
from metalserve.sandbox.aptrepo import index_flat_repo
from metalserve.sandbox.system import run

NEWER_DRIVER = "580.126.20"
"""A later release of the pinned branch, offered beside the pin (and refused by it)."""

NEWER_NCCL = "2.29.2-1+cuda{cuda}"


class StandIn(BaseModel):
    """One .deb to build: name, version, and the files it carries (path → content)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    files: dict[str, str] = {}
    links: dict[str, str] = {}


def stack_pins(pins: NvidiaStackPins, distro: Distro = Distro.DEBIAN_12) -> tuple[AptPin, ...]:
    """The pins the stand-ins serve: driver (open module), fabric manager, CUDA, NCCL."""
    return (
        driver_pin(pins, distro, KernelModuleFlavor.OPEN),
        fabricmanager_pin(pins),
        cuda_pin(pins),
        nccl_pin(pins),
    )


def _concrete(pin: AptPin) -> str:
    """A Debian version a pin pattern accepts (``580.105.08-*`` → ``580.105.08-1``)."""
    return pin.version.replace("*", "1")


def standins(pins: NvidiaStackPins, distro: Distro = Distro.DEBIAN_12) -> tuple[StandIn, ...]:
    """The stand-ins for ``pins`` on ``distro``: each pinned package at its pin, and the driver,
    fabric manager and NCCL packages at a newer upstream version too."""
    driver, fabric, toolkit, nccl = stack_pins(pins, distro)
    newer = stack_pins(pins.model_copy(update={"driver_version": NEWER_DRIVER}), distro)
    out: list[StandIn] = []
    for pin, later in ((driver, newer[0]), (fabric, newer[1])):
        for version in (_concrete(pin), _concrete(later)):
            out += [StandIn(name=name, version=version) for name in pin.packages]
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
    return (
        f"Package: {standin.name}\nVersion: {standin.version}\nArchitecture: amd64\n"
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
