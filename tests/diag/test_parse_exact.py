"""Every field the parser reads, line kind by line kind, on lines written as nccl-tests and NCCL print
them.

Formats: NVIDIA/nccl-tests ``src/util.cu`` (≥2.13: ``root`` and ``#wrong`` columns; the footer
``# Out of bounds values : N OK`` and ``# Avg bus bandwidth : X`` with ``OK``/``FAILED`` under
NCCL_TESTS_MIN_BW; ``-J`` JSON with ``nwrong``, ``bus_bw``, ``config.devices``), ``src/common.cu``
of v2.11 (``error`` column, no ``root``), ``src/common.h`` (``Test NCCL failure file.cu:line
'msg'``, ``Test timeout``), NCCL's INFO lines (``Channel 00/0 : 0[0] -> 1[1] via P2P/IPC``,
``Using network IB``, ``nRanks 16 nNodes 2 localRanks 8``, ``NVLS multicast support is
available``, ``NCCL_X set by environment to V``). NCCL's version code is major·10000 + minor·100 +
patch (nccl.h NCCL_VERSION_CODE, ≥ 2.9).
"""

from __future__ import annotations

import json

import pytest

from metalserve.diag.parse import (
    AbortKind,
    OutputFormat,
    Placement,
    RankDevice,
    ResultRow,
    iter_busbw,
    merge_outputs,
    parse_json,
    parse_nccl_log,
    parse_nccl_tests,
    parse_output,
    strip_launcher_prefix,
    transport_kind,
)
from metalserve.errors import ParseError

HEADER = (
    "#       size         count      type   redop    root     time   algbw   busbw  #wrong     "
    "time   algbw   busbw  #wrong\n"
)
OLD_HEADER = (
    "#       size         count      type   redop     time   algbw   busbw  error     time   "
    "algbw   busbw  error\n"
)
ROW = (
    "  1073741824     268435456     float     sum      -1   4567.8  235.07  440.76       0   "
    "4560.1  235.46  441.49       2\n"
)
OLD_ROW = (
    "  8589934592    2147483648     float     sum    63896  134.44  235.26  1e-06    63970  "
    "134.28  235.03    N/A\n"
)


def test_a_current_row_reads_every_column_of_both_placements() -> None:
    run = parse_nccl_tests(HEADER + ROW)
    assert run.format is OutputFormat.CURRENT
    assert run.rows == (
        ResultRow(
            size=1073741824,
            count=268435456,
            type="float",
            redop="sum",
            root=-1,
            out_of_place=Placement(time_us=4567.8, algbw=235.07, busbw=440.76, wrong=0.0),
            in_place=Placement(time_us=4560.1, algbw=235.46, busbw=441.49, wrong=2.0),
        ),
    )
    assert run.rows[0].best_busbw == 441.49
    assert run.rows[0].wrong == 2.0
    assert run.skipped_row_lines == 0


def test_a_pre_2_13_row_reads_the_max_error_not_a_wrong_count() -> None:
    run = parse_nccl_tests(OLD_HEADER + OLD_ROW)
    assert run.format is OutputFormat.PRE_2_13
    (row,) = run.rows
    assert (row.size, row.count, row.type, row.redop, row.root) == (
        8589934592,
        2147483648,
        "float",
        "sum",
        None,
    )
    assert row.out_of_place == Placement(
        time_us=63896.0, algbw=134.44, busbw=235.26, wrong=None, max_error=1e-06
    )
    assert row.in_place == Placement(
        time_us=63970.0, algbw=134.28, busbw=235.03, wrong=None, max_error=None
    )
    assert row.wrong == 0.0


def test_rows_without_a_header_are_read_by_their_shape() -> None:
    current = parse_nccl_tests(ROW)
    assert current.format is OutputFormat.CURRENT
    assert current.rows[0].root == -1 and current.rows[0].in_place is not None
    assert current.rows[0].in_place.wrong == 2.0
    old = parse_nccl_tests(OLD_ROW)
    assert old.format is OutputFormat.PRE_2_13
    assert old.rows[0].out_of_place is not None and old.rows[0].out_of_place.max_error == 1e-06
    # all_gather in v2.11 has no redop: size count type and two placements
    gather = parse_nccl_tests(
        "     1048576        262144     float    58.81   17.83   15.60    0e+00    59.02   17.77   15.55    0e+00\n"
    )
    assert gather.rows[0].redop is None and gather.rows[0].root is None
    assert gather.rows[0].best_busbw == 15.60
    assert parse_nccl_tests("").format is OutputFormat.UNKNOWN


