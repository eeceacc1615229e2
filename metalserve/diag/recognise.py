"""Which setup a run ran on, as its own device lines tell: GPU model, GPUs per node, nodes.

nccl-tests prints one line per rank before its table (``#  Rank  0 Group  0 Pid 5026 on vm device
0 [0x00] NVIDIA H200``, NVIDIA/nccl-tests src/common.cu; ``config.devices`` in ``-J`` JSON), which
:mod:`metalserve.diag.parse` reads into ``run.devices``. Pure: a run in, a recognised setup out.

Only what the lines show is recognised. A single node is the catalogue preset of that GPU and count,
where exactly one exists (8 SXM GPUs sit on an NVSwitch baseboard, 4 on direct NVLink: the presets
say which). Between nodes the lines name no fabric, NIC count or rate, and the figures measured on
one fabric do not hold on another, so a multi-node run is recognised without an expected figure.

Example::

    >>> setup = recognise(parse_output(open("all_reduce.log").read()).run)
    >>> setup.profile_id, setup.text
    ('h200-sxm-8', '8 × NVIDIA H200 on 1 node, profile h200-sxm-8')
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from metalserve.catalog.gpus import gpu_named
from metalserve.catalog.profiles import PROFILES
from metalserve.diag.parse import NcclTestsRun


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecognisedSetup(_Frozen):
    """The setup a run's device lines describe, and the catalogue preset it is (if one)."""

    gpu_id: str = Field(description="catalogue GPU id, e.g. h200-sxm")
    gpu_name: str = Field(description="the name the log printed, e.g. NVIDIA H200")
    gpus_per_node: int = Field(ge=1)
    nodes: int = Field(ge=1)
    profile_id: str | None = Field(
        description="the catalogue preset of exactly this setup; None where none fits"
    )

    @property
    def text(self) -> str:
        """``8 × NVIDIA H200 on 1 node, profile h200-sxm-8``; ``16 × … on 2 nodes, 8 per node``."""
        where = (
            "1 node" if self.nodes == 1 else f"{self.nodes} nodes, {self.gpus_per_node} per node"
        )
        profile = f", profile {self.profile_id}" if self.profile_id else ""
        return f"{self.gpus_per_node * self.nodes} × {self.gpu_name} on {where}{profile}"

    @property
    def why_no_profile(self) -> str | None:
        """Why no preset was chosen, for the summary; None where one was."""
        if self.profile_id is not None:
            return None
        if self.nodes > 1:
            return "the device lines name no fabric between the nodes (kind, NICs, rate): pass --profile"
        return f"no catalogue setup of {self.gpus_per_node} × {self.gpu_id} on one node"


def _preset(gpu_id: str, gpus_per_node: int, nodes: int) -> str | None:
    """The one single-node preset of this GPU and count; None for several, none, or many nodes."""
    if nodes != 1:
        return None
    fits = [
        p.id
        for p in PROFILES.values()
        if p.gpu is not None
        and p.gpu.id == gpu_id
        and p.gpus_per_node == gpus_per_node
        and p.nodes == 1
    ]
    return fits[0] if len(fits) == 1 else None


def recognise(run: NcclTestsRun) -> RecognisedSetup | None:
    """The setup of ``run`` from its device lines; None where they do not tell one: no lines, a GPU
    the catalogue lacks, several models, nodes with different GPU counts, a device listed twice."""
    if not run.devices:
        return None
    names = {d.name for d in run.devices}
    printed = next(iter(names))
    gpu = gpu_named(printed) if len(names) == 1 else None
    if gpu is None:
        return None
    per_host = Counter(d.host for d in run.devices)
    if len(set(per_host.values())) != 1 or len({(d.host, d.device) for d in run.devices}) != len(
        run.devices
    ):
        return None
    gpus_per_node, nodes = next(iter(per_host.values())), len(per_host)
    return RecognisedSetup(
        gpu_id=gpu.id,
        gpu_name=printed,
        gpus_per_node=gpus_per_node,
        nodes=nodes,
        profile_id=_preset(gpu.id, gpus_per_node, nodes),
    )
