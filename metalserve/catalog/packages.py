"""Debian/Ubuntu packages each serving path needs on the host (names valid on Debian 12 and
Ubuntu 22.04/24.04)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BASE: tuple[str, ...] = ("ca-certificates", "curl", "python3-venv", "procps")
"""curl: health checks and the keep-warm timer; python3-venv: engine, converter and hub venvs;
procps: ps/pgrep for operators and checks on the engine process."""

LLAMACPP_BUILD: tuple[str, ...] = ("build-essential", "cmake", "ccache")
"""llama.cpp's CPU build (CMake, ggml-org/llama.cpp docs/build.md); ccache makes a rebuild after a
driver upgrade cheap."""


FIREWALL: tuple[str, ...] = ("nftables",)
"""``nft``: metalserve's own table for the serving and rendezvous ports (Debian 12 and Ubuntu
22.04/24.04 ship nftables 1.0.x)."""


PUSH: tuple[str, ...] = ("rsync",)
"""rsync: how bundle contents reach a host (``roles.push``, rsync(1):
https://download.samba.org/pub/rsync/rsync.1), on hosts whose inputs come from a bundle; the
bundle's own repository holds it."""


def packages_for(engine: str) -> tuple[str, ...]:
    return BASE + (LLAMACPP_BUILD if engine == "llamacpp" else ())


class DistroRelease(BaseModel):
    """What a bundle built off-site must know of a host release: its archive, its python3 and its
    glibc (the manylinux tag its wheels may carry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str
    glibc: str
    suite: str
    archive: str
    ports_archive: str = Field(description="the archive for arm64 (Ubuntu keeps it apart)")
    security: str
    components: tuple[str, ...]
    keyring: str = Field(description="the archive's signing keys on a Debian/Ubuntu machine")
    source: str


_DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"


def _ubuntu(python: str, glibc: str, suite: str, source: str) -> DistroRelease:
    return DistroRelease(
        python=python,
        glibc=glibc,
        suite=suite,
        archive="http://archive.ubuntu.com/ubuntu",
        ports_archive="http://ports.ubuntu.com/ubuntu-ports",
        security="http://security.ubuntu.com/ubuntu",
        components=("main", "universe"),
        keyring=_UBUNTU_KEYRING,
        source=source,
    )


RELEASES: dict[str, DistroRelease] = {
    "ubuntu2204": _ubuntu(
        "3.10",
        "2.35",
        "jammy",
        "packages.ubuntu.com/jammy: python3 3.10.6-1~22.04, libc6 2.35-0ubuntu3",
    ),
    "ubuntu2404": _ubuntu(
        "3.12",
        "2.39",
        "noble",
        "packages.ubuntu.com/noble: python3 3.12.3-0ubuntu1, libc6 2.39-0ubuntu8",
    ),
    "debian12": DistroRelease(
        python="3.11",
        glibc="2.36",
        suite="bookworm",
        archive="http://deb.debian.org/debian",
        ports_archive="http://deb.debian.org/debian",
        security="http://deb.debian.org/debian-security",
        components=("main",),
        keyring=_DEBIAN_KEYRING,
        source="packages.debian.org/bookworm: python3 3.11.2-1+b1, libc6 2.36-9+deb12u*",
    ),
}
"""Keyed by the release names NVIDIA's CUDA repository uses (``metalserve.catalog.nvidia_stack.
Distro``). Ubuntu keeps arm64 on ports.ubuntu.com (wiki.ubuntu.com/ARM); security updates come
from ``<suite>-security`` (security.ubuntu.com on amd64, the ports archive on arm64;
deb.debian.org/debian-security for Debian)."""
