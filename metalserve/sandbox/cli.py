"""`metalserve sandbox up|down|status`: the click group the main CLI registers as `sandbox_group`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import MAX_HOSTS
from metalserve.sandbox.lifecycle import down, status, up

T = TypeVar("T")


def _operator_errors(action: Callable[[], T]) -> T:
    """Run `action`; a SandboxError becomes its one line on stderr and its exit code."""
    try:
        return action()
    except SandboxError as err:
        click.echo(f"error: {err.message}", err=True)
        sys.exit(err.exit_code)


@click.group(name="sandbox")
def sandbox_group() -> None:
    """Throwaway Debian 12 hosts booting real systemd, reachable over SSH (needs root)."""


@sandbox_group.command(name="up")
@click.option("-n", "--hosts", "n", type=click.IntRange(1, MAX_HOSTS), default=2, show_default=True,
              help="how many hosts to boot")  # fmt: skip
def up_command(n: int) -> None:
    """Boot N hosts on a private subnet, with a local apt repository and file server."""
    state = _operator_errors(lambda: up(n, progress=click.echo))
    for host in state.hosts:
        click.echo(f"{host.name}\t{host.ip}")
    click.echo(f"ssh:    ssh -F {state.ssh_config} {state.hosts[0].name}")
    click.echo("deploy: pyinfra inventories/sandbox.py deploy/serve.py -y")
    click.echo("down:   metalserve sandbox down")


@sandbox_group.command(name="down")
def down_command() -> None:
    """Stop every host and service; remove namespaces, mounts and host trees (caches stay)."""
    _operator_errors(lambda: down(progress=click.echo))


@sandbox_group.command(name="status")
def status_command() -> None:
    """Each host's name, address and `systemctl is-system-running`."""
    rows = _operator_errors(status)
    for row in rows:
        click.echo(f"{row.name}\t{row.ip}\t{row.system}")
    if any(row.system not in ("running", "degraded") for row in rows):
        sys.exit(1)


def main() -> None:
    """Entry point for running the group alone: `python -m metalserve.sandbox.cli up -n 2`."""
    sandbox_group()


if __name__ == "__main__":
    main()
