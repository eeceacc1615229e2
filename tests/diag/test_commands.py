"""The nccl-tests build and run commands the role executes."""

from __future__ import annotations

import shlex

import pytest

from metalserve.diag.commands import (
    BuildSpec,
    Collective,
    Mode,
    RunSpec,
    build_argv,
    gencode,
    hostfile_text,
    parse_version,
    run_argv,
    run_env,
    shell_line,
)
from metalserve.errors import PlanError

MATRIX = {"NCCL_IB_HCA": "=mlx5_0,mlx5_3", "NCCL_IB_GID_INDEX": "3", "NCCL_SOCKET_IFNAME": "=bond0"}


def test_build_targets_only_the_archs_present() -> None:
    argv = build_argv(BuildSpec(source_dir="/opt/nccl-tests", compute_capabilities=("9.0", "9.0")))
    assert argv == (
        "make",
        "-C",
        "/opt/nccl-tests",
        "-j8",
        "CUDA_HOME=/usr/local/cuda",
        "NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90",
    )


def test_multi_node_build_links_mpi_and_names_nccl() -> None:
    argv = build_argv(
        BuildSpec(
            source_dir="src",
            compute_capabilities=("12.0",),
            nccl_home="/usr",
            mpi_home="/usr/lib/x86_64-linux-gnu/openmpi",
            jobs=16,
        )
    )
    assert argv[-3:] == ("NCCL_HOME=/usr", "MPI=1", "MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi")
    assert "-j16" in argv and "compute_120,code=sm_120" in argv[5]


def test_gencode_orders_archs_and_rejects_garbage() -> None:
    assert gencode(("12.0", "8.9")).split() == [
        "-gencode=arch=compute_89,code=sm_89",
        "-gencode=arch=compute_120,code=sm_120",
        "-gencode=arch=compute_120,code=compute_120",
    ]
    with pytest.raises(PlanError, match="expected a compute capability"):
        gencode(("sm_90",))


def test_single_node_quick_all_reduce_uses_every_gpu_from_one_process() -> None:
    spec = RunSpec(build_dir="/opt/nccl-tests/build/", gpus_per_node=8)
    assert shlex.join(run_argv(spec)) == (
        "/opt/nccl-tests/build/all_reduce_perf -b 1G -e 8G -f 2 -g 8 -n 20 -w 5 -c 1"
    )
    assert run_env(spec) == {"NCCL_DEBUG": "INFO"}


def test_full_sweep_and_other_collectives() -> None:
    spec = RunSpec(build_dir="b", gpus_per_node=4, collective=Collective.ALLTOALL, mode=Mode.FULL)
    argv = run_argv(spec)
    assert argv[:5] == ("b/alltoall_perf", "-b", "8", "-e", "8G")
    assert {c.binary for c in Collective} == {
        "all_reduce_perf",
        "all_gather_perf",
        "reduce_scatter_perf",
        "alltoall_perf",
        "sendrecv_perf",
    }


def test_json_only_where_the_version_writes_it() -> None:
    base = {"build_dir": "b", "gpus_per_node": 8, "json_path": "/var/tmp/ar.json"}
    assert run_argv(RunSpec(**base, tests_version=(2, 17, 3)))[-2:] == ("-J", "/var/tmp/ar.json")
    assert "-J" not in run_argv(RunSpec(**base, tests_version=(2, 16, 9)))
    assert "-J" not in run_argv(RunSpec(**base))  # local source of unknown version
    assert parse_version("v2.19.6") == (2, 19, 6) and parse_version("main") is None


def test_two_node_mpirun_exports_the_matrix_and_binds_numa() -> None:
    spec = RunSpec(
        build_dir="/opt/nccl-tests/build",
        gpus_per_node=8,
        hosts=("gpu01", "gpu02"),
        hostfile="/var/lib/metalserve/nccl-tests/hostfile",
        nccl_env=MATRIX,
        oob_interface="bond0",
        tests_version=(2, 19, 6),
        json_path="ar.json",
    )
    argv = run_argv(spec)
    line = shlex.join(argv)
    assert argv[:4] == ("mpirun", "--allow-run-as-root", "-np", "16")
    assert "--hostfile /var/lib/metalserve/nccl-tests/hostfile --map-by ppr:8:node" in line
    assert "--bind-to numa --mca btl tcp,self --mca btl_tcp_if_include bond0" in line
    exported = [argv[i + 1] for i, a in enumerate(argv) if a == "-x"]
    assert exported == [
        "NCCL_IB_GID_INDEX=3",
        "NCCL_IB_HCA==mlx5_0,mlx5_3",
        "NCCL_SOCKET_IFNAME==bond0",
        "NCCL_DEBUG=INFO",
        "LD_LIBRARY_PATH",
    ]
    assert line.endswith("all_reduce_perf -b 1G -e 8G -f 2 -g 1 -n 20 -w 5 -c 1 -J ar.json")


def test_multi_node_needs_hostfile_and_interface() -> None:
    with pytest.raises(PlanError, match="expected a hostfile and the bootstrap interface"):
        run_argv(RunSpec(build_dir="b", gpus_per_node=8, hosts=("a", "b")))


def test_hostfile_and_shell_line_keep_output_in_the_log() -> None:
    assert hostfile_text(("a", "b"), 8) == "a slots=8\nb slots=8\n"
    line = shell_line(RunSpec(build_dir="b", gpus_per_node=2, min_bw_gbps=400), "/tmp/run 1.log")
    assert line == (
        "env NCCL_DEBUG=INFO NCCL_TESTS_MIN_BW=400 b/all_reduce_perf -b 1G -e 8G -f 2 -g 2 -n 20 "
        "-w 5 -c 1 > '/tmp/run 1.log' 2>&1"
    )
