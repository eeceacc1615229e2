"""Two sandbox hosts serving one model together: llama.cpp's RPC backend over the sandbox network.

The worker runs ``rpc-server`` bound to its cluster address, the head ``llama-server --rpc``; the
serve deploy starts the worker first, the head once the worker answers. Then the cluster's health
check is run read-only, the worker is stopped (the check fails in one line naming it), and a re-run
brings the cluster back; a further run changes nothing.

Runs after ``test_serve.py`` (file order) on the same hosts, beside the single-host units: the
cluster has its own unit name and ports (``metalserve.sandbox.demo.CLUSTER_*``).
"""

from __future__ import annotations

import pytest

from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.sandbox.demo import (
    CLUSTER_HTTP_PORT,
    CLUSTER_INVENTORY,
    CLUSTER_RPC_PORT,
    CLUSTER_SERVICE,
    HEALTH,
    SERVE,
    SandboxInputs,
    completion,
    prepare_sandbox,
)
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import SandboxState
from tests.e2e.test_sandbox import on_host

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT_S = 40 * 60


@pytest.fixture(scope="module")
def inputs(sandbox: SandboxState) -> SandboxInputs:
    if len(sandbox.hosts) < 2:
        pytest.skip("the cluster tests need two sandbox hosts (METALSERVE_SANDBOX_HOSTS>=2)")
    return prepare_sandbox(sandbox, default_layout(), progress=print)


def run(deploy: str, timeout_s: float = BUILD_TIMEOUT_S) -> DeployRun:
    return run_pyinfra(CLUSTER_INVENTORY, deploy, on_line=print, timeout_s=timeout_s)


def _head_completion(sandbox: SandboxState, inputs: SandboxInputs) -> str:
    head = sandbox.hosts[0]
    url = f"http://{head.ip}:{CLUSTER_HTTP_PORT}/v1/completions"
    return completion(sandbox.controller_netns, url, inputs.api_key_file, inputs.repo_id)


def test_two_hosts_serve_one_model_over_rpc(inputs: SandboxInputs, sandbox: SandboxState) -> None:
    deployed = run(SERVE)
    assert deployed.returncode == 0, deployed.output[-3000:]
    head, worker = sandbox.hosts[0], sandbox.hosts[1]
    # The worker's engine is rpc-server on its own cluster address, started before the head.
    argv = on_host(sandbox, worker.name, f"systemctl show -p ExecStart --value {CLUSTER_SERVICE}")
    assert "rpc-server" in argv and f"--host {worker.ip}" in argv, argv
    listening = on_host(sandbox, worker.name, f"ss -Htln 'sport = :{CLUSTER_RPC_PORT}'")
    assert f"{worker.ip}:{CLUSTER_RPC_PORT}" in listening, listening
    head_argv = on_host(
        sandbox, head.name, f"systemctl show -p ExecStart --value {CLUSTER_SERVICE}"
    )
    assert f"--rpc {worker.ip}:{CLUSTER_RPC_PORT}" in head_argv, head_argv
    started = {
        h.name: int(
            on_host(
                sandbox,
                h.name,
                f"systemctl show -p ExecMainStartTimestampMonotonic --value {CLUSTER_SERVICE}",
            ).strip()
            or 0
        )
        for h in (head, worker)
    }
    # sandbox hosts share the kernel, so their monotonic clocks compare: worker first, then head
    assert 0 < started[worker.name] < started[head.name], started
    assert _head_completion(sandbox, inputs)


def test_the_head_is_connected_to_the_workers_rpc_server(
    inputs: SandboxInputs, sandbox: SandboxState
) -> None:
    head, worker = sandbox.hosts[0], sandbox.hosts[1]
    # the head's llama-server keeps one connection to the worker's rpc-server while it serves
    # (llama-server at its default verbosity does not log the RPC device's buffers)
    peers = on_host(
        sandbox, worker.name, f"ss -Htn state established '( sport = :{CLUSTER_RPC_PORT} )'"
    )
    assert f"{head.ip}:" in peers, peers


def test_the_cluster_health_check_passes_and_changes_nothing(inputs: SandboxInputs) -> None:
    checked = run(HEALTH, timeout_s=300)
    assert checked.returncode == 0, checked.output[-3000:]


def test_a_stopped_worker_fails_the_health_check_in_one_line(
    inputs: SandboxInputs, sandbox: SandboxState
) -> None:
    worker = sandbox.hosts[1]
    on_host(sandbox, worker.name, f"systemctl stop {CLUSTER_SERVICE}")
    checked = run(HEALTH, timeout_s=300)
    assert checked.returncode != 0
    message = [line for line in checked.output.splitlines() if "cluster health:" in line]
    assert message, checked.output[-3000:]
    assert f"{worker.ip}:{CLUSTER_RPC_PORT}" in message[0]


def test_a_rerun_brings_the_cluster_back(inputs: SandboxInputs, sandbox: SandboxState) -> None:
    deployed = run(SERVE)
    assert deployed.returncode == 0, deployed.output[-3000:]
    assert _head_completion(sandbox, inputs)


def test_a_second_cluster_deploy_changes_nothing(inputs: SandboxInputs) -> None:
    again = run(SERVE)
    assert again.returncode == 0, again.output[-3000:]
    assert again.totals.changed == 0, again.output[-3000:]
