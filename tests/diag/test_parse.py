"""The parser reads every nccl-tests layout in use, as real runs printed it."""

from __future__ import annotations

import pytest

from metalserve.diag.parse import (
    AbortKind,
    OutputFormat,
    iter_busbw,
    parse_json,
    parse_nccl_log,
    parse_output,
    strip_launcher_prefix,
)
from metalserve.errors import ParseError
from tests.diag import synthetic
from tests.diag.synthetic import fixture


def test_pre_2_13_table_with_na_error_column_and_info_line_inside() -> None:
    run = parse_output(fixture("a100-sxm4-8_pre213_superbench.log")).run
    assert run.format is OutputFormat.PRE_2_13
    assert len(run.rows) == 34  # the NCCL INFO line between header and rows is not a row
    last = run.rows[-1]
    assert (last.size, last.count, last.type, last.redop, last.root) == (
        8589934592,
        2147483648,
        "float",
        "sum",
        None,
    )
    assert last.out_of_place is not None and last.in_place is not None
    assert (last.out_of_place.time_us, last.out_of_place.busbw) == (63896.0, 235.26)
    assert last.in_place.busbw == 235.03
    assert last.out_of_place.max_error is None  # validation: 0 prints N/A
    assert run.validation is False
    assert run.avg_busbw_text == "68.4048" and run.out_of_bounds == 0
    assert [d.name for d in run.devices] == ["A100-SXM4-40GB"] * 8
    assert run.devices[0].group is None and run.devices[0].bus_id == "0x00"


def test_average_matches_the_mean_of_every_row_as_nccl_tests_computes_it() -> None:
    run = parse_output(fixture("a100-sxm4-8_pre213_superbench.log")).run
    values = list(iter_busbw(run))
    assert len(values) == 68
    assert sum(values) / len(values) == pytest.approx(run.avg_busbw, abs=0.01)


def test_current_format_2_20_with_version_line_and_two_hosts() -> None:
    run = parse_output(fixture("gb10-2_v2.20_dgx-spark-pr103.log")).run
    assert run.format is OutputFormat.CURRENT
    assert (run.tests_version, run.collective) == ("2.20.0", "all_reduce_perf")
    assert run.hosts == ("spark-d708", "spark-dbf4")
    assert run.devices[1].bus_id == "000f:01:00" and run.devices[1].pid == 1669515
    assert [r.root for r in run.rows] == [-1] * 4
    assert run.rows[0].out_of_place is not None and run.rows[0].out_of_place.wrong == 0
    assert run.avg_busbw is None and not run.concluded  # the excerpt stops mid-table


def test_pre_2_13_all_gather_rows_without_redop_or_header() -> None:
    run = parse_output(fixture("rtx2080ti-2_pre213-allgather_nccl-tests44.log")).run
    assert run.format is OutputFormat.PRE_2_13
    assert len(run.rows) == 13
    first = run.rows[0]
    assert first.redop is None and first.type == "float"
    assert first.out_of_place is not None and first.out_of_place.max_error == 0.0
    assert run.peak_busbw == 21.86


def test_rows_without_header_and_footer_with_trailing_space() -> None:
    run = parse_output(fixture("mi-rccl_footer-asterisks_rccl2078.log")).run
    assert run.avg_busbw_text == "142.652" and run.concluded
    assert run.collective == "all_reduce_perf"
    assert run.rows[-1].size == 17179869184 and run.peak_busbw == 361.17


def test_bracket_launcher_prefix_inside_rows() -> None:
    run = parse_output(fixture("h100-3x8_bracket-prefix_nccl1453.log")).run
    assert len(run.rows) == 10 and run.skipped_row_lines == 0
    sixty_four_mib = next(r for r in run.rows if r.size == 67108864)
    assert sixty_four_mib.out_of_place is not None
    assert sixty_four_mib.out_of_place.busbw == 5.27 and sixty_four_mib.root == -1


@pytest.mark.parametrize("style", ["mpirun", "srun"])
def test_launcher_prefixes_change_nothing(style: str) -> None:
    plain = parse_output(fixture("a100-sxm4-8_pre213_superbench.log")).run
    tagged = parse_output(synthetic.tagged(fixture("a100-sxm4-8_pre213_superbench.log"), style)).run
    assert tagged == plain


