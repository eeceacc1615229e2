"""Role: read-only preflight of a host against its plan. One phase, ``check``; nothing on the host
changes.

``check`` reads the host's facts (the GPU, driver, fabric and disk facts the install roles read),
judges them with :func:`metalserve.preflight.host_checks`, writes the host's report as JSON on the
control host (``$METALSERVE_PREFLIGHT_DIR``, default ``~/.local/state/metalserve/preflight``, one
``<host>.json`` each, read by ``metalserve preflight show``) and logs every result that is not a
PASS. A FAIL adds the role's one operation: a ``python.call`` that fails the host, so a deploy that
runs preflight first goes no further on it. A healthy host gets no operation at all.

Example (``deploy/preflight.py``)::

    from roles import base, preflight
    base.run_phases([preflight], phases=preflight.PHASES)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import python

from metalserve.io.preflight import write_host_report
from metalserve.plan import HostPlan
from metalserve.preflight import (
    CheckResult,
    HostFacts,
    HostReport,
    NodeManifest,
    PreflightTarget,
    Verdict,
    failed,
    host_checks,
)
from metalserve.stack import NetworkFabric
from roles.fabric.facts import RdmaPort, RdmaPorts
from roles.fabricmanager import service_running
from roles.gpu_facts.facts import (
    ContainerKind,
    NvidiaCudaToolkits,
    NvidiaFabricStates,
    NvidiaGpus,
    NvidiaHeldPackages,
    NvidiaInstalledModule,
    NvidiaKernelHeaders,
    NvidiaKernelModules,
    NvidiaLoadedDriver,
    NvidiaNcclLibraries,
    NvidiaSecureBoot,
    read_fact,
)
from roles.nvidia_driver import DriverTarget
from roles.preflight.facts import NvidiaPersistenceMode, PathSpace

PHASES = ("check",)
SHM = "/dev/shm"
REPORTS_DIR_ENV = "METALSERVE_PREFLIGHT_DIR"
DEFAULT_REPORTS_DIR = "~/.local/state/metalserve/preflight"


def reports_dir() -> Path:
    return Path(os.environ.get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_DIR).expanduser()


def _roce(plan: HostPlan) -> tuple[tuple[str, ...], int | None]:
    fabric = plan.fabric
    if fabric is None or fabric.kind is not NetworkFabric.ROCE_V2:
        return (), None
    return fabric.devices, fabric.gid_index


def _held_pins(plan: HostPlan) -> tuple[tuple[str, ...], bool]:
    """The pinned packages installed here (each must be held), and whether nvidia.ko comes from
    precompiled module packages."""
    nvidia = plan.nvidia
    assert nvidia is not None
    driver = DriverTarget(nvidia)
    pins = [driver.lock, driver.pin, nvidia.cuda_pin, nvidia.nccl_pin]
    if nvidia.fabric_manager:
        pins.append(nvidia.fabricmanager_pin)
    installed = read_fact(DebPackages)
    names = tuple(name for pin in pins for name in pin.packages if name in installed)
    return names, bool(driver.modules.precompiled)


def target_of(plan: HostPlan) -> PreflightTarget:
    devices, gid_index = _roce(plan)
    weights = plan.weights
    common: dict[str, Any] = {
        "weights_bytes": weights.expected_bytes if weights else None,
        "roce_devices": devices,
        "gid_index": gid_index,
    }
    nvidia = plan.nvidia
    if nvidia is None:
        return PreflightTarget(gpu=False, **common)
    must_hold, precompiled = _held_pins(plan)
    return PreflightTarget(
        gpu=True,
        driver_version=nvidia.pins.driver_version,
        flavor=nvidia.flavor,
        must_hold=must_hold,
        precompiled_modules=precompiled,
        fabric_manager=nvidia.fabric_manager,
        nccl=True,
        **common,
    )


def _gid_indices(ports: tuple[RdmaPort, ...], devices: tuple[str, ...]) -> dict[str, int | None]:
    return {
        port.device: port.roce_v2_ipv4_gid_index()
        for port in ports
        if port.device in devices and port.is_roce
    }


def _gpu_facts(target: PreflightTarget) -> dict[str, Any]:
    loaded = read_fact(NvidiaLoadedDriver)
    installed = read_fact(NvidiaInstalledModule)
    gpus = read_fact(NvidiaGpus)
    states = read_fact(NvidiaFabricStates) if target.fabric_manager else {}
    return {
        "loaded_driver": loaded.version if loaded else None,
        "loaded_flavor": loaded.flavor if loaded else None,
        "installed_driver": installed.version if installed else None,
        "installed_flavor": installed.flavor if installed else None,
        "module_signer": installed.signer if installed else None,
        "smi_driver_versions": tuple(gpu.driver_version for gpu in gpus.gpus),
        "smi_error": gpus.error,
        "held": read_fact(NvidiaHeldPackages),
        "secure_boot": read_fact(NvidiaSecureBoot).state,
        "rival_modules": read_fact(NvidiaKernelModules).rivals,
        "persistence": read_fact(NvidiaPersistenceMode),
        "fabric_manager_active": service_running(None) if target.fabric_manager else None,
        "fabric_pending": tuple(sorted(b for b, s in states.items() if not s.completed)),
        "fabric_gpus": len(states),
        "shm": read_fact(PathSpace, path=SHM),
    }


def host_facts(plan: HostPlan, target: PreflightTarget) -> HostFacts:
    headers = read_fact(NvidiaKernelHeaders)
    weights = plan.weights
    found: dict[str, Any] = {
        "container": read_fact(ContainerKind),
        "kernel": headers.release,
        "headers_present": headers.present,
        "weights": read_fact(PathSpace, path=weights.local_dir)
        if weights and target.weights_bytes
        else None,
    }
    if target.roce_devices:
        found["roce_gid_indices"] = _gid_indices(read_fact(RdmaPorts), target.roce_devices)
    if target.gpu:
        found.update(_gpu_facts(target))
    return HostFacts(**found)


def manifest_of(plan: HostPlan, facts: HostFacts) -> NodeManifest:
    """The versions this node runs: read from the host, except the engine, which is the plan's."""
    nvidia = plan.nvidia
    fm: str | None = None
    cuda = nccl = None
    if nvidia is not None:
        if nvidia.fabric_manager:
            installed = read_fact(DebPackages)
            versions = {
                v for name in nvidia.fabricmanager_pin.packages for v in installed.get(name, [])
            }
            fm = ", ".join(sorted(versions)) or None
        cuda = read_fact(NvidiaCudaToolkits).default_version
        nccl = ", ".join(sorted(set(read_fact(NvidiaNcclLibraries).values()))) or None
    gids = ", ".join(
        f"{d}:{'none' if i is None else i}" for d, i in sorted(facts.roce_gid_indices.items())
    )
    return NodeManifest(
        kernel=facts.kernel,
        driver=facts.loaded_driver,
        fabric_manager=fm,
        cuda=cuda,
        nccl=nccl,
        engine=f"{plan.engine.name} {plan.engine.version}",
        gid_index=gids or None,
    )


