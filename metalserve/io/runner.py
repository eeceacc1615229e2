"""Edge: run ``pyinfra`` as a user would (a subprocess of the installed CLI), streaming its output,
timing each operation, and reading its results table.

Example::

    run = run_pyinfra("inventories/sandbox.py", "deploy/serve.py", on_line=print)
    run.totals.changed, run.elapsed, run.stage_seconds()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from metalserve.errors import MetalserveError, ParseError
from metalserve.io.deployrun import Totals, operation_start, results

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DeployRun:
    returncode: int
    elapsed: float
    output: str
    starts: list[tuple[float, str]] = field(default_factory=list)

    @property
    def totals(self) -> Totals:
        return results(self.output)

    @property
    def finished(self) -> bool:
        try:
            self.totals  # noqa: B018 - parsing is the check
        except ParseError:
            return False
        return True

    def operation_seconds(self) -> list[tuple[str, float]]:
        """Each operation as pyinfra named it, in order, with its seconds from its start to the
        next one's (the last one's to the end of the run)."""
        marks = [*self.starts, (self.elapsed, "")]
        return [(name, t1 - t0) for (t0, name), (t1, _) in zip(marks, marks[1:], strict=False)]

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage (the @deploy name before ' | '), in the order stages first started;
        the time before the first operation (connecting, gathering facts) is no stage's."""
        stages: dict[str, float] = {}
        for name, seconds in self.operation_seconds():
            stage = name.split(" | ", 1)[0]
            stages[stage] = stages.get(stage, 0.0) + seconds
        return stages


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def pyinfra_command() -> list[str]:
    exe = Path(sys.executable).with_name("pyinfra")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pyinfra")
    if not found:
        raise MetalserveError(
            "pyinfra is not installed — fix: pip install -e . (it is a dependency)"
        )
    return [found]


def run_pyinfra(
    inventory: str,
    deploy: str,
    *,
    limit: str | None = None,
    on_line: Callable[[str], None] | None = None,
    kill_when: Callable[[str], float | None] | None = None,
    timeout_s: float = 3600,
) -> DeployRun:
    """Run ``pyinfra -y INVENTORY DEPLOY`` from the repository root.

    ``kill_when`` is for tests of interrupted runs: for the first output line it returns a number
    of seconds for, the whole pyinfra process group is killed (SIGKILL) that long afterwards.
    """
    argv = [*pyinfra_command(), "-y", inventory, deploy]
    if limit:
        argv += ["--limit", limit]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    starts: list[tuple[float, str]] = []
    killer: threading.Timer | None = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            now = time.monotonic() - started
            lines.append(line)
            if on_line:
                on_line(line.rstrip("\n"))
            name = operation_start(line)
            if name:
                starts.append((now, name))
            delay = kill_when(line) if kill_when and killer is None else None
            if delay is not None:
                killer = threading.Timer(delay, _kill_group, (proc.pid,))
                killer.start()
            if now > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                raise MetalserveError(
                    f"pyinfra {deploy} ran past {timeout_s:.0f} s and was stopped"
                )
    finally:
        returncode = proc.wait()
        if killer is not None:
            killer.cancel()
    return DeployRun(returncode, time.monotonic() - started, "".join(lines), starts)