@pytest.mark.parametrize(
    "line",
    [
        "  1024  256  float  sum  -1  1.0  2.0  3.0  4.0  5.0\n",  # 6 values: no shape
        "  1024  256  float  sum  -1  " + "1.0 2.0 3.0 0 " * 3 + "\n",  # 12 measurements
        "  1024  256  float  sum  -1  1.0  2.0  x  0  1.0  2.0  3.0  0\n",  # a word among numbers
        "  1024  256  float  sum  -1  1.0  2.0  N/A  0  1.0  2.0  N/A  0\n",  # no bandwidth at all
        "  1024\n",
    ],
)
def test_a_row_that_cannot_be_read_is_counted_not_invented(line: str) -> None:
    run = parse_nccl_tests(line)
    assert run.rows == ()
    assert run.skipped_row_lines == (0 if line.strip() == "1024" else 1)


def test_lines_with_nccl_in_them_are_not_rows() -> None:
    run = parse_nccl_tests(HEADER + "  12 34 NCCL INFO comm 0x1 rank 0\n" + ROW)
    assert len(run.rows) == 1 and run.skipped_row_lines == 0


def test_a_blank_out_of_place_body_is_in_place_only() -> None:
    row = "  1073741824     268435456     float     sum      -1   4560.1  235.46  441.49       0\n"
    (read,) = parse_nccl_tests(HEADER + row).rows
    assert read.out_of_place is None
    assert read.in_place == Placement(time_us=4560.1, algbw=235.46, busbw=441.49, wrong=0.0)


def test_the_header_lines_of_a_run() -> None:
    text = (
        "# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703\n"
        "# Collective test starting: all_reduce_perf\n"
        "# nThread 1 nGpus 2 minBytes 1073741824 maxBytes 8589934592 step: 2(factor) warmup "
        "iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0\n"
        "# Reducing maxBytes to 4294967296 due to memory limitation\n"
        "#  Rank  1 Group  0 Pid   4242 on     node-b device  1 [0000:19:00] NVIDIA H100 80GB HBM3\n"
        "#  Rank  0 Group  0 Pid   4241 on     node-a device  0 [0000:18:00] NVIDIA H100 80GB HBM3\n"
        "#  Rank  0 Group  0 Pid   4241 on     node-a device  0 [0000:18:00] NVIDIA H100 80GB HBM3\n"
        "# Out of bounds values : 3 FAILED\n"
        "# Avg bus bandwidth    : 68.4048 FAILED\n"
        "# Collective test concluded: all_reduce_perf\n"
        "NCCL version 2.27.3+cuda12.9\n"
    )
    run = parse_nccl_tests(text)
    assert (run.tests_version, run.collective, run.concluded) == ("2.17.6", "all_reduce_perf", True)
    assert (run.n_threads, run.n_gpus_per_thread) == (1, 2)
    assert (run.min_bytes, run.max_bytes, run.reduced_max_bytes) == (1 << 30, 1 << 33, 1 << 32)
    assert run.validation is True
    assert run.devices == (
        RankDevice(
            rank=0,
            host="node-a",
            device=0,
            bus_id="0000:18:00",
            name="NVIDIA H100 80GB HBM3",
            pid=4241,
            group=0,
        ),
        RankDevice(
            rank=1,
            host="node-b",
            device=1,
            bus_id="0000:19:00",
            name="NVIDIA H100 80GB HBM3",
            pid=4242,
            group=0,
        ),
    )
    assert run.hosts == ("node-a", "node-b")
    assert run.out_of_bounds == 3
    assert (run.avg_busbw, run.avg_busbw_text, run.min_bw_check) == (68.4048, "68.4048", "FAILED")
    assert run.nccl_version == "2.27.3"


def test_older_header_lines() -> None:
    text = (
        "# Collective test starting: all_gather_perf\n"
        "# nThread 1 nGpus 8 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 "
        "iters: 20 validation: 0\n"
        "#   Rank  3 Pid  12345 on  host device  3 [0x3b] Tesla V100\n"
        "# Avg bus bandwidth    : 12.5 \n"
        "# Out of bounds values : 0 OK\n"
    )
    run = parse_nccl_tests(text)
    assert run.collective == "all_gather_perf" and not run.concluded
    assert run.validation is False
    assert run.devices == (
        RankDevice(rank=3, host="host", device=3, bus_id="0x3b", name="Tesla V100", pid=12345),
    )
    assert (run.avg_busbw, run.min_bw_check, run.out_of_bounds) == (12.5, None, 0)
    no_validation = parse_nccl_tests("# nThread 2 nGpus 1 minBytes 8 maxBytes 16\n")
    assert no_validation.validation is None and no_validation.n_threads == 2
    assert parse_nccl_tests("# Avg bus bandwidth    : 77.5 OK\n").min_bw_check == "OK"