def host_report(plan: HostPlan) -> HostReport:
    target = target_of(plan)
    facts = host_facts(plan, target)
    return HostReport(
        host=plan.host,
        cluster=plan.cluster.name,
        results=host_checks(target, facts),
        manifest=manifest_of(plan, facts),
    )


def line(host_name: str, result: CheckResult) -> str:
    fix = f" — fix: {result.fix}" if result.fix else ""
    return (
        f"host {host_name}: preflight {result.check} {result.verdict.value}: expected "
        f"{result.expected}, found {result.found}{fix}"
    )


def skips_by_reason(results: tuple[CheckResult, ...]) -> dict[str, list[str]]:
    """The skipped checks grouped by why, so a CPU host says it once, not once per GPU check."""
    grouped: dict[str, list[str]] = {}
    for result in results:
        if result.verdict is Verdict.SKIP:
            grouped.setdefault(result.found, []).append(result.check)
    return grouped


def fail_host(state: Any, host: Any, lines: list[str], report: str) -> bool:
    """pyinfra's callback: every FAIL as one red line, and the host failed (nothing more runs on
    it), never a traceback."""
    for text in lines:
        host.log_styled(text, fg="red", log_func=logger.error)
    host.log_styled(f"preflight report: {report}", fg="red", log_func=logger.error)
    return False


@deploy("Preflight: read-only checks")
def check(plan: HostPlan) -> None:
    report = host_report(plan)
    path = write_host_report(report, reports_dir())
    for result in report.results:
        if result.verdict is Verdict.WARN:
            host.log(line(plan.host, result), log_func=logger.warning)
    for why, names in skips_by_reason(report.results).items():
        host.log(f"preflight skipped {', '.join(names)}: {why}", log_func=logger.info)
    bad = failed(report.results)
    if bad:
        python.call(
            name=f"Preflight: {', '.join(r.check for r in bad)} FAIL",
            function=fail_host,
            lines=[line(plan.host, r) for r in bad],
            report=str(path),
        )
