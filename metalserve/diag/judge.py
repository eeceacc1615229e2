"""Judge one parsed nccl-tests run: PASS / WARN / FAIL, or UNKNOWN when it cannot be told.

Pure. The verdict is the worst of its reasons, each of which says what was seen and what to do.
"Fail" and "unknown" stay apart (a health check that cries wolf is soon ignored): a run that
could not be judged — no expected figure, messages too small, output cut short — is UNKNOWN, never
FAIL, and does not fail the host.

Example::

    >>> j = judge(parse_output(text), Topology(gpus_per_node=8, nodes=1, interconnect="nvswitch"),
    ...           expectation_for("h100-sxm-8"))
    >>> j.verdict, j.reasons[0].message
    (<Verdict.PASS: 'PASS'>, 'busbw 480.9 GB/s at 16 GiB is 102 % of the expected 473.6 GB/s ...')
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from metalserve.catalog.busbw import THRESHOLDS, BusBwExpectation, Thresholds
from metalserve.diag.parse import AbortKind, NcclTestsRun, ParsedOutput, TransportSummary


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    UNKNOWN = "UNKNOWN"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        return list(Verdict).index(self)


class Reason(_Frozen):
    """One finding: its weight, a stable code for tools, and a sentence for a person."""

    verdict: Verdict
    code: str
    message: str


class Topology(_Frozen):
    """What the run should have seen: the profile's GPUs, nodes and links."""

    gpus_per_node: int = Field(ge=0)
    nodes: int = Field(ge=1)
    interconnect: str | None = Field(description="nvswitch | nvlink | pcie | unified")
    fabric: str | None = Field(default=None, description="infiniband | roce_v2 between nodes")
    p2p_available: bool = True
    gpudirect_rdma: bool = Field(
        default=True,
        description="the GPU supports nvidia-peermem (catalogue GpuModel.nvidia_peermem)",
    )

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes


class GpuLike(Protocol):
    @property
    def nvidia_peermem(self) -> bool: ...


class ProfileLike(Protocol):
    """The fields of ``metalserve.hardware.HardwareProfile`` the judge needs."""

    @property
    def gpus_per_node(self) -> int: ...
    @property
    def nodes(self) -> int: ...
    @property
    def interconnect(self) -> object: ...
    @property
    def fabric(self) -> object: ...
    @property
    def p2p_available(self) -> bool: ...
    @property
    def gpu(self) -> GpuLike | None: ...


def topology_of(profile: ProfileLike) -> Topology:
    """The judge's view of a catalogue hardware profile."""
    return Topology(
        gpus_per_node=profile.gpus_per_node,
        nodes=profile.nodes,
        interconnect=str(profile.interconnect) if profile.interconnect is not None else None,
        fabric=str(profile.fabric) if profile.fabric is not None else None,
        p2p_available=profile.p2p_available,
        gpudirect_rdma=profile.gpu.nvidia_peermem if profile.gpu is not None else True,
    )


NO_RESULTS = "no-results"
"""The code of a run whose output holds no result at all: empty, crashed, not found, killed."""


class Judgement(_Frozen):
    verdict: Verdict
    reasons: tuple[Reason, ...]
    measured_busbw: float | None = None
    measured_at_bytes: int | None = None
    expected_busbw: float | None = None
    expected_source: str | None = None
    ratio: float | None = None

    @property
    def fails_host(self) -> bool:
        return self.verdict is Verdict.FAIL

    @property
    def produced_result(self) -> bool:
        """Whether the run measured anything: a gate must not take "nothing" for "nothing wrong"."""
        return not any(r.code == NO_RESULTS for r in self.reasons)


def human_bytes(size: int) -> str:
    """Binary units as nccl-tests users write them on the command line.

    >>> human_bytes(17179869184), human_bytes(67108864), human_bytes(1000)
    ('16 GiB', '64 MiB', '1000 B')
    """
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << (shift - 4)) == 0:
            value = size / (1 << shift)
            return f"{value:g} {unit}"
    return f"{size} B"


# --------------------------------------------------------------------------- single checks

