"""What the benches share: a fresh sandbox of N hosts with the demo inputs served, and a command
run on one of its hosts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metalserve.sandbox import down, up  # noqa: E402
from metalserve.sandbox.demo import prepare_sandbox  # noqa: E402
from metalserve.sandbox.layout import default_layout  # noqa: E402
from metalserve.sandbox.machines import ssh_argv  # noqa: E402
from metalserve.sandbox.state import SandboxState  # noqa: E402


def fresh_sandbox(hosts: int) -> SandboxState:
    """Tear down whatever sandbox is up, bring up ``hosts`` new ones, serve them the inputs."""
    quiet = lambda _: None  # noqa: E731
    down(progress=quiet)
    state = up(hosts, progress=quiet)
    prepare_sandbox(state, default_layout(), progress=quiet)
    return state


def on_host(
    state: SandboxState,
    host: str,
    command: str,
    data: bytes | None = None,
    stream: IO[bytes] | None = None,
    timeout: float = 600,
) -> str:
    """Run ``command`` on a sandbox host over its SSH, fed ``data`` or ``stream``; its output (a
    failure ends the bench with the host's message)."""
    done = subprocess.run(ssh_argv(state.ssh_config, host, command), input=data, stdin=stream,
                          capture_output=True, timeout=timeout, check=False)  # fmt: skip
    if done.returncode != 0:
        said = done.stderr.decode().strip() or done.stdout.decode().strip()
        raise SystemExit(f"on {host}: {command.splitlines()[0]}: {said}")
    return done.stdout.decode()
