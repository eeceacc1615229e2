"""Read what a ``pyinfra`` run printed: its results table, when each operation started, and which
hosts failed in which step.

Example::

    totals = results(output)          # Totals(hosts=2, changed=0, errors=0, unchanged=41)
    stages = operation_starts(lines)  # [(seconds, "llama.cpp: install | Build llama.cpp ...")]
    failures(output)                  # {"ms-host3": "Connecting to hosts", "ms-host2": "GGUF: ..."}
"""

from __future__ import annotations

import re

from metalserve.errors import ParseError
from metalserve.hardware import Frozen

_GRAND_TOTAL = re.compile(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_START = re.compile(r"^--> Starting operation: (.+?)\s*$")
_PHASE = re.compile(r"^--> (.+?)[.:]*\s*$")
_HOST_SAID = re.compile(r"^\s*\[(?P<host>[^\]\s]+)\]\s+(?P<said>.+?)\s*$")
_FAILED = (
    "Error",  # pyinfra/api/util.py log_error_or_warning: "Error" / "Error: <description>"
    "Could not connect",  # pyinfra/connectors/ssh.py connect(): raise_connect_error(...)
    "Could not resolve hostname",
    "SSH error",
    "EOF error",
    "Command socket/SSH error",  # pyinfra/api/util.py log_host_command_error
    "Command timed out",
    "Command IO error",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Totals(Frozen):
    hosts: int
    changed: int
    errors: int
    unchanged: int


def _count(cell: str) -> int:
    return 0 if cell == "-" else int(cell)


def results(output: str) -> Totals:
    """The ``Grand total`` row of pyinfra's results table (the last one, if several)."""
    rows = [_GRAND_TOTAL.match(_ANSI.sub("", line)) for line in output.splitlines()]
    found = [m for m in rows if m]
    if not found:
        raise ParseError("pyinfra output has no 'Grand total' results row — did the run finish?")
    hosts, changed, errors, unchanged = (_count(c) for c in found[-1].groups())
    return Totals(hosts=hosts, changed=changed, errors=errors, unchanged=unchanged)


def operation_start(line: str) -> str | None:
    """The operation name when ``line`` announces one starting, else None."""
    match = _START.match(_ANSI.sub("", line))
    return match.group(1) if match else None


def failures(output: str) -> dict[str, str]:
    """Each host that failed and the step it failed in: the operation that was running (pyinfra
    runs one operation on every host before it starts the next), else the phase announced last
    (``Connecting to hosts`` for a host that could not be reached). Ignored errors do not count.
    """
    step = ""
    failed: dict[str, str] = {}
    for raw in output.splitlines():
        line = _ANSI.sub("", raw)
        if (name := operation_start(line)) is not None:
            step = name
            continue
        if phase := _PHASE.match(line):
            step = phase.group(1)
            continue
        said = _HOST_SAID.match(line)
        if said and said["said"].startswith(_FAILED) and "(ignored" not in said["said"]:
            failed.setdefault(said["host"], step)
    return failed
