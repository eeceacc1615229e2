"""The serve deploy end to end: real pyinfra over real SSH into real systemd hosts, llama.cpp built
from the offline source, the tiny MoE checkpoint fetched from the hub mirror with huggingface_hub,
converted, quantized, served by a systemd unit — then re-run, interrupted and re-run.

The tests run in file order and share the sandbox: the first deploys to one host (the cold build,
which warms the shared ccache), the next interrupts a deploy to the second host mid-build.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator

import pytest
import testinfra

from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.io.unitsecurity import parse_scores
from metalserve.sandbox.demo import INVENTORY, SERVE, SandboxInputs, completion, prepare_sandbox
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import SandboxState
from tests.e2e.test_sandbox import on_host

pytestmark = pytest.mark.e2e

SERVICE = "metalserve-llamacpp"
LLAMACPP_ROOT = "/opt/metalserve/llama.cpp"
GGUF = "/var/lib/metalserve/gguf/metalserve--tiny-moe-Q4_K_M.gguf"
BUILD_TIMEOUT_S = 40 * 60


@pytest.fixture(scope="module")
def inputs(sandbox: SandboxState) -> SandboxInputs:
    if len(sandbox.hosts) < 2:
        pytest.skip("the serve tests need two sandbox hosts (METALSERVE_SANDBOX_HOSTS>=2)")
    return prepare_sandbox(sandbox, default_layout(), progress=print)


@pytest.fixture(scope="module")
def hosts(sandbox: SandboxState) -> Iterator[dict[str, testinfra.host.Host]]:
    yield {
        h.name: testinfra.get_host(f"paramiko://{h.name}", ssh_config=str(sandbox.ssh_config))
        for h in sandbox.hosts
    }


def deploy(limit: str | None = None, **kwargs: object) -> DeployRun:
    return run_pyinfra(INVENTORY, SERVE, limit=limit, on_line=print, timeout_s=BUILD_TIMEOUT_S,
                       **kwargs)  # type: ignore[arg-type]  # fmt: skip


def _prefixes(host: testinfra.host.Host) -> list[str]:
    out = host.run(f"ls -1 {LLAMACPP_ROOT} 2>/dev/null || true").stdout.split()
    return sorted(out)


def test_first_deploy_serves_a_completion_from_a_systemd_unit(
    inputs: SandboxInputs, sandbox: SandboxState, hosts: dict
) -> None:
    first = sandbox.hosts[0]
    run = deploy(limit=first.name)
    assert run.returncode == 0, run.output[-3000:]
    assert run.totals.errors == 0
    assert "Service: activate | Smoke completion" in run.output or run.totals.changed == 0
    host = hosts[first.name]
    assert host.service(SERVICE).is_running and host.service(SERVICE).is_enabled
    text = completion(sandbox.controller_netns, f"http://{first.ip}:8080/v1/completions",
                      inputs.api_key_file, inputs.repo_id)  # fmt: skip
    assert isinstance(text, str) and text


def test_a_deploy_killed_mid_build_leaves_no_build_taken_as_complete(
    inputs: SandboxInputs, sandbox: SandboxState, hosts: dict
) -> None:
    second = sandbox.hosts[1]
    run = deploy(
        limit=second.name,
        kill_when=lambda line: 3.0 if "Build llama.cpp" in line else None,
    )
    assert run.returncode != 0 and not run.finished, "the run was cut short"
    host = hosts[second.name]
    # Scratch (.build-*, *.partial) may remain; a versioned prefix exists only with its stamp
    # (the orphaned build may even have finished it), and `current` never points at scratch.
    for prefix in _prefixes(host):
        if re.fullmatch(r"[0-9a-f]{9}-[0-9a-f]{12}", prefix):
            assert host.file(f"{LLAMACPP_ROOT}/{prefix}/.metalserve-build").exists, prefix
    current = host.file(f"{LLAMACPP_ROOT}/current")
    assert not current.exists or ".partial" not in current.linked_to


def test_every_host_converges_after_the_interruption(inputs: SandboxInputs, hosts: dict) -> None:
    run = deploy()
    assert run.returncode == 0, run.output[-3000:]
    for host in hosts.values():
        assert host.service(SERVICE).is_running
        assert host.file(GGUF).exists


def test_a_second_deploy_changes_nothing(inputs: SandboxInputs) -> None:
    run = deploy()
    assert run.returncode == 0, run.output[-3000:]
    assert run.totals.changed == 0, run.output[-3000:]


def test_files_are_owned_and_permissioned_for_their_readers(hosts: dict) -> None:
    for host in hosts.values():
        creds = host.file("/etc/metalserve/credentials")
        assert (creds.user, creds.mode) == ("root", 0o700)
        key = host.file("/etc/metalserve/credentials/api_key")
        assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
        unit = host.file(f"/etc/systemd/system/{SERVICE}.service")
        assert (unit.user, unit.mode) == ("root", 0o644)
        assert host.file(f"/etc/metalserve/{SERVICE}.env").mode == 0o644
        assert host.file(GGUF).mode & 0o004, "the service user can read the model"
        assert host.process.get(comm="llama-server").user == "metalserve"


def test_no_secret_in_units_environment_files_or_ps(inputs: SandboxInputs, hosts: dict) -> None:
    files = (inputs.api_key_file, inputs.hub_token_file)
    secrets = [path.read_text().strip() for path in files if path]
    for host in hosts.values():
        rendered = host.run(
            f"cat /etc/systemd/system/{SERVICE}*.service /etc/systemd/system/{SERVICE}*.timer "
            f"/etc/metalserve/{SERVICE}.env"
        ).stdout
        processes = host.run("ps -eo args").stdout
        journal = host.run(f"journalctl -u {SERVICE} --no-pager").stdout
        assert rendered and len(secrets) == 2
        for secret in secrets:
            assert secret not in rendered + processes + journal
        cmdline = host.run("ps -o args= -C llama-server").stdout
        assert "--api-key-file /run/credentials/" in cmdline and "--api-key " not in cmdline


def _status_from(sandbox: SandboxState, netns_or_host: str, url: str, key: str | None) -> str:
    """The HTTP status a client gets, or 000 when nothing answers within 5 s (dropped)."""
    header = ["-H", f"Authorization: Bearer {key}"] if key else []
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *header,
            "-H", "Content-Type: application/json", "-d", '{"prompt": "Hi", "max_tokens": 1}', url]  # fmt: skip
    if netns_or_host == sandbox.controller_netns:
        argv = ["ip", "netns", "exec", netns_or_host, *curl]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    return on_host(sandbox, netns_or_host, shlex.join(curl) + " || true").strip()


def test_a_request_without_the_key_is_refused_with_401(
    inputs: SandboxInputs, sandbox: SandboxState
) -> None:
    url = f"http://{sandbox.hosts[0].ip}:8080/v1/completions"
    key = inputs.api_key_file.read_text().strip()
    assert _status_from(sandbox, sandbox.controller_netns, url, None) == "401"
    assert _status_from(sandbox, sandbox.controller_netns, url, "wrong-key") == "401"
    assert _status_from(sandbox, sandbox.controller_netns, url, key) == "200"


def test_the_serving_port_is_closed_to_hosts_outside_the_client_networks(
    sandbox: SandboxState,
) -> None:
    first, second = sandbox.hosts[0], sandbox.hosts[1]
    # the second host is not in access.clients (only the controller is): its packets are dropped,
    # where the controller reaches the engine (which refuses it without the key)
    url = f"http://{first.ip}:8080/v1/completions"
    assert _status_from(sandbox, second.name, url, None) == "000"
    assert _status_from(sandbox, sandbox.controller_netns, url, None) == "401"
    table = on_host(sandbox, first.name, "nft list table inet metalserve")
    assert "tcp dport 8080 drop" in table


def test_the_keep_warm_timer_is_scheduled(hosts: dict) -> None:
    for host in hosts.values():
        timer = host.service(f"{SERVICE}-keepwarm.timer")
        assert timer.is_running and timer.is_enabled


def test_the_engine_serves_from_inside_its_sandbox(hosts: dict) -> None:
    """What the kernel applied to the running llama-server (metalserve/hardening.py), not only
    what the unit file says; and the keep-warm ping succeeds under its own sandbox."""
    for host in hosts.values():
        pid = host.run(f"systemctl show --property MainPID --value {SERVICE}").stdout.strip()
        status = dict(
            line.split(":", 1)
            for line in host.file(f"/proc/{pid}/status").content_string.splitlines()
        )
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2", "a system call filter is loaded"
        assert int(status["CapBnd"], 16) == 0, "no capability in the bounding set"
        # ProtectSystem=strict with the home writable and the weights read-only inside it
        writable = (
            "for p in /opt /var/lib/metalserve /var/lib/metalserve/gguf; do "
            "test -w $p && echo $p; done"
        )
        inside = host.run(f"nsenter --target {pid} --mount -- sh -c '{writable}'").stdout.split()
        assert inside == ["/var/lib/metalserve"]
        (score,) = parse_scores(host.run(f"systemd-analyze security {SERVICE}.service").stdout)
        assert score.exposure <= 3.0, score
        ping = host.run(f"systemctl start {SERVICE}-keepwarm.service")
        assert ping.rc == 0, ping.stderr


def test_a_deploy_killed_mid_conversion_converges_on_the_next_run(
    inputs: SandboxInputs, sandbox: SandboxState, hosts: dict
) -> None:
    second = sandbox.hosts[1]
    host = hosts[second.name]
    host.run(f"rm -f {GGUF} {GGUF}.stamp.json")
    run = deploy(limit=second.name, kill_when=lambda line: 1.0 if "Convert " in line else None)
    assert not run.finished
    out, stamp = host.file(GGUF), host.file(f"{GGUF}.stamp.json")
    assert not out.exists or stamp.exists, "a GGUF without its stamp would be taken as complete"
    again = deploy(limit=second.name)
    assert again.returncode == 0, again.output[-3000:]
    assert json.loads(host.file(f"{GGUF}.stamp.json").content_string)["type"] == "Q4_K_M"
    text = completion(sandbox.controller_netns, f"http://{second.ip}:8080/v1/completions",
                      inputs.api_key_file, inputs.repo_id)  # fmt: skip
    assert text


def test_the_hosts_stay_air_gapped(hosts: dict) -> None:
    for host in hosts.values():
        route = host.run("ip route get 1.1.1.1")
        assert route.rc != 0, route.stdout


def test_the_nccl_diagnostic_says_no_gpu_and_skips_cleanly_on_real_hosts(
    inputs: SandboxInputs, sandbox: SandboxState
) -> None:
    run = run_pyinfra(INVENTORY, "deploy/diagnose.py", on_line=print, timeout_s=300)
    assert run.returncode == 0, run.output[-3000:]
    for h in sandbox.hosts:
        assert f"[{h.name}] no NVIDIA GPU found" in run.output
    assert run.totals.changed == 0 and run.totals.errors == 0
