"""What the ``nccl_diag`` role does on one node, decided with the rest of the node's plan (pure).

Single node: every host builds nccl-tests and runs each collective over all its GPUs. Several nodes:
every node builds with MPI, and rank 0 launches ``mpirun`` over the cluster's node addresses in rank
order, one rank per GPU, with the cluster's NCCL matrix exported.

Example::

    >>> dp = plan.diag
    >>> dp.launcher, dp.runs[0].log
    (True, '/var/lib/metalserve/diag/all_reduce.log')
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from metalserve.catalog.busbw import BusBwExpectation, expectation_for
from metalserve.catalog.nvidia_stack import NvidiaStackPins
from metalserve.diag.commands import (
    BuildSpec,
    Collective,
    RunSpec,
    build_argv,
    hostfile_text,
    parse_version,
    run_argv,
    shell_line,
)
from metalserve.diag.judge import Topology, topology_of
from metalserve.diag.spec import DiagSpec, NcclTestsSource
from metalserve.errors import PlanError
from metalserve.hardware import HardwareProfile
from metalserve.layout import Layout


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectiveRun(_Frozen):
    collective: Collective
    argv: tuple[str, ...]
    shell: str
    log: str
    json_report: str | None


class DiagPlan(_Frozen):
    host: str
    profile_id: str
    has_gpus: bool
    multi_node: bool
    launcher: bool
    source: NcclTestsSource
    src_dir: str
    tarball: str | None
    build_argv: tuple[str, ...]
    build_stamp: str
    build_digest: str
    out_dir: str
    hostfile_path: str | None
    hostfile: str | None
    runs: tuple[CollectiveRun, ...]
    topology: Topology
    expectation: BusBwExpectation
    fail_host: bool
    reprovision_gate: bool
    gate_accepts_no_result: str | None = None
    reports_dir: str
    peers: tuple[str, ...] = Field(description="the cluster's node addresses, rank order")

    @property
    def build_dir(self) -> str:
        return f"{self.src_dir}/build"


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class DiagNode(_Frozen):
    """Where the node stands: its name, rank, the cluster's addresses and bootstrap interface."""

    host: str
    rank: int
    cluster_addresses: tuple[str, ...] = Field(description="rank order")
    oob_interface: str | None


def diag_plan(
    spec: DiagSpec,
    node: DiagNode,
    profile: HardwareProfile,
    layout: Layout,
    pins: NvidiaStackPins,
    nccl_env: dict[str, str],
) -> DiagPlan:
    """The diagnostic for ``node``: ``spec.hosts`` (where given) replaces the cluster's addresses
    as the hosts mpirun starts ranks on."""
    multi_node = profile.nodes > 1
    cluster_hosts = spec.hosts or (node.cluster_addresses if multi_node else ())
    if multi_node and len(cluster_hosts) != profile.nodes:
        raise PlanError(
            f"host {node.host}: metalserve.diag.hosts: expected {profile.nodes} hosts, found "
            f"{len(cluster_hosts)} — fix: one per node in rank order, or leave it unset"
        )
    source = spec.source
    src_dir = f"{layout.sources}/nccl-tests-{source.ref}"
    gpu = profile.gpu
    build = build_argv(
        BuildSpec(
            source_dir=src_dir,
            cuda_home=spec.cuda_home,
            nccl_home=spec.nccl_home,
            compute_capabilities=(
                (".".join(map(str, gpu.compute_capability)),) if gpu is not None else ("9.0",)
            ),
            mpi_home=spec.mpi_home if multi_node else None,
        )
    )
    out_dir = f"{layout.data}/diag"
    hostfile_path = f"{out_dir}/hostfile" if multi_node else None
    oob = node.oob_interface
    runs = []
    for collective in spec.collectives:
        log = f"{out_dir}/{collective.value}.log"
        run = RunSpec(
            build_dir=f"{src_dir}/build",
            gpus_per_node=max(profile.gpus_per_node, 1),
            collective=collective,
            mode=spec.mode,
            hosts=cluster_hosts if multi_node else (),
            hostfile=hostfile_path,
            nccl_env=nccl_env,
            oob_interface=oob,
            tests_version=parse_version(source.ref),
            json_path=f"{out_dir}/{collective.value}.json",
        )
        runs.append(
            CollectiveRun(
                collective=collective,
                argv=run_argv(run),
                shell=shell_line(run, log),
                log=log,
                json_report=run.json_path if run.writes_json else None,
            )
        )
    return DiagPlan(
        host=node.host,
        profile_id=profile.id,
        has_gpus=gpu is not None and profile.gpus_per_node > 0,
        multi_node=multi_node,
        launcher=not multi_node or node.rank == 0,
        source=source,
        src_dir=src_dir,
        tarball=f"{layout.sources}/nccl-tests-{source.ref}.tar.gz"
        if source.kind != "git"
        else None,
        build_argv=build,
        build_stamp=f"{layout.state}/nccl-tests.build",
        # nccl-tests links the toolkit's runtime and NCCL: a new pin of either means a rebuild
        build_digest=_digest(source, build, pins.cuda_version, pins.nccl_version),
        out_dir=out_dir,
        hostfile_path=hostfile_path,
        hostfile=hostfile_text(cluster_hosts, profile.gpus_per_node) if multi_node else None,
        runs=tuple(runs),
        topology=topology_of(profile),
        expectation=expectation_for(profile, spec.expected_busbw),
        fail_host=spec.fail_host,
        reprovision_gate=spec.reprovision_gate,
        gate_accepts_no_result=spec.gate_accepts_no_result,
        reports_dir=spec.reports_dir,
        peers=cluster_hosts,
    )
