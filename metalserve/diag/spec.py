"""The ``metalserve.diag`` block of an inventory host: where nccl-tests comes from, what to run.

Example (inventory host data)::

    "diag": {"mode": "full", "collectives": ["all_reduce", "alltoall"], "expected_busbw": 455}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metalserve.catalog import pins
from metalserve.diag.commands import Collective, Mode
from metalserve.types import Address, FlagText, HostPath, LocalPath, Revision, Sha256, SourceUrl

NCCL_TESTS_REF = pins.NCCL_TESTS.version
"""Default nccl-tests release: the newest tag of NVIDIA/nccl-tests checked for this code (its
``src/util.cu`` output format and ``-J`` JSON version 3)."""

NCCL_TESTS_GIT = "https://github.com/NVIDIA/nccl-tests.git"


class NcclTestsSource(BaseModel):
    """Where the host gets nccl-tests: a git tag, a tarball URL, or a tarball on the control host
    (offline sites)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["git", "tarball", "local"] = "git"
    url: SourceUrl = Field(default=NCCL_TESTS_GIT, description="git remote or tarball URL")
    ref: Revision = Field(default=NCCL_TESTS_REF, description="git tag, or the tarball's release")
    path: LocalPath | None = Field(default=None, description="local: a .tar.gz on the control host")
    sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _local_needs_path(self) -> NcclTestsSource:
        if self.kind == "local" and not self.path:
            raise ValueError("a local nccl-tests source needs path (a .tar.gz on the control host)")
        if self.kind == "tarball" and self.url == NCCL_TESTS_GIT:
            raise ValueError("a tarball nccl-tests source needs url (the .tar.gz to download)")
        return self


class DiagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: NcclTestsSource = NcclTestsSource()
    mode: Mode = Mode.QUICK
    collectives: tuple[Collective, ...] = Field(default=(Collective.ALL_REDUCE,), min_length=1)
    expected_busbw: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="GB/s; replaces the catalogue's all_reduce figure",
    )
    fail_host: bool = Field(default=True, description="a FAIL verdict fails the host")
    reprovision_gate: bool = Field(
        default=True,
        description="re-provisioning runs the diagnostic before the engine starts again; "
        "a FAIL, or a run that produced no result, keeps the engine stopped",
    )
    gate_accepts_no_result: FlagText | None = Field(
        default=None,
        min_length=1,
        description="why the re-provisioning gate may start the engine although nccl-tests "
        "produced no result (empty log, crash, binary not found, killed); unset: it may not",
    )
    cuda_home: HostPath = "/usr/local/cuda"
    nccl_home: HostPath | None = Field(default=None, description="None: NCCL from the system paths")
    mpi_home: HostPath = Field(
        default="/usr/lib/x86_64-linux-gnu/openmpi", description="Debian/Ubuntu openmpi-bin"
    )
    hosts: tuple[Address, ...] = Field(
        default=(),
        description="multi-node: the nodes mpirun starts ranks on, node-rank order; "
        "default: the inventory's hosts of the same profile",
    )
    reports_dir: LocalPath = Field(
        default="diag-reports", description="on the control host; a dated folder per run"
    )
