"""The preflight role on fixture facts: what it reports per check, where it writes the report, and
that it never changes the host (its only operation is the python.call that fails a host on FAIL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalserve.preflight import HOST_CHECKS, HostReport, Verdict
from tests.opcases import OPCASE_HOME, case_files, load_case, run_case

HERE = Path(__file__).parent
REPORT = OPCASE_HOME / ".local/state/metalserve/preflight/testhost.json"


def _report_of(case_name: str) -> HostReport:
    commands = run_case(load_case(HERE / f"{case_name}.json"))
    assert set(commands) <= {"function fail_host"}
    return HostReport.model_validate_json(REPORT.read_text())


def _verdicts(report: HostReport) -> dict[str, Verdict]:
    return {r.check: r.verdict for r in report.results}


@pytest.mark.parametrize("case", case_files(HERE), ids=lambda p: p.stem)
def test_the_role_only_reports(case: Path) -> None:
    data = load_case(case)
    assert set(data["commands"]) <= {"function fail_host"}
    assert data["second_run_facts"], "every case proves its second run"


def test_a_healthy_h200_passes_every_check_that_applies() -> None:
    verdicts = _verdicts(_report_of("h200_healthy"))
    assert set(verdicts) == set(HOST_CHECKS)
    skipped = {
        r.check: r.found
        for r in _report_of("h200_healthy").results
        if r.verdict is not Verdict.PASS
    }
    assert skipped == {
        "roce-gid-index": "no RoCE fabric in the plan",
        "gpudirect": "the plan uses no nvidia-peermem",
        "pcie-acs": "no GPU peer-to-peer over PCIe",
        "cluster-address": "a single node, or an address given as a name",
    }


def test_a_drifted_h200_fails_exactly_what_drifted() -> None:
    report = _report_of("h200_drifted_fails")
    failed = {r.check for r in report.results if r.verdict is Verdict.FAIL}
    assert failed == {
        "driver-loaded",
        "driver-userspace",
        "rival-modules",
        "packages-held",
        "fabric-manager",
        "shm-size",
    }
    held = next(r for r in report.results if r.check == "packages-held")
    assert held.found == "not held: libnccl2" and held.fix.startswith("apt-mark hold libnccl2")
    assert report.manifest.driver == "570.172.08"


def test_warnings_are_reported_without_failing() -> None:
    verdicts = _verdicts(_report_of("h200_warnings_do_not_fail"))
    assert verdicts["persistence-mode"] is Verdict.WARN
    assert verdicts["secure-boot"] is Verdict.WARN
    assert Verdict.FAIL not in verdicts.values()


def test_a_cpu_sandbox_host_skips_the_gpu_checks_and_says_why() -> None:
    report = _report_of("sandbox_cpu_skips_gpu_checks")
    assert {r.verdict for r in report.results} == {Verdict.SKIP}
    gpu = [r for r in report.results if r.check == "driver-loaded"][0]
    assert gpu.found == "no NVIDIA GPU in this node's plan"
    assert report.manifest.engine.startswith("llamacpp ")
    assert json.loads(REPORT.read_text())["host"] == "testhost"