@pytest.mark.parametrize(
    ("line", "kind", "host", "location", "message"),
    [
        (
            "node-b: Test NCCL failure common.cu:1279 'unhandled system error (run with NCCL_DEBUG=INFO for details) / '",
            AbortKind.NCCL,
            "node-b",
            "common.cu:1279",
            "unhandled system error (run with NCCL_DEBUG=INFO for details) / ",
        ),
        (
            "Test CUDA failure common.cu:892 'out of memory'",
            AbortKind.CUDA,
            None,
            "common.cu:892",
            "out of memory",
        ),
        (
            "NCCL failure all_reduce.cu:44 'internal error'",
            AbortKind.NCCL,
            None,
            "all_reduce.cu:44",
            "internal error",
        ),
        (
            "node-a: Test timeout (300s) common.cu:574",
            AbortKind.TIMEOUT,
            "node-a",
            "common.cu:574",
            "no progress for 300 s",
        ),
        (
            "Invalid number of GPUs: 8 requested but only 4 were found.",
            AbortKind.USAGE,
            None,
            None,
            "Invalid number of GPUs: 8 requested but only 4 were found.",
        ),
        ("invalid option -- 'z'", AbortKind.USAGE, None, None, "invalid option -- 'z'"),
        ("invalid size 12Q", AbortKind.USAGE, None, None, "invalid size 12Q"),
        (
            "mpirun noticed that process rank 3 with PID 0 on node node-b exited on signal 9 (Killed).",
            AbortKind.LAUNCHER,
            None,
            None,
            "mpirun noticed that process rank 3 with PID 0 on node node-b exited on signal 9 (Killed).",
        ),
        (
            "srun: error: node-b: task 9: Exited with exit code 1",
            AbortKind.LAUNCHER,
            None,
            None,
            "srun: error: node-b: task 9: Exited with exit code 1",
        ),
        (
            "There are not enough slots available in the system to satisfy the 16",
            AbortKind.LAUNCHER,
            None,
            None,
            "There are not enough slots available in the system to satisfy the 16",
        ),
    ],
)
def test_each_abort_line(
    line: str, kind: AbortKind, host: str | None, location: str | None, message: str
) -> None:
    (abort,) = parse_nccl_tests(line + "\n").aborts
    assert (abort.kind, abort.host, abort.location, abort.message, abort.line) == (
        kind,
        host,
        location,
        message,
        line,
    )


def test_the_error_line_of_a_run() -> None:
    assert parse_nccl_tests("# error: cudaMalloc failed \n").error_line == "cudaMalloc failed"
    assert parse_nccl_tests("# nothing\n").error_line is None


def test_launcher_prefixes_and_colours_are_stripped() -> None:
    assert strip_launcher_prefix("[1,0]<stdout>:# Avg bus bandwidth    : 12.5\r\n") == (
        "# Avg bus bandwidth    : 12.5"
    )
    assert strip_launcher_prefix("[1,3]<stderr>: x") == "x"
    assert (
        strip_launcher_prefix("  0: # Out of bounds values : 0 OK")
        == "# Out of bounds values : 0 OK"
    )
    assert strip_launcher_prefix("[12] node: Test NCCL failure") == "node: Test NCCL failure"
    assert strip_launcher_prefix("\x1b[1;31mred\x1b[0m") == "red"
    prefixed = "".join(f"[1,0]<stdout>:{line}\n" for line in (HEADER + ROW).splitlines())
    assert parse_nccl_tests(prefixed).rows == parse_nccl_tests(HEADER + ROW).rows


# --------------------------------------------------------------------------- -J JSON


def report(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "version": 3,
        "args": ["/usr/local/bin/all_reduce_perf", "-b", "1G"],
        "nccl_version": 22703,
        "config": {
            "nthreads": 1,
            "ngpus": 1,
            "minimum_bytes": 1073741824,
            "maximum_bytes": 8589934592,
            "validation": 1,
            "devices": [
                {
                    "rank": 1,
                    "group": 0,
                    "pid": 48,
                    "hostname": "n2",
                    "device": 1,
                    "device_hex": "0002:00:00",
                    "device_info": "NVIDIA H100",
                },
                {
                    "rank": 0,
                    "group": 0,
                    "pid": 47,
                    "hostname": "n1",
                    "device": 0,
                    "device_hex": "0001:00:00",
                    "device_info": "NVIDIA H100",
                },
                {"group": 0},
                "not a device",
            ],
        },
        "results": [
            {
                "size": 8589934592,
                "count": 2147483648,
                "type": "float",
                "redop": "sum",
                "root": "    -1",
                "out_of_place": {"time": 31258.7, "alg_bw": 274.8, "bus_bw": 480.9, "nwrong": 0.0},
                "in_place": {"cpu_time": 31337.9, "alg_bw": 274.1, "bus_bw": 479.6, "nwrong": 3.0},
            },
            {"size": -1, "count": 1, "out_of_place": {}},
            {"size": 1, "count": 1},
            "not a row",
        ],
        "out_of_bounds": {"count": 0, "okay": "true"},
        "average_bus_bandwidth": {"bandwidth": 480.25, "okay": "false"},
        "errors": ["", "  ", "rank 3: cuda error"],
        "end_time": "2026-09-17 15:53:15",
    }
    data.update(changes)
    return data


