"""The CUDA toolkit at the pinned ``major.minor`` (llama.cpp and nccl-tests build against it).

install: ``cuda-toolkit-<major>-<minor>`` pinned and held. activate: verified: the toolkit is under
``/usr/local/cuda-<major>.<minor>`` and ``/usr/local/cuda`` points to it.
"""

from __future__ import annotations

from typing import Any

from metalserve.stack import NvidiaPlan
from roles.gpu_facts.facts import NvidiaCudaToolkits, read_fact
from roles.nvidia_driver.common import pinned_role


def toolkit_problems(nvidia: NvidiaPlan, on: Any) -> list[str]:
    """The default toolkit is the pinned one."""
    pins = nvidia.pins
    toolkits = read_fact(NvidiaCudaToolkits, on=on)
    found = toolkits.default_version
    if found is not None and (found + ".").startswith(pins.cuda_version + "."):
        return []
    return [
        f"CUDA toolkit: expected {pins.cuda_version} at /usr/local/cuda, found "
        f"{found or 'none'} ({toolkits.default_path or 'no /usr/local/cuda'}) — fix: "
        f"update-alternatives --set cuda /usr/local/cuda-{pins.cuda_version}"
    ]


install, activate = pinned_role(
    lambda nvidia: nvidia.cuda_pin,
    "cuda-toolkit",
    lambda nvidia: f"CUDA toolkit {nvidia.pins.cuda_version}",
    toolkit_problems,
)
