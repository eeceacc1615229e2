"""Re-provisioning after a driver change: drain and stop the engine, stop what holds the GPUs, put
the pinned stack in place (driver, fabric manager, CUDA, NCCL), load the driver (in place or by a
reboot), verify, rebuild what links the toolkit, pass the NCCL diagnostic, and only then start
again.

The order is the point: a failed verification or a FAIL from the NCCL gate stops pyinfra on this
host before the engine starts, so a broken driver or fabric leaves the engine stopped with a
one-line report, never serving errors. Every step reads facts first; a run on an in-sync host
changes nothing, and an interrupted run is finished by running it again.

Example (deploy/reprovision.py)::

    from roles.nvidia_driver import reprovision
    reprovision.run_steps(current_plan())
"""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import server, systemd

import roles.cuda as cuda
import roles.fabricmanager as fabricmanager
import roles.nccl as nccl
import roles.nccl_diag as nccl_diag
import roles.nvidia_driver as nvidia_driver
from metalserve.plan import HostPlan
from metalserve.stack import packages_off_pin
from roles.fabricmanager import FABRIC_WAIT_S
from roles.gpu_facts.facts import (
    NvidiaGpus,
    NvidiaInstalledModule,
    NvidiaKernelModules,
    NvidiaLoadedDriver,
    read_fact,
)
from roles.gpu_facts.verify import driver_drift
from roles.nvidia_driver.common import verify
from roles.service import wait_for_health_command

DRAIN_TIMEOUT_S = 300
"""The longest an engine may take to finish in-flight requests before it is stopped anyway."""

DRAIN_POLL_S = 2


def drain_command(metrics_url: str, metric: str, timeout_s: int) -> str:
    """Wait, at most ``timeout_s``, until the engine reports no request in flight. An engine that
    does not answer counts as drained (it serves nothing).

    Example::

        >>> drain_command("http://127.0.0.1:8000/metrics", "vllm:num_requests_running", 300)[:38]
        'timeout 300 sh -c \\'while [ "$(curl -fs'
    """
    count = (
        f"curl -fsS {shlex.quote(metrics_url)} 2>/dev/null | "
        f"awk '/^{metric}[ {{]/ {{s += $NF}} END {{print s + 0}}'"
    )
    loop = f'while [ "$({count})" != 0 ]; do sleep {DRAIN_POLL_S}; done'
    return f"timeout {timeout_s} sh -c {shlex.quote(loop)} || true"


def _engine_running(plan: HostPlan) -> bool:
    unit = f"{plan.service.name}.service"
    status = read_fact(
        SystemdStatus, user_mode=False, machine=None, user_name=None, services=[unit]
    )
    return bool(status.get(unit, False))


def _metrics_url(health_url: str) -> str:
    parts = urlsplit(health_url)
    return f"{parts.scheme}://{parts.netloc}/metrics"


def _rebuild_dependents(plan: HostPlan) -> None:
    """Rebuild what links the CUDA toolkit (the llama.cpp build); called when the toolkit moves."""
    from roles import llamacpp  # a CUDA toolkit pin is part of its build key

    llamacpp.install(plan)


def _drain_and_stop(plan: HostPlan) -> None:
    service = plan.service
    metric = plan.engine.running_requests_metric
    if service.health_url and metric:
        server.shell(
            name=f"Drain {service.name} (at most {DRAIN_TIMEOUT_S} s)",
            commands=[drain_command(_metrics_url(service.health_url), metric, DRAIN_TIMEOUT_S)],
        )
    systemd.service(name=f"Stop {service.name}", service=service.name, running=False)


def _start_engine(plan: HostPlan) -> None:
    """Start the engine, a cluster's workers before its head: pyinfra runs each operation on every
    host before the next, so the workers' start (the first line) precedes the head's."""
    service = plan.service
    start = f"systemctl start {shlex.quote(f'{service.name}.service')}"
    if not plan.engine.head:
        server.shell(name=f"Start {service.name} (worker)", commands=[start])
    if plan.engine.head:
        server.shell(name=f"Start {service.name}", commands=[start])
    if service.health_url:
        server.shell(
            name=f"Wait for {service.health_url} (at most {service.health_timeout_s} s)",
            commands=[
                wait_for_health_command(
                    service.health_url, service.health_timeout_s, f"{service.name}.service"
                )
            ],
        )