def test_a_json_report_reads_every_field_nwrong_included() -> None:
    run = parse_json(json.dumps(report()))
    assert run.format is OutputFormat.JSON
    assert (run.collective, run.nccl_version) == ("all_reduce_perf", "2.27.3")
    assert (run.n_threads, run.n_gpus_per_thread) == (1, 1)
    assert (run.min_bytes, run.max_bytes, run.validation) == (1 << 30, 1 << 33, True)
    assert run.rows == (
        ResultRow(
            size=8589934592,
            count=2147483648,
            type="float",
            redop="sum",
            root=-1,
            out_of_place=Placement(time_us=31258.7, algbw=274.8, busbw=480.9, wrong=0.0),
            in_place=Placement(time_us=31337.9, algbw=274.1, busbw=479.6, wrong=3.0),
        ),
    )
    assert run.rows[0].wrong == 3.0  # the judge's corruption check reads this
    assert run.skipped_row_lines == 3
    assert [(d.rank, d.host, d.device, d.bus_id, d.name, d.pid, d.group) for d in run.devices] == [
        (1, "n2", 1, "0002:00:00", "NVIDIA H100", 48, 0),
        (0, "n1", 0, "0001:00:00", "NVIDIA H100", 47, 0),
    ]
    assert run.out_of_bounds == 0
    assert (run.avg_busbw, run.avg_busbw_text, run.min_bw_check) == (480.25, "480.25", "FAILED")
    assert run.error_line == "rank 3: cuda error"
    assert run.concluded


def test_a_sparse_json_report_leaves_what_it_does_not_say_unset() -> None:
    run = parse_json(
        json.dumps(
            {"results": [{"size": 8, "count": 2, "in_place": {"bus_bw": "1.5", "nwrong": True}}]}
        )
    )
    assert (run.collective, run.nccl_version, run.n_threads, run.validation) == (
        None,
        None,
        None,
        None,
    )
    assert (run.out_of_bounds, run.avg_busbw, run.avg_busbw_text, run.min_bw_check) == (
        None,
        None,
        None,
        None,
    )
    assert (run.error_line, run.concluded, run.devices) == (None, False, ())
    (row,) = run.rows
    assert (row.type, row.redop, row.root, row.out_of_place) == ("", None, None, None)
    assert row.in_place == Placement(time_us=None, algbw=None, busbw=1.5, wrong=None)
    okay = parse_json(json.dumps(report(average_bus_bandwidth={"bandwidth": 1.0, "okay": "true"})))
    assert okay.min_bw_check == "OK"
    unchecked = parse_json(
        json.dumps(report(average_bus_bandwidth={"bandwidth": 1.0, "okay": "unchecked"}))
    )
    assert unchecked.min_bw_check is None
    no_validation = report()
    no_validation["config"] = {"validation": 0}
    assert parse_json(json.dumps(no_validation)).validation is False


@pytest.mark.parametrize(
    ("code", "version"),
    [
        (22703, "2.27.3"),
        (21805, "2.18.5"),
        (10000, "1.0.0"),
        (9999, None),
        ("22703", None),
        (True, None),
    ],
)
def test_the_nccl_version_code(code: object, version: str | None) -> None:
    assert parse_json(json.dumps(report(nccl_version=code))).nccl_version == version


@pytest.mark.parametrize(
    ("size", "kept"),
    [(0, True), (2**63 - 1, True), (2**63, False), (-(2**63), False), (1.0, False), ("8", False)],
)
def test_json_sizes_must_be_64_bit_integers(size: object, kept: bool) -> None:
    data = {"results": [{"size": size, "count": 0, "out_of_place": {"bus_bw": 1.0}}]}
    run = parse_json(json.dumps(data))
    assert (len(run.rows), run.skipped_row_lines) == ((1, 0) if kept else (0, 1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{not json",
            "expected an nccl-tests JSON report, found invalid JSON (Expecting property name "
            "enclosed in double quotes at line 1) — fix: pass the file written by -J, or the text "
            "output",
        ),
        (
            '{"hello": 1}',
            "expected an nccl-tests JSON report with a 'results' list, found other JSON — fix: "
            "pass the file written by all_reduce_perf -J",
        ),
        (
            "[1, 2]",
            "expected an nccl-tests JSON report with a 'results' list, found other JSON — fix: "
            "pass the file written by all_reduce_perf -J",
        ),
        (
            "[" * 100_000,
            "expected an nccl-tests JSON report, found JSON Python cannot read (a number of "
            "thousands of digits or nesting too deep) — fix: pass the file written by -J",
        ),
    ],
)
def test_what_is_not_a_json_report_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_json(text)
    assert str(exc.value) == message


# --------------------------------------------------------------------------- NCCL_DEBUG=INFO


