"""Edge: ``metalserve preflight show`` — the per-host and cross-node table of preflight reports.

Exit 1 when any check FAILs (on a host or across the nodes of a cluster), 2 on a bad file (one
line on stderr), 0 otherwise.

Example::

    $ metalserve preflight show ~/.local/state/metalserve/preflight/*.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from metalserve.io.preflight import read_host_report
from metalserve.preflight import any_failed, table_text

FAILED = 1


@click.group("preflight")
def preflight_group() -> None:
    """Read-only checks of hosts against their plan (written by deploy/preflight.py)."""


@preflight_group.command("show")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def show(reports: tuple[Path, ...]) -> None:
    """Print every host's checks and the cross-node diff; exit 1 on any FAIL."""
    loaded = [read_host_report(path) for path in reports]
    click.echo(table_text(loaded), nl=False)
    if any_failed(loaded):
        sys.exit(FAILED)
