"""The OS release, architecture and Python a host runs, as inputs prepared off-site must know them.

A deploy reads these from the host itself; a bundle is built before any host is reachable, so the
inventory says them (``metalserve.os``). Where it does not, a bundle is built for every release
metalserve supports on the architecture the hardware implies.

Example::

    Target(release=Distro.DEBIAN_12, arch="amd64").wheel_tag   # 'cp311-manylinux_2_36_x86_64'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from metalserve.catalog.nvidia_stack import Distro
from metalserve.catalog.packages import RELEASES, DistroRelease
from metalserve.hardware import Frozen, HardwareProfile

Arch = Literal["amd64", "arm64"]
"""Debian architecture names (``dpkg --print-architecture``) of the hosts metalserve serves on."""

KernelRelease = Annotated[
    str, StringConstraints(pattern=r"^\d+\.\d+\.\d+-\d+-[a-z0-9-]+$", max_length=100)
]

_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
"""The machine name a wheel's platform tag carries for each Debian architecture (PEP 600)."""

ARM64_GPUS = frozenset({"gb10"})
"""GPUs that come only in arm64 hosts: GB10 is the DGX Spark's Grace Blackwell superchip (NVIDIA
DGX Spark hardware overview: 20 Arm cores); every other catalogue GPU here sits in x86-64 servers."""


class HostOs(Frozen):
    """``metalserve.os`` in host data: what the host runs, for a bundle built off-site.

    Example (host data)::

        "os": {"release": "ubuntu2204", "arch": "amd64", "kernel": "5.15.0-126-generic"}
    """

    release: Distro
    arch: Arch = "amd64"
    kernel: KernelRelease | None = Field(
        default=None, description="the running kernel: its headers go into the bundle for DKMS"
    )


class Target(Frozen):
    """One OS release on one architecture: an apt repository and a Python of a bundle."""

    release: Distro
    arch: Arch

    @property
    def facts(self) -> DistroRelease:
        return RELEASES[self.release.value]

    @property
    def name(self) -> str:
        """``debian12-amd64``: the folder of its apt repository in a bundle."""
        return f"{self.release.value}-{self.arch}"

    @property
    def python(self) -> str:
        return self.facts.python

    @property
    def wheel_platform(self) -> str:
        """The newest manylinux tag the release's glibc runs (pip accepts every older one)."""
        return f"manylinux_{self.facts.glibc.replace('.', '_')}_{_MACHINE[self.arch]}"

    @property
    def wheel_platforms(self) -> tuple[str, ...]:
        """Every platform tag a wheel may carry to install here, newest first: PEP 600's
        ``manylinux_2_<minor>`` down to glibc 2.17, then ``manylinux2014`` (PEP 599, = 2.17).
        pip 23 takes a ``--platform`` literally, so each is named."""
        newest = int(self.facts.glibc.split(".")[1])
        machine = _MACHINE[self.arch]
        tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
        return (*tags, f"manylinux2014_{machine}")

    @property
    def wheel_tag(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.wheel_platform}"


def host_arch(hardware: HardwareProfile) -> Arch:
    """The architecture a host of this hardware runs when the inventory does not say."""
    return "arm64" if hardware.gpu is not None and hardware.gpu.id in ARM64_GPUS else "amd64"


def targets_of(declared: HostOs | None, hardware: HardwareProfile) -> tuple[Target, ...]:
    """The declared release, else every supported release on the hardware's architecture."""
    if declared is not None:
        return (Target(release=declared.release, arch=declared.arch),)
    arch = host_arch(hardware)
    return tuple(Target(release=release, arch=arch) for release in Distro)