@pytest.mark.parametrize(
    ("via", "kind"),
    [
        ("NET/IBext_v8/7/GDRDMA", "NET/IB"),
        ("NET/IB/0/GDRDMA", "NET/IB"),
        ("NET/Socket/1", "NET/Socket"),
        ("NET/AWS Libfabric/0", "NET/AWS Libfabric"),
        ("P2P/CUMEM/read", "P2P/CUMEM"),
        ("P2P/IPC", "P2P/IPC"),
        ("P2P/direct pointer", "P2P/direct"),
        ("SHM/direct/direct", "SHM"),
        ("NET", "NET"),
        ("P2P", "P2P"),
        ("CollNet", "CollNet"),
    ],
)
def test_transport_kinds(via: str, kind: str) -> None:
    assert transport_kind(via) == kind


LOG = """\
node-a:1:1 [0] NCCL INFO NCCL version 2.23.4+cuda12.6
node-a:1:1 [0] NCCL INFO NCCL_IB_HCA set by environment to =mlx5_0,mlx5_3.
node-a:1:1 [0] NCCL INFO NCCL_P2P_DISABLE set by environment to 1
node-a:1:1 [0] NCCL INFO DMA-BUF is available on GPU device 0
node-a:1:1 [0] NCCL INFO NET/IB : GPU Direct RDMA Enabled for HCA 0 'mlx5_0
node-a:1:1 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 1 'mlx5_3'
node-a:1:1 [0] NCCL INFO NET/IB : GPU Direct RDMA Enabled for HCA 1 'mlx5_3'
node-a:1:1 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 2 'mlx5_4'
node-a:1:1 [0] NCCL INFO ncclCommInitRank comm 0x55 rank 0 nranks 16 cudaDev 0 nvmlDev 0 busId 18000 commId 0x1 - Init START
node-a:1:1 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_3:1/IB ; OOB ib0:10.0.0.1<0>
node-a:1:1 [0] NCCL INFO Using network IB
node-a:1:1 [0] NCCL INFO comm 0x55 rank 0 nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0
node-a:1:1 [0] NCCL INFO NVLS multicast support is available on dev 0
node-a:1:1 [0] NCCL INFO NVLS comm 0x55 headRank 0 nHeads 1 buffSize 1048576 nvlsRanks 8 nvlsPerRankSize 201326592 nvlsTotalSize 201326592
node-a:1:1 [0] NCCL INFO 16 nvls channels, 16 nvls direct channels
node-a:1:1 [0] NCCL INFO 24 nvls channels, 16 nvls direct channels
node-a:1:1 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
node-a:1:1 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/CUMEM/read
node-a:1:1 [0] NCCL INFO Channel 00/0 : 8[0] -> 0[0] [receive] via NET/IB/0/GDRDMA
node-a:1:1 [0] NCCL INFO Channel 02 : 0[0] -> 2[2] via SHM/direct/direct
node-a:1:1 [0] NCCL WARN NET/IB : Got completion from peer with error 12
node-a:1:1 [0] NCCL WARN NET/IB : Got completion from peer with error 12
node-a:1:1 [0] NCCL WARN Cuda failure 'out of memory'
"""


def test_an_nccl_log_reads_every_transport_fact() -> None:
    t = parse_nccl_log(LOG.splitlines())
    assert t.nccl_version == "2.23.4"
    assert t.channels == {"P2P/CUMEM": 2, "NET/IB": 1, "SHM": 1}
    assert t.gdrdma is True
    assert (t.gpu_dmabuf, t.init_logged) == (True, True)
    # an HCA enabled on any line is not among the disabled ones
    assert (t.gdr_hcas, t.no_gdr_hcas) == (("mlx5_0", "mlx5_3"), ("mlx5_4",))
    assert t.gpudirect_path == "DMA-BUF"
    assert t.network == "IB" and t.net_ib and not t.net_socket
    assert (t.n_ranks, t.n_nodes, t.local_ranks) == (16, 2, 8)
    assert (t.nvls_available, t.nvls_channels) == (True, 24)
    assert t.env_set == {"NCCL_IB_HCA": "=mlx5_0,mlx5_3", "NCCL_P2P_DISABLE": "1"}
    assert (t.p2p_disabled, t.ib_disabled) == (True, False)
    assert t.warnings == (
        "NET/IB : Got completion from peer with error 12",
        "Cuda failure 'out of memory'",
    )
    assert t.uses("SHM") and not t.uses("NET/Socket")


