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

from pydantic import Field
from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import python, server

from metalserve.hardware import Frozen
from metalserve.io.preflight import read_host_report, write_host_report
from metalserve.plan import HostPlan
from metalserve.preflight import (
    PEER_CHECKS,
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
    skipped,
)
from metalserve.stack import GpuDirectRdma, NetworkFabric
from metalserve.types import printable
from roles import base
from roles.base import run_memo
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
    ClockNow,
    IommuMode,
    NetInterfaces,
    NewestKernelModules,
    NvidiaPersistenceMode,
    PathSpace,
    PciAcs,
    PeerPorts,
    PortListening,
    RocePfcSettings,
    parse_port_probes,
    peers_argument,
    probe_command,
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
        "traffic_class": decided.traffic_class if devices else None,
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
        rdma=plan.fabric is not None,
        **common,
    )


def _gid_indices(ports: tuple[RdmaPort, ...], devices: tuple[str, ...]) -> dict[str, int | None]:
    return {
        port.device: port.roce_v2_ipv4_gid_index()
        for port in ports
        if port.device in devices and port.is_roce
    }


def _roce_netdevs(ports: tuple[RdmaPort, ...], devices: tuple[str, ...]) -> tuple[str, ...]:
    """The Ethernet netdevs behind the RoCE HCAs NCCL uses, from their GID tables."""
    names = (g.netdev for p in ports if p.device in devices and p.is_roce for g in p.gids)
    return tuple(dict.fromkeys(n for n in names if n))


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
        "iommu": read_fact(IommuMode) if target.pcie_p2p or target.rdma else None,
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
        ports = read_fact(RdmaPorts)
        found["roce_gid_indices"] = _gid_indices(ports, target.roce_devices)
        netdevs = _roce_netdevs(ports, target.roce_devices)
        if target.traffic_class is not None and netdevs:
            found["roce_pfc"] = read_fact(RocePfcSettings, netdevs=",".join(netdevs))
    if target.gpu:
        found.update(_gpu_facts(target))
    return HostFacts(**found)