_MISSING_GPUS = re.compile(r"(?<!\d)(\d{1,9}) requested but only (\d{1,9}) were found")


_ABORT_HINTS = {
    AbortKind.NCCL: "rerun with NCCL_DEBUG=INFO and read the first NCCL WARN",
    AbortKind.CUDA: "check dmesg for Xid errors and nvidia-smi for a lost GPU",
    AbortKind.TIMEOUT: "a rank hung: check the fabric and that every host runs the same build",
    AbortKind.USAGE: "fix the nccl-tests arguments",
    AbortKind.LAUNCHER: "check the hostfile, slots and ssh between the hosts",
}


def _aborts(run: NcclTestsRun, transport: TransportSummary) -> list[Reason]:
    reasons: list[Reason] = []
    for kind, message in dict.fromkeys((a.kind, a.message) for a in run.aborts):
        same = [a for a in run.aborts if (a.kind, a.message) == (kind, message)]
        if kind is AbortKind.USAGE and (m := _MISSING_GPUS.search(message)):
            wanted, found = int(m.group(1)), int(m.group(2))
            reasons.append(_gpus_missing(wanted - found, wanted, f"nccl-tests found {found}"))
            continue
        hosts = {a.host for a in same if a.host}
        also = f" (on {len(hosts)} hosts)" if len(hosts) > 1 else ""
        reasons.append(
            Reason(
                verdict=Verdict.FAIL,
                code=f"aborted-{kind}",
                message=f"aborted: {same[0].line.strip()}{also} — {_ABORT_HINTS[kind]}",
            )
        )
    if reasons and transport.warnings:
        reasons.append(
            Reason(
                verdict=Verdict.FAIL,
                code="aborted-nccl-warn",
                message=f"aborted: NCCL WARN {transport.warnings[0]}",
            )
        )
    return reasons


def _gpus_missing(missing: int, wanted: int, seen: str) -> Reason:
    return Reason(
        verdict=Verdict.FAIL,
        code="gpus-missing",
        message=f"{missing} of {wanted} GPUs missing ({seen}) — check nvidia-smi, "
        "nvidia-fabricmanager and CUDA_VISIBLE_DEVICES",
    )


def _corruption(run: NcclTestsRun) -> list[Reason]:
    wrong_rows = [r for r in run.rows if r.wrong > 0]
    if not wrong_rows and not run.out_of_bounds:
        return []
    if wrong_rows:
        where = (
            f"#wrong > 0 at {len(wrong_rows)} size(s), first at {human_bytes(wrong_rows[0].size)}"
        )
    else:
        where = f"{run.out_of_bounds} out-of-bounds check(s) failed"
    return [
        Reason(
            verdict=Verdict.FAIL,
            code="data-corruption",
            message=f"data corruption: {where} — the collective returned wrong values: "
            "look for Xid/ECC errors in dmesg and run dcgmi diag -r 3 on each GPU",
        )
    ]


def _gpu_count(run: NcclTestsRun, transport: TransportSummary, topology: Topology) -> list[Reason]:
    seen = len(run.devices) or transport.n_ranks
    if seen is None or seen >= topology.total_gpus:
        hosts_seen = len(run.hosts) or transport.n_nodes
        if hosts_seen is not None and 0 < hosts_seen < topology.nodes:
            missing = topology.nodes - hosts_seen
            return [
                Reason(
                    verdict=Verdict.FAIL,
                    code="nodes-missing",
                    message=f"{missing} of {topology.nodes} nodes missing ({hosts_seen} ran) — "
                    "check the hostfile and that mpirun reaches every host",
                )
            ]
        return []
    return [_gpus_missing(topology.total_gpus - seen, topology.total_gpus, f"{seen} ranks ran")]


