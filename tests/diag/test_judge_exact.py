"""Each verdict of the judge at and around its boundaries, on runs built field by field.

The bars are public rules, written out here rather than read back from the catalogue:
- PASS at ≥ 95 % of the expected busbw (Microsoft SuperBench data-diagnosis: "NCCL_BW suffers
  > 5 % downgrade"); FAIL below 90 % (nccl-tests NCCL_TESTS_MIN_BW: FAILED when bandwidth
  < 0.9 × the minimum, src/util.cu); WARN in between.
- Bus bandwidth is judged at messages of 1 GiB and more (sjeaugey, NVIDIA/nccl-tests#212).
- NCCL_P2P_DISABLE=1 costs 40-60 % (the GLM 5.2 MoE deployment guide).
"""

from __future__ import annotations

import pytest

from metalserve.catalog.busbw import BusBwExpectation, Thresholds
from metalserve.catalog.profiles import PROFILES
from metalserve.diag.judge import (
    NO_RESULTS,
    Judgement,
    Reason,
    Topology,
    Verdict,
    human_bytes,
    judge,
    topology_of,
)
from metalserve.diag.parse import (
    Abort,
    AbortKind,
    NcclTestsRun,
    OutputFormat,
    ParsedOutput,
    Placement,
    RankDevice,
    ResultRow,
    TransportSummary,
)

GIB = 1 << 30
MIB = 1 << 20
ONE_NODE = Topology(gpus_per_node=8, nodes=1, interconnect="nvswitch")
TWO_NODES_IB = Topology(gpus_per_node=8, nodes=2, interconnect="nvswitch", fabric="infiniband")
EXPECT_100 = BusBwExpectation(profile_id="p", busbw_gbps=100.0, basis="b", source="src")


def row(
    size: int, busbw: float | None, wrong: float = 0, in_place: float | None = None
) -> ResultRow:
    return ResultRow(
        size=size,
        count=size // 4,
        type="float",
        redop="sum",
        root=-1,
        out_of_place=Placement(time_us=1.0, algbw=1.0, busbw=busbw, wrong=wrong),
        in_place=Placement(time_us=1.0, algbw=1.0, busbw=in_place, wrong=0),
    )


def devices(hosts: tuple[str, ...], per_host: int) -> tuple[RankDevice, ...]:
    return tuple(
        RankDevice(rank=i * per_host + d, host=h, device=d, bus_id="0000:18:00", name="H100")
        for i, h in enumerate(hosts)
        for d in range(per_host)
    )


def parsed(
    rows: tuple[ResultRow, ...] = (),
    transport: TransportSummary | None = None,
    **run: object,
) -> ParsedOutput:
    return ParsedOutput(
        run=NcclTestsRun(format=OutputFormat.CURRENT, rows=rows, **run),  # type: ignore[arg-type]
        transport=transport or TransportSummary(),
    )


