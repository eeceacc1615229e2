"""Facts about the running engine service."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase


class HttpStatus(FactBase[int]):
    """The HTTP status a GET of ``url`` answers on the host, 0 when nothing answers.

    Example::

        host.get_fact(HttpStatus, url="http://127.0.0.1:8080/health")  # 200, 503, 0
    """

    def command(self, url: str) -> str:
        return (
            "curl --silent --output /dev/null --max-time 5 --write-out '%{http_code}' "
            f"{shlex.quote(url)} || true"
        )

    def process(self, output: list[str]) -> int:
        return _small_int("".join(output).strip())


def _small_int(text: str) -> int:
    """A status or timestamp as printed (ASCII digits, at most 18), else 0: anything else is not
    an answer, and a thousand-digit line must not cost a traceback."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else 0


def reach_command(endpoint: str, timeout_s: int = 2) -> str:
    """A TCP connect to ``host:port`` from this host (bash's /dev/tcp: no extra tool needed)."""
    address, _, port = endpoint.rpartition(":")
    return f"timeout {timeout_s} bash -c {shlex.quote(f'exec 3<>/dev/tcp/{address}/{port}')}"


class UnreachableEndpoints(FactBase[list[str]]):
    """Which ``host:port`` endpoints refuse a TCP connection from the host (none: all answer).

    Example::

        host.get_fact(UnreachableEndpoints, endpoints=("10.0.0.3:29500",))  # ["10.0.0.3:29500"]
    """

    def command(self, endpoints: tuple[str, ...]) -> str:
        checks = [f"{reach_command(e)} 2>/dev/null || echo {shlex.quote(e)}" for e in endpoints]
        return "; ".join(checks) + "; true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class UnitActiveSince(FactBase[int]):
    """When ``unit`` last became active, in seconds since the epoch; 0 when it is not active.
    Wall-clock seconds, so two nodes' units compare (their clocks are kept in sync).

    Example::

        host.get_fact(UnitActiveSince, unit="metalserve-rpc.service")  # 1764485533
    """

    def command(self, unit: str) -> str:
        q = shlex.quote(unit)
        return (
            f'if [ "$(systemctl is-active {q})" = active ]; then '
            f'date -d "$(systemctl show -p ActiveEnterTimestamp --value {q})" +%s; '
            "else echo 0; fi"
        )

    def process(self, output: list[str]) -> int:
        return _small_int("".join(output).strip())
