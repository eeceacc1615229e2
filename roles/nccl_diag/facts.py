"""Facts the NCCL diagnostic reads before acting: is there a GPU, and what was nccl-tests built from.

Each is a command plus a pure ``process()``, tested on real outputs in ``tests/diag/test_role_facts.py``.
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

_GPU_LINE = re.compile(r"^GPU \d+: ")


class NvidiaGpuCount(FactBase[int]):
    """GPUs ``nvidia-smi -L`` lists; 0 without a driver or a GPU (``nvidia-smi`` missing or failing).

    Example output line: ``GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-8f6c0a8e-...)``.
    """

    def command(self) -> str:
        return "nvidia-smi -L 2>/dev/null || true"

    def process(self, output: list[str]) -> int:
        return sum(1 for line in output if _GPU_LINE.match(line.strip()))


class BuildStamp(FactBase[str | None]):
    """The digest written after the last successful nccl-tests build, or None if never built."""

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        text = "\n".join(output).strip()
        return text or None