def test_strip_launcher_prefix_keeps_nccl_info_device_marker() -> None:
    line = "[0] h100clust-worker-1:497888:498087 [0] NCCL INFO Connected all trees"
    assert (
        strip_launcher_prefix(line)
        == "h100clust-worker-1:497888:498087 [0] NCCL INFO Connected all trees"
    )


def test_abort_chain_after_rows_is_read_once_per_host() -> None:
    run = parse_output(fixture("h100-2node_rows-then-abort_nccl-tests322.log")).run
    assert len(run.rows) == 5
    assert [a.kind for a in run.aborts] == [AbortKind.NCCL] * 4
    first = run.aborts[0]
    assert (first.host, first.location) == ("HCA-128", "common.cu:1204")
    assert first.message.startswith("unhandled cuda error")


def test_missing_gpu_message_is_an_abort() -> None:
    run = parse_output(synthetic.missing_gpu()).run
    assert [a.kind for a in run.aborts] == [AbortKind.USAGE]
    assert "7 were found" in run.aborts[0].message


def test_json_v3_report() -> None:
    run = parse_json(fixture("h100-8_json-v3_azure-chm.json"))
    assert run.format is OutputFormat.JSON
    assert run.collective == "all_reduce_perf" and run.nccl_version == "2.23.4"
    assert run.avg_busbw_text == "480.294297" and run.avg_busbw == 480.294297
    assert run.out_of_bounds == 0 and run.min_bw_check is None  # "unchecked"
    row = run.rows[0]
    assert row.root == -1 and row.size == 17179869184
    assert row.out_of_place is not None and row.out_of_place.busbw == 480.902491
    assert len(run.devices) == 8 and run.hosts == ("nccl-json",)


def test_json_that_is_not_a_report_is_an_operator_error() -> None:
    with pytest.raises(ParseError, match="expected an nccl-tests JSON report"):
        parse_json('{"hello": 1}')
    with pytest.raises(ParseError, match="invalid JSON"):
        parse_json("{not json")


def test_socket_fallback_log() -> None:
    out = parse_output(fixture("a100-pcie-4_socket-fallback_nccl1812.log"))
    assert out.transport.network == "Socket" and out.transport.net_socket
    assert out.run.nccl_version == "2.19.3"
    assert len(out.run.devices) == 4


def test_ib_gdrdma_nvls_and_rank_counts() -> None:
    transport = parse_nccl_log(fixture("h100-3x8_ib-gdrdma-nvls_nccl1453.log").splitlines())
    assert transport.channels == {"NET/IB": 6}
    assert transport.gdrdma and transport.nvls_available
    assert (transport.n_ranks, transport.n_nodes, transport.local_ranks) == (24, 3, 8)
    assert transport.env_set == {"NCCL_CROSS_NIC": "2"}


def test_p2p_direct_shm_and_roce_network_lines() -> None:
    assert parse_nccl_log(fixture("h100-8_p2p-direct_nccl1705.log").splitlines()).channels == {
        "P2P/direct": 7
    }
    assert parse_nccl_log(fixture("2x8_shm_nccl-tests166.log").splitlines()).channels == {"SHM": 6}
    roce = parse_output(fixture("rtx4090-2_p2p-disabled-roce_tinygrad45.log"))
    assert roce.transport.network == "IB" and roce.run.nccl_version == "2.26.5"


def test_p2p_disable_and_nvls_absence_from_info_lines() -> None:
    off = parse_output(synthetic.p2p_disabled(20.0)).transport
    assert off.p2p_disabled and off.channels == {"SHM": 2}
    assert parse_output(synthetic.nvls_off(370.0)).transport.nvls_available is False


def test_wrong_counts_in_exponent_form() -> None:
    run = parse_output(synthetic.wrong_results()).run
    assert run.rows[0].wrong == 2 * 1.04858e06 and run.out_of_bounds == 2


def test_blank_out_of_place_body_reads_as_in_place_only() -> None:
    text = synthetic.HEADER_2_13.format(ranks="") + (
        "  1073741824     268435456     float     sum      -1"
        + " " * 32
        + "   5000.0  214.75  402.65       0\n"
    )
    row = parse_output(text).run.rows[0]
    assert row.out_of_place is None
    assert row.in_place is not None and row.in_place.busbw == 402.65


