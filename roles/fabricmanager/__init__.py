"""NVIDIA Fabric Manager, only on NVSwitch hosts, at exactly the driver's version.

install: the fabric manager packages pinned to the driver version and held (a different version
refuses to start). configure: the service enabled. activate: running, then
verified: active, and every GPU's fabric registration ``Completed``/``Success``.
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import systemd

from metalserve.plan import HostPlan
from metalserve.stack import packages_off_pin
from roles.gpu_facts.facts import NvidiaFabricStates, read_fact
from roles.gpu_facts.verify import check_fabric
from roles.nvidia_driver.common import gpu_steps_skipped, install_pinned, verify

SERVICE = "nvidia-fabricmanager"

# GPUs join the NVLink fabric some seconds after fabric manager starts (minutes on 8-GPU boards).
FABRIC_WAIT_S = 300
FABRIC_POLL_S = 10


def _needed(plan: HostPlan) -> bool:
    return plan.nvidia is not None and plan.nvidia.fabric_manager


def install_steps(plan: HostPlan) -> None:
    """The install phase's operations, for composing into other flows (re-provisioning)."""
    if plan.nvidia is not None and plan.nvidia.fabric_manager:
        install_pinned(plan.nvidia.fabricmanager_pin, SERVICE, plan.nvidia.apt)


@deploy("Fabric manager: packages")
def install(plan: HostPlan) -> None:
    install_steps(plan)


@deploy("Fabric manager: enable")
def configure(plan: HostPlan) -> None:
    if _needed(plan) and not gpu_steps_skipped():
        systemd.service(name=f"Enable {SERVICE}", service=SERVICE, running=None, enabled=True)


def service_running(on: Any) -> bool:
    """Whether systemd runs fabric manager (the same fact ``systemd.service`` reads)."""
    unit = f"{SERVICE}.service"
    status = read_fact(
        SystemdStatus, on=on, user_mode=False, machine=None, user_name=None, services=[unit]
    )
    return bool(status.get(unit, False))


def fabric_check(wait_s: int) -> Any:
    """Fabric manager active and every GPU registered; polls up to ``wait_s`` for registration."""

    def check(on: Any) -> list[str]:
        deadline = time.monotonic() + wait_s
        while True:
            active = service_running(on)
            problems = check_fabric(read_fact(NvidiaFabricStates, on=on), active)
            if not problems or time.monotonic() >= deadline:
                return problems
            time.sleep(FABRIC_POLL_S)

    return check


@deploy("Fabric manager: start and verify")
def activate(plan: HostPlan) -> None:
    if plan.nvidia is None or not plan.nvidia.fabric_manager or gpu_steps_skipped():
        return
    pin = plan.nvidia.fabricmanager_pin
    changes = bool(packages_off_pin(pin, read_fact(DebPackages)))
    running = service_running(None)
    systemd.service(name=f"Start {SERVICE}", service=SERVICE, running=True)
    verify(
        "fabricmanager",
        f"fabric manager {pin.version} and NVLink fabric",
        fabric_check(FABRIC_WAIT_S if changes or not running else 0),
        after_changes=changes or not running,
    )
