"""NCCL (``libnccl2``, ``libnccl-dev``) at the pinned build for the pinned CUDA.

install: pinned and held. activate: verified: the one ``libnccl.so.2`` on the system is the pin.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages

from metalserve.catalog.nvidia_stack import NvidiaStackPins, nccl_pin, packages_off_pin
from metalserve.plan import HostPlan
from roles.gpu_facts.facts import NvidiaNcclLibraries, read_fact
from roles.nvidia_driver.common import install_pinned, verify


def library_problems(pins: NvidiaStackPins, on: Any) -> list[str]:
    """Exactly the pinned NCCL library is installed (a second copy is how nodes drift apart)."""
    wanted = pins.nccl_version.split("-", 1)[0]
    found = read_fact(NvidiaNcclLibraries, on=on)
    if set(found.values()) == {wanted}:
        return []
    listing = ", ".join(f"{path} ({version})" for path, version in found.items()) or "none"
    return [
        f"NCCL: expected libnccl.so.{wanted} only, found {listing} — fix: remove the other copies "
        "so every node loads the same NCCL"
    ]


@deploy("NCCL: packages")
def install(plan: HostPlan) -> None:
    if plan.profile.gpu is not None:
        install_pinned(nccl_pin(plan.spec.nvidia.pins), "nccl", plan.spec.sources.apt)


@deploy("NCCL: verify")
def activate(plan: HostPlan) -> None:
    if plan.profile.gpu is None:
        return
    pins = plan.spec.nvidia.pins
    changes = bool(packages_off_pin(nccl_pin(pins), read_fact(DebPackages)))
    verify(
        "nccl",
        f"NCCL {pins.nccl_version}",
        lambda on: library_problems(pins, on),
        after_changes=changes,
    )
