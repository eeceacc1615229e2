"""Build and run commands for nccl-tests, as argv tuples (pure; the role runs them).

Sources: NVIDIA/nccl-tests ``README.md`` (``make MPI=1 MPI_HOME= CUDA_HOME= NCCL_HOME=``, ``-b -e -f
-g``, ``mpirun -np 64 -N 8 ... -g 1``), ``src/common.mk`` (``NVCC_GENCODE`` overrides the arch list),
``src/util.cu`` (``-J`` JSON since 2.17.3) and the launch practice of public health checks
(Azure/azurehpc-health-checks ``customTests/azure_nccl_allreduce.nhc`` and
oracle-quickstart/oci-hpc: ``--bind-to numa``; NVIDIA/nccl-tests#309: ``--mca btl tcp,self``;
``-x`` per variable).

Example::

    >>> run_argv(RunSpec(build_dir="/opt/nccl-tests/build", gpus_per_node=8))[:5]
    ('/opt/nccl-tests/build/all_reduce_perf', '-b', '1G', '-e', '8G')
"""

from __future__ import annotations

import re
import shlex
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from metalserve.errors import PlanError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


JSON_OUTPUT_SINCE = (2, 17, 3)
"""nccl-tests writes ``-J file.json`` from this version (NVIDIA/nccl-tests git history, util.cu)."""

NCCL_DEBUG_ENV = {"NCCL_DEBUG": "INFO"}
"""INFO with the default subsystems (INIT, BOOTSTRAP, ENV) prints the ``Channel ... via`` lines."""


class Collective(StrEnum):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALLTOALL = "alltoall"  # the MoE expert-parallel pattern
    SENDRECV = "sendrecv"

    @property
    def binary(self) -> str:
        return f"{self.value}_perf"


class Mode(StrEnum):
    QUICK = "quick"
    FULL = "full"


class Sweep(_Frozen):
    min_bytes: str
    max_bytes: str
    factor: int = 2
    iters: int
    warmup: int
    why: str


SWEEPS: dict[Mode, Sweep] = {
    Mode.QUICK: Sweep(
        min_bytes="1G",
        max_bytes="8G",
        iters=20,
        warmup=5,
        why="4 sizes from 1 GiB, where the judge reads bandwidth; about a minute with NCCL init",
    ),
    Mode.FULL: Sweep(
        min_bytes="8",
        max_bytes="8G",
        iters=20,
        warmup=5,
        why="the README sweep 8 B to 8 GiB: latency and bandwidth curve",
    ),
}


def parse_version(ref: str | None) -> tuple[int, int, int] | None:
    """The release number in a git tag or tarball name, if any.

    >>> parse_version("v2.19.6"), parse_version("nccl-tests-2.17.3.tar.gz"), parse_version("master")
    ((2, 19, 6), (2, 17, 3), None)
    """
    if ref is None:
        return None
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", ref)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


# --------------------------------------------------------------------------- build


class BuildSpec(_Frozen):
    """How to compile nccl-tests on one host."""

    source_dir: str
    cuda_home: str = "/usr/local/cuda"
    nccl_home: str | None = Field(default=None, description="None: NCCL from the system paths")
    compute_capabilities: tuple[str, ...] = Field(
        min_length=1, description="of the GPUs present, e.g. ('9.0',) or ('12.0',)"
    )
    mpi_home: str | None = Field(default=None, description="set for multi-node (MPI=1)")
    jobs: int = Field(default=8, ge=1)


def gencode(compute_capabilities: tuple[str, ...]) -> str:
    """``NVCC_GENCODE`` for just these archs, plus PTX of the newest for forward compatibility.

    >>> gencode(("9.0",))
    '-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90'
    """
    archs: list[str] = []
    for cc in compute_capabilities:
        if not re.fullmatch(r"\d+(\.\d+)?", cc):
            raise PlanError(
                f"nccl-tests build: expected a compute capability like '9.0', found {cc!r} — fix: "
                "read it from nvidia-smi --query-gpu=compute_cap"
            )
        arch = cc.replace(".", "")
        if arch not in archs:
            archs.append(arch)
    archs.sort(key=int)
    parts = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    parts.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return " ".join(parts)


def build_argv(spec: BuildSpec) -> tuple[str, ...]:
    """``make`` for the GPU archs present only; ``MPI=1`` when several nodes will run it."""
    argv = [
        "make",
        "-C",
        spec.source_dir,
        f"-j{spec.jobs}",
        f"CUDA_HOME={spec.cuda_home}",
        f"NVCC_GENCODE={gencode(spec.compute_capabilities)}",
    ]
    if spec.nccl_home is not None:
        argv.append(f"NCCL_HOME={spec.nccl_home}")
    if spec.mpi_home is not None:
        argv += ["MPI=1", f"MPI_HOME={spec.mpi_home}"]
    return tuple(argv)