class Drift:
    """Why a node's NVIDIA stack must be cycled (``why`` empty: it is in sync), from its facts."""

    def __init__(self, driver: nvidia_driver.DriverTarget, on: Any = None) -> None:
        nvidia = driver.nvidia
        installed = read_fact(DebPackages, on=on)
        self.driver = driver_drift(
            nvidia.pins.driver_version,
            driver.flavor,
            read_fact(NvidiaInstalledModule, on=on),
            read_fact(NvidiaLoadedDriver, on=on),
        )
        off_pin = tuple(
            name for pin in driver.pins_in_order for name in packages_off_pin(pin, installed)
        )
        if nvidia.fabric_manager:
            off_pin += packages_off_pin(nvidia.fabricmanager_pin, installed)
        self.toolkit_off_pin = packages_off_pin(nvidia.cuda_pin, installed)
        off_pin += self.toolkit_off_pin + packages_off_pin(nvidia.nccl_pin, installed)
        smi_error = read_fact(NvidiaGpus, on=on).error
        self.why = (
            self.driver.reason
            if self.driver.needs_reload
            else smi_error or (f"{', '.join(off_pin)} off the pin" if off_pin else "")
        )


def _peer_drift(plan: HostPlan, driver: nvidia_driver.DriverTarget) -> str:
    """The first other node of the cluster that must cycle, and why; empty when all are in sync.
    A cluster's engine spans every node, so one node's cycle stops the engine everywhere."""
    for peer in plan.cluster.peers_of(plan.host):
        on = host.inventory.get_host(peer.host)
        why = Drift(nvidia_driver.DriverTarget(driver.nvidia, on), on).why
        if why:
            return f"{peer.host}: {why}"
    return ""


@deploy("Re-provision the NVIDIA stack")
def run(plan: HostPlan) -> None:
    run_steps(plan)


def run_steps(plan: HostPlan) -> None:
    """Detect drift on this node and its cluster's others; if any, stop the cluster's engine,
    cycle the nodes that drifted (drain → stop → install → load → verify → rebuild), pass the NCCL
    gate across all nodes, then start workers and head."""
    driver = nvidia_driver.target(plan)
    if driver is None:
        return
    drift = Drift(driver)
    peer_why = _peer_drift(plan, driver) if plan.cluster.multi_node else ""
    engine_running = _engine_running(plan)

    if not drift.why and not peer_why:
        if not engine_running:  # an earlier run stopped it and was cut short, or a gate failed
            verify("nvidia_driver", "the driver", nvidia_driver.driver_check(driver), False)
            nccl_diag.gate_steps(plan)
            _start_engine(plan)
        return

    logger.info(f"{host.name}: re-provisioning: {drift.why or 'cluster node ' + peer_why}")
    if engine_running:
        _drain_and_stop(plan)
    if drift.why:
        _cycle(plan, driver, drift)
    # Before the engine, not after: the engine holds ~90 % of each GPU's memory, so nccl-tests
    # beside it would fail to allocate or measure a shared fabric; and a FAIL must keep it stopped.
    # Every node runs it: each rebuilds nccl-tests where its CUDA/NCCL moved (the build stamp).
    nccl_diag.gate_steps(plan)
    _start_engine(plan)


def _cycle(plan: HostPlan, driver: nvidia_driver.DriverTarget, drift: Drift) -> None:
    """Put the pinned stack in place and verify it; the engine is already stopped."""
    with_fm = driver.nvidia.fabric_manager
    if with_fm:
        systemd.service(
            name=f"Stop {fabricmanager.SERVICE}", service=fabricmanager.SERVICE, running=False
        )
    systemd.service(
        name=f"Stop {nvidia_driver.PERSISTENCED}", service=nvidia_driver.PERSISTENCED, running=False
    )
    nvidia_driver.install_steps(plan)
    fabricmanager.install_steps(plan)
    cuda.install(plan)
    nccl.install(plan)
    if drift.driver.needs_reload:
        nvidia_driver.reload_modules(read_fact(NvidiaKernelModules), drift.why)
    restart = [nvidia_driver.PERSISTENCED, *([fabricmanager.SERVICE] if with_fm else [])]
    server.shell(
        name="Start the GPU services again",
        commands=[f"systemctl start {unit}.service" for unit in restart],
    )
    verify("nvidia_driver", "the new driver", nvidia_driver.driver_check(driver), True)
    if with_fm:
        verify(
            "fabricmanager", "the NVLink fabric", fabricmanager.fabric_check(FABRIC_WAIT_S), True
        )
    cuda.activate(plan)
    nccl.activate(plan)
    if drift.toolkit_off_pin:
        _rebuild_dependents(plan)
