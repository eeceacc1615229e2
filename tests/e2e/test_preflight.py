"""Preflight across the two sandbox hosts as one cluster, read-only, over real SSH.

A clean sandbox passes every check that applies without a GPU and says which GPU checks it
skipped; the peers reach each other's rendezvous port and their clocks agree. Then two faults are
made on the worker from outside it (its network namespace, as the site's network would): an MTU
off from the head's, and a firewall dropping the rendezvous port. Each is reported as FAIL with the
host, the check and the fix, and fails the run.

Runs before ``test_serve*.py`` (file order): preflight needs no build, only the hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalserve.io.preflight import read_host_report
from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.preflight import GPU_CHECKS, Verdict
from metalserve.sandbox.demo import CLUSTER_INVENTORY, CLUSTER_RPC_PORT, prepare_sandbox
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import SandboxHostState, SandboxState

pytestmark = pytest.mark.e2e

PREFLIGHT = "deploy/preflight.py"


@pytest.fixture(scope="module")
def reports(sandbox: SandboxState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if len(sandbox.hosts) < 2:
        pytest.skip("the cluster preflight needs two sandbox hosts (METALSERVE_SANDBOX_HOSTS>=2)")
    prepare_sandbox(sandbox, default_layout(), progress=print)
    folder = tmp_path_factory.mktemp("preflight")
    before = os.environ.get("METALSERVE_PREFLIGHT_DIR")
    os.environ["METALSERVE_PREFLIGHT_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["METALSERVE_PREFLIGHT_DIR"]
    else:
        os.environ["METALSERVE_PREFLIGHT_DIR"] = before


def preflight() -> DeployRun:
    return run_pyinfra(CLUSTER_INVENTORY, PREFLIGHT, on_line=print, timeout_s=600)


def in_netns(host: SandboxHostState, *argv: str) -> str:
    """A command in the host's network namespace, run from the control host (the hosts are
    containers without CAP_NET_ADMIN; the network is changed from outside, as a switch would)."""
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, *argv], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"{host.netns}: {argv}: {done.stderr.strip()}"
    return done.stdout


def interface_of(host: SandboxHostState) -> str:
    for line in in_netns(host, "ip", "-o", "-4", "addr", "show").splitlines():
        if f" {host.ip}/" in line:
            return line.split()[1].split("@")[0]
    raise AssertionError(f"{host.name}: no interface holds {host.ip}")


def failures(run: DeployRun) -> list[str]:
    return [line for line in run.output.splitlines() if " FAIL: expected " in line]


def test_a_clean_sandbox_passes_and_says_which_gpu_checks_it_skipped(
    reports: Path, sandbox: SandboxState
) -> None:
    run = preflight()
    assert run.returncode == 0, run.output[-3000:]
    assert "preflight skipped" in run.output and "no NVIDIA GPU in this node's plan" in run.output
    for host in sandbox.hosts[:2]:
        report = read_host_report(reports / f"{host.name}.json")
        verdicts = {r.check: r.verdict for r in report.results}
        assert {c for c, v in verdicts.items() if v is Verdict.SKIP} >= set(GPU_CHECKS)
        assert Verdict.FAIL not in verdicts.values(), report.results
        assert verdicts["cluster-address"] is Verdict.PASS
        assert report.clock_offset_s is not None
    # llama.cpp's head dials the worker's rpc-server port: the head probes it
    head = read_host_report(reports / f"{sandbox.hosts[0].name}.json")
    ports = {r.check: r for r in head.results}["cluster-ports"]
    assert ports.verdict is Verdict.PASS and ports.found == f"{sandbox.hosts[1].name}: ok"
    shown = subprocess.run(
        [
            str(Path(sys.executable).parent / "metalserve"),
            "preflight",
            "show",
            *map(str, sorted(reports.glob("*.json"))),
        ],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "clocks in sync" in shown.stdout and "mtu equal" in shown.stdout


def test_an_mtu_drifted_worker_is_a_cluster_fail_naming_both_values(
    reports: Path, sandbox: SandboxState
) -> None:
    worker = sandbox.hosts[1]
    interface = interface_of(worker)
    mtu = int(in_netns(worker, "cat", f"/sys/class/net/{interface}/mtu"))
    in_netns(worker, "ip", "link", "set", "dev", interface, "mtu", str(mtu - 100))
    try:
        run = preflight()
    finally:
        in_netns(worker, "ip", "link", "set", "dev", interface, "mtu", str(mtu))
    assert run.returncode != 0
    drift = [line for line in failures(run) if "mtu equal" in line]
    assert drift, run.output[-3000:]
    assert f"{worker.name}: {interface}:{mtu - 100}" in drift[0]
    assert "fix: one MTU on every node's cluster interface" in drift[0]


def test_a_blocked_rendezvous_port_is_a_fail_on_the_node_that_cannot_reach_it(
    reports: Path, sandbox: SandboxState
) -> None:
    head, worker = sandbox.hosts[0], sandbox.hosts[1]
    table = "metalserve_test_block"
    in_netns(worker, "nft", "add", "table", "inet", table)
    in_netns(
        worker, "nft", "add chain inet " + table + " input { type filter hook input priority -10; }"
    )
    in_netns(
        worker,
        "nft",
        "add",
        "rule",
        "inet",
        table,
        "input",
        "tcp",
        "dport",
        str(CLUSTER_RPC_PORT),
        "drop",
    )
    try:
        run = preflight()
    finally:
        in_netns(worker, "nft", "delete", "table", "inet", table)
    assert run.returncode != 0
    blocked = [line for line in failures(run) if "cluster-ports" in line]
    assert blocked, run.output[-3000:]
    assert blocked[0].startswith(f"[{head.name}]") or f"host {head.name}:" in blocked[0]
    assert f"{worker.name}: timed out" in blocked[0]
    assert f"fix: open tcp/{CLUSTER_RPC_PORT} between the nodes" in blocked[0]
    report = read_host_report(reports / f"{head.name}.json")
    assert {r.check: r.verdict for r in report.results}["cluster-ports"] is Verdict.FAIL
