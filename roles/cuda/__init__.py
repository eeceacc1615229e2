"""The CUDA toolkit at the pinned ``major.minor`` (llama.cpp and nccl-tests build against it).

install: ``cuda-toolkit-<major>-<minor>`` pinned and held. activate: verified: the toolkit is under
``/usr/local/cuda-<major>.<minor>`` and ``/usr/local/cuda`` points to it.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages

from metalserve.catalog.nvidia_stack import NvidiaStackPins, cuda_pin, packages_off_pin
from metalserve.plan import HostPlan
from roles.gpu_facts.facts import NvidiaCudaToolkits, read_fact
from roles.nvidia_driver.common import install_pinned, verify


def toolkit_problems(pins: NvidiaStackPins, on: Any) -> list[str]:
    """The default toolkit is the pinned one."""
    toolkits = read_fact(NvidiaCudaToolkits, on=on)
    found = toolkits.default_version
    if found is not None and (found + ".").startswith(pins.cuda_version + "."):
        return []
    return [
        f"CUDA toolkit: expected {pins.cuda_version} at /usr/local/cuda, found "
        f"{found or 'none'} ({toolkits.default_path or 'no /usr/local/cuda'}) — fix: "
        f"update-alternatives --set cuda /usr/local/cuda-{pins.cuda_version}"
    ]


@deploy("CUDA toolkit: packages")
def install(plan: HostPlan) -> None:
    if plan.profile.gpu is not None:
        install_pinned(cuda_pin(plan.spec.nvidia.pins), "cuda-toolkit", plan.spec.sources.apt)


@deploy("CUDA toolkit: verify")
def activate(plan: HostPlan) -> None:
    if plan.profile.gpu is None:
        return
    pins = plan.spec.nvidia.pins
    changes = bool(packages_off_pin(cuda_pin(pins), read_fact(DebPackages)))
    verify(
        "cuda",
        f"CUDA toolkit {pins.cuda_version}",
        lambda on: toolkit_problems(pins, on),
        after_changes=changes,
    )
