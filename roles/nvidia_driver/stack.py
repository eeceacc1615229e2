"""The whole NVIDIA stack of a GPU host, role by role, phase by phase (what deploy/drivers.py runs).

Example::

    from roles.nvidia_driver import stack
    stack.provision(current_plan())
"""

from __future__ import annotations

from pyinfra.api import deploy

from metalserve.plan import HostPlan
from roles import base, cuda, fabric, fabricmanager, nccl, nvidia_driver, packages

ROLES = (packages, nvidia_driver, fabricmanager, cuda, nccl, fabric)
"""In order: the site's apt source (mirror/bundle), the driver, fabric manager, CUDA, NCCL, RDMA."""


@deploy("NVIDIA stack")
def provision(plan: HostPlan) -> None:
    """Install every role, then configure every role, then load, start and verify."""
    base.run_phases(ROLES, plan)