def at(busbw: float, size: int = 8 * GIB) -> ParsedOutput:
    return parsed((row(GIB // 2, 10.0), row(size, busbw)), devices=devices(("n",), 8))


def codes(j: Judgement) -> list[str]:
    return [r.code for r in j.reasons]


# --------------------------------------------------------------------------- bandwidth bars


@pytest.mark.parametrize(
    ("busbw", "verdict", "code"),
    [
        (100.0, Verdict.PASS, "bandwidth-ok"),
        (95.0, Verdict.PASS, "bandwidth-ok"),  # exactly at the PASS ratio
        (94.99, Verdict.WARN, "bandwidth-low"),
        (90.0, Verdict.WARN, "bandwidth-low"),  # exactly at the FAIL ratio is not yet FAIL
        (89.99, Verdict.FAIL, "bandwidth-fail"),
        (0.0, Verdict.FAIL, "bandwidth-fail"),
    ],
)
def test_pass_warn_fail_at_and_around_95_and_90_percent(
    busbw: float, verdict: Verdict, code: str
) -> None:
    j = judge(at(busbw), ONE_NODE, EXPECT_100)
    assert (j.verdict, codes(j)) == (verdict, [code])
    assert j.ratio == busbw / 100.0
    assert (j.measured_busbw, j.measured_at_bytes) == (busbw, 8 * GIB)
    assert (j.expected_busbw, j.expected_source) == (100.0, "src")


def test_bandwidth_messages_give_the_figures_and_the_next_step() -> None:
    said = "busbw {m:g} GB/s at 8 GiB is {p} % of the expected 100 GB/s (src)"
    assert judge(at(95.0), ONE_NODE, EXPECT_100).reasons[0].message == said.format(m=95.0, p=95)
    assert judge(at(92.5), ONE_NODE, EXPECT_100).reasons[0].message == (
        said.format(m=92.5, p=92) + "; below 95 % — rerun; if it stays, compare with the last "
        "good report (metalserve diag compare)"
    )
    assert judge(at(50.0), ONE_NODE, EXPECT_100).reasons[0].message == (
        said.format(m=50.0, p=50) + "; below 90 % — see the transport reasons, nvidia-smi topo -m "
        "and the NCCL log"
    )


def test_thresholds_passed_in_replace_the_catalogue_s() -> None:
    strict = Thresholds(
        pass_ratio=0.99,
        pass_source="s",
        fail_ratio=0.98,
        fail_source="s",
        large_message_bytes=16 * GIB,
        large_message_source="s",
        p2p_disabled_cost="x",
        p2p_disabled_source="s",
    )
    assert judge(at(98.5, 16 * GIB), ONE_NODE, EXPECT_100, strict).verdict is Verdict.WARN
    assert judge(at(97.9, 16 * GIB), ONE_NODE, EXPECT_100, strict).verdict is Verdict.FAIL
    small = judge(at(100.0, 8 * GIB), ONE_NODE, EXPECT_100, strict)
    assert codes(small) == ["messages-too-small"]
    assert small.reasons[0].message == (
        "largest message was 8 GiB; bus bandwidth is judged at ≥ 16 GiB — rerun with -e 8G"
    )


def test_a_sweep_ending_exactly_at_1_gib_is_judged_and_one_below_is_not() -> None:
    j = judge(at(99.0, GIB), ONE_NODE, EXPECT_100)
    assert j.verdict is Verdict.PASS and j.measured_at_bytes == GIB
    short = judge(at(99.0, GIB - 1), ONE_NODE, EXPECT_100)
    assert short.verdict is Verdict.UNKNOWN and not short.fails_host
    assert short.reasons[0].message == (
        f"largest message was {GIB - 1} B; bus bandwidth is judged at ≥ 1 GiB — rerun with -e 8G"
    )
    assert short.measured_busbw is None


def test_the_best_large_row_is_measured_and_either_placement_counts() -> None:
    rows = (
        row(GIB // 2, 500.0),
        row(GIB, 80.0),
        row(2 * GIB, 60.0, in_place=97.0),
        row(4 * GIB, 90.0),
    )
    j = judge(parsed(rows), None, EXPECT_100)
    assert (j.measured_busbw, j.measured_at_bytes) == (97.0, 2 * GIB)
    assert j.verdict is Verdict.PASS


def test_rows_without_any_bandwidth_are_no_results() -> None:
    j = judge(parsed((row(8 * GIB, None),)), ONE_NODE, EXPECT_100)
    assert j.verdict is Verdict.UNKNOWN and codes(j) == [NO_RESULTS]
    assert j.reasons[0].message == (
        "no result rows: the output holds no nccl-tests table — the run was cut short or this is "
        "not nccl-tests output"
    )
    assert not j.produced_result and not j.fails_host
    assert judge(at(99.0), ONE_NODE, EXPECT_100).produced_result


def test_no_expected_figure_is_unknown_and_says_where_to_set_one() -> None:
    j = judge(at(123.5), ONE_NODE, None)
    assert j.verdict is Verdict.UNKNOWN and codes(j) == ["no-expected-figure"]
    assert j.reasons[0].message == (
        "bandwidth unknown: busbw 123.5 GB/s at 8 GiB, but no sourced expected bus bandwidth for "
        "this profile — set metalserve.diag.expected_busbw in the inventory to judge it"
    )
    assert (j.measured_busbw, j.expected_busbw, j.ratio) == (123.5, None, None)
    none = BusBwExpectation(profile_id="p", busbw_gbps=None, basis="no public figure", source="s")
    j = judge(at(123.5), ONE_NODE, none)
    assert "for this profile (no public figure) — set" in j.reasons[0].message


def test_other_collectives_are_measured_but_not_judged() -> None:
    j = judge(
        at(10.0).model_copy(
            update={"run": at(10.0).run.model_copy(update={"collective": "all_gather_perf"})}
        ),
        ONE_NODE,
        EXPECT_100,
    )
    assert j.verdict is Verdict.PASS and codes(j) == ["no-findings"]
    assert j.reasons[0].message == (
        "completed with correct results; bandwidth not judged for all_gather_perf (the catalogue "
        "holds all_reduce figures)"
    )
    assert (j.measured_busbw, j.expected_busbw) == (10.0, None)
    named = at(99.0).run.model_copy(update={"collective": "all_reduce_perf"})
    assert (
        judge(ParsedOutput(run=named, transport=TransportSummary()), ONE_NODE, EXPECT_100).verdict
        is Verdict.PASS
    )


def test_no_findings_names_this_collective_when_unnamed() -> None:
    run = NcclTestsRun(format=OutputFormat.CURRENT, collective="broadcast_perf")
    j = judge(
        ParsedOutput(
            run=run.model_copy(update={"rows": at(1.0).run.rows}), transport=TransportSummary()
        ),
        None,
        None,
    )
    assert "bandwidth not judged for broadcast_perf" in j.reasons[0].message


# --------------------------------------------------------------------------- NVLS and the ring figure

RING = BusBwExpectation(
    profile_id="p",
    busbw_gbps=470.0,
    basis="b",
    source="nvls",
    ring_busbw_gbps=370.0,
    ring_source="ring",
)


@pytest.mark.parametrize(
    ("transport", "nvls_off"),
    [
        (TransportSummary(nvls_available=False), True),
        (TransportSummary(nvls_available=True, nvls_channels=0), True),
        (TransportSummary(nvls_available=True, nvls_channels=16), False),
        (TransportSummary(), False),  # not logged: no evidence NVLS was off
    ],
)
def test_without_nvls_on_nvswitch_the_ring_figure_is_the_bar(
    transport: TransportSummary, nvls_off: bool
) -> None:
    p = parsed((row(8 * GIB, 360.0),), transport, devices=devices(("n",), 8))
    j = judge(p, ONE_NODE, RING)
    assert ("nvls-off" in codes(j)) is nvls_off
    assert (j.expected_busbw, j.expected_source) == (
        (370.0, "ring") if nvls_off else (470.0, "nvls")
    )
    if nvls_off:
        assert j.verdict is Verdict.WARN
        assert j.reasons[0].message == (
            "NVLS (NVLink SHARP) not in use — judged against the ring figure; check "
            "nvidia-fabricmanager and NCCL_NVLS_ENABLE"
        )


def test_nvls_is_only_expected_on_nvswitch_and_the_ring_source_falls_back() -> None:
    p = parsed(
        (row(8 * GIB, 360.0),), TransportSummary(nvls_available=False), devices=devices(("n",), 8)
    )
    nvlink = Topology(gpus_per_node=8, nodes=1, interconnect="nvlink")
    assert "nvls-off" not in codes(judge(p, nvlink, RING))
    no_ring_source = RING.model_copy(update={"ring_source": None})
    assert judge(p, ONE_NODE, no_ring_source).expected_source == "nvls"
    no_ring = RING.model_copy(update={"ring_busbw_gbps": None})
    assert judge(p, ONE_NODE, no_ring).expected_busbw == 470.0


# --------------------------------------------------------------------------- ranks and nodes


def test_a_missing_gpu_is_counted_from_the_device_lines() -> None:
    p = parsed((row(8 * GIB, 99.0),), devices=devices(("n",), 7))
    j = judge(p, ONE_NODE, EXPECT_100)
    assert j.verdict is Verdict.FAIL and codes(j) == ["gpus-missing", "bandwidth-ok"]
    assert j.reasons[0].message == (
        "1 of 8 GPUs missing (7 ranks ran) — check nvidia-smi, nvidia-fabricmanager and "
        "CUDA_VISIBLE_DEVICES"
    )


def test_without_device_lines_the_nccl_rank_count_decides() -> None:
    p = parsed((row(8 * GIB, 99.0),), TransportSummary(n_ranks=6))
    assert (
        judge(p, ONE_NODE, EXPECT_100).reasons[0].message.startswith("2 of 8 GPUs missing (6 ranks")
    )
    full = parsed((row(8 * GIB, 99.0),), TransportSummary(n_ranks=8))
    assert codes(judge(full, ONE_NODE, EXPECT_100)) == ["bandwidth-ok"]
    unknown = parsed((row(8 * GIB, 99.0),))
    assert codes(judge(unknown, ONE_NODE, EXPECT_100)) == ["bandwidth-ok"]


def test_a_two_node_run_whose_ranks_all_sat_on_one_host_misses_a_node() -> None:
    # 16 ranks, as the inventory asks, but every one on node-a: the hostfile missed node-b.
    p = parsed((row(8 * GIB, 99.0),), devices=devices(("node-a",), 16))
    j = judge(p, TWO_NODES_IB, EXPECT_100)
    assert j.verdict is Verdict.FAIL and codes(j)[0] == "nodes-missing"
    assert j.reasons[0].message == (
        "1 of 2 nodes missing (1 ran) — check the hostfile and that mpirun reaches every host"
    )
    both = parsed((row(8 * GIB, 99.0),), devices=devices(("node-a", "node-b"), 8))
    assert codes(judge(both, TWO_NODES_IB, EXPECT_100)) == ["bandwidth-ok"]


def test_without_device_lines_the_nccl_node_count_decides() -> None:
    one = parsed((row(8 * GIB, 99.0),), TransportSummary(n_ranks=16, n_nodes=1))
    assert codes(judge(one, TWO_NODES_IB, EXPECT_100))[0] == "nodes-missing"
    two = parsed((row(8 * GIB, 99.0),), TransportSummary(n_ranks=16, n_nodes=2))
    assert codes(judge(two, TWO_NODES_IB, EXPECT_100)) == ["bandwidth-ok"]
    zero = parsed((row(8 * GIB, 99.0),), TransportSummary(n_ranks=16, n_nodes=0))
    assert codes(judge(zero, TWO_NODES_IB, EXPECT_100)) == ["bandwidth-ok"]


# --------------------------------------------------------------------------- transports


def test_socket_fallback_between_nodes_fails_and_names_the_cause() -> None:
    socket = TransportSummary(channels={"NET/Socket": 8})
    j = judge(parsed(transport=socket), TWO_NODES_IB, None)
    assert j.reasons[0] == Reason(
        verdict=Verdict.FAIL,
        code="net-socket-fallback",
        message="fell back to NET/Socket — IB disabled or GID index wrong (check NCCL_IB_HCA, "
        "NCCL_IB_GID_INDEX, ibv_devinfo)",
    )
    disabled = TransportSummary(network="Socket", ib_disabled=True)
    assert judge(parsed(transport=disabled), TWO_NODES_IB, None).reasons[0].message == (
        "fell back to NET/Socket — NCCL_IB_DISABLE=1 is set"
    )
    # one node, or no fabric in the inventory: sockets are not a fallback
    assert "net-socket-fallback" not in codes(judge(parsed(transport=socket), ONE_NODE, None))
    no_fabric = TWO_NODES_IB.model_copy(update={"fabric": None})
    assert "net-socket-fallback" not in codes(judge(parsed(transport=socket), no_fabric, None))


def test_ib_without_gdrdma_warns_only_between_nodes_that_can_have_it() -> None:
    ib = TransportSummary(channels={"NET/IB": 8})
    j = judge(parsed(transport=ib), TWO_NODES_IB, None)
    assert j.reasons[1] == Reason(
        verdict=Verdict.WARN,
        code="no-gdrdma",
        message="NET/IB without GDRDMA — GPUDirect RDMA is off: use the open kernel modules "
        "(DMA-BUF) or load nvidia-peermem (needs MLNX_OFED/DOCA-OFED), and check "
        "NCCL_NET_GDR_LEVEL",
    )

    # NCCL's per-HCA lines say which of the two it is ('GPU Direct RDMA Disabled/Enabled for HCA')
    def no_gdrdma(**hcas: tuple[str, ...]) -> str:
        transport = ib.model_copy(update=hcas)
        judged = judge(parsed(transport=transport), TWO_NODES_IB, None)
        return next(r.message for r in judged.reasons if r.code == "no-gdrdma")

    assert no_gdrdma(no_gdr_hcas=("mlx5_0", "mlx5_3")).endswith(
        "GPUDirect RDMA is off: NCCL found neither nvidia-peermem nor DMA-BUF for mlx5_0, mlx5_3 "
        "('GPU Direct RDMA Disabled for HCA'): use the open kernel modules (DMA-BUF) or load "
        "nvidia-peermem built against MLNX_OFED/DOCA-OFED"
    )
    assert no_gdrdma(gdr_hcas=("mlx5_0", "mlx5_1")).endswith(
        "GPUDirect RDMA is off: NCCL could use it on mlx5_0, mlx5_1 but judged the GPU too far "
        "from the HCA: check the PCI topology and NCCL_NET_GDR_LEVEL"
    )
    with_gdr = ib.model_copy(update={"gdrdma": True})
    assert "no-gdrdma" not in codes(judge(parsed(transport=with_gdr), TWO_NODES_IB, None))
    assert "no-gdrdma" not in codes(judge(parsed(transport=ib), ONE_NODE, None))
    no_peermem = TWO_NODES_IB.model_copy(update={"gpudirect_rdma": False})
    assert "no-gdrdma" not in codes(judge(parsed(transport=ib), no_peermem, None))
    logged_ib = TransportSummary(network="IB")
    assert "no-gdrdma" in codes(judge(parsed(transport=logged_ib), TWO_NODES_IB, None))


@pytest.mark.parametrize(
    ("interconnect", "verdict"),
    [
        ("nvswitch", Verdict.FAIL),
        ("nvlink", Verdict.FAIL),
        ("pcie", Verdict.WARN),
        (None, Verdict.WARN),
    ],
)
def test_p2p_disabled_fails_on_nvlink_and_warns_on_pcie(
    interconnect: str | None, verdict: Verdict
) -> None:
    topo = Topology(gpus_per_node=4, nodes=1, interconnect=interconnect)
    j = judge(parsed(transport=TransportSummary(p2p_disabled=True)), topo, None)
    reason = next(r for r in j.reasons if r.code == "p2p-disabled")
    assert reason.verdict is verdict
    assert reason.message == (
        "P2P disabled: NCCL_P2P_DISABLE=1 costs 40-60 % — unset it; if P2P hangs without it, fix "
        "ACS/IOMMU (iommu=pt, ACS off) instead"
    )


def test_shm_only_between_p2p_capable_gpus_is_p2p_lost() -> None:
    shm = TransportSummary(channels={"SHM": 12})
    topo = Topology(gpus_per_node=4, nodes=1, interconnect="nvlink")
    reason = next(
        r for r in judge(parsed(transport=shm), topo, None).reasons if r.code == "p2p-disabled"
    )
    assert reason.message.startswith(
        "P2P disabled: GPUs exchange through host memory (SHM), which costs 40-60 % — unset it"
    )
    mixed = TransportSummary(channels={"SHM": 4, "P2P/IPC": 24})
    assert "p2p-disabled" not in codes(judge(parsed(transport=mixed), topo, None))
    cumem = TransportSummary(channels={"SHM": 4, "P2P/CUMEM": 24})
    assert "p2p-disabled" not in codes(judge(parsed(transport=cumem), topo, None))
    single = Topology(gpus_per_node=1, nodes=2, interconnect="unified")
    assert "p2p-disabled" not in codes(judge(parsed(transport=shm), single, None))
    no_p2p = topo.model_copy(update={"p2p_available": False})
    assert "p2p-disabled" not in codes(judge(parsed(transport=shm), no_p2p, None))


def test_nccl_warnings_are_warnings_three_at_most() -> None:
    warn = TransportSummary(warnings=("a", "b", "c", "d"))
    j = judge(parsed((row(8 * GIB, 99.0),), warn), None, EXPECT_100)
    assert j.verdict is Verdict.WARN
    assert [r.message for r in j.reasons] == [
        "NCCL WARN a",
        "NCCL WARN b",
        "NCCL WARN c",
        j.reasons[3].message,
    ]
    assert codes(j) == ["nccl-warn"] * 3 + ["bandwidth-ok"]


# --------------------------------------------------------------------------- aborts, corruption


def abort(kind: AbortKind, message: str, host: str | None = None) -> Abort:
    return Abort(kind=kind, message=message, host=host, line=f"  {host}: Test failure {message}  ")


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        (AbortKind.NCCL, "rerun with NCCL_DEBUG=INFO and read the first NCCL WARN"),
        (AbortKind.CUDA, "check dmesg for Xid errors and nvidia-smi for a lost GPU"),
        (
            AbortKind.TIMEOUT,
            "a rank hung: check the fabric and that every host runs the same build",
        ),
        (AbortKind.USAGE, "fix the nccl-tests arguments"),
        (AbortKind.LAUNCHER, "check the hostfile, slots and ssh between the hosts"),
    ],
)
def test_each_abort_kind_fails_with_its_hint(kind: AbortKind, hint: str) -> None:
    j = judge(parsed(aborts=(abort(kind, "boom", "h1"),)), ONE_NODE, EXPECT_100)
    assert j.verdict is Verdict.FAIL
    assert j.reasons == (
        Reason(
            verdict=Verdict.FAIL,
            code=f"aborted-{kind}",
            message=f"aborted: h1: Test failure boom — {hint}",
        ),
    )


def test_one_abort_on_several_hosts_is_one_reason_counting_them() -> None:
    aborts = (
        abort(AbortKind.NCCL, "boom", "h1"),
        abort(AbortKind.NCCL, "boom", "h2"),
        abort(AbortKind.NCCL, "boom", "h2"),
        abort(AbortKind.NCCL, "other", "h1"),
    )
    j = judge(parsed(aborts=aborts, transport=TransportSummary(warnings=("w1", "w2"))), None, None)
    assert codes(j) == ["aborted-nccl", "aborted-nccl", "aborted-nccl-warn"]
    assert j.reasons[0].message.startswith("aborted: h1: Test failure boom (on 2 hosts) — rerun")
    assert "(on" not in j.reasons[1].message
    # after an abort the NCCL WARN is its cause, not a separate warning
    assert j.reasons[2].message == "aborted: NCCL WARN w1"
    no_host = judge(parsed(aborts=(abort(AbortKind.CUDA, "x"),)), None, None)
    assert "(on" not in no_host.reasons[0].message


def test_invalid_number_of_gpus_is_gpus_missing() -> None:
    usage = abort(AbortKind.USAGE, "Invalid number of GPUs: 8 requested but only 6 were found.")
    j = judge(parsed(aborts=(usage,)), ONE_NODE, EXPECT_100)
    assert j.reasons == (
        Reason(
            verdict=Verdict.FAIL,
            code="gpus-missing",
            message="2 of 8 GPUs missing (nccl-tests found 6) — check nvidia-smi, "
            "nvidia-fabricmanager and CUDA_VISIBLE_DEVICES",
        ),
    )


def test_wrong_values_at_any_size_are_corruption() -> None:
    rows = (row(GIB, 99.0), row(2 * GIB, 99.0, wrong=3), row(4 * GIB, 99.0, wrong=1))
    j = judge(parsed(rows), None, EXPECT_100)
    assert j.verdict is Verdict.FAIL
    assert j.reasons[0].message == (
        "data corruption: #wrong > 0 at 2 size(s), first at 2 GiB — the collective returned wrong "
        "values: look for Xid/ECC errors in dmesg and run dcgmi diag -r 3 on each GPU"
    )
    oob = judge(parsed((row(GIB, 99.0),), out_of_bounds=2), None, EXPECT_100)
    assert oob.reasons[0].message.startswith("data corruption: 2 out-of-bounds check(s) failed — ")
    clean = judge(parsed((row(GIB, 99.0),), out_of_bounds=0), None, EXPECT_100)
    assert clean.verdict is Verdict.PASS


def test_nccl_tests_own_min_bw_check_fails() -> None:
    j = judge(parsed((row(GIB, 99.0),), min_bw_check="FAILED"), None, EXPECT_100)
    assert j.verdict is Verdict.FAIL
    assert j.reasons[0] == Reason(
        verdict=Verdict.FAIL,
        code="min-bw-failed",
        message="nccl-tests' own NCCL_TESTS_MIN_BW check printed FAILED",
    )
    assert (
        judge(parsed((row(GIB, 99.0),), min_bw_check="OK"), None, EXPECT_100).verdict
        is Verdict.PASS
    )


def test_reasons_are_ordered_worst_first_and_the_verdict_is_the_worst() -> None:
    p = parsed(
        (row(GIB, 99.0),),
        TransportSummary(warnings=("w",), nvls_available=False),
        devices=devices(("n",), 7),
    )
    j = judge(p, ONE_NODE, EXPECT_100)
    assert [r.verdict for r in j.reasons] == [
        Verdict.FAIL,
        Verdict.WARN,
        Verdict.WARN,
        Verdict.PASS,
    ]
    assert codes(j) == ["gpus-missing", "nvls-off", "nccl-warn", "bandwidth-ok"]
    assert j.verdict is Verdict.FAIL and j.fails_host
    assert [v.severity for v in Verdict] == [0, 1, 2, 3]
    assert [str(v) for v in Verdict] == ["PASS", "WARN", "UNKNOWN", "FAIL"]


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (16 * GIB, "16 GiB"),
        (GIB, "1 GiB"),
        (GIB + GIB // 2, "1.5 GiB"),
        (GIB + GIB // 16, "1.0625 GiB"),
        (GIB + GIB // 32, "1056 MiB"),
        (GIB - MIB, "1023 MiB"),
        (64 * MIB, "64 MiB"),
        (MIB, "1 MiB"),
        (1024, "1 KiB"),
        (1024 + 64, "1.0625 KiB"),
        (1024 + 32, "1056 B"),
        (1023, "1023 B"),
        (1000, "1000 B"),
        (0, "0 B"),
    ],
)
def test_human_bytes_in_binary_units_as_nccl_tests_takes_them(size: int, text: str) -> None:
    assert human_bytes(size) == text


def test_topology_of_a_catalogue_profile() -> None:
    t = topology_of(PROFILES["h200-sxm-8x2-ib"])
    assert t == Topology(
        gpus_per_node=8,
        nodes=2,
        interconnect="nvswitch",
        fabric="infiniband",
        p2p_available=True,
        gpudirect_rdma=True,
    )
    assert t.total_gpus == 16
    cpu = topology_of(PROFILES["sandbox-cpu"])
    assert (cpu.interconnect, cpu.fabric, cpu.gpudirect_rdma, cpu.total_gpus) == (
        None,
        None,
        True,
        0,
    )
    assert topology_of(PROFILES["rtx4090-4"]).p2p_available is False


def test_missing_gpus_do_not_hide_the_aborts_after_them() -> None:
    usage = abort(AbortKind.USAGE, "Invalid number of GPUs: 8 requested but only 6 were found.")
    cuda = abort(AbortKind.CUDA, "out of memory", "h1")
    j = judge(parsed(aborts=(usage, cuda)), None, None)
    assert codes(j) == ["gpus-missing", "aborted-cuda"]


def test_corruption_has_its_own_code() -> None:
    j = judge(parsed((row(GIB, 99.0, wrong=1),)), None, EXPECT_100)
    assert codes(j) == ["data-corruption", "bandwidth-ok"]


def test_sockets_on_one_node_are_no_fallback_even_with_a_fabric_named() -> None:
    one = Topology(gpus_per_node=8, nodes=1, interconnect="nvswitch", fabric="infiniband")
    socket = TransportSummary(channels={"NET/Socket": 8})
    assert "net-socket-fallback" not in codes(judge(parsed(transport=socket), one, None))


def test_two_gpus_exchanging_through_shm_have_lost_p2p() -> None:
    two = Topology(gpus_per_node=2, nodes=1, interconnect="pcie")
    shm = TransportSummary(channels={"SHM": 2})
    assert "p2p-disabled" in codes(judge(parsed(transport=shm), two, None))


def test_a_large_row_measuring_zero_is_not_the_best() -> None:
    j = judge(parsed((row(GIB, 0.0), row(2 * GIB, 0.5))), None, EXPECT_100)
    assert (j.measured_busbw, j.measured_at_bytes) == (0.5, 2 * GIB)


def test_without_a_topology_the_full_figure_is_the_bar() -> None:
    j = judge(parsed((row(8 * GIB, 460.0),)), None, RING)
    assert (j.expected_busbw, j.expected_source) == (470.0, "nvls")
    assert "nvls-off" not in codes(j)
