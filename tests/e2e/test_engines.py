"""vLLM installed for real on a sandbox host from its lock, its flags checked by its own parser,
its unit started — and, with no GPU, its crash loop reported within a minute.

Opt-in (`METALSERVE_E2E_ENGINES=1`): the lock's wheels are about 9 GB, downloaded once into the
cache (keyed by the lock's hash) and pushed to the host. The host stands in for a one-GPU H100
PCIe node on the stand-in NVIDIA repository (as in test_stack.py); what fails is the engine's own
start, as it would on a host whose GPU is gone.

Runs on the last sandbox host and puts it back as it found it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra

from metalserve.artefacts.wheelhouse import converter_wheelhouse, engine_wheelhouse
from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.sandbox import fileserver
from metalserve.sandbox.demo import SandboxInputs, prepare_sandbox, sandbox_metalserve_data
from metalserve.sandbox.inventory import clients, host_data
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.lifecycle import APT_SERVED_NAME
from metalserve.sandbox.recipe import RootfsRecipe
from metalserve.sandbox.standins import standin_repo
from metalserve.sandbox.state import SandboxState
from tests.e2e.test_stack import put_back

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("METALSERVE_E2E_ENGINES") != "1",
        reason="the engine install run is opt-in: METALSERVE_E2E_ENGINES=1 (about 9 GB of wheels)",
    ),
]

LOCK = Path("locks/vllm-0.33.0-py3.11-x86_64.txt")
UNIT = "metalserve-vllm.service"
CRASH_REPORT_S = 60


@pytest.fixture(scope="module")
def engine_host(
    sandbox: SandboxState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(host name, inventory path): the last sandbox host as a one-GPU H100 PCIe vLLM node."""
    layout = default_layout()
    inputs: SandboxInputs = prepare_sandbox(sandbox, layout, progress=print)
    wheels = engine_wheelhouse(LOCK, converter_wheelhouse())
    repo = standin_repo((layout.www_dir / APT_SERVED_NAME).resolve(), RootfsRecipe().suite)
    apt = fileserver.serve_dir(layout, "apt-nvidia", repo)
    target = sandbox.hosts[-1]
    base = sandbox_metalserve_data(sandbox.apt_url, inputs, clients(sandbox))
    data = {
        **host_data(sandbox, target),
        "metalserve": {
            **{k: v for k, v in base.items() if k not in ("profile", "engine")},
            "hardware": {"gpu": "h100-pcie", "gpus_per_node": 1, "nodes": 1,
                         "interconnect": "pcie", "host_ram_gb": 16},
            "engine": {"name": "vllm", "max_model_len": 2048, "enforce_eager": True},
            "sources": {
                **base["sources"],
                "apt": {"kind": "mirror", "url": apt},
                "python": {"kind": "bundle", "wheelhouse": str(wheels)},
            },
            "service": {"health_timeout_s": 600},
        },
    }  # fmt: skip
    data.pop("sandbox")
    inventory = tmp_path_factory.mktemp("engines") / "vllm_sandbox.py"
    inventory.write_text(f"hosts = [({target.name!r}, {data!r})]\n")
    yield target.name, str(inventory)
    host = testinfra.get_host(f"paramiko://{target.name}", ssh_config=str(sandbox.ssh_config))
    host.run(f"systemctl disable --now {UNIT}; rm -f /etc/systemd/system/{UNIT}; "
             "systemctl daemon-reload; rm -rf /opt/metalserve/venvs/vllm*")  # fmt: skip
    put_back(host)


@pytest.fixture(scope="module")
def first_run(engine_host: tuple[str, str]) -> DeployRun:
    return run_pyinfra(engine_host[1], "deploy/serve.py", on_line=print, timeout_s=3000)


def _started(run: DeployRun, operation: str) -> float:
    return next(t for t, name in run.starts if operation in name)


def test_vllm_installs_from_its_lock_and_its_parser_accepts_the_unit(first_run: DeployRun) -> None:
    out = first_run.output
    install = re.search(r"Install vllm 0\.33\.0 from its lock[^\n]*\n\s+\[[^\]]+\] Success", out)
    assert install, out[-3000:]
    check = re.search(r"own parser[^\n]*\n\s+\[[^\]]+\] Success", out)
    assert check, out[-3000:]


def test_the_crash_loop_is_reported_with_journal_lines_within_a_minute(
    first_run: DeployRun,
) -> None:
    assert first_run.returncode != 0
    waited = _started(first_run, "Wait for http://")
    assert first_run.elapsed - waited < CRASH_REPORT_S, first_run.output[-3000:]
    report = [line for line in first_run.output.splitlines() if "last journal lines:" in line]
    assert report and "restart(s) while waiting" in report[0], first_run.output[-3000:]


def test_a_rerun_changes_nothing_before_the_engine_starts(
    first_run: DeployRun, engine_host: tuple[str, str]
) -> None:
    again = run_pyinfra(engine_host[1], "deploy/serve.py", on_line=print, timeout_s=1200)
    assert again.returncode != 0  # still no GPU
    before_start = again.output.split("Start and enable")[0]
    changed = re.findall(r"--> Starting operation: ([^\n]*)\n\s+\[[^\]]+\] Success", before_start)
    assert changed == [], changed