def test_a_socket_log_and_the_network_from_the_channels() -> None:
    t = parse_nccl_log(
        [
            "h:1:1 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 1.",
            "h:1:1 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>",
            "h:1:1 [0] NCCL INFO NVLS multicast support is not available on dev 0",
            "h:1:1 [0] NCCL INFO comm 0x1 rank 0 nranks 4 cudaDev 0 busId 18000 - Init COMPLETE",
            "h:1:1 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] [send] via NET/Socket/0",
        ]
    )
    assert (t.network, t.net_socket, t.ib_disabled, t.p2p_disabled) == ("Socket", True, True, False)
    assert (t.nvls_available, t.nvls_channels, t.n_ranks, t.n_nodes) == (False, None, 4, None)
    assert (t.gdrdma, t.gpudirect_path, t.gdr_hcas, t.no_gdr_hcas) == (False, None, (), ())
    assert (t.gpu_dmabuf, t.init_logged) == (False, False)
    from_channels = parse_nccl_log(["h [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via NET/IB/0"])
    assert from_channels.network == "IB" and not from_channels.gdrdma
    socket_channels = parse_nccl_log(
        ["h [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via NET/Socket/0"]
    )
    assert socket_channels.network == "Socket"
    assert parse_nccl_log(["no nccl here nRanks 4 nNodes 1 localRanks 4"]) == parse_nccl_log([])


def test_nvls_available_on_any_rank_counts_and_the_first_rank_count_wins() -> None:
    t = parse_nccl_log(
        [
            "a [0] NCCL INFO NVLS multicast support is available on dev 0",
            "b [1] NCCL INFO NVLS multicast support is not available on dev 1",
            "a [0] NCCL INFO comm 0x1 rank 0 nranks 8 cudaDev 0",
            "a [0] NCCL INFO comm 0x1 rank 0 nranks 4 cudaDev 0",
            "a [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB",
            "a [0] NCCL INFO Using network Socket",
        ]
    )
    assert (t.nvls_available, t.n_ranks, t.network) == (True, 8, "Socket")
    ib_first = parse_nccl_log(["a NCCL INFO Using network IB", "a NCCL INFO NET/Socket : Using x"])
    assert ib_first.network == "IB"


def test_gdrdma_mechanism_not_logged() -> None:
    channel = "a [0] NCCL INFO Channel 00/0 : 8[0] -> 0[0] [receive] via NET/IB/0/GDRDMA"
    assert parse_nccl_log([channel]).gpudirect_path == "mechanism not logged"
    # init logged without the GPU's DMA-BUF line: NCCL registered through nvidia-peermem
    init = "a [0] NCCL INFO ncclCommInitRank comm 0x1 rank 0 nranks 2 cudaDev 0 - Init START"
    assert parse_nccl_log([init, channel]).gpudirect_path == "nvidia-peermem"
    not_info = "a [0] NCCL WARN Init START"
    assert parse_nccl_log([not_info, channel]).init_logged is False


# --------------------------------------------------------------------------- one stream


def test_parse_output_reads_table_and_log_and_takes_the_version_from_the_log() -> None:
    parsed = parse_output(HEADER + ROW + LOG)
    assert parsed.run.nccl_version == "2.23.4"
    assert parsed.transport.channels["NET/IB"] == 1
    own = parse_output("NCCL version 2.19.3+cuda12.2\n" + LOG)
    assert own.run.nccl_version == "2.19.3"
    as_json = parse_output("  \n" + json.dumps(report()))
    assert as_json.run.format is OutputFormat.JSON
    assert as_json.transport.channels == {}


def test_merge_prefers_the_json_numbers_and_keeps_the_stream_s_aborts_and_log() -> None:
    text = (
        "# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703\n"
        "# Collective test starting: all_gather_perf\n"
        + HEADER
        + ROW
        + LOG
        + "node-b: Test NCCL failure common.cu:1 'x'\n"
    )
    merged = merge_outputs(text, json.dumps(report()))
    assert merged.run.format is OutputFormat.JSON
    assert merged.run.rows[0].size == 8589934592
    assert merged.run.tests_version == "2.17.6"
    assert merged.run.collective == "all_gather_perf"
    assert merged.run.nccl_version == "2.27.3"
    assert [a.host for a in merged.run.aborts] == ["node-b"]
    assert merged.transport.n_nodes == 2
    no_version = merge_outputs(text, json.dumps(report(nccl_version=None)))
    assert no_version.run.nccl_version == "2.23.4"
    unnamed = merge_outputs(HEADER + ROW, json.dumps(report()))
    assert unnamed.run.collective == "all_reduce_perf"
    assert merge_outputs(text, None) == parse_output(text)


def test_iter_busbw_in_table_order() -> None:
    run = parse_nccl_tests(HEADER + ROW + ROW.replace("440.76", "100.5"))
    assert list(iter_busbw(run)) == [440.76, 441.49, 100.5, 441.49]
    assert run.peak_busbw == 441.49
    assert parse_nccl_tests("").peak_busbw is None


def test_a_headerless_row_reads_like_one_under_its_header() -> None:
    assert parse_nccl_tests(ROW).rows == parse_nccl_tests(HEADER + ROW).rows
    (old,) = parse_nccl_tests(OLD_ROW).rows
    assert old.redop == "sum"
    assert old.out_of_place == Placement(
        time_us=63896.0, algbw=134.44, busbw=235.26, max_error=1e-06
    )


