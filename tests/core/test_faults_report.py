"""bench/faults.py counts what its checks saw: a check that does not hold, crashes or leaks a
secret shows in the totals, and the registered checks run through the real code paths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("faults_report", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while a class is made
    spec.loader.exec_module(module)
    return module


def test_a_check_that_does_not_hold_crashes_or_leaks_counts_against_the_totals(report) -> None:  # type: ignore[no-untyped-def]
    leaked = report.secret("sk-test-")

    def crashes(_: Path):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    checks = [
        report.Check("fault", "holds", lambda _: report.Seen(True, "fine")),
        report.Check("fault", "does not hold", lambda _: report.Seen(False, "engine started")),
        report.Check("fault", "crashes", crashes),
        report.Check("attack", "leaks", lambda _: report.Seen(True, "ok", f"key={leaked}\n")),
        report.Check("attack", "prints a traceback",
                     lambda _: report.Seen(True, "ok", f"{report.TRACEBACK}:\n  x\n")),
    ]  # fmt: skip
    rows = report.run_checks(checks)
    assert report.totals(rows) == {
        "faults_survived": 1,
        "faults": 3,
        "attacks_refused": 0,
        "attacks": 2,
        "secrets_found": 1,
        "tracebacks": 2,
    }
    text = report.table(rows)
    assert text.splitlines()[-1] == (
        "faults survived 1/3, attacks refused 0/2, secrets found 1, tracebacks 2"
    )
    assert "crashed: RuntimeError: boom" in text and leaked not in text


def test_the_gate_checks_run_and_hold(report, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    gate = [c for c in report.CHECKS if "gate" in c.name]
    assert len(gate) == len(report.NO_RESULT_LOGS) + 1  # each kind of nothing, and wrong results
    assert report.main(["--only", "gate"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        f"faults survived {len(gate)}/{len(gate)}, attacks refused 0/0, secrets found 0, "
        "tracebacks 0"
    )
