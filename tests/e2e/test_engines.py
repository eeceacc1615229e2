"""vLLM and SGLang installed for real on a sandbox host from their locks, their flags checked by
their own parsers, their units started — and, with no GPU, the crash loop reported within a minute.

Opt-in (`METALSERVE_E2E_ENGINES=1`): each lock's wheels are 4-5 GB, downloaded once into the
cache (keyed by the lock's hash) and pushed to the host. The host stands in for a one-GPU H100
PCIe node on the stand-in NVIDIA repository (as in test_stack.py); what fails is the engine's own
start, as it would on a host whose GPU is gone.

Runs on the last sandbox host and puts it back as it found it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
import testinfra

from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.sandbox.demo import prepare_sandbox
from metalserve.sandbox.engines import ENGINES
from metalserve.sandbox.engines import engine_host as engine_host_for
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import SandboxState
from tests.e2e.test_stack import put_back

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("METALSERVE_E2E_ENGINES") != "1",
        reason="the engine install run is opt-in: METALSERVE_E2E_ENGINES=1 (4-5 GB of wheels per engine)",
    ),
]

CRASH_REPORT_S = 60


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def engine_host(
    sandbox: SandboxState, engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(host name, inventory path): the last sandbox host as a one-GPU H100 PCIe node of
    ``engine``."""
    unit = f"metalserve-{engine}.service"
    inputs = prepare_sandbox(sandbox, default_layout(), progress=print)
    host = engine_host_for(sandbox, inputs, engine, tmp_path_factory.mktemp("engines"))
    yield host.name, str(host.inventory)
    target = testinfra.get_host(f"paramiko://{host.name}", ssh_config=str(sandbox.ssh_config))
    target.run(f"systemctl disable --now {unit}; rm -f /etc/systemd/system/{unit}; "
               f"systemctl daemon-reload; rm -rf /opt/metalserve/venvs/{engine}*")  # fmt: skip
    put_back(target)


@pytest.fixture(scope="module")
def first_run(engine_host: tuple[str, str]) -> DeployRun:
    return run_pyinfra(engine_host[1], "deploy/serve.py", on_line=print, timeout_s=3000)


def _started(run: DeployRun, operation: str) -> float:
    return next(t for t, name in run.starts if operation in name)


def test_the_engine_installs_from_its_lock_and_its_parser_accepts_the_unit(
    first_run: DeployRun, engine: str
) -> None:
    out = first_run.output
    version = re.escape(ENGINES[engine][0])
    install = re.search(
        rf"Install {engine} {version} from its lock[^\n]*\n\s+\[[^\]]+\] Success", out
    )
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