def test_a_headerless_row_whose_first_time_is_na_has_no_redop() -> None:
    line = "     1048576        262144     float    N/A   17.83   15.60    0e+00    N/A   17.77   15.55    0e+00\n"
    (row,) = parse_nccl_tests(line).rows
    assert row.redop is None
    assert row.out_of_place == Placement(time_us=None, algbw=17.83, busbw=15.60, max_error=0.0)


def test_every_unreadable_json_row_is_counted_before_and_after_good_ones() -> None:
    good = {"size": 8, "count": 2, "out_of_place": {"bus_bw": 1.5}}
    bad = ["x", "y", {"size": -1, "count": 1}, {"size": 1, "count": "2"}, {"size": 1, "count": 1}]
    run = parse_json(json.dumps({"results": [*bad, good, *bad, {"size": 2, "count": 2}, good]}))
    assert len(run.rows) == 2
    assert run.skipped_row_lines == 11


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (-1000, -1000),
        (-(2**63), -(2**63)),
        (-(2**63) - 1, None),
        (2**63 - 1, 2**63 - 1),
        (2**63, None),
    ],
)
def test_json_integers_are_read_within_64_bits(value: int, read: int | None) -> None:
    data = {"results": [], "config": {"nthreads": value}}
    assert parse_json(json.dumps(data)).n_threads == read


def test_json_text_fields_that_are_not_text_are_left_unset() -> None:
    row = {"size": 8, "count": 2, "redop": 5, "out_of_place": {"bus_bw": 1.5}}
    run = parse_json(json.dumps({"results": [row], "config": {"devices": [{"rank": 0}]}}))
    assert run.rows[0].redop is None and run.rows[0].root is None
    assert run.devices == (RankDevice(rank=0, host="", device=0, bus_id="", name=""),)


def test_the_json_average_is_kept_as_printed() -> None:
    text = '{"results": [], "average_bus_bandwidth": {"bandwidth": 68.40480, "okay": "unchecked"}}'
    run = parse_json(text)
    assert (run.avg_busbw_text, run.avg_busbw) == ("68.40480", 68.4048)


def test_the_collective_is_the_program_s_name_with_or_without_a_path() -> None:
    assert parse_json(json.dumps(report(args=["all_gather_perf", "-b", "8"]))).collective == (
        "all_gather_perf"
    )
    assert parse_json(json.dumps(report(args=[]))).collective is None


def test_a_two_part_net_transport_keeps_its_name() -> None:
    assert transport_kind("NET/IB") == "NET/IB"
    assert transport_kind("NET/Socket") == "NET/Socket"


SIX = "#  size  count  type  time  algbw  busbw\n"


def test_a_header_of_six_names_reads_one_out_of_place_placement() -> None:
    (row,) = parse_nccl_tests(SIX + "  1024  256  float  1.5  2.5  3.5\n").rows
    assert row.out_of_place == Placement(time_us=1.5, algbw=2.5, busbw=3.5)
    assert row.in_place is None
    five = "#  size  count  type  time  busbw\n"
    assert parse_nccl_tests(five + "  1024  256  float  1.5  3.5\n").rows == ()


def test_lines_that_look_like_headers_but_are_not() -> None:
    for line in (
        "#  time  algbw  busbw  #wrong  time  algbw  busbw  #wrong\n",  # no size first
        "#  size  count  type  redop  root  algbw  busbw  #wrong\n",  # no time column
        "#  size  count  type  redop  root  time  algbw  #wrong\n",  # no busbw
    ):
        assert parse_nccl_tests(line + ROW).rows == parse_nccl_tests(ROW).rows


def test_a_timestamp_column_is_not_a_measurement() -> None:
    header = HEADER.rstrip("\n") + "  timestamp\n"
    (row,) = parse_nccl_tests(header + ROW.rstrip("\n") + "  2026-12-07T13:40:21\n").rows
    assert row == parse_nccl_tests(HEADER + ROW).rows[0]


@pytest.mark.parametrize(
    ("values", "placement"),
    [
        ("2.0  3.0  0", Placement(time_us=None, algbw=2.0, busbw=3.0, wrong=0.0)),
        ("3.0  0", Placement(time_us=None, algbw=None, busbw=3.0, wrong=0.0)),
    ],
)
def test_a_row_cut_short_on_the_left_reads_what_is_there(values: str, placement: Placement) -> None:
    (row,) = parse_nccl_tests(HEADER + f"  1024  256  float  sum  -1  {values}\n").rows
    assert (row.out_of_place, row.in_place) == (None, placement)


def test_a_row_with_only_a_wrong_count_has_no_bandwidth() -> None:
    run = parse_nccl_tests(HEADER + "  1024  256  float  sum  -1  0\n")
    assert (run.rows, run.skipped_row_lines) == ((), 1)