# --------------------------------------------------------------------------- run


class RunSpec(_Frozen):
    """One collective run: on this host with all its GPUs, or across ``hosts`` with mpirun."""

    build_dir: str
    gpus_per_node: int = Field(ge=1)
    collective: Collective = Collective.ALL_REDUCE
    mode: Mode = Mode.QUICK
    hosts: tuple[str, ...] = Field(default=(), description="two or more: multi-node via mpirun")
    hostfile: str | None = None
    nccl_env: dict[str, str] = Field(default_factory=dict, description="the plan's NCCL matrix")
    oob_interface: str | None = Field(
        default=None, description="interface MPI bootstraps over (btl_tcp_if_include)"
    )
    mpirun: str = "mpirun"
    tests_version: tuple[int, int, int] | None = None
    json_path: str | None = None
    min_bw_gbps: float | None = Field(
        default=None, description="NCCL_TESTS_MIN_BW: nccl-tests prints FAILED below 0.9×"
    )

    @property
    def multi_node(self) -> bool:
        return len(self.hosts) > 1

    @property
    def writes_json(self) -> bool:
        return (
            self.json_path is not None
            and self.tests_version is not None
            and self.tests_version >= JSON_OUTPUT_SINCE
        )


def _test_args(spec: RunSpec, gpus_per_process: int) -> list[str]:
    sweep = SWEEPS[spec.mode]
    args = [
        f"{spec.build_dir.rstrip('/')}/{spec.collective.binary}",
        "-b",
        sweep.min_bytes,
        "-e",
        sweep.max_bytes,
        "-f",
        str(sweep.factor),
        "-g",
        str(gpus_per_process),
        "-n",
        str(sweep.iters),
        "-w",
        str(sweep.warmup),
        "-c",
        "1",
    ]
    if spec.writes_json and spec.json_path is not None:
        args += ["-J", spec.json_path]
    return args


def run_env(spec: RunSpec) -> dict[str, str]:
    """Environment of the run: the plan's NCCL matrix, then INFO logging to learn the transports."""
    env = dict(sorted(spec.nccl_env.items()))
    env.update(NCCL_DEBUG_ENV)
    if spec.min_bw_gbps is not None:
        env["NCCL_TESTS_MIN_BW"] = f"{spec.min_bw_gbps:g}"
    return env


def hostfile_text(hosts: tuple[str, ...], slots: int) -> str:
    """Open MPI hostfile: one line per host with a slot per GPU.

    >>> print(hostfile_text(("gpu01", "gpu02"), 8), end="")
    gpu01 slots=8
    gpu02 slots=8
    """
    return "".join(f"{h} slots={slots}\n" for h in hosts)


def run_argv(spec: RunSpec) -> tuple[str, ...]:
    """The command line. Single node: one process driving every GPU (``-g N``). Multi-node: one
    MPI rank per GPU (``-g 1``), every variable of the environment passed with ``-x``."""
    if not spec.multi_node:
        return tuple(_test_args(spec, spec.gpus_per_node))
    if spec.hostfile is None or spec.oob_interface is None:
        raise PlanError(
            "nccl-tests multi-node run: expected a hostfile and the bootstrap interface, found "
            f"hostfile={spec.hostfile!r} interface={spec.oob_interface!r} — fix: set "
            "the fabric's socket interface in the inventory"
        )
    ranks = spec.gpus_per_node * len(spec.hosts)
    argv = [
        spec.mpirun,
        "--allow-run-as-root",
        "-np",
        str(ranks),
        "--hostfile",
        spec.hostfile,
        "--map-by",
        f"ppr:{spec.gpus_per_node}:node",
        "--bind-to",
        "numa",
        "--mca",
        "btl",
        "tcp,self",
        "--mca",
        "btl_tcp_if_include",
        spec.oob_interface,
        "--mca",
        "coll_hcoll_enable",
        "0",
    ]
    for name, value in run_env(spec).items():
        argv += ["-x", f"{name}={value}"]
    argv += ["-x", "LD_LIBRARY_PATH"]
    return tuple(argv + _test_args(spec, 1))


def shell_line(spec: RunSpec, log_path: str) -> str:
    """One shell line that runs the test with its environment and keeps all output in a log.

    The exit status is the test's (``set -o pipefail`` is not needed: no pipe)."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in run_env(spec).items())
    command = shlex.join(run_argv(spec))
    return f"env {env} {command} > {shlex.quote(log_path)} 2>&1"