def test_per_iteration_columns_and_cputime_header() -> None:
    """``-I 1`` adds i_min/i_max/i_p99/i_cv% per placement (2.19); ``-C`` renames time to cputime."""
    header = (
        "#       size         count      type   redop    root  cputime   algbw   busbw  #wrong"
        "    i_min    i_max    i_p99    i_cv%  cputime   algbw   busbw  #wrong    i_min    i_max"
        "    i_p99    i_cv%\n"
    )
    row = (
        "  4294967296    1073741824     float     sum      -1    15712  273.36  478.38       0"
        "  15650.1  15790.4  15790.4     0.31    15720  273.22  478.13       0  15660.2  15801.0"
        "  15801.0     0.29\n"
    )
    (parsed,) = parse_output(header + row).run.rows
    assert parsed.out_of_place is not None and parsed.in_place is not None
    assert (parsed.out_of_place.time_us, parsed.out_of_place.busbw) == (15712.0, 478.38)
    assert (parsed.in_place.busbw, parsed.in_place.wrong) == (478.13, 0.0)


# Lines from public NCCL_DEBUG=INFO logs. NCCL prints the GPU's DMA-BUF line once per communicator
# before its 'Init START' (NVIDIA/nccl v2.28.9-1 src/init.cc), its per-HCA verdict after it
# (src/graph/topo.cc: 'GPU Direct RDMA %s for HCA', Enabled or Disabled), and '/GDRDMA' on each
# network channel using GPUDirect RDMA (src/transport/net.cc).
GPU_DMABUF = "[0] NCCL INFO DMA-BUF is available on GPU device 0"  # NVIDIA/nccl-tests#245
NO_GDR_INIT = [  # NVIDIA/nccl#1537 verbatim: RoCE, nvidia_peermem loaded, GDR still off
    "hostname1:25668:27396 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE [RO]; "
    "OOB primaryip:10.10.10.10<0>",
    "hostname1:25668:27396 [0] NCCL INFO Using network IB",
    "hostname1:25668:27396 [0] NCCL INFO comm 0x55cc8aa86c70 rank 0 nranks 16 cudaDev 0 nvmlDev 0 "
    "busId 1c000 commId 0x65e0bd6ee7449db4 - Init START",
    "hostname1:25668:27396 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0'",
    "hostname1:25668:27396 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 1 'mlx5_1'",
]
INIT_START = NO_GDR_INIT[2]
HCA_ENABLED = NO_GDR_INIT[3].replace("Disabled", "Enabled")  # topo.cc's other word
GDRDMA_CHANNELS = [  # Azure/aks-rdma-infiniband#36 verbatim
    "leader-h2nng:523:564 [0] NCCL INFO Channel 00/0 : 9[1] -> 0[0] [receive] via NET/IB/0/GDRDMA",
    "leader-h2nng:528:570 [5] NCCL INFO Channel 04/0 : 5[5] -> 12[4] [send] via NET/IB/4/GDRDMA",
]


@pytest.mark.parametrize(
    ("lines", "path"),
    [
        # the GPU offers DMA-BUF: NCCL registers through it (src/transport/net.cc useDmaBuf)
        ([GPU_DMABUF, INIT_START, HCA_ENABLED, *GDRDMA_CHANNELS], "DMA-BUF"),
        # init logged without the DMA-BUF line: the only other way NCCL has is nvidia-peermem
        ([INIT_START, HCA_ENABLED, *GDRDMA_CHANNELS], "nvidia-peermem"),
        # a log cut after init says nothing either way
        ([HCA_ENABLED, *GDRDMA_CHANNELS], "mechanism not logged"),
    ],
    ids=["dmabuf", "peermem", "cut"],
)
def test_the_gpudirect_rdma_path_nccl_really_used(lines: list[str], path: str) -> None:
    assert parse_nccl_log(lines).gpudirect_path == path


def test_no_gdrdma_channel_means_no_gpudirect_path_whatever_was_enabled() -> None:
    lines = [GPU_DMABUF, INIT_START, HCA_ENABLED, GDRDMA_CHANNELS[0].replace("/GDRDMA", "")]
    assert parse_nccl_log(lines).gpudirect_path is None


def test_hcas_nccl_refused_gpudirect_rdma_for_are_named() -> None:
    summary = parse_nccl_log(NO_GDR_INIT)
    assert summary.no_gdr_hcas == ("mlx5_0", "mlx5_1")
    assert summary.gdr_hcas == () and summary.init_logged and not summary.gpu_dmabuf
    enabled = parse_nccl_log([HCA_ENABLED])
    assert (enabled.gdr_hcas, enabled.no_gdr_hcas) == (("mlx5_0",), ())
