"""Read what a ``pyinfra`` run printed: its results table and when each operation started.

Example::

    totals = results(output)          # Totals(hosts=2, changed=0, errors=0, unchanged=41)
    stages = operation_starts(lines)  # [(seconds, "llama.cpp: install | Build llama.cpp ...")]
"""

from __future__ import annotations

import re

from metalserve.errors import ParseError
from metalserve.hardware import Frozen

_GRAND_TOTAL = re.compile(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_START = re.compile(r"^--> Starting operation: (.+?)\s*$")
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
