"""The serve deploy's stages, which stage needs which, and the critical path of a timed run.

A stage is a role's @deploy name (``Packages: install``, ``GGUF: install`` …), timed from pyinfra's
"Starting operation" lines (``DeployRun.stage_seconds``). Two stages are not pyinfra's: the time
before the first operation (connecting, gathering facts: every stage needs it) and the weights
download, which runs on the host in its own unit while the deploy goes on (``roles.weights``).
``Weights: wait`` is no work of its own: it is the part of the download the deploy could not hide,
so it counts as nothing on a path (the download stands for it) and wholly in the wall time.

The critical path is the longest chain of stages each needing the one before, by measured
seconds: what the deploy would take if everything that may overlap did. ``wall / critical`` says
how far the real run is from that.

Example::

    durations = {CONNECT: 1.0, "Packages: install": 9.0, "Weights: start": 2.0, DOWNLOAD: 30.0, ...}
    path = critical_path(durations)        # (CONNECT, "Packages: install", ..., DOWNLOAD, ...)
    sum(path_seconds(path, durations))
"""

from __future__ import annotations

from collections.abc import Mapping

CONNECT = "connect and gather facts"
DOWNLOAD = "weights download (on the host)"
WAITS = frozenset({"Weights: wait"})
"""Stages that only wait for another (the download): nothing on a path."""

_NVIDIA_READY = (
    "NVIDIA driver: load and verify",
    "cuda-toolkit: verify",
    "nccl: verify",
    "Fabric manager: start and verify",
    "Fabric: GPUDirect RDMA and ports",
)

NEEDS: Mapping[str, tuple[str, ...]] = {
    CONNECT: (),
    "Preflight": (CONNECT,),  # only on a FAIL: then nothing else runs
    "Preflight: read-only checks": (CONNECT,),
    "Packages: install": (CONNECT,),
    "Layout: install": (CONNECT,),  # the user, directories and credentials: no package needed
    # the hub venv needs python3-venv (packages); the models folder and token come from the layout
    "Weights: start": ("Packages: install", "Layout: install"),
    DOWNLOAD: ("Weights: start",),
    "Weights: wait": (DOWNLOAD,),
    "NVIDIA driver: packages": ("Packages: install",),
    "NVIDIA driver: persistence daemon": ("NVIDIA driver: packages",),
    "NVIDIA driver: load and verify": ("NVIDIA driver: persistence daemon",),
    "Fabric manager: packages": ("NVIDIA driver: packages",),
    "Fabric manager: enable": ("Fabric manager: packages",),
    "Fabric manager: start and verify": (
        "Fabric manager: enable",
        "NVIDIA driver: load and verify",
    ),
    "cuda-toolkit: packages": ("NVIDIA driver: packages",),
    "cuda-toolkit: verify": ("cuda-toolkit: packages",),
    "nccl: packages": ("cuda-toolkit: packages",),
    "nccl: verify": ("nccl: packages",),
    "Fabric: RDMA packages": ("Packages: install",),
    "Fabric: GPUDirect RDMA at boot": ("Fabric: RDMA packages", "NVIDIA driver: packages"),
    "Fabric: GPUDirect RDMA and ports": ("Fabric: GPUDirect RDMA at boot",),
    "Firewall: configure": ("Packages: install",),
    "Firewall: activate": ("Firewall: configure",),
    # the engine's venv from the wheelhouse: python3-venv, and the layout's folders
    "Engine venv: install": ("Packages: install", "Layout: install"),
    # the flags checked by the installed engine's own parser
    "Engine venv: configure": ("Engine venv: install",),
    # the build tools (packages) and the layout's prefix
    "llama.cpp: install": ("Packages: install", "Layout: install"),
    # the converter is llama.cpp's; the checkpoint must be whole
    "GGUF: install": ("llama.cpp: install", "Weights: wait"),
    "Service: configure": (
        "Layout: install",
        "Engine venv: configure",
        "GGUF: install",
        "Weights: wait",
        "llama.cpp: install",
    ),  # fmt: skip
    "Service: activate": ("Service: configure", "Firewall: activate", *_NVIDIA_READY),
    "Service: cluster health": ("Service: activate",),
}
"""What each stage needs done before it can start (stages a run did not have are left out)."""


def needs_of(stage: str, order: list[str]) -> tuple[str, ...]:
    """The stages ``stage`` needs among those of the run (``order``: as they started). A stage
    the graph does not know is taken to need every stage that started before it."""
    if stage in NEEDS:
        return tuple(s for s in NEEDS[stage] if s in order)
    return tuple(order[: order.index(stage)])


def unknown_stages(durations: Mapping[str, float]) -> list[str]:
    return [stage for stage in durations if stage not in NEEDS]


def critical_path(durations: Mapping[str, float]) -> tuple[str, ...]:
    """The longest chain of stages each needing the one before, by seconds (``WAITS`` count 0).

    >>> critical_path({CONNECT: 1, "Packages: install": 9, "Layout: install": 3,
    ...                "Weights: start": 2, DOWNLOAD: 30, "Weights: wait": 20,
    ...                "llama.cpp: install": 5, "GGUF: install": 20})[-3:]
    ('weights download (on the host)', 'Weights: wait', 'GGUF: install')
    """
    order = list(durations)
    best: dict[str, tuple[float, tuple[str, ...]]] = {}

    def longest(stage: str) -> tuple[float, tuple[str, ...]]:
        if stage not in best:
            before = [longest(need) for need in needs_of(stage, order)]
            seconds, chain = max(before, default=(0.0, ()), key=lambda found: found[0])
            best[stage] = (seconds + own_seconds(stage, durations), (*chain, stage))
        return best[stage]

    return max((longest(stage) for stage in order), key=lambda found: found[0], default=(0, ()))[1]


def own_seconds(stage: str, durations: Mapping[str, float]) -> float:
    """A stage's seconds on a path: its measured time, nothing for a wait."""
    return 0.0 if stage in WAITS else durations[stage]


def path_seconds(path: tuple[str, ...], durations: Mapping[str, float]) -> float:
    return sum(own_seconds(stage, durations) for stage in path)
