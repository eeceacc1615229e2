"""Edge: ``metalserve diag`` — parse a saved nccl-tests output, show a report, compare two runs.

Bad input ends with exit status 2 and one line on stderr (expected, found, fix); never a traceback.

Example::

    $ metalserve diag parse all_reduce.log --profile h100-sxm-8 --out reports/
    $ metalserve diag show all_reduce.log          # a raw log: the setup from its device lines
    $ metalserve diag show reports/all_reduce.json
    $ metalserve diag compare before/all_reduce.json after/all_reduce.json
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from metalserve.diag.parse import merge_outputs
from metalserve.diag.report import (
    checked,
    compare,
    comparison_text,
    judged_report,
    shown_report,
    summary_text,
)
from metalserve.errors import MetalserveError
from metalserve.io.reports import read_report, read_report_or_output, read_text, write_report
from metalserve.types import printable

P = ParamSpec("P")
R = TypeVar("R")

BAD_INPUT = 2


def _operator_errors(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MetalserveError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            sys.exit(BAD_INPUT)

    return wrapper


def _now() -> str:
    """When a report is made, as its title shows it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_existing = click.Path(exists=False, dir_okay=False, path_type=Path)


def _terminal_safe(text: str) -> str:
    """Text from a report or a log with its control characters escaped, line by line: what a file
    holds is shown, never run by the terminal (an escape sequence, a carriage return)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _stem_of(log: Path) -> str:
    """The log's own name as the reports' stem, with what a file name should not hold replaced."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", log.stem).lstrip(".")[:128]
    return stem or "report"


@click.group("diag")
def diag_group() -> None:
    """NCCL diagnostics: judge nccl-tests runs against what the hardware should reach."""


@diag_group.command("show")
@click.argument("report_or_log", type=_existing)
@_operator_errors
def show(report_or_log: Path) -> None:
    """Print the summary of a saved diag report (.json), its results judged again, or of a raw
    nccl-tests output (text or -J JSON), judged as diag parse judges it without --profile."""
    text = read_report_or_output(report_or_log)
    shown, claimed = shown_report(text, printable(str(report_or_log)), _now())
    click.echo(_terminal_safe(summary_text(shown, claimed)), nl=False)


@diag_group.command("compare")
@click.argument("before", type=_existing)
@click.argument("after", type=_existing)
@_operator_errors
def compare_command(before: Path, after: Path) -> None:
    """Show how run AFTER differs from run BEFORE (e.g. around a driver upgrade)."""
    (a, _), (b, _) = checked(read_report(before)), checked(read_report(after))
    click.echo(_terminal_safe(comparison_text(compare(a, b))), nl=False)


@diag_group.command("parse")
@click.argument("log", type=_existing)
@click.option("--json", "json_path", type=_existing, help="the -J report of the same run")
@click.option(
    "--profile",
    "profile_id",
    help="hardware profile id, e.g. h100-sxm-8 (default: recognised from the log's device lines)",
)
@click.option("--expected-busbw", type=float, help="override the catalogue's figure (GB/s)")
@click.option("--host", default=None, help="host name recorded in the report")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stem", default=None, help="file name stem (default: the log's)")
@_operator_errors
def parse_command(
    log: Path,
    json_path: Path | None,
    profile_id: str | None,
    expected_busbw: float | None,
    host: str | None,
    out_dir: Path | None,
    stem: str | None,
) -> None:
    """Turn a saved nccl-tests output (text or -J JSON) into a judged report."""
    parsed = merge_outputs(read_text(log), read_text(json_path) if json_path else None)
    report = judged_report(
        parsed,
        profile_id=profile_id,
        expected_busbw=expected_busbw,
        host=host,
        created_at=_now(),
    )
    click.echo(_terminal_safe(summary_text(report)), nl=False)
    if out_dir is not None:
        for path in write_report(report, out_dir, stem if stem is not None else _stem_of(log)):
            click.echo(f"wrote {printable(str(path))}")