def test_sizes_past_18_digits_are_no_rows() -> None:
    big_size = "  1234567890123456789  256  float  sum  -1  1.0  2.0  3.0  0  1.0  2.0  3.0  0\n"
    big_count = "  1024  1234567890123456789  float  sum  -1  1.0  2.0  3.0  0  1.0  2.0  3.0  0\n"
    run = parse_nccl_tests(HEADER + big_size + big_count)
    assert (run.rows, run.skipped_row_lines) == ((), 2)


def test_a_marked_na_is_still_na() -> None:
    (row,) = parse_nccl_tests(HEADER + ROW.replace("       2\n", "    N/A*\n")).rows
    assert row.in_place is not None and row.in_place.wrong is None


def test_an_op_column_is_the_reduction() -> None:
    header = HEADER.replace(" redop ", "    op ")
    (row,) = parse_nccl_tests(header + ROW).rows
    assert row.redop == "sum"


def test_a_concluded_run_stays_concluded() -> None:
    text = (
        "# Collective test concluded: all_reduce_perf\n"
        "# Collective test starting: all_gather_perf\n"
    )
    run = parse_nccl_tests(text)
    assert (run.collective, run.concluded) == ("all_gather_perf", True)


def test_channels_are_read_at_the_first_marker_of_a_line() -> None:
    at_start = parse_nccl_log(["NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC"])
    assert at_start.channels == {"P2P/IPC": 1}
    twice = parse_nccl_log(
        ["h NCCL INFO Channel garbage NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC"]
    )
    assert twice.channels == {}
    ranks = parse_nccl_log(["h nranks 9 [0] NCCL INFO comm 0x1 rank 0 nranks 4 cudaDev 0"])
    assert ranks.n_ranks == 4


def test_the_largest_nvls_channel_count_and_the_first_version_win() -> None:
    t = parse_nccl_log(
        [
            "a NCCL INFO 24 nvls channels, 16 nvls direct channels",
            "a NCCL INFO 16 nvls channels, 16 nvls direct channels",
            "a NCCL INFO NCCL version 2.23.4+cuda12.6",
            "b NCCL INFO NCCL version 2.21.5+cuda12.4",
        ]
    )
    assert (t.nvls_channels, t.nvls_available, t.nccl_version) == (24, None, "2.23.4")
    assert (
        parse_nccl_log(["a NCCL INFO 0 nvls channels, 0 nvls direct channels"]).nvls_channels == 0
    )


def test_the_network_nccl_names_wins_over_the_channels() -> None:
    t = parse_nccl_log(
        [
            "a NCCL INFO Using network Socket",
            "a NCCL INFO Channel 00/0 : 0[0] -> 1[1] [send] via NET/IB/0",
        ]
    )
    assert t.network == "Socket"


def test_the_run_s_own_nccl_version_wins_over_the_log_s() -> None:
    text = "a NCCL INFO NCCL version 2.23.4+cuda12.6\nNCCL version 2.19.3+cuda12.2\n"
    parsed = parse_output(text)
    assert (parsed.run.nccl_version, parsed.transport.nccl_version) == ("2.19.3", "2.23.4")


def test_every_unreadable_row_is_counted() -> None:
    bad = "  1024  256  float  sum  -1  x  y  z  0  1.0  2.0  3.0  0\n"
    assert parse_nccl_tests(HEADER + bad + ROW + bad).skipped_row_lines == 2


def test_marked_and_non_finite_averages() -> None:
    # RCCL's footer marks the average with '*' (fixture mi-rccl_footer-asterisks_rccl2078.log)
    assert parse_nccl_tests("# Avg bus bandwidth    : 68.4048*\n").avg_busbw == 68.4048
    for text in ("nan", "inf", "-inf"):
        run = parse_nccl_tests(f"# Avg bus bandwidth    : {text}\n")
        assert (run.avg_busbw, run.avg_busbw_text) == (None, text)


def test_rank_lines_without_pid_and_names_ending_in_x() -> None:
    run = parse_nccl_tests("#  Rank  0 Group  0 on  host device  0 [0x3b] NVIDIA TITAN X\n")
    assert run.devices == (
        RankDevice(rank=0, host="host", device=0, bus_id="0x3b", name="NVIDIA TITAN X", group=0),
    )


def test_a_header_without_rows_still_tells_the_format() -> None:
    assert parse_nccl_tests(HEADER).format is OutputFormat.CURRENT
    assert parse_nccl_tests(OLD_HEADER).format is OutputFormat.PRE_2_13


def test_an_abort_keeps_its_line_as_printed() -> None:
    (abort,) = parse_nccl_tests("node-a: Test timeout (300s) common.cu:574   \r\n").aborts
    assert abort.line == "node-a: Test timeout (300s) common.cu:574   "
