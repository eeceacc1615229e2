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
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import python, server

from metalserve.io.preflight import read_host_report, write_host_report
from metalserve.plan import HostPlan
from metalserve.preflight import (
    CheckResult,
    HostFacts,
    HostReport,
    NodeManifest,
    PreflightTarget,
    Purpose,
    Verdict,
    check_peer_ports,
    cluster_checks,
    cluster_interface,
    failed,
    host_checks,
    opted_out,
)
from metalserve.stack import GpuDirectRdma, NetworkFabric
from roles.fabric import PEERMEM
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
from roles.preflight.facts import (
    NetInterfaces,
    NewestKernelModules,
    NvidiaPersistenceMode,
    PathSpace,
    PciAcs,
    PortListening,
    parse_port_probes,
)

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
    decided = plan.preflight
    common: dict[str, Any] = {
        "weights_bytes": weights.expected_bytes if weights else None,
        "roce_devices": devices,
        "gid_index": gid_index,
        "socket_ifname": decided.socket_ifname,
        "cluster_address": decided.cluster_address,
        "skip": dict(decided.skip),
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
        peermem=plan.fabric is not None and plan.fabric.gpudirect.path is GpuDirectRdma.PEERMEM,
        pcie_p2p=decided.pcie_p2p,
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
    modules = read_fact(NvidiaKernelModules)
    newest = read_fact(NewestKernelModules)
    return {
        "newest_kernel": newest.release,
        "newest_kernel_modules": newest.modules,
        "peermem_loaded": PEERMEM in modules.loaded,
        "acs_bridges": read_fact(PciAcs) if target.pcie_p2p else (),
        "loaded_driver": loaded.version if loaded else None,
        "loaded_flavor": loaded.flavor if loaded else None,
        "installed_driver": installed.version if installed else None,
        "installed_flavor": installed.flavor if installed else None,
        "module_signer": installed.signer if installed else None,
        "smi_driver_versions": tuple(gpu.driver_version for gpu in gpus.gpus),
        "smi_error": gpus.error,
        "held": read_fact(NvidiaHeldPackages),
        "secure_boot": read_fact(NvidiaSecureBoot).state,
        "rival_modules": modules.rivals,
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
        "interfaces": read_fact(NetInterfaces),
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
    rdma = ""
    if plan.fabric is not None:
        installed = read_fact(DebPackages)
        rdma = ", ".join(
            f"{name} {version}"
            for name in plan.fabric.packages
            for version in installed.get(name, [])
        )
    interface = cluster_interface(target_of(plan), facts)
    return NodeManifest(
        rdma=rdma or None,
        mtu=f"{interface.name}:{interface.mtu}" if interface else None,
        kernel=facts.kernel,
        driver=facts.loaded_driver,
        fabric_manager=fm,
        cuda=cuda,
        nccl=nccl,
        engine=f"{plan.engine.name} {plan.engine.version}",
        gid_index=gids or None,
    )


def host_report(plan: HostPlan, purpose: Purpose = Purpose.PREFLIGHT, run: str = "") -> HostReport:
    target = target_of(plan)
    facts = host_facts(plan, target)
    return HostReport(
        host=plan.host,
        cluster=plan.cluster.name,
        results=host_checks(target, facts, purpose),
        manifest=manifest_of(plan, facts),
        purpose=purpose,
        run=run,
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


_runs: dict[int, str] = {}


def run_token() -> str:
    """One token per pyinfra run: a peer's report from an earlier run is not taken as current."""
    return _runs.setdefault(id(host.state), uuid.uuid4().hex)


LISTENER = (
    "import socket,sys,time\n"
    "s=socket.create_server((sys.argv[1],int(sys.argv[2])))\n"
    "s.settimeout(1)\n"
    "end=time.monotonic()+float(sys.argv[3])\n"
    "while time.monotonic()<end:\n"
    " try:\n"
    "  c,_=s.accept();c.close()\n"
    " except OSError:\n"
    "  pass\n"
)
LISTEN_SECONDS = 90
PROBE_TIMEOUT_S = 3


def listener_unit(port: int) -> str:
    return f"metalserve-preflight-{port}.service"


def listen_command(address: str | None, port: int) -> str:
    """A transient unit that accepts and closes connections on the rendezvous port for
    :data:`LISTEN_SECONDS` (no data is read), so the peers' probe has something to reach before
    the engine runs; the command returns once the port listens."""
    q = shlex.quote
    return (
        f"systemd-run --quiet --collect --unit={listener_unit(port)} "
        f"-p RuntimeMaxSec={LISTEN_SECONDS + 30} -p DynamicUser=yes "
        f"/usr/bin/python3 -c {q(LISTENER)} {q(address or '')} {port} {LISTEN_SECONDS} && "
        f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; "
        f"done; journalctl -u {listener_unit(port)} -n 3 --no-pager; exit 1"
    )


def probe_command(peers: tuple[tuple[str, str], ...], port: int) -> str:
    """One line per peer: ``<host> ok``, or ``<host> <why>`` (bash's connect error, or a
    timeout), each bounded by :data:`PROBE_TIMEOUT_S`."""
    q = shlex.quote
    lines = []
    silent = f"timed out after {PROBE_TIMEOUT_S} s"
    for name, address in peers:
        connect = q(f"exec 3<>/dev/tcp/{address}/{port}")
        lines.append(
            f"if out=$(timeout {PROBE_TIMEOUT_S} bash -c {connect} 2>&1); then echo {q(name)} ok; "
            # bash's first line says why ("bash: connect: Connection refused", "bash: line 1:
            # x: Name or service not known"); timeout kills it silently. POSIX sh: pyinfra's shell.
            f"else why=$(printf '%s\\n' \"$out\" | head -n 1 | sed 's/^bash: //; s/^line [0-9]*: //'); "
            f'echo {q(name)} "${{why:-{silent}}}"; fi'
        )
    return "; ".join(lines) + "; true"


def _probe_peers(state: Any, host: Any, plan: HostPlan, report: str) -> bool:
    """At execution, once every node listens: reach each peer's port, measure this node's clock
    against the control host's, and add both to this host's report."""
    decided = plan.preflight
    assert decided.port is not None
    hosts = tuple(name for name, _ in decided.peers)
    _, output = host.run_shell_command(probe_command(decided.peers, decided.port))
    outcomes = parse_port_probes(output.stdout_lines, hosts)
    before = time.time()
    ok, clock = host.run_shell_command("date +%s.%N")
    after = time.time()
    offset = None
    if ok and clock.stdout_lines:
        try:
            offset = float(clock.stdout_lines[0]) - (before + after) / 2
        except ValueError:
            offset = None
    path = Path(report)
    current = read_host_report(path)
    write_host_report(
        current.model_copy(
            update={
                "results": (
                    *current.results,
                    _opted(check_peer_ports(decided.port, outcomes), decided.skip),
                ),
                "clock_offset_s": offset,
            }
        ),
        path.parent,
    )
    return True


def _opted(result: CheckResult, skip: tuple[tuple[str, str], ...]) -> CheckResult:
    return opted_out(result, dict(skip))


def _judge(state: Any, host: Any, plan: HostPlan, report: str, run: str) -> bool:
    """At execution, once every node's report is written: this host's FAILs and the cluster's
    (versions, MTU, clocks, a node missing from this run) fail the host, one red line each."""
    folder = Path(report).parent
    own = read_host_report(Path(report))
    members = [own]
    missing = []
    for name, _ in plan.preflight.peers:
        path = folder / f"{name}.json"
        peer = read_host_report(path) if path.exists() else None
        if peer is None or peer.run != run:
            missing.append(name)
        else:
            members.append(peer)
    bad = [line(plan.host, r) for r in failed(own.results)]
    bad += [line(plan.host, r) for r in failed(cluster_checks(members))]
    if missing:
        bad.append(
            f"host {plan.host}: preflight found no report of this run from {', '.join(missing)} "
            "(unreachable, or failed before its checks) — fix: see that host's error above"
        )
    if not bad:
        return True
    return fail_host(state, host, bad, report)


def _single_node(report: HostReport, path: Path) -> None:
    bad = failed(report.results)
    if bad:
        python.call(
            name=f"Preflight: {', '.join(r.check for r in bad)} FAIL",
            function=fail_host,
            lines=[line(report.host, r) for r in bad],
            report=str(path),
        )


def _across_nodes(plan: HostPlan, path: Path, run: str) -> None:
    port = plan.preflight.port
    assert port is not None
    started = not read_fact(PortListening, port=port)
    if started:
        server.shell(
            name=f"Preflight: listen on tcp/{port} for the peers' probe ({LISTEN_SECONDS} s)",
            commands=[listen_command(plan.preflight.cluster_address, port)],
        )
    python.call(
        name=f"Preflight: reach the other nodes on tcp/{port}, measure the clock",
        function=_probe_peers,
        plan=plan,
        report=str(path),
    )
    python.call(
        name="Preflight: judge this node and the cluster",
        function=_judge,
        plan=plan,
        report=str(path),
        run=run,
    )
    if started:
        server.shell(
            name=f"Preflight: stop the tcp/{port} listener",
            commands=[f"systemctl stop {listener_unit(port)} 2>/dev/null || true"],
        )


def _preflight(plan: HostPlan, purpose: Purpose) -> None:
    run = run_token()
    report = host_report(plan, purpose, run)
    path = write_host_report(report, reports_dir())
    for result in report.results:
        if result.verdict is Verdict.WARN:
            host.log(line(plan.host, result), log_func=logger.warning)
    for why, names in skips_by_reason(report.results).items():
        host.log(f"preflight skipped {', '.join(names)}: {why}", log_func=logger.info)
    if plan.preflight.port is not None and plan.preflight.peers:
        _across_nodes(plan, path, run)
    else:
        _single_node(report, path)


@deploy("Preflight: read-only checks")
def check(plan: HostPlan) -> None:
    _preflight(plan, Purpose.PREFLIGHT)


@deploy("Preflight")
def first(plan: HostPlan, purpose: Purpose) -> None:
    """Before serve, reprovision or diagnose: the same checks, less those that deploy brings to
    the plan itself; a FAIL here (on this host or across the cluster) stops the host before the
    deploy changes anything."""
    _preflight(plan, purpose)
