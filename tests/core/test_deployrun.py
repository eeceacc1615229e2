"""Reading pyinfra's own output: the results table and the operation announcements."""

from __future__ import annotations

import pytest

from metalserve.errors import ParseError
from metalserve.io.deployrun import failures, operation_start, results

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


# A run over three hosts as pyinfra prints it (pyinfra_cli/cli.py phase lines, Host.print_prefix
# "[name] " padded to the longest name, connectors/ssh.py and api/util.py error texts): one host
# unreachable, one whose SSH connection dropped in the middle of an operation.
CUT_SHORT = """--> Loading config...
--> Loading inventory...
--> Connecting to hosts...
    [mf-host1] Connected
    [mf-host2] Connected
    [mf-host3] Could not connect (timed out)
--> Preparing operations...
--> Beginning operation run...
--> Starting operation: llama.cpp: install | Build llama.cpp 0c1e57098
    [mf-host1] Success
    [mf-host2] Success
--> Starting operation: GGUF: install | Install torch==2.13.0 into /opt/metalserve/venvs/convert
    [mf-host2] Command socket/SSH error: SSHException('SSH session not active')
    [mf-host2] Error: executed 0/1 commands
    [mf-host1] Success
--> Starting operation: Service: activate | Wait for http://127.0.0.1:8080/health
    [mf-host1] Error (ignored): executed 0/1 commands
    [mf-host1] Success
--> Results:
    Grand total   3       20        1       3
"""


def test_each_failed_host_is_reported_with_the_step_it_failed_in() -> None:
    assert failures(CUT_SHORT) == {
        "mf-host3": "Connecting to hosts",
        "mf-host2": "GGUF: install | Install torch==2.13.0 into /opt/metalserve/venvs/convert",
    }
    assert failures(FIRST_RUN) == {}