def _why_no_gdrdma(transport: TransportSummary) -> str:
    """What NCCL's own lines say about GPUDirect RDMA being off, and the fix."""
    if transport.no_gdr_hcas:
        return (
            f"NCCL found neither nvidia-peermem nor DMA-BUF for {', '.join(transport.no_gdr_hcas)} "
            "('GPU Direct RDMA Disabled for HCA'): use the open kernel modules (DMA-BUF) or load "
            "nvidia-peermem built against MLNX_OFED/DOCA-OFED"
        )
    if transport.gdr_hcas:
        return (
            f"NCCL could use it on {', '.join(transport.gdr_hcas)} but judged the GPU too far from "
            "the HCA: check the PCI topology and NCCL_NET_GDR_LEVEL"
        )
    return (
        "use the open kernel modules (DMA-BUF) or load nvidia-peermem (needs MLNX_OFED/DOCA-OFED), "
        "and check NCCL_NET_GDR_LEVEL"
    )


def _transports(transport: TransportSummary, topology: Topology) -> list[Reason]:
    reasons: list[Reason] = []
    cost = THRESHOLDS.p2p_disabled_cost
    if topology.nodes > 1 and topology.fabric is not None and transport.net_socket:
        cause = (
            "NCCL_IB_DISABLE=1 is set"
            if transport.ib_disabled
            else "IB disabled or GID index wrong (check NCCL_IB_HCA, NCCL_IB_GID_INDEX, ibv_devinfo)"
        )
        reasons.append(
            Reason(
                verdict=Verdict.FAIL,
                code="net-socket-fallback",
                message=f"fell back to NET/Socket — {cause}",
            )
        )
    elif (
        topology.nodes > 1 and transport.net_ib and not transport.gdrdma and topology.gpudirect_rdma
    ):
        reasons.append(
            Reason(
                verdict=Verdict.WARN,
                code="no-gdrdma",
                message=f"NET/IB without GDRDMA — GPUDirect RDMA is off: {_why_no_gdrdma(transport)}",
            )
        )
    intra_p2p = topology.p2p_available and topology.gpus_per_node > 1
    only_shm = transport.uses("SHM") and not any(k.startswith("P2P") for k in transport.channels)
    if intra_p2p and (transport.p2p_disabled or only_shm):
        cause = (
            "NCCL_P2P_DISABLE=1"
            if transport.p2p_disabled
            else "GPUs exchange through host memory (SHM), which"
        )
        weight = Verdict.FAIL if topology.interconnect in ("nvswitch", "nvlink") else Verdict.WARN
        reasons.append(
            Reason(
                verdict=weight,
                code="p2p-disabled",
                message=f"P2P disabled: {cause} costs {cost} — unset it; if P2P hangs without it, "
                "fix ACS/IOMMU (iommu=pt, ACS off) instead",
            )
        )
    return reasons


def _nvls_off(transport: TransportSummary, topology: Topology) -> bool:
    if topology.interconnect != "nvswitch":
        return False
    return transport.nvls_available is False or transport.nvls_channels == 0


def _warnings(transport: TransportSummary) -> list[Reason]:
    return [
        Reason(verdict=Verdict.WARN, code="nccl-warn", message=f"NCCL WARN {text}")
        for text in transport.warnings[:3]
    ]


def _is_all_reduce(run: NcclTestsRun) -> bool:
    return run.collective is None or run.collective.startswith("all_reduce")


