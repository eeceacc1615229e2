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
        "roce-pfc": "no RoCE fabric in the plan",
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


def _cluster_reports() -> dict[str, HostReport]:
    folder = REPORT.parent
    return {p.stem: HostReport.model_validate_json(p.read_text()) for p in folder.glob("*.json")}


def test_a_running_cluster_is_judged_whole_with_no_operation() -> None:
    commands = run_case(load_case(HERE / "cluster_running_head_reaches_worker.json"))
    assert commands == []
    reports = _cluster_reports()
    head, worker = reports["testhost"], reports["node1"]
    assert head.run == worker.run  # one run wrote both, read while the head was prepared
    ports = {r.check: r for r in head.results}["cluster-ports"]
    assert (ports.verdict, ports.found) == (Verdict.PASS, "node1: ok")
    skipped = {r.check: r for r in worker.results}["cluster-ports"]
    assert skipped.verdict is Verdict.SKIP
    assert skipped.found == "this node dials no other (the head dials each worker's rpc-server)"


def test_a_port_the_head_cannot_reach_stops_every_node() -> None:
    commands = run_case(load_case(HERE / "cluster_blocked_port_stops_the_worker_too.json"))
    assert commands == ["function fail_host"]  # on the worker: its own checks all passed
    head = _cluster_reports()["node0"]
    ports = {r.check: r for r in head.results}["cluster-ports"]
    assert ports.verdict is Verdict.FAIL
    assert ports.found == "testhost: timed out after 3 s"
    assert ports.fix.startswith("open tcp/50052 between the nodes")


def test_before_the_first_serve_the_workers_listen_and_the_head_probes_at_execution() -> None:
    case = load_case(HERE / "cluster_running_head_reaches_worker.json")
    nothing_yet = {"port=50052": False}
    case["facts"]["roles.preflight.facts.PeerPorts"] = {
        "peers=node1=10.0.0.2,port=50052": {"node1": "connect: Connection refused"}
    }
    case["peer_facts"]["node1"]["roles.preflight.facts.PortListening"] = nothing_yet
    assert run_case(case) == [
        "function _probe_now",
        "function _judge_now",
    ]
    # the worker, under test: it holds its port open for the head, then judges and stops it
    worker = load_case(HERE / "cluster_blocked_port_stops_the_worker_too.json")
    worker["facts"]["roles.preflight.facts.PortListening"] = nothing_yet
    head_facts = worker["peer_facts"]["node0"]["roles.preflight.facts.PeerPorts"]
    (key,) = head_facts
    head_facts[key] = {"testhost": "connect: Connection refused"}
    commands = run_case(worker)
    assert len(commands) == 3 and commands[1] == "function _judge_now"
    assert commands[0].startswith("systemd-run --quiet --collect --unit=metalserve-preflight-50052")
    assert " 10.0.0.2 50052 90 && " in commands[0]
    assert commands[2] == "systemctl stop metalserve-preflight-50052.service 2>/dev/null || true"
