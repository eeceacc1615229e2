"""Finding and stopping the sandbox's own processes on the control host, by what they run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from metalserve.sandbox.errors import SandboxError

PROC = Path("/proc")


def process_cmdline(pid: int) -> list[str]:
    """The argv of `pid`, or [] when it is gone (or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_processes(matches: Callable[[list[str]], bool]) -> list[int]:
    """Pids whose argv satisfies `matches`, this process excluded."""
    me = os.getpid()
    found = []
    for entry in PROC.iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != me
            and matches(process_cmdline(int(entry.name)))
        ):
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (a zombie has exited; nothing of it runs)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3, after the parenthesised command name (which may itself hold spaces or parens).
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def stop_process(pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still alive after `timeout` seconds."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in pending:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap our own children so they are not zombies
        pending = [p for p in pending if alive(p)]
        if pending:
            time.sleep(0.1)
    return pending


def terminate(pids: Iterable[int], grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL whatever is left."""
    pids = list(pids)
    for pid in pids:
        stop_process(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace):
        stop_process(pid, signal.SIGKILL)
    wait_gone(pids, 5)


def start_daemon(
    argv: list[str], log: Path, what: str, ready: Callable[[], bool], timeout: float = 15
) -> int:
    """Start ``argv`` in a session of its own, logging to ``log``; return its pid once ``ready()``.

    A daemon that exits, or is not ready in time, is one line naming ``what`` and the log.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SandboxError(f"{what}: exited {proc.returncode} — fix: read {log}")
        with contextlib.suppress(OSError):
            if ready():
                return proc.pid
        time.sleep(0.1)
    stop_process(proc.pid, signal.SIGKILL)
    raise SandboxError(f"{what}: not ready after {timeout:.0f} s — fix: read {log}")