def _bandwidth(
    run: NcclTestsRun,
    expectation: BusBwExpectation | None,
    nvls_off: bool,
    thresholds: Thresholds,
) -> tuple[list[Reason], dict[str, float | int | str | None]]:
    figures: dict[str, float | int | str | None] = {}
    rows = [r for r in run.rows if r.best_busbw is not None]
    if not rows:
        if run.aborts:
            return [], figures
        return [
            Reason(
                verdict=Verdict.UNKNOWN,
                code=NO_RESULTS,
                message="no result rows: the output holds no nccl-tests table — the run was cut "
                "short or this is not nccl-tests output",
            )
        ], figures
    large = [r for r in rows if r.size >= thresholds.large_message_bytes]
    if not large:
        biggest = max(r.size for r in rows)
        return [
            Reason(
                verdict=Verdict.UNKNOWN,
                code="messages-too-small",
                message=f"largest message was {human_bytes(biggest)}; bus bandwidth is judged at "
                f"≥ {human_bytes(thresholds.large_message_bytes)} — rerun with -e 8G",
            )
        ], figures
    best = max(large, key=lambda r: r.best_busbw or 0.0)
    measured = best.best_busbw or 0.0
    figures.update(measured_busbw=measured, measured_at_bytes=best.size)
    if not _is_all_reduce(run):
        return [], figures
    expected, source = _expected(expectation, nvls_off)
    if expected is None or expectation is None:
        basis = f" ({expectation.basis})" if expectation is not None else ""
        return [
            Reason(
                verdict=Verdict.UNKNOWN,
                code="no-expected-figure",
                message=f"bandwidth unknown: busbw {measured:g} GB/s at {human_bytes(best.size)}, "
                f"but no sourced expected bus bandwidth for this profile{basis} — set "
                "metalserve.diag.expected_busbw in the inventory to judge it",
            )
        ], figures
    ratio = measured / expected
    figures.update(expected_busbw=expected, expected_source=source, ratio=ratio)
    said = (
        f"busbw {measured:g} GB/s at {human_bytes(best.size)} is {_percent(ratio)} of the "
        f"expected {expected:g} GB/s ({source})"
    )
    if ratio >= thresholds.pass_ratio:
        return [Reason(verdict=Verdict.PASS, code="bandwidth-ok", message=said)], figures
    if ratio >= thresholds.fail_ratio:
        return [
            Reason(
                verdict=Verdict.WARN,
                code="bandwidth-low",
                message=f"{said}; below {_percent(thresholds.pass_ratio)} — rerun; if it stays, "
                "compare with the last good report (metalserve diag compare)",
            )
        ], figures
    return [
        Reason(
            verdict=Verdict.FAIL,
            code="bandwidth-fail",
            message=f"{said}; below {_percent(thresholds.fail_ratio)} — see the transport reasons, "
            "nvidia-smi topo -m and the NCCL log",
        )
    ], figures


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.0f} %"


def _expected(expectation: BusBwExpectation | None, nvls_off: bool) -> tuple[float | None, str]:
    if expectation is None:
        return None, ""
    if nvls_off and expectation.ring_busbw_gbps is not None:
        return expectation.ring_busbw_gbps, expectation.ring_source or expectation.source
    return expectation.busbw_gbps, expectation.source


# --------------------------------------------------------------------------- the judge


def judge(
    parsed: ParsedOutput,
    topology: Topology | None,
    expectation: BusBwExpectation | None,
    thresholds: Thresholds = THRESHOLDS,
) -> Judgement:
    """Weigh a parsed run against what its profile should reach."""
    run, transport = parsed.run, parsed.transport
    reasons = _aborts(run, transport) + _corruption(run)
    if run.min_bw_check == "FAILED":
        reasons.append(
            Reason(
                verdict=Verdict.FAIL,
                code="min-bw-failed",
                message="nccl-tests' own NCCL_TESTS_MIN_BW check printed FAILED",
            )
        )
    nvls_off = False
    if topology is not None:
        reasons += _gpu_count(run, transport, topology) + _transports(transport, topology)
        nvls_off = _nvls_off(transport, topology)
        if nvls_off:
            reasons.append(
                Reason(
                    verdict=Verdict.WARN,
                    code="nvls-off",
                    message="NVLS (NVLink SHARP) not in use — judged against the ring figure; "
                    "check nvidia-fabricmanager and NCCL_NVLS_ENABLE",
                )
            )
    if not any(r.code.startswith("aborted") for r in reasons):
        reasons += _warnings(transport)
    bandwidth, figures = _bandwidth(run, expectation, nvls_off, thresholds)
    reasons += bandwidth
    if not reasons:
        reasons.append(
            Reason(
                verdict=Verdict.PASS,
                code="no-findings",
                message="completed with correct results; bandwidth not judged for "
                f"{run.collective or 'this collective'} (the catalogue holds all_reduce figures)",
            )
        )
    verdict = max((r.verdict for r in reasons), key=lambda v: v.severity)
    ordered = tuple(sorted(reasons, key=lambda r: -r.verdict.severity))
    return Judgement(verdict=verdict, reasons=ordered, **figures)  # type: ignore[arg-type]
