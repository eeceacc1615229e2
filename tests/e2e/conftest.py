"""The e2e tier's shared sandbox: real systemd hosts over real SSH, brought up once per session.

Environment:
- `METALSERVE_SANDBOX_HOSTS` (default 2): how many hosts.
- `METALSERVE_KEEP_SANDBOX=1`: leave the hosts up after the session (a later session with the
  same host count reuses them instead of booting new ones).

Tests marked `e2e` are skipped, with the reason, when not root or a prerequisite is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from metalserve.sandbox import down, up
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.machines import system_state
from metalserve.sandbox.prereqs import prerequisites_problem
from metalserve.sandbox.state import SandboxState, load_state

LAST = "test_faults.py"
"""Its own three hosts build llama.cpp three times over: after the rest of the tier, ccache has
the builds already."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name == LAST)  # stable: the rest keep their order
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    problem = prerequisites_problem() if e2e else None
    if problem:
        for item in e2e:
            item.add_marker(pytest.mark.skip(reason=f"e2e needs the sandbox: {problem}"))


def _reusable(n: int) -> SandboxState | None:
    """A sandbox already up with exactly `n` healthy hosts (kept by METALSERVE_KEEP_SANDBOX=1)."""
    try:
        state = load_state(default_layout().state_file)
    except SandboxError:
        return None
    if len(state.hosts) != n:
        return None
    healthy = all(
        system_state(state.ssh_config, h.name) in ("running", "degraded") for h in state.hosts
    )
    return state if healthy else None


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxState]:
    """Hosts, addresses, SSH key and config, and the controller's service URLs."""
    n = int(os.environ.get("METALSERVE_SANDBOX_HOSTS", "2"))
    state = _reusable(n)
    if state is None:
        down(progress=lambda _: None)  # whatever an earlier, interrupted session left behind
        state = up(n)
    yield state
    if os.environ.get("METALSERVE_KEEP_SANDBOX") != "1":
        down()
