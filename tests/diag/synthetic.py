"""Synthetic degraded runs, built from the real fixtures so their layout stays real.

Each builder says what it changes. The message formats come from NVIDIA/nccl-tests ``src/common.h``
(``Test NCCL failure``), ``src/util.cu`` (``Invalid number of GPUs``, footer) and NCCL's INFO lines
as seen in the fixtures (``via NET/Socket``, ``set by environment to``).
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nccl"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


HEADER_2_13 = """\
# nccl-tests version 2.19.6 nccl-headers=22703 nccl-library=22703
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 1 minBytes 1073741824 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0 unalign: 0
#
# Using devices
{ranks}#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)  (GB/s)
"""


H100_NAME = "NVIDIA H100 80GB HBM3"
"""As nccl-tests prints an H100 SXM (NVIDIA/nccl#1453, NVIDIA/nccl-tests#294)."""


def rank_lines(
    hosts: tuple[str, ...], gpus_per_host: int, skip: int | None = None, gpu: str = H100_NAME
) -> str:
    lines = []
    rank = 0
    for host in hosts:
        for device in range(gpus_per_host):
            if skip is not None and rank == skip:
                rank += 1
                continue
            lines.append(
                f"#  Rank {rank:2d} Group  0 Pid {1000 + rank:6d} on {host:>10s} device {device:2d} "
                f"[0000:{0x18 + device:02x}:00] {gpu}\n"
            )
            rank += 1
    return "".join(lines)


def row(size: int, busbw: float, wrong: str = "0") -> str:
    """One ≥2.13 all_reduce row; algbw and time follow from busbw for 16 ranks (factor 2·15/16)."""
    algbw = busbw / (2 * 15 / 16)
    time_us = size / (algbw * 1e3)
    return (
        f"{size:12d}  {size // 4:12d}     float     sum      -1  {time_us:7.0f}  {algbw:6.2f}  "
        f"{busbw:6.2f}  {wrong:>6s}  {time_us:7.0f}  {algbw:6.2f}  {busbw:6.2f}  {wrong:>6s}\n"
    )


FOOTER = """\
# Out of bounds values : {oob} {status}
# Avg bus bandwidth    : {avg}
#
# Collective test concluded: all_reduce_perf
"""


def run_text(
    rows: list[tuple[int, float]],
    hosts: tuple[str, ...] = ("gpu01", "gpu02"),
    log: str = "",
    oob: int = 0,
    wrong: str = "0",
    skip_rank: int | None = None,
    gpus_per_host: int = 8,
) -> str:
    avg = sum(b for _, b in rows) / len(rows)
    body = "".join(row(s, b, wrong) for s, b in rows)
    return (
        HEADER_2_13.format(ranks=rank_lines(hosts, gpus_per_host, skip_rank))
        + log
        + body
        + FOOTER.format(oob=oob, status="FAILED" if oob else "OK", avg=f"{avg:g}")
    )


LARGE = [(1 << 30, 0.0), (1 << 31, 0.0), (1 << 32, 0.0), (1 << 33, 0.0)]


def sizes_at(busbw: float) -> list[tuple[int, float]]:
    return [(s, busbw) for s, _ in LARGE]


SOCKET_LOG = """\
gpu01:4021:4021 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so. Using internal net plugin.
gpu01:4021:4021 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 0.
gpu01:4021:4090 [0] NCCL INFO NET/IB : No device found.
gpu01:4021:4090 [0] NCCL INFO NET/Socket : Using [0]ens1f0:10.1.0.11<0>
gpu01:4021:4090 [0] NCCL INFO Using network Socket
gpu01:4021:4090 [0] NCCL INFO comm 0x55d1 rank 0 nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0
gpu01:4021:4090 [0] NCCL INFO Channel 00/0 : 8[0] -> 0[0] [receive] via NET/Socket/0
gpu01:4021:4090 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/Socket/0
"""


def socket_fallback() -> str:
    """2-node RoCE run where NCCL found no RDMA device and used TCP: ~9 GB/s (L40S TCP figure)."""
    return run_text(sizes_at(9.1), log=SOCKET_LOG)


IB_LOG = """\
gpu01:4021:4090 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_3:1/IB ; OOB ens1f0:10.1.0.11<0>
gpu01:4021:4090 [0] NCCL INFO Using network IB
gpu01:4021:4090 [0] NCCL INFO NVLS multicast support is available on dev 0
gpu01:4021:4090 [0] NCCL INFO comm 0x55d1 rank 0 nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0
gpu01:4021:4090 [0] NCCL INFO Channel 00/0 : 8[0] -> 0[0] [receive] via NET/IB/0/GDRDMA
gpu01:4021:4090 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA
gpu01:4021:4090 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM
"""


def healthy_ib(busbw: float = 470.0) -> str:
    return run_text(sizes_at(busbw), log=IB_LOG)


def without_gdrdma() -> str:
    """IB used but GPUDirect RDMA off: the `/GDRDMA` suffix is gone (no nvidia-peermem)."""
    return run_text(sizes_at(380.0), log=IB_LOG.replace("/GDRDMA", ""))


def missing_gpu() -> str:
    """One GPU of the second node fell off the bus: nccl-tests refuses to start on that rank."""
    return (
        HEADER_2_13.format(ranks=rank_lines(("gpu01",), 8))
        + "Invalid number of GPUs: 8 requested but only 7 were found.\n"
        + "Please check the number of processes and GPUs per process.\n"
    )


def one_rank_short() -> str:
    """The run went ahead with 15 ranks (the hostfile gave gpu02 only 7 slots)."""
    return run_text(sizes_at(455.0), skip_rank=15)


def wrong_results() -> str:
    """Healthy speed but corrupted sums: #wrong > 0 and the out-of-bounds footer FAILED."""
    return run_text(sizes_at(466.0), oob=2, wrong="1.04858e+06")


ABORT_LOG = """\
gpu02:5120:5188 [3] transport/net_ib.cc:1695 NCCL WARN NET/IB : Got completion from peer 10.1.0.11<44021> with status=12 opcode=0 len=0 vendor err 129 (Recv) localGid ::ffff:10.1.0.12 remoteGidsfe80::1
gpu02:5120:5188 [3] NCCL INFO transport/net.cc:1294 -> 6
gpu02: Test NCCL failure common.cu:1128 'remote process exited or there was a network error / NET/IB : Got completion from peer 10.1.0.11<44021> with status=12'
 .. gpu02 pid 5120: Test failure common.cu:891
"""


def aborted() -> str:
    """The run died after one size with an IB completion error (retry exceeded, status 12)."""
    return (
        HEADER_2_13.format(ranks=rank_lines(("gpu01", "gpu02"), 8))
        + row(1 << 30, 402.0)
        + ABORT_LOG
    )


P2P_OFF_LOG = """\
node:311:311 [0] NCCL INFO NCCL_P2P_DISABLE set by environment to 1.
node:311:340 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via SHM/direct/direct
node:311:341 [1] NCCL INFO Channel 00/0 : 1[1] -> 2[2] via SHM/direct/direct
"""


def p2p_disabled(busbw: float) -> str:
    return run_text(sizes_at(busbw), hosts=("node",), log=P2P_OFF_LOG)


NVLS_OFF_LOG = """\
node:311:340 [0] NCCL INFO NVLS multicast support is not available on dev 0
node:311:340 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
"""


def nvls_off(busbw: float) -> str:
    return run_text(sizes_at(busbw), hosts=("node",), log=NVLS_OFF_LOG)


def tagged(text: str, style: str) -> str:
    """The same stream behind a launcher prefix: mpirun --tag-output or srun -l."""
    prefix = {"mpirun": "[1,0]<stdout>:", "srun": "  0: "}[style]
    return "".join(prefix + line + "\n" for line in text.splitlines())
