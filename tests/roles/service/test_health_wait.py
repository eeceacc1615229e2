"""The health wait watches its unit: a crash loop or a failed unit ends the wait at once with the
unit's journal tail; a steady unit is waited for; restarts from before the wait do not count.

Run for real (``sh -c``) with ``systemctl``, ``journalctl`` and ``curl`` stand-ins on PATH.
"""

from __future__ import annotations

from pathlib import Path

from roles.service import wait_for_health_command
from tests.faultkit import FakeUnit, timed_shell

URL = "http://127.0.0.1:8080/health"
HEALTH_TIMEOUT_S = 1800  # the serve deploy's default for the sandbox and real hosts alike


def test_a_crash_looping_engine_fails_the_wait_within_seconds_with_its_journal(
    tmp_path: Path,
) -> None:
    unit = FakeUnit(tmp_path, restart_every_s=2)  # systemd restarts it every 2 s, it never answers
    code, seconds, stderr = timed_shell(wait_for_health_command(URL, HEALTH_TIMEOUT_S, unit.name),
                                        unit.env)  # fmt: skip
    assert code == 1
    assert seconds < 15, f"waited {seconds:.0f} s on a crash loop"
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"health: expected {unit.name} to answer 200 at {URL}, found it ")
    assert "restart(s) while waiting" in stderr
    assert "main: error: failed to load model | metalserve-llamacpp.service: Main process" in stderr


def test_a_failed_unit_ends_the_wait_at_once(tmp_path: Path) -> None:
    unit = FakeUnit(tmp_path, state="failed")
    code, seconds, stderr = timed_shell(wait_for_health_command(URL, HEALTH_TIMEOUT_S, unit.name),
                                        unit.env)  # fmt: skip
    assert code == 1 and seconds < 5
    assert (
        "found it failed after 0 restart(s) while waiting — last journal lines: Started" in stderr
    )


def test_the_journal_tail_is_one_line_without_control_characters(tmp_path: Path) -> None:
    journal = "\x1b[31mred\x1b[0m\r\nbell\x07 here\n" + "x" * 5000 + "\nlast words\n"
    unit = FakeUnit(tmp_path, state="failed", journal=journal)
    _, _, stderr = timed_shell(wait_for_health_command(URL, 60, unit.name), unit.env)
    assert stderr.count("\n") == 1
    assert not any(ch in stderr for ch in "\x1b\x07\r")
    assert "| last words — fix:" in stderr
    assert len(stderr) < 2000 + 400  # the tail is cut, the sentence around it stays


def test_a_healthy_unit_passes(tmp_path: Path) -> None:
    unit = FakeUnit(tmp_path, state="active", http_code="200")
    code, seconds, _ = timed_shell(wait_for_health_command(URL, 60, unit.name), unit.env)
    assert code == 0 and seconds < 5


def test_restarts_before_the_wait_do_not_count_and_a_steady_unit_is_waited_for(
    tmp_path: Path,
) -> None:
    # NRestarts is 5 when the wait begins and stays there: loading, not looping
    unit = FakeUnit(tmp_path, state="activating", restart_every_s=1000, started_ago_s=5000,
                    http_code="503")  # fmt: skip
    code, seconds, stderr = timed_shell(wait_for_health_command(URL, 4, unit.name), unit.env)
    assert code == 1 and 3.5 < seconds < 12
    assert stderr == f"health: expected 200 from {URL} within 4s, last answer 503\n"
