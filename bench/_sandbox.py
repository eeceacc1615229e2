"""What the benches share: a fresh sandbox of N hosts with the demo inputs served."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metalserve.sandbox import down, up  # noqa: E402
from metalserve.sandbox.demo import prepare_sandbox  # noqa: E402
from metalserve.sandbox.layout import default_layout  # noqa: E402
from metalserve.sandbox.state import SandboxState  # noqa: E402


def fresh_sandbox(hosts: int) -> SandboxState:
    """Tear down whatever sandbox is up, bring up ``hosts`` new ones, serve them the inputs."""
    quiet = lambda _: None  # noqa: E731
    down(progress=quiet)
    state = up(hosts, progress=quiet)
    prepare_sandbox(state, default_layout(), progress=quiet)
    return state
