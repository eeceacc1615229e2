"""The engines' locked environments: one hashed requirements file per engine release, Python and CPU
architecture the inventories run on, resolved by ``scripts/lock_engines.py`` (``uv pip compile
--generate-hashes``) and kept under ``locks/``.

A host installs its engine from the lock of its own Python and architecture, with pip's
``--require-hashes``: the same wheels on every host of a site, and nothing unpinned below the engine.
A target the release publishes no wheels for is kept too, with the resolver's reason, so the plan can
refuse it in one line.

Example::

    lock = lock_for("vllm", pins.VLLM.version, "3.11", "x86_64")
    lock.path, lock.cuda_major   # ('locks/vllm-<version>-py3.11-x86_64.txt', 13)
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from metalserve.catalog import engine_lock_index, pins
from metalserve.hardware import Frozen

Arch = Literal["x86_64", "aarch64"]
"""CPU architectures as ``uname -m`` (and Python's ``platform.machine()``) name them."""


LOCKED: tuple[pins.Pin, ...] = (pins.VLLM, pins.SGLANG)
"""The engines installed from PyPI, so locked (llama.cpp is built from its source)."""


class LockTarget(Frozen):
    """An operating system the inventories run engines on: its Python and C library."""

    distro: str
    python: str = Field(description="the distribution's python3, major.minor")
    arch: Arch
    glibc: str = Field(description="the distribution's glibc, as a manylinux tag: 2_35")
    source: str


TARGETS: tuple[LockTarget, ...] = (
    LockTarget(
        distro="Ubuntu 22.04",
        python="3.10",
        arch="x86_64",
        glibc="2_35",
        source="packages.ubuntu.com/jammy: python3 3.10.6-1~22.04, libc6 2.35-0ubuntu3",
    ),
    LockTarget(
        distro="Debian 12",
        python="3.11",
        arch="x86_64",
        glibc="2_36",
        source="packages.debian.org/bookworm: python3 3.11.2-1+b1, libc6 2.36-9+deb12u*",
    ),
    LockTarget(
        distro="Ubuntu 24.04",
        python="3.12",
        arch="x86_64",
        glibc="2_39",
        source="packages.ubuntu.com/noble: python3 3.12.3-0ubuntu2, libc6 2.39-0ubuntu8",
    ),
    LockTarget(
        distro="DGX OS 7 (Ubuntu 24.04, arm64)",
        python="3.12",
        arch="aarch64",
        glibc="2_39",
        source=(
            "DGX Spark ships DGX OS 7, NVIDIA's Ubuntu 24.04 image for arm64 (DGX Spark User Guide, "
            "docs.nvidia.com/dgx/dgx-spark/; 'ARM64 (aarch64) with Ubuntu 24.04 and CUDA 13.0', "
            "beclab/Olares#2347): noble's python3 3.12.3 and libc6 2.39 as above"
        ),
    ),
)
"""Every (Python, architecture) an engine is locked for. Ubuntu 24.04 on x86_64 and DGX OS share a
Python but not an architecture, so each pair names one target."""


class EngineLock(Frozen):
    """One engine release locked for one target, or the reason it cannot be."""

    engine: str
    version: str
    python: str
    arch: Arch
    path: str = Field(description="the lock, relative to the project root")
    sha256: str | None = Field(description="of the lock file; None where it did not resolve")
    cuda_major: int | None = Field(description="the CUDA runtime its torch wheels load")
    unavailable: str | None = Field(
        default=None, description="the resolver's reason where no lock exists"
    )

    @property
    def target(self) -> str:
        return f"Python {self.python} on {self.arch}"


def lock_name(engine: str, version: str, python: str, arch: str) -> str:
    """``vllm-0.33.0-py3.11-x86_64.txt``."""
    return f"{engine}-{version}-py{python}-{arch}.txt"


_CUDA_RUNTIME = re.compile(
    r"^nvidia-cuda-runtime(?:-cu(?P<suffix>\d+))?==(?P<version>\d+)[.\d]*", re.MULTILINE
)


def cuda_major_of(lock_text: str) -> int | None:
    """The CUDA major of the runtime a lock installs: ``nvidia-cuda-runtime==13.0.96`` (CUDA 13
    wheels drop the suffix) or ``nvidia-cuda-runtime-cu12==12.8.90``; None for a lock without one.

    Example::

        >>> cuda_major_of("nvidia-cuda-runtime-cu12==12.8.90 \\\\")
        12
    """
    found = _CUDA_RUNTIME.search(lock_text)
    if found is None:
        return None
    return int(found["suffix"] or found["version"])


LOCKS: tuple[EngineLock, ...] = tuple(EngineLock(**row) for row in engine_lock_index.ROWS)
"""Every lock ``scripts/lock_engines.py`` wrote, with its hash (a test re-hashes the files)."""


def locks_for(engine: str, version: str) -> tuple[EngineLock, ...]:
    """Every target's lock of one engine release, resolved or not."""
    return tuple(lock for lock in LOCKS if (lock.engine, lock.version) == (engine, version))


def lock_for(engine: str, version: str, python: str, arch: str) -> EngineLock | None:
    return next(
        (lock for lock in locks_for(engine, version) if (lock.python, lock.arch) == (python, arch)),
        None,
    )
