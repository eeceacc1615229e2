"""Reading pyinfra's own output: the results table and the operation announcements."""

from __future__ import annotations

import pytest

from metalserve.errors import ParseError
from metalserve.io.deployrun import operation_start, results

FIRST_RUN = """--> Starting operation: Layout: install | System user metalserve
    [ms-host1] Success
--> Results:
    Operation     Hosts   Success   Error   No Change
    dir           2       2         -       -
    Grand total   2       12        -       3
"""
SECOND_RUN = """--> Results:
    Operation     Hosts   Success   Error   No Change
    \x1b[1mGrand total\x1b[0m   2       -         -       15
"""


def test_a_first_run_reports_what_changed() -> None:
    totals = results(FIRST_RUN)
    assert (totals.hosts, totals.changed, totals.errors, totals.unchanged) == (2, 12, 0, 3)


def test_a_no_op_run_reports_zero_changes_even_with_colours() -> None:
    assert results(SECOND_RUN).changed == 0


def test_an_unfinished_run_is_an_error_not_zero_changes() -> None:
    with pytest.raises(ParseError, match="Grand total"):
        results("--> Starting operation: x\n")


def test_operation_starts_are_recognised() -> None:
    assert operation_start("--> Starting operation: Layout: install | System user metalserve") == (
        "Layout: install | System user metalserve"
    )
    assert operation_start("    [ms-host1] Success") is None