def manifest_of(plan: HostPlan, target: PreflightTarget, facts: HostFacts) -> NodeManifest:
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
    interface = cluster_interface(target, facts)
    pfc = ", ".join(
        f"{nic.netdev}:{'?' if nic.pfc_on is None else ','.join(map(str, nic.pfc_on)) or 'none'}"
        for nic in facts.roce_pfc
    )
    return NodeManifest(
        pfc=pfc or None,
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
        manifest=manifest_of(plan, target, facts),
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


def run_token() -> str:
    """One token per pyinfra run: a report from an earlier run is never taken as this run's."""
    return run_memo("preflight-run", lambda: uuid.uuid4().hex)


# ---------------------------------------------------------------------------------------------
# The cluster, read at once: every node's report is built (its facts read on that node) when the
# first node of the cluster is prepared, so each node judges the whole cluster before any
# operation runs, and a healthy, running cluster gets no operation at all.


class ClusterRead(Frozen):
    """Every node's report of this run (a node whose facts could not be read: why), and the
    peers whose port nothing listens on yet, to be probed once a listener holds it."""

    reports: dict[str, HostReport]
    unread: dict[str, str]
    pending: dict[str, tuple[str, ...]] = Field(description="prober -> peers not listening yet")


def _on(name: str) -> Any:
    return host.inventory.get_host(name)


def _clock_offset() -> float | None:
    """This (context) host's clock minus the control host's, to within half an SSH round trip."""
    before = time.time()
    now = read_fact(ClockNow)
    after = time.time()
    return None if now is None else now - (before + after) / 2


def _peer_ports(plan: HostPlan) -> tuple[CheckResult | None, tuple[str, ...]]:
    """The peers this node must reach: judged now where each either answered or has something
    listening (a refusal then is the network's); the rest wait for a listener."""
    decided = plan.preflight
    if decided.port is None:
        return None, ()
    if not decided.reach:
        why = f"this node dials no other ({decided.dials})"
        return skipped("cluster-ports", PEER_CHECKS["cluster-ports"], why), ()
    outcomes = read_fact(PeerPorts, peers=peers_argument(decided.reach), port=decided.port)
    outcomes = {name: outcomes.get(name, "no answer") for name, _ in decided.reach}
    pending = tuple(
        name
        for name, why in outcomes.items()
        if why != "ok" and not read_fact(PortListening, on=_on(name), port=decided.port)
    )
    if pending:
        return None, pending
    return opted_out(check_peer_ports(decided.port, outcomes), dict(decided.skip)), ()


def _member(name: str, purpose: Purpose, run: str) -> tuple[HostReport, tuple[str, ...]]:
    with ctx_host.use(_on(name)):
        plan = base.current_plan()
        report = host_report(plan, purpose, run)
        ports, pending = _peer_ports(plan)
        extra = (ports,) if ports is not None else ()
        return (
            report.model_copy(
                update={"results": (*report.results, *extra), "clock_offset_s": _clock_offset()}
            ),
            pending,
        )


def read_cluster(plan: HostPlan, purpose: Purpose) -> ClusterRead:
    reads = run_memo("preflight-cluster", dict[tuple[str, Purpose], ClusterRead])
    key = (plan.cluster.name, purpose)
    if key not in reads:
        run = run_token()
        reports: dict[str, HostReport] = {}
        unread: dict[str, str] = {}
        pending: dict[str, tuple[str, ...]] = {}
        for node in plan.cluster.nodes:
            try:
                reports[node.host], waiting = _member(node.host, purpose, run)
            except (PyinfraError, OSError) as exc:  # an unreachable node is named, not a traceback
                unread[node.host] = printable(str(exc).splitlines()[0] if str(exc) else repr(exc))
                continue
            if waiting:
                pending[node.host] = waiting
        for report in reports.values():
            write_host_report(report, reports_dir())
        reads[key] = ClusterRead(reports=reports, unread=unread, pending=pending)
    return reads[key]


def cluster_failures(
    plan: HostPlan, reports: dict[str, HostReport], unread: dict[str, str]
) -> list[str]:
    """One line per FAIL of any node of the cluster, or across them: a cluster is served whole
    or not at all, so one node's FAIL stops every node."""
    lines = [
        line(name, r) for name, report in sorted(reports.items()) for r in failed(report.results)
    ]
    if len(plan.cluster.nodes) > 1:
        lines += [line(plan.cluster.name, r) for r in failed(cluster_checks(reports.values()))]
    lines += [
        f"host {name}: preflight could not read it: {why} — fix: reach it over SSH, or leave it "
        "out of the cluster"
        for name, why in sorted(unread.items())
    ]
    return lines


# ---------------------------------------------------------------------------------------------
# Peers whose port nothing listens on yet (a cluster before its first serve): each such node
# holds the port open with a short-lived listener, the probing nodes connect at execution, and
# every node then judges the cluster again from the reports.

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


def listener_unit(port: int) -> str:
    return f"metalserve-preflight-{port}.service"


def listen_command(address: str | None, port: int) -> str:
    """A transient unit that accepts and closes connections on the port for
    :data:`LISTEN_SECONDS` (it reads no data); the command returns once the port listens."""
    q = shlex.quote
    return (
        f"systemd-run --quiet --collect --unit={listener_unit(port)} "
        f"-p RuntimeMaxSec={LISTEN_SECONDS + 30} -p DynamicUser=yes "
        f"/usr/bin/python3 -c {q(LISTENER)} {q(address or '')} {port} {LISTEN_SECONDS} && "
        f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; "
        f"done; journalctl -u {listener_unit(port)} -n 3 --no-pager; exit 1"
    )


def _probe_now(state: Any, host: Any, plan: HostPlan, peers: tuple[str, ...], report: str) -> bool:
    """At execution, once the listeners hold the ports: connect, and add the verdict to this
    node's report for the judgement that follows."""
    decided = plan.preflight
    assert decided.port is not None
    addresses = dict(decided.reach)
    targets = tuple((name, addresses[name]) for name in peers)
    _, output = host.run_shell_command(probe_command(targets, decided.port))
    outcomes = parse_port_probes(output.stdout_lines, peers)
    answered = {name: "ok" for name, _ in decided.reach if name not in peers}
    result = check_peer_ports(decided.port, {**answered, **outcomes})
    path = Path(report)
    current = read_host_report(path)
    write_host_report(
        current.model_copy(
            update={"results": (*current.results, opted_out(result, dict(decided.skip)))}
        ),
        path.parent,
    )
    return True


def _judge_now(state: Any, host: Any, plan: HostPlan, run: str) -> bool:
    """At execution, after every probe: the cluster judged again from this run's reports."""
    folder = reports_dir()
    reports: dict[str, HostReport] = {}
    unread: dict[str, str] = {}
    for node in plan.cluster.nodes:
        path = folder / f"{node.host}.json"
        report = read_host_report(path) if path.exists() else None
        if report is None or report.run != run:
            unread[node.host] = "no report from this run"
        else:
            reports[node.host] = report
    bad = cluster_failures(plan, reports, unread)
    return fail_host(state, host, bad, str(folder / f"{plan.host}.json")) if bad else True


def _probe_at_execution(plan: HostPlan, read: ClusterRead, run: str) -> None:
    port = plan.preflight.port
    assert port is not None
    listen = any(plan.host in waiting for waiting in read.pending.values())
    if listen:
        server.shell(
            name=f"Preflight: hold tcp/{port} open for the other nodes' probe",
            commands=[listen_command(plan.preflight.cluster_address, port)],
        )
    if plan.host in read.pending:
        python.call(
            name=f"Preflight: reach the other nodes on tcp/{port}",
            function=_probe_now,
            plan=plan,
            peers=read.pending[plan.host],
            report=str(reports_dir() / f"{plan.host}.json"),
        )
    python.call(
        name="Preflight: judge the cluster",
        function=_judge_now,
        plan=plan,
        run=run,
    )
    if listen:
        server.shell(
            name=f"Preflight: stop the tcp/{port} listener",
            commands=[f"systemctl stop {listener_unit(port)} 2>/dev/null || true"],
        )


def _preflight(plan: HostPlan, purpose: Purpose) -> None:
    read = read_cluster(plan, purpose)
    own = read.reports.get(plan.host)
    if own is not None:
        for result in own.results:
            if result.verdict is Verdict.WARN:
                host.log(line(plan.host, result), log_func=logger.warning)
        for why, names in skips_by_reason(own.results).items():
            host.log(f"preflight skipped {', '.join(names)}: {why}", log_func=logger.info)
    if read.pending:
        _probe_at_execution(plan, read, run_token())
        return
    bad = cluster_failures(plan, read.reports, read.unread)
    if bad:
        python.call(
            name="Preflight: FAIL",
            function=fail_host,
            lines=bad,
            report=str(reports_dir() / f"{plan.host}.json"),
        )


@deploy("Preflight: read-only checks")
def check(plan: HostPlan) -> None:
    _preflight(plan, Purpose.PREFLIGHT)


@deploy("Preflight")
def first(plan: HostPlan, purpose: Purpose) -> None:
    """Before serve, reprovision or diagnose: the same checks, less those that deploy brings to
    the plan itself; a FAIL on any node of the cluster (or across them) stops every node before
    the deploy changes anything."""
    _preflight(plan, purpose)
