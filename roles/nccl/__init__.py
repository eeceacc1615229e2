"""NCCL (``libnccl2``, ``libnccl-dev``) at the pinned build for the pinned CUDA.

install: pinned and held. activate: verified: the one ``libnccl.so.2`` on the system is the pin.
"""

from __future__ import annotations

from typing import Any

from metalserve.stack import NvidiaPlan
from roles.gpu_facts.facts import NvidiaNcclLibraries, read_fact
from roles.nvidia_driver.common import pinned_role


def library_problems(nvidia: NvidiaPlan, on: Any) -> list[str]:
    """Exactly the pinned NCCL library is installed (a second copy is how nodes drift apart)."""
    wanted = nvidia.pins.nccl_version.split("-", 1)[0]
    found = read_fact(NvidiaNcclLibraries, on=on)
    if set(found.values()) == {wanted}:
        return []
    listing = ", ".join(f"{path} ({version})" for path, version in found.items()) or "none"
    return [
        f"NCCL: expected libnccl.so.{wanted} only, found {listing} — fix: remove the other copies "
        "so every node loads the same NCCL"
    ]


install, activate = pinned_role(
    lambda nvidia: nvidia.nccl_pin,
    "nccl",
    lambda nvidia: f"NCCL {nvidia.pins.nccl_version}",
    library_problems,
)
